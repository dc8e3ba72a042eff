"""A large event is held once, whatever the number of clients it goes to (issue 23).

One 20 MiB record with 40 clients that did not read took the server to about 910 MB: each
connection got its own framed copy of the event (the chunk framing in ``direct.py``, and
uvicorn's own in its ASGI ``send``). Real servers on 127.0.0.1, real sockets; what the
server allocates is measured in-process with ``tracemalloc`` (the server runs in a thread).
"""

from __future__ import annotations

import contextlib
import json
import socket
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sseplay import Server, Stream
from sseplay.config import ServerConfig
from sseplay.http.app import create_app
from sseplay.http.hub import AppOptions
from sseplay.schedule import Timing
from tests.conftest import LiveServer, make_stream, write_lines
from tests.support import wait_until

EVENT_BYTES = 8 << 20
CLIENTS = 40
# Far below one copy per client (40): the event itself, what is written in pieces while a
# connection is behind (256 KiB each at most), and each connection's own objects.
MOST_COPIES = 6

PATHS = pytest.mark.parametrize("direct_writes", [True, False], ids=["direct", "asgi-send"])
LOOPS = pytest.mark.parametrize("loop", ["auto", "asyncio"], ids=["uvloop", "asyncio"])


def _big_record() -> dict[str, Any]:
    return {"n": 1, "pad": "x" * EVENT_BYTES}


def _compact(record: dict[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode()


@contextlib.contextmanager
def _serve(path: Path, direct_writes: bool, loop: str, timing: Timing) -> Iterator[LiveServer]:
    options = AppOptions(ServerConfig(ping=0, send_timeout=60), direct_writes=direct_writes)
    app = create_app([make_stream(path, timing=timing)], options)
    server = LiveServer(app)
    # "auto" is what ``sseplay serve`` runs on (uvloop when installed); asyncio's own
    # transport copies what it cannot send at once, which the fallback must bound.
    server.server.config.loop = loop
    with server:
        yield server


@contextlib.contextmanager
def _frozen_clients(port: int, route: str = "/events") -> Iterator[list[socket.socket]]:
    """CLIENTS raw connections with a small receive buffer that never read."""
    clients: list[socket.socket] = []
    try:
        for _ in range(CLIENTS):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", port))
            sock.sendall(f"GET {route} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            clients.append(sock)
        yield clients
    finally:
        for sock in clients:
            sock.close()


@contextlib.contextmanager
def _traced() -> Iterator[None]:
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


def _grown() -> int:
    """The most the process allocated at once since tracing started, in bytes."""
    return tracemalloc.get_traced_memory()[1]


@LOOPS
@PATHS
def test_one_large_event_to_clients_that_do_not_read_is_held_once(
    tmp_path: Path, direct_writes: bool, loop: str
) -> None:
    # The large event is due at once; the next one 30 s later: the large one is not the
    # response's last write (which always goes through ``send``).
    path = write_lines(tmp_path / "big.jsonl", [_big_record(), {"n": 2}])
    with (
        _serve(path, direct_writes, loop, Timing(interval=30)) as server,
        _traced(),
        _frozen_clients(server.port),
    ):
        wait_until(
            lambda: (
                len(server.hub.listeners) == CLIENTS
                and all(listener.sent for listener in server.hub.listeners)
            ),
            timeout=30,
            message=lambda: f"{len(server.hub.listeners)} streams started",
        )
        grown = _grown()
    assert grown < MOST_COPIES * EVENT_BYTES, f"{grown >> 20} MiB for {CLIENTS} clients"


def test_a_large_line_appended_to_a_followed_file_is_held_once(tmp_path: Path) -> None:
    """The issue's ``serve --follow`` case: one line appended while 40 clients do not read
    (the live feed writes that one chunk to every subscriber)."""
    path = write_lines(tmp_path / "log.jsonl", [{"n": 0}])
    stream = Stream.from_file(path, follow=True, interval=0)
    with Server(stream, ping=0, send_timeout=60) as server:
        port = int(server.url.split(":")[2].split("/")[0])
        with _frozen_clients(port) as clients:
            wait_until(lambda: server.connections == CLIENTS, timeout=30)
            line = (json.dumps(_big_record()) + "\n").encode()
            with _traced():
                with path.open("ab") as file:
                    file.write(line)
                hub: Any = server._hub
                wait_until(
                    lambda: all(listener.sent >= 2 for listener in hub.listeners),
                    timeout=30,
                    message="the appended line did not reach every client",
                )
                # What is held once every client was written the line: the follower's own
                # passing copies while it checks the line (its peak, the same with no
                # client) are not held, one copy per client is (until it is sent).
                held = tracemalloc.get_traced_memory()[0]
            assert len(clients) == CLIENTS
    assert held < MOST_COPIES * EVENT_BYTES, f"{held >> 20} MiB for {CLIENTS} clients"


@LOOPS
@PATHS
@pytest.mark.parametrize("last", [False, True], ids=["then-more", "last"])
def test_a_client_that_reads_gets_a_large_event_byte_exact(
    tmp_path: Path, direct_writes: bool, loop: str, last: bool
) -> None:
    big = _big_record()
    records = [big] if last else [big, {"n": 2}]
    path = write_lines(tmp_path / "big.jsonl", records)
    with _serve(path, direct_writes, loop, Timing(interval=0)) as server:
        response = httpx.get(server.url + "/events", timeout=30)
    body = response.content
    wire = b"".join(b"data: " + _compact(record) + b"\n\n" for record in records)
    # Ids and the retry field aside, the data lines are exactly the records, in order.
    data = b"".join(line + b"\n\n" for line in body.split(b"\n") if line.startswith(b"data: "))
    assert data == wire
    assert body.count(b"data: ") == len(records)
