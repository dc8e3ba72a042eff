"""The tail library API (issue 12): ``tail()``, ``atail()``, ``TailOptions``, ``Event``."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from sseplay.client.api import atail, tail
from sseplay.client.options import TailOptions
from sseplay.errors import (
    AssertionFailed,
    ExitCode,
    GaveUp,
    IdleTimedOut,
    SseplayError,
    StreamError,
    TimedOut,
    UsageError,
)
from sseplay.eventfile import FieldMapping
from tests.conftest import SAMPLES, SSE_HEAD, RawServer, make_stream, run_cli


def test_tail_reads_a_real_server_to_its_end(live: Any) -> None:
    server = live([make_stream(SAMPLES / "llm.jsonl", retry=20)])
    events = list(tail(server.url + "/events", timeout=10))
    assert [event.id for event in events] == [str(n) for n in range(1, 12)]
    first = events[0]
    assert first.type == "message"
    assert first.json()["choices"][0]["delta"]["content"] == "Server"
    assert events[-1].data == "[DONE]"
    with pytest.raises(ValueError, match="Expecting value"):
        events[-1].json()


def test_atail_with_count_and_type_filter(live: Any) -> None:
    mapping = FieldMapping(data_field="payload", event_field="type", id_field="id")
    server = live([make_stream(SAMPLES / "notifications.json", mapping=mapping, retry=20)])

    async def collect() -> list[str]:
        return [
            event.id or ""
            async for event in atail(
                server.url + "/events", event_types={"notification"}, count=2, timeout=10
            )
        ]

    assert asyncio.run(collect()) == ["n-101", "n-104"]


def test_until_ends_the_iterator_at_the_matching_event(live: Any) -> None:
    server = live([make_stream(SAMPLES / "llm.jsonl", retry=20)])
    events = list(tail(server.url + "/events", until=r"Server", timeout=10))
    assert [event.id for event in events] == ["1"]


def test_the_same_options_object_drives_the_library(live: Any) -> None:
    server = live([make_stream(SAMPLES / "llm.jsonl", retry=20)])
    options = TailOptions(server.url + "/events", count=3, timeout=10)
    assert [event.id for event in tail(options)] == ["1", "2", "3"]
    with pytest.raises(UsageError, match="either TailOptions or keyword options"):
        tail(options, count=1)


@pytest.mark.parametrize(
    ("call", "error", "code"),
    [
        ({"count": 9}, AssertionFailed, ExitCode.ASSERTION_FAILED),
        ({"reconnect": False, "until": "never"}, AssertionFailed, ExitCode.ASSERTION_FAILED),
        ({"max_retries": 1, "last_event_id": "no-such-id"}, None, None),
    ],
    ids=["count", "until", "unknown-id-ends-with-204"],
)
def test_the_ends_the_cli_reports_are_raised_with_its_exit_code(
    live: Any, call: dict[str, Any], error: type[SseplayError] | None, code: int | None
) -> None:
    server = live([make_stream(SAMPLES / "notifications.json", retry=20)])
    url = server.url + "/events"
    if error is None:
        list(tail(url, timeout=10, **call))  # ends like exit 0
        return
    with pytest.raises(error) as raised:
        list(tail(url, timeout=10, **call))
    assert raised.value.exit_code == code
    assert isinstance(raised.value, SseplayError)


def _stall(conn: socket.socket, request: bytes, number: int) -> None:
    conn.sendall(SSE_HEAD + b"data: first\n\n")
    conn.settimeout(3)
    with contextlib.suppress(OSError):
        conn.recv(1)


def _again(conn: socket.socket, request: bytes, number: int) -> None:
    conn.sendall(SSE_HEAD + b"retry: 1\n\ndata: again\n\n")


def _fail(conn: socket.socket, request: bytes, number: int) -> None:
    conn.sendall(b"HTTP/1.1 500 Oops\r\nContent-Length: 4\r\nConnection: close\r\n\r\ndown")


@pytest.mark.parametrize(
    ("handler", "call", "error", "code"),
    [
        (_stall, {"timeout": 0.5}, TimedOut, ExitCode.TIMED_OUT),
        (_stall, {"idle_timeout": 0.3}, IdleTimedOut, ExitCode.IDLE_TIMED_OUT),
        (_again, {"max_retries": 2}, GaveUp, ExitCode.GAVE_UP),
        (_fail, {}, StreamError, ExitCode.ERROR),
    ],
    ids=["timeout", "idle", "max-retries", "500"],
)
def test_failures_raise_the_error_carrying_the_cli_exit_code(
    handler: Any, call: dict[str, Any], error: type[SseplayError], code: int
) -> None:
    with RawServer(handler) as server:
        started = time.monotonic()
        with pytest.raises(error) as raised:
            for _ in tail(server.url, **call):
                pass
        assert time.monotonic() - started < 5
        cli = run_cli(
            "tail", server.url, *[f"--{k.replace('_', '-')}={v}" for k, v in call.items()]
        )
    assert raised.value.exit_code == code
    assert cli.returncode == code


def test_breaking_out_of_tail_closes_the_connection_at_once() -> None:
    hung_up = threading.Event()

    def handler(conn: socket.socket, request: bytes, number: int) -> None:
        conn.sendall(SSE_HEAD + b"data: one\n\ndata: two\n\n")
        conn.settimeout(5)
        with contextlib.suppress(OSError):
            if conn.recv(1) == b"":
                hung_up.set()

    with RawServer(handler) as server:
        events = tail(server.url)
        for event in events:
            assert event.data == "one"
            break
        del events  # the generator is closed when dropped: no waiting for a collector
        assert hung_up.wait(2), "the connection stayed open after break"
        hung_up.clear()
        events = tail(server.url)
        assert next(events).data == "one"
        events.close()
        assert hung_up.wait(2), "the connection stayed open after close()"


def test_leaving_atail_early_closes_the_connection() -> None:
    hung_up = threading.Event()

    def handler(conn: socket.socket, request: bytes, number: int) -> None:
        conn.sendall(SSE_HEAD + b"data: one\n\n")
        conn.settimeout(5)
        with contextlib.suppress(OSError):
            if conn.recv(1) == b"":
                hung_up.set()

    async def first() -> str:
        async with contextlib.aclosing(atail(server.url)) as events:
            async for event in events:
                return event.data
        return ""

    with RawServer(handler) as server:
        assert asyncio.run(first()) == "one"
        assert hung_up.wait(2)


# Each rule: the keyword options, the same rule as flags, and the message both give.
RULES = [
    ({"timeout": float("nan")}, ["--timeout", "nan"], "--timeout must be a finite number"),
    ({"timeout": 0}, ["--timeout", "0"], "--timeout must be a finite number"),
    ({"idle_timeout": -1.0}, ["--idle-timeout", "-1"], "--idle-timeout must be a finite"),
    (
        {"connect_timeout": float("nan")},
        ["--connect-timeout", "nan"],
        "--connect-timeout must be a finite number",
    ),
    (
        {"connect_timeout": float("inf")},
        ["--connect-timeout", "inf"],
        "--connect-timeout must be a finite number",
    ),
    ({"max_event_size": 0}, ["--max-event-size", "0"], "--max-event-size must be 1 or more"),
    ({"count": 0}, ["--count", "0"], "--count must be 1 or more"),
    ({"max_retries": -1}, ["--max-retries", "-1"], "--max-retries must be 0 or more"),
    ({"until": "("}, ["--until", "("], "--until: bad regular expression"),
    ({"headers": ["no colon"]}, ["-H", "no colon"], "bad header 'no colon'"),
    ({"method": "GE T"}, ["-X", "GE T"], "--method: 'GE T' is not an HTTP method"),
    ({"last_event_id": "a\nb"}, ["--last-event-id", "a\nb"], "contains a line break"),
]


@pytest.mark.parametrize(("keywords", "flags", "message"), RULES)
def test_every_rule_raises_usage_error_with_the_cli_line(
    keywords: dict[str, Any], flags: list[str], message: str
) -> None:
    url = "http://127.0.0.1:1/events"
    with pytest.raises(UsageError) as raised:
        TailOptions(url, **keywords)
    assert message in str(raised.value)
    assert raised.value.exit_code == ExitCode.USAGE
    with pytest.raises(UsageError):
        tail(url, **keywords)  # checked when called, before any iteration
    cli = run_cli("tail", url, *flags)
    assert cli.returncode == ExitCode.USAGE
    assert cli.stderr == f"sseplay: error: {raised.value}\n"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.test/x", "unsupported URL scheme"),
        ("http:///events", "has no host"),
        ("http://127.0.0.1:99999/", "ports are 1 to 65535"),
    ],
)
def test_bad_urls_raise_usage_error(url: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        TailOptions(url)


def test_options_are_frozen_and_normalised() -> None:
    options = TailOptions(
        "127.0.0.1:8000/events",
        method="post",
        headers={"X-Token": "t"},
        body="{}",
        event_types=["a", "b"],
    )
    assert options.url == "http://127.0.0.1:8000/events"
    assert options.method == "POST"
    assert options.header_pairs == (("X-Token", "t"), ("Content-Type", "application/json"))
    assert options.request_body == b"{}"
    assert options.event_types == frozenset({"a", "b"})
    with pytest.raises(AttributeError):
        options.count = 3  # type: ignore[misc]


def test_unknown_keywords_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="colour"):
        tail("http://127.0.0.1:1/", colour="red")


def test_insecure_is_verify_false() -> None:
    events = tail("https://127.0.0.1:1/", insecure=True)
    events.close()


def test_importing_the_client_does_not_import_the_server_stack() -> None:
    probe = (
        "import sys\n"
        "from sseplay.client.api import tail, atail\n"
        "from sseplay.client.options import TailOptions\n"
        "from sseplay.model import Event\n"
        "heavy = {m.split('.')[0] for m in sys.modules}\n"
        "heavy &= {'fastapi', 'uvicorn', 'sse_starlette', 'starlette'}\n"
        "print('HEAVY', sorted(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=30
    )
    assert "HEAVY []" in result.stdout, result.stdout + result.stderr
