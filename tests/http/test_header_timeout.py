"""A request head that does not end within the header timeout closes its connection, and
near the open-file limit the oldest connections still waiting for their head are closed
to keep room for new clients: neither starves a healthy stream or /healthz."""

from __future__ import annotations

import contextlib
import resource
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from sseplay.config import ServerConfig
from sseplay.errors import UsageError
from sseplay.server import Server
from sseplay.stream import Stream
from tests.conftest import ROOT, SAMPLES


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def read_until_closed(sock: socket.socket, seconds: float = 15) -> bytes:
    """What the server sends until it closes the connection; fails after ``seconds``."""
    received = b""
    deadline = time.monotonic() + seconds
    sock.settimeout(0.2)
    while True:
        assert time.monotonic() < deadline, f"still open, after {received[:80]!r}"
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        if not chunk:
            return received
        received += chunk


@contextlib.contextmanager
def stream_reader(port: int) -> Iterator[socket.socket]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    with sock:
        yield sock


def events_come(sock: socket.socket, count: int = 2) -> None:
    """``count`` more events arrive on a stream within a generous deadline."""
    received = b""
    deadline = time.monotonic() + 10
    while received.count(b"\ndata: ") < count:
        assert time.monotonic() < deadline, "the stream stalled"
        received += sock.recv(65536)


def test_heads_that_do_not_end_in_time_are_closed() -> None:
    stream = Stream.from_file(SAMPLES / "ticks.jsonl", interval=0.05, loop=True)
    with Server(stream, header_timeout=0.3, ping=0) as server:
        port = port_of(server.url)
        with stream_reader(port) as healthy:
            events_come(healthy)
            # A head that stops halfway is told 408 and closed.
            partial = socket.create_connection(("127.0.0.1", port), timeout=10)
            partial.sendall(b"GET /events HTTP/1.1\r\nHost: 127")
            # One that sends nothing at all is closed without a word.
            silent = socket.create_connection(("127.0.0.1", port), timeout=10)
            # A head trickled a byte at a time does not earn more time with each byte.
            trickle = socket.create_connection(("127.0.0.1", port), timeout=10)
            trickle.sendall(b"GET /events HTTP/1.1\r\nX-Slow: ")
            deadline = time.monotonic() + 15
            while not select.select([trickle], [], [], 0.05)[0]:
                assert time.monotonic() < deadline, "the trickled head was never closed"
                with contextlib.suppress(OSError):
                    trickle.sendall(b"x")
            # The next request of a keep-alive connection has its own deadline.
            keep = socket.create_connection(("127.0.0.1", port), timeout=10)
            keep.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            answer = b""
            while b'"status":"ok"' not in answer:
                answer += keep.recv(65536)
            keep.sendall(b"GET /healthz HTTP/1.1\r\nHost: 12")
            with partial, silent, trickle, keep:
                assert read_until_closed(partial).startswith(b"HTTP/1.1 408 Request Timeout\r\n")
                assert read_until_closed(silent) == b""
                assert read_until_closed(trickle).startswith(b"HTTP/1.1 408 ")
                assert read_until_closed(keep).startswith(b"HTTP/1.1 408 ")
            # The healthy stream went on, and /healthz answers.
            events_come(healthy)
            assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200


def test_the_header_timeout_is_checked() -> None:
    for bad in (0, -1.0, float("inf"), float("nan"), "10"):
        with pytest.raises(UsageError, match="--header-timeout"):
            ServerConfig(header_timeout=bad)  # type: ignore[arg-type]
    assert ServerConfig().header_timeout == 10.0


# A server whose process may open only OPEN_FILES files, with a header timeout long
# enough that only the reserve can keep it answering.
SERVE = """
import sys
from sseplay.server import Server
from sseplay.stream import Stream
stream = Stream.from_file(sys.argv[1], interval=0.05, loop=True)
server = Server(stream, header_timeout=600, ping=0)
server.run(on_ready=lambda: print(server.url, flush=True))
"""
OPEN_FILES = 160


def test_near_the_open_file_limit_new_clients_are_still_served() -> None:
    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (OPEN_FILES, OPEN_FILES))

    process = subprocess.Popen(
        [sys.executable, "-c", SERVE, str(SAMPLES / "ticks.jsonl")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        preexec_fn=low_limit,
    )
    slow: list[socket.socket] = []
    try:
        assert process.stdout is not None
        assert select.select([process.stdout], [], [], 20)[0], "the server did not start"
        port = port_of(process.stdout.readline().decode())
        with stream_reader(port) as healthy:
            events_come(healthy)
            # More heads that never end than the process may open files.
            for _ in range(OPEN_FILES + 40):
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                sock.sendall(b"GET /events HTTP/1.1\r\nHost: 127")
                slow.append(sock)
            health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
            assert health.status_code == 200
            events_come(healthy)
            # The oldest of them were closed to make room.
            assert read_until_closed(slow[0]) == b""
            with stream_reader(port) as newcomer:
                events_come(newcomer)
    finally:
        for sock in slow:
            sock.close()
        process.terminate()
        _, err = process.communicate(timeout=20)
    # One line says so, not one per connection.
    assert err.decode().count("near the open-file limit") == 1, err.decode()[-2000:]


def test_uvicorn_hands_its_server_state_to_each_connection() -> None:
    # HeadWatch replaces uvicorn.Server.server_state (CONTRACT.md): each connection
    # must get that object, and it must keep ServerState's shape.
    import inspect

    import uvicorn
    from uvicorn.server import ServerState

    assert "server_state=self.server_state" in inspect.getsource(uvicorn.Server)
    state = ServerState()
    assert isinstance(state.connections, set)
    assert isinstance(state.tasks, set)
