"""sseplay as a library: Stream, Server (threaded and async), tail/atail, the checks."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import os
import resource
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

import sseplay
import sseplay.server as server_module
import sseplay.stream as stream_module
from sseplay import (
    CannotServe,
    FieldMapping,
    InputError,
    Server,
    ServerConfig,
    Stream,
    Timing,
    UsageError,
    atail,
    tail,
)
from sseplay.eventfile import load_event_file
from tests.conftest import ROOT, run_cli

TOKENS = [{"token": "Hel"}, {"token": "lo"}, "[DONE]"]


def test_records_from_python_are_served_and_tailed() -> None:
    stream = Stream.from_records(TOKENS, interval=0)
    with Server(stream) as server:
        assert server.url.endswith("/events")
        events = list(tail(server.url, reconnect=False))
    assert [event.data for event in events] == ['{"token":"Hel"}', '{"token":"lo"}', "[DONE]"]
    assert [event.id for event in events] == ["1", "2", "3"]
    assert events[0].json() == {"token": "Hel"}
    assert events[0].type == "message"


def test_a_file_stream_with_the_cli_options(tmp_path: Path) -> None:
    stream = Stream.from_file(
        ROOT / "samples" / "notifications.json", interval=0, event_field="type", id_field="id"
    )
    assert stream.count > 1
    with Server({"/notes": stream}) as server:
        assert server.url == server.url_for("notes")
        events = list(tail(server.url, reconnect=False))
    assert len(events) == stream.count
    assert {event.type for event in events} != {"message"}


def test_the_server_stops_and_frees_its_port() -> None:
    server = Server(Stream.from_records([1, 2], interval=0)).start()
    url = server.url
    assert httpx.get(url.replace("/events", "/healthz")).json()["status"] == "ok"
    server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(url, timeout=2)


def test_connections_counts_open_streams() -> None:
    with Server(Stream.from_records(range(1, 50), interval=0.05)) as server:
        assert server.connections == 0
        events = tail(server.url, count=2)
        assert next(events).data == "1"
        assert server.connections == 1
        events.close()
        for _ in range(100):  # the server notices the hang-up within a few ms
            if server.connections == 0:
                break
            threading.Event().wait(0.01)
        assert server.connections == 0


def test_two_servers_run_at_once_in_one_process() -> None:
    with (
        Server(Stream.from_records(["a1", "a2"], interval=0)) as first,
        Server(Stream.from_records(["b1"], interval=0), broadcast=False) as second,
    ):
        assert first.url != second.url
        assert [e.data for e in tail(first.url, reconnect=False)] == ["a1", "a2"]
        assert [e.data for e in tail(second.url, reconnect=False)] == ["b1"]


def test_async_server_on_the_running_loop() -> None:
    async def main() -> list[str]:
        stream = Stream.from_records(["x", "y", "z"], interval=0.01)
        async with (
            Server(stream) as server,
            contextlib.aclosing(atail(server.url, count=3)) as events,
        ):
            return [event.data async for event in events]

    assert asyncio.run(main()) == ["x", "y", "z"]


def test_a_library_server_leaves_the_process_alone() -> None:
    """No collector tuning, no open-file limit, no signal handlers: those are the
    command's (issue 12: starting from a thread changed them for good)."""
    before = (
        gc.get_threshold(),
        gc.get_freeze_count(),
        resource.getrlimit(resource.RLIMIT_NOFILE),
        signal.getsignal(signal.SIGINT),
        signal.getsignal(signal.SIGTERM),
    )

    async def in_the_main_thread() -> None:
        async with (
            Server(Stream.from_records([1], interval=0)) as server,
            contextlib.aclosing(atail(server.url, count=1)) as events,
        ):
            assert [event.data async for event in events] == ["1"]

    with Server(Stream.from_records([1], interval=0)) as server:
        assert [e.data for e in tail(server.url, reconnect=False)] == ["1"]
    asyncio.run(in_the_main_thread())
    after = (
        gc.get_threshold(),
        gc.get_freeze_count(),
        resource.getrlimit(resource.RLIMIT_NOFILE),
        signal.getsignal(signal.SIGINT),
        signal.getsignal(signal.SIGTERM),
    )
    assert after == before


