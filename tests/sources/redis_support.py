"""What the Redis tests share: a reading SSE client, ``sseplay serve`` of redis:// sources,
and ways to fill and read a stream."""

from __future__ import annotations

import socket
import threading
import time
from typing import TYPE_CHECKING

import httpx

from sseplay.model import Event
from sseplay.parser import EventStreamParser
from tests.conftest import ServeProcess
from tests.support import wait_until

if TYPE_CHECKING:
    import redis


class Client:
    """One SSE connection read in a thread: its events and its raw text."""

    def __init__(self, url: str, last_event_id: str | None = None) -> None:
        self.url = url
        self.headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        self.events: list[Event] = []
        self.raw = b""
        self.status = 0
        self.ended = False
        self._stop = threading.Event()
        self._connected = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)

    def _read(self) -> None:
        parser = EventStreamParser()
        with (
            httpx.Client(timeout=httpx.Timeout(10, read=20)) as http,
            http.stream("GET", self.url, headers=self.headers) as response,
        ):
            self.status = response.status_code
            self._connected.set()
            for chunk in response.iter_raw():
                self.raw += chunk
                self.events.extend(parser.feed(chunk))
                if self._stop.is_set():
                    return
        self.ended = True

    def __enter__(self) -> Client:
        self.thread.start()
        assert self._connected.wait(10), "the stream did not answer"
        return self

    def wait_for(self, count: int, seconds: float = 10) -> list[Event]:
        deadline = time.monotonic() + seconds
        while len(self.events) < count:
            assert time.monotonic() < deadline, f"{len(self.events)} of {count} events came"
            assert self.thread.is_alive() or len(self.events) >= count, "the stream ended"
            time.sleep(0.005)
        return self.events[:count]

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.thread.join(25)


def serve_redis(*sources: str, extra: tuple[str, ...] = ()) -> ServeProcess:
    return ServeProcess(*sources, "--ping", "0.2", *extra)


def settled(process: ServeProcess) -> None:
    """The server's XREAD loop is reading (its /healthz says it is connected)."""
    base = process.url.rsplit("/", 1)[0]
    wait_until(
        lambda: all(s.get("connected") for s in httpx.get(base + "/healthz").json()["streams"]),
        timeout=10,
    )


def publish(redis_client: redis.Redis, key: str, texts: list[str]) -> list[str]:
    return [redis_client.xadd(key, {"type": "tick", "data": text}).decode() for text in texts]


def fill(redis_client: redis.Redis, key: str, count: int, size: int) -> list[str]:
    """``count`` entries of ``size`` bytes of data each; their ids."""
    added: list[str] = []
    for start in range(0, count, 500):
        pipe = redis_client.pipeline(transaction=False)
        for n in range(start, min(count, start + 500)):
            pipe.xadd(key, {"type": "old", "data": f"{n:06d}" + "x" * (size - 6)})
        added += [entry_id.decode() for entry_id in pipe.execute()]
    return added


def resuming_sockets(url: str, last_event_id: str, count: int) -> list[socket.socket]:
    """``count`` raw connections that resume after ``last_event_id`` and read nothing."""
    host, port = url.split("/")[2].split(":")
    socks = []
    for _ in range(count):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((host, int(port)))
        request = f"GET /events HTTP/1.1\r\nHost: {host}\r\nLast-Event-ID: {last_event_id}\r\n"
        sock.sendall(request.encode() + b"\r\n")
        socks.append(sock)
    return socks


def head_and_first_chunk(sock: socket.socket) -> bytes:
    """What a socket receives up to the end of the first chunk of its body (10 s at most)."""
    sock.settimeout(10)
    received = b""
    while True:
        _, _, body = received.partition(b"\r\n\r\n")
        size, crlf, rest = body.partition(b"\r\n")
        if crlf and len(rest) >= int(size, 16):
            return received
        data = sock.recv(1 << 16)
        assert data, received[:200]
        received += data
