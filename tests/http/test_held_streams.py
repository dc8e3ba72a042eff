"""Held streams handed over to their connection (issue 14, memory per idle connection).

Once a stream's response has started on the fast path, its endpoint returns and the
connection (``HeadLimitedHttpToolsProtocol.hold``) tells its end: no request task, no
coroutine frames of the middleware, per idle client. Real uvicorn, real sockets."""

from __future__ import annotations

import asyncio
import gc
import socket
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from sseplay.config import ServerConfig
from sseplay.http.hub import AppOptions
from sseplay.schedule import Timing
from tests.conftest import make_stream, write_lines
from tests.support import wait_until

REQUEST = b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def _open_streams(port: int, count: int, until: bytes = b"data:") -> list[socket.socket]:
    """``count`` streams, each read up to its first event (or ``until``)."""
    conns: list[socket.socket] = []
    try:
        for _ in range(count):
            conn = socket.create_connection(("127.0.0.1", port), timeout=5)
            conns.append(conn)
            conn.sendall(REQUEST)
            received = b""
            while until not in received:
                chunk = conn.recv(65536)
                assert chunk, "the stream ended early"
                received += chunk
    except BaseException:
        for conn in conns:
            conn.close()
        raise
    return conns


def _tasks() -> int:
    return sum(isinstance(thing, asyncio.Task) for thing in gc.get_objects())


@pytest.mark.timeout(60)
@pytest.mark.parametrize("broadcast", [False, True], ids=["per-client", "broadcast"])
def test_an_idle_held_stream_keeps_no_request_task(
    live: Any, tmp_path: Path, broadcast: bool
) -> None:
    path = write_lines(tmp_path / "slow.jsonl", list(range(5)))
    stream = make_stream(path, timing=Timing(interval=30))
    server = live([stream], AppOptions(ServerConfig(ping=0, broadcast=broadcast)))
    before = _tasks()
    # A broadcast's subscriber joins live: its next event is 30 s away, the head is now.
    conns = _open_streams(server.port, 20, b"\r\n\r\n" if broadcast else b"data:")
    wait_until(lambda: len(server.hub.listeners) == 20, message="the server never got there")
    time.sleep(0.05)  # the requests' tasks have returned
    try:
        assert _tasks() <= before
    finally:
        for conn in conns:
            conn.close()
    wait_until(lambda: not server.hub.listeners, message="the server never got there")


@pytest.mark.timeout(60)
def test_an_idle_held_stream_allocates_under_8_kib(live: Any, tmp_path: Path) -> None:
    """Python's allocations per idle held connection, over 100 connections (what was 17 KiB
    with the request's task and the middleware's frames held; node's whole resident cost
    is 14.5 KiB). The test's own sockets are in the figure too."""
    path = write_lines(tmp_path / "slow.jsonl", list(range(5)))
    server = live([make_stream(path, timing=Timing(interval=30))], AppOptions(ServerConfig(ping=0)))
    warm = _open_streams(server.port, 20)  # first-use allocations are not per connection
    tracemalloc.start()
    try:
        gc.collect()
        first = tracemalloc.take_snapshot()
        conns = _open_streams(server.port, 100)
        wait_until(lambda: len(server.hub.listeners) == 120, message="the server never got there")
        time.sleep(0.05)
        gc.collect()
        second = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(stat.size_diff for stat in second.compare_to(first, "filename"))
    for conn in warm + conns:
        conn.close()
    assert grown / 100 < 8 << 10, f"{grown / 100 / 1024:.1f} KiB per connection"
    wait_until(lambda: not server.hub.listeners, message="the server never got there")


@pytest.mark.timeout(60)
def test_a_held_stream_that_ends_lets_the_connection_answer_its_next_request(
    live: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The end of the response ends the held stream (logged as before) and the keep-alive
    connection goes on: the request pipelined behind the stream is answered."""
    caplog.set_level("INFO")
    path = write_lines(tmp_path / "three.jsonl", list(range(3)))
    server = live(
        [make_stream(path, timing=Timing(interval=0.05))], AppOptions(ServerConfig(ping=0))
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
        conn.sendall(REQUEST)
        received = b""
        while b"data:" not in received:
            received += conn.recv(65536)
        wait_until(lambda: len(server.hub.listeners) == 1, message="the server never got there")
        (listener,) = server.hub.listeners
        assert listener.outlet.task is None  # held by its connection, no request task
        # Behind the held stream, on the same connection (RFC 9112 section 9.3.2).
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        while chunk := conn.recv(65536):
            received += chunk
    stream, _, after = received.partition(b"\r\n0\r\n\r\n")
    assert stream.count(b"data:") == 3
    assert after.startswith(b"HTTP/1.1 200 OK")
    assert b'"connections":0' in after
    assert "left /events after 3 events (got the whole replay)" in caplog.text
    assert "without completing response" not in caplog.text


@pytest.mark.timeout(60)
def test_a_held_stream_whose_client_hangs_up_is_forgotten_and_logged(
    live: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    path = write_lines(tmp_path / "slow.jsonl", list(range(5)))
    server = live([make_stream(path, timing=Timing(interval=30))], AppOptions(ServerConfig(ping=0)))
    conns = _open_streams(server.port, 3)
    wait_until(lambda: len(server.hub.listeners) == 3, message="the server never got there")
    assert all(listener.outlet.task is None for listener in server.hub.listeners)  # held
    for conn in conns:
        conn.close()
    # No write is due for 30 s: the connection itself tells the hang-up.
    wait_until(lambda: not server.hub.listeners, message="the server never got there")
    wait_until(
        lambda: caplog.text.count("left /events after 1 events (disconnected)") == 3,
        message="the server never got there",
    )
    assert "Traceback" not in caplog.text


def test_lean_event_and_pipeline_behave_as_the_asyncio_event_and_deque_they_replace() -> None:
    """uvicorn waits on, sets and clears its request's event, and queues pipelined requests
    with appendleft/pop: the slotted stand-ins (``sseplay.http.uvicorn.direct``) do the same."""
    from collections import deque

    from sseplay.http.uvicorn.direct import LeanEvent, LeanPipeline

    async def scenario(event: Any) -> list[str]:
        seen: list[str] = []

        async def waiter(name: str) -> None:
            await event.wait()
            seen.append(name)

        first = asyncio.ensure_future(waiter("a"))
        second = asyncio.ensure_future(waiter("b"))
        cancelled = asyncio.ensure_future(waiter("never"))
        await asyncio.sleep(0)
        cancelled.cancel()
        await asyncio.sleep(0)
        seen.append(f"set before: {event.is_set()}")
        event.set()
        await asyncio.gather(first, second)
        event.clear()
        late = asyncio.ensure_future(waiter("c"))
        await asyncio.sleep(0.01)
        seen.append(f"c waits: {not late.done()}")
        event.set()
        await late
        assert await event.wait() is True
        return seen

    assert asyncio.run(scenario(LeanEvent())) == asyncio.run(scenario(asyncio.Event()))
    queue, lean = deque([1]), LeanPipeline([1])
    for item in (2, 3):
        queue.appendleft(item)
        lean.appendleft(item)
    assert [queue.pop() for _ in range(3)] == [lean.pop() for _ in range(3)] == [1, 2, 3]
    assert not lean
