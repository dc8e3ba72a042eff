"""Where features merged on the same day meet: the Server API's life cycle, faults with
--workers, and the CLI's usage lines. Real servers on 127.0.0.1 port 0."""

from __future__ import annotations

import functools
import gc
import os
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable

import httpx
import pytest

import sseplay.server as server_module
import sseplay.stream as stream_module
from sseplay import Server, Stream
from sseplay.config import ServerConfig
from sseplay.errors import UsageError
from sseplay.eventfile import load_event_file
from tests.conftest import ROOT, run_cli


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
    with pytest.raises(server_module.CannotServe, match="the first start-up fails"):
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


def test_faults_with_workers_are_refused_in_one_line() -> None:
    # Before: each worker numbered its own connections, so times=1 (documented as "at
    # most K times in all") fired once per worker, and conn=1 too.
    with pytest.raises(UsageError, match="--workers"):
        ServerConfig(workers=2, faults="status:code=503,times=1")
    with pytest.raises(UsageError, match="--workers"):
        ServerConfig(workers=2, fault_header=True)
    result = run_cli(
        "serve",
        "samples/llm.jsonl",
        "--port",
        "0",
        "--workers",
        "2",
        "--fault",
        "status:code=503,times=1",
        timeout=15,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("sseplay: error: --fault"), result.stderr


# Ctrl-C while main() builds the command (tens of ms at every launch): a real SIGINT.
_INTERRUPTED_WHILE_BUILDING = """
import os, signal, sys, typer.main
from sseplay.cli.app import main
build = typer.main.get_command
def interrupted_while_building(app):
    os.kill(os.getpid(), signal.SIGINT)
    return build(app)
typer.main.get_command = interrupted_while_building
main(sys.argv[1:])
"""


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


# Ctrl-C inside the tail command before its own handler is in place (it imports httpx).
_INTERRUPTED_BEFORE_THE_TAIL = """
import os, signal, sys
import sseplay.cli.tail as tail_command
from sseplay.cli import main
run_tail = tail_command._run_tail
def interrupted_first(*args):
    os.kill(os.getpid(), signal.SIGINT)
    return run_tail(*args)
tail_command._run_tail = interrupted_first
main(sys.argv[1:])
"""


@pytest.mark.parametrize(
    "probe",
    [_INTERRUPTED_WHILE_BUILDING, _INTERRUPTED_BEFORE_THE_TAIL],
    ids=["while-the-command-is-built", "before-the-tail-runs"],
)
def test_ctrl_c_early_is_one_line_and_exit_130(probe: str) -> None:
    # Before: a KeyboardInterrupt traceback and exit -2 (while building), or exit 130 with
    # nothing on stderr (Typer's Exit(130), returned as a code, before the tail ran).
    result = subprocess.run(
        [sys.executable, "-c", probe, "tail", "http://127.0.0.1:9/"],
        capture_output=True,
        text=True,
        timeout=20,
        cwd=ROOT,
    )
    assert result.returncode == 130, result.stderr
    assert result.stderr.strip().splitlines() == ["sseplay: interrupted"]


@pytest.mark.parametrize(
    ("args", "command"),
    [
        (("serve", "samples/llm.jsonl", "--broadcast=yes"), "sseplay serve"),
        (("serve", "samples/llm.jsonl", "--port"), "sseplay serve"),
        (("tail", "http://127.0.0.1:9/", "--expect"), "sseplay tail"),
    ],
)
def test_a_flag_without_its_value_or_given_one_points_at_its_command(
    args: tuple[str, ...], command: str
) -> None:
    # Before: "sseplay: Option '--expect' requires an argument; see 'sseplay --help'", a
    # help page that does not list the option (click's parser gives these no context).
    result = run_cli(*args, timeout=15)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"sseplay: error: {command}: Option "), result.stderr
    assert lines[0].endswith(f"see '{command} --help'"), result.stderr


def test_two_streams_at_one_route_are_refused() -> None:
    # Before: both were listed (urls, /healthz), and the second was never served.
    first, second = _stream(), _stream()
    with pytest.raises(UsageError, match="two streams would be served at /feed"):
        Server({"feed": first, "/feed/": second})
    with Server({"feed": first, "other": second}) as server:
        assert httpx.get(server.url_for("other"), timeout=10).text.count("data: ") == 2