def test_a_port_in_use_is_cannot_serve() -> None:
    with Server(Stream.from_records([1])) as server:
        port = int(server.url.split(":")[2].split("/")[0])
        with pytest.raises(CannotServe, match="Address already in use"):
            Server(Stream.from_records([1]), port=port).start()


# Every rule raises UsageError (a ValueError) with the line the CLI prints for the flag.
RULES: list[tuple[Any, list[str]]] = [
    (lambda: Timing(speed=0), ["--speed", "0"]),
    (lambda: Timing(speed=float("nan")), ["--speed", "nan"]),
    (lambda: Timing(interval=-1), ["--interval", "-1"]),
    (lambda: Timing(interval=float("inf")), ["--interval", "inf"]),
    (lambda: Timing(max_gap=float("nan")), ["--max-gap", "nan"]),
    (lambda: FieldMapping(event_type="a\nb"), ["--event-type", "a\nb"]),
    (
        lambda: FieldMapping(event_type="a", event_field="t"),
        ["--event-type", "a", "--event-field", "t"],
    ),
    (lambda: ServerConfig(port=70000), ["--port", "70000"]),
    (lambda: ServerConfig(ping=1e-6), ["--ping", "1e-6"]),
    (lambda: ServerConfig(send_timeout=float("inf")), ["--send-timeout", "inf"]),
    (lambda: ServerConfig(cors=("example.com",)), ["--cors", "example.com"]),
    (lambda: Stream.from_records([1], retry=-1), ["--retry", "-1"]),
    (lambda: Server(Stream.from_records([1], loop=True), once=True), ["--once", "--loop"]),
]


@pytest.mark.parametrize(("build", "flags"), RULES)
def test_every_rule_raises_the_line_the_cli_prints(build: Any, flags: list[str]) -> None:
    with pytest.raises(UsageError) as raised:
        build()
    assert isinstance(raised.value, ValueError)
    cli = run_cli("serve", "samples/scores.json", "--port", "0", *flags)
    assert cli.returncode == 2
    assert cli.stderr == f"sseplay: error: {raised.value}\n"


def test_bad_records_from_python_say_which_and_why() -> None:
    with pytest.raises(InputError, match=r"<records> record 2: cannot be written as JSON"):
        Stream.from_records([{"a": 1}, {"b": object()}])
    with pytest.raises(InputError, match="record 2"):
        Stream.from_records([{"a": 1}, {"b": float("nan")}])
    with pytest.raises(InputError, match="duplicate id"):
        Stream.from_records([{"id": 1}, {"id": 1}], id_field="id")
    with pytest.raises(TypeError, match="unknown stream option 'speeed'"):
        Stream.from_records([1], speeed=2)  # type: ignore[call-arg]


def test_integers_of_any_size_come_out_exactly() -> None:
    big = 12345678901234567890123
    with Server(Stream.from_records([{"n": big}], interval=0)) as server:
        (event,) = tail(server.url, reconnect=False)
    assert event.json() == {"n": big}


def test_importing_sseplay_and_tail_loads_no_server_stack() -> None:
    probe = (
        "import sys, sseplay\n"
        "from sseplay import tail, Stream, UsageError\n"
        "heavy = {m.split('.')[0] for m in sys.modules}\n"
        "print(sorted(heavy & {'fastapi', 'uvicorn', 'sse_starlette', 'starlette'}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=30, cwd=ROOT
    )
    assert result.stdout.strip() == "[]", result.stderr


def test_the_public_names() -> None:
    for name in sseplay.__all__:
        assert getattr(sseplay, name) is not None
    with pytest.raises(AttributeError):
        sseplay.nothing_here  # type: ignore[attr-defined]  # noqa: B018


PLUGIN_TEST = """
import httpx


def test_a_mock_backend(sse_server):
    server = sse_server([{"token": "Hel"}, {"token": "lo"}, "[DONE]"], interval=0)
    body = httpx.get(server.url).text
    assert 'data: {"token":"Hel"}' in body
    assert "data: [DONE]" in body


def test_a_file_and_server_options(sse_server, tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_text('{"a": 1}\\n')
    server = sse_server(path, interval=0, ping=0, cors=["http://localhost:3000"])
    assert "data: {\\"a\\":1}" in httpx.get(server.url).text
"""


