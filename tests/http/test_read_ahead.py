"""What a connection sends behind a stream is bounded: a client that sends GET /events
and then megabytes of tiny pipelined requests (which can be answered only once the
stream ends) does not make the server queue them all, and what was queued is let go
when the connection ends."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any

import httpx
import pytest

from sseplay.http.uvicorn.protocol import MAX_PIPELINED, READ_AHEAD_BYTES
from sseplay.server import Server
from sseplay.stream import Stream
from tests.conftest import SAMPLES

TINY = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
# 2 MiB sent behind the stream: tiny requests, or the body of one large one.
FLOODS = {
    "tiny-requests": TINY * ((2 << 20) // len(TINY)),
    "request-body": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%b"
    % (4 << 20, b"x" * (2 << 20)),
}


def queued(server: Server) -> tuple[int, int]:
    """The requests queued behind a response on the server's connections, and the bytes
    of request bodies they hold."""
    assert server._server is not None
    while True:
        try:
            connections = list(server._server.server_state.connections)
            break
        except RuntimeError:  # the set changed size while it was copied: again
            continue
    cycles = [cycle for connection in connections for cycle, _ in list(connection.pipeline)]
    return len(cycles), sum(len(cycle.body) for cycle in cycles)


def events_come(sock: socket.socket, count: int = 2) -> None:
    received = b""
    deadline = time.monotonic() + 10
    while received.count(b"\ndata: ") < count:
        assert time.monotonic() < deadline, "the stream stalled"
        received += sock.recv(65536)


@pytest.mark.parametrize("flood", FLOODS.values(), ids=FLOODS.keys())
def test_pipelined_requests_behind_a_stream_are_bounded(flood: bytes) -> None:
    stream = Stream.from_file(SAMPLES / "ticks.jsonl", interval=0.05, loop=True)
    with Server(stream, ping=0) as server:
        port = int(server.url.rsplit(":", 1)[1].split("/")[0])
        healthy = socket.create_connection(("127.0.0.1", port), timeout=10)
        healthy.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        events_come(healthy)

        attacker = socket.socket()
        attacker.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        attacker.connect(("127.0.0.1", port))
        attacker.settimeout(2)
        outcome: list[Any] = []

        def send() -> None:
            try:
                attacker.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" + flood)
                outcome.append("all sent")
            except OSError as error:  # closed by the server, or it stopped reading
                outcome.append(error)

        sender = threading.Thread(target=send)
        sender.start()
        most = (0, 0)
        while sender.is_alive():
            most = max(most, queued(server))
            time.sleep(0.005)
        sender.join()
        most = max(most, queued(server))
        assert most[0] <= MAX_PIPELINED, most
        assert most[1] <= READ_AHEAD_BYTES, most
        # The attacker's own stream is closed (or goes on): no hang either way.
        with attacker, contextlib.suppress(OSError):
            attacker.settimeout(10)
            while attacker.recv(65536):
                pass
        # Everyone else is served, and nothing is left queued once it has gone.
        events_come(healthy)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
        deadline = time.monotonic() + 10
        while queued(server) != (0, 0):
            assert time.monotonic() < deadline, queued(server)
            time.sleep(0.01)
        healthy.close()


def test_a_few_pipelined_requests_behind_a_short_response_are_answered() -> None:
    # The bound must not break HTTP/1.1 pipelining (RFC 9112 section 9.3.2) of a few
    # requests: each is answered, in order.
    with Server(Stream.from_file(SAMPLES / "scores.json", interval=0)) as server:
        port = int(server.url.rsplit(":", 1)[1].split("/")[0])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            one = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
            sock.sendall(one * 3 + b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" + one)
            received = b""
            deadline = time.monotonic() + 10
            while received.count(b"HTTP/1.1 200 OK") < 5:
                assert time.monotonic() < deadline, received[-300:]
                received += sock.recv(65536)
            assert received.count(b'"status":"ok"') >= 3