def test_the_fixture_works_with_no_conftest(tmp_path: Path) -> None:
    """The plugin is registered by the pytest11 entry point: a project's test file needs
    nothing else (run in a subprocess, in a directory with no conftest)."""
    (tmp_path / "test_mock.py").write_text(PLUGIN_TEST)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_mock.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


def test_a_gz_file_is_decompressed_once_and_the_copy_goes_with_the_stream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gzip

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    source = tmp_path / "events.jsonl.gz"
    source.write_bytes(gzip.compress(b"".join(b'{"n": %d}\n' % n for n in range(5))))
    stream = Stream.from_file(source, interval=0)
    assert stream.count == 5
    assert list((tmp_path / "tmp").iterdir()), "the decompressed copy"
    with Server(stream) as server:
        assert [e.data for e in tail(server.url, reconnect=False)][-1] == '{"n":4}'
    del stream, server
    gc.collect()
    assert list((tmp_path / "tmp").iterdir()) == []


def _stream() -> Stream:
    return Stream.from_records([{"n": 1}, {"n": 2}], interval=0)


def test_a_stopped_server_says_it_is_not_running_and_names_no_removed_ca_file() -> None:
    server = Server(_stream(), self_signed=True)
    with server:
        ca_file = server.ca_file
        assert ca_file is not None
        assert os.path.exists(ca_file)
        trust = ssl.create_default_context(cafile=ca_file)
        response = httpx.get(server.url, verify=trust, timeout=10)
        assert response.status_code == 200
    # Before: repr() and urls read the closed socket (OSError: Bad file descriptor), and
    # ca_file still named the CA file removed with the server.
    assert "not running" in repr(server)
    with pytest.raises(RuntimeError, match="not running"):
        server.urls  # noqa: B018
    assert server.ca_file is None
    assert not os.path.exists(ca_file)


def test_a_server_starts_after_a_start_that_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    real_startup = server_module.StreamingServer.startup
    calls: list[int] = []

    async def fails_once(
        self: server_module.StreamingServer, sockets: list[socket.socket] | None = None
    ) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("the first start-up fails")
        await real_startup(self, sockets)

    monkeypatch.setattr(server_module.StreamingServer, "startup", fails_once)
    server = Server(_stream())
    with pytest.raises(CannotServe, match="the first start-up fails"):
        server.start()
    # Before: the first failure stayed recorded, so the second start, which worked, was
    # reported as failed after joining its thread: a wait for ever on a running server.
    started: list[Server] = []
    starting = threading.Thread(target=lambda: started.append(server.start()), daemon=True)
    starting.start()
    starting.join(10)
    try:
        assert started, "the second start did not return"
        assert httpx.get(server.url, timeout=10).status_code == 200
    finally:
        server.stop()
    starting.join(10)
    assert not starting.is_alive()


def test_a_server_keeps_the_copy_its_stream_reads_back(
    monkeypatch: pytest.MonkeyPatch, sse_server: Callable[..., Server]
) -> None:
    # Events beyond the memory budget are read back from the stream's temporary copy
    # (64 MiB by default; none here, so that a few records are enough).
    monkeypatch.setattr(
        stream_module, "load_event_file", functools.partial(load_event_file, memory_budget=0)
    )
    # The fixture, like Server(Stream.from_records(...)), keeps no Stream of its own.
    server = sse_server([{"n": n} for n in range(5)], interval=0)
    assert not server.routes[0].replay.file.in_memory
    gc.collect()
    # Before: the Stream was dropped at once, its copy removed with it, and the stream
    # ended before its first event ("<records> cannot be read any more").
    response = httpx.get(server.url, timeout=10)
    assert response.status_code == 200
    assert response.text.count("data: ") == 5


def test_two_streams_at_one_route_are_refused() -> None:
    # Before: both were listed (urls, /healthz), and the second was never served.
    first, second = _stream(), _stream()
    with pytest.raises(UsageError, match="two streams would be served at /feed"):
        Server({"feed": first, "/feed/": second})
    with Server({"feed": first, "other": second}) as server:
        assert httpx.get(server.url_for("other"), timeout=10).text.count("data: ") == 2
