"""A publish fanned out to many connections (issue 26's performance part): one bytes
object written to every connection, and, on real sockets, each connection gets every
event once and in order, a slow reader included, and resumes with Last-Event-ID."""

from __future__ import annotations

import socket
from typing import Any

from sseplay.feed import Feed
from sseplay.http.uvicorn.direct import DirectBody
from sseplay.server import Server
from tests.support import wait_until


class Recording:
    """A transport that records what it is given and passes it on to the real one."""

    def __init__(self, transport: Any, writes: list[bytes]) -> None:
        self._transport = transport
        self._writes = writes

    def write(self, data: bytes) -> None:
        self._writes.append(data)
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class Client:
    """A raw HTTP/1.1 stream: the bytes as they come, and the event ids in them."""

    def __init__(self, url: str, headers: str = "", receive_buffer: int = 0) -> None:
        host, port = url.split("//")[1].split("/")[0].split(":")
        self.sock = socket.socket()
        if receive_buffer:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.connect((host, int(port)))
        path = "/" + url.split("//")[1].split("/", 1)[1]
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{headers}\r\n".encode())
        self.sock.settimeout(10)
        self.rest = b""
        self.ids: list[int] = []

    def read_until_ids(self, count: int) -> list[int]:
        while len(self.ids) < count:
            chunk = self.sock.recv(1 << 20)
            assert chunk, f"the stream ended after ids {self.ids}"
            # Whole lines only: an ``id:`` line is never split by the chunk framing (each
            # chunk starts with an event), but a recv may end in the middle of one.
            lines = (self.rest + chunk).split(b"\n")
            self.rest = lines.pop()
            self.ids += [int(line[4:]) for line in lines if line.startswith(b"id: ")]
        return self.ids

    def close(self) -> None:
        self.sock.close()


def feed_of(server: Server, route: str) -> Feed:
    hub = server._hub
    assert hub is not None
    return hub.feeds[route]


def test_one_publish_writes_the_same_bytes_object_to_every_connection() -> None:
    with Server({"live": None}, control=True, ping=0) as server:
        clients = [Client(server.url) for _ in range(3)]
        feed = feed_of(server, "/live")
        wait_until(lambda: feed.subscribers == 3, message="three connections")
        writes: list[bytes] = []

        def record() -> None:
            for subscriber in feed._subscribers:
                direct = subscriber.outlet._direct
                assert isinstance(direct, DirectBody)
                direct._transport = Recording(direct._transport, writes)

        assert server._hub is not None
        assert server._hub.control is not None
        server._hub.control.call(record)
        assert server.publish("/live", {"k": 1}) == "1"
        for client in clients:
            assert client.read_until_ids(1) == [1]
            client.close()
        assert len(writes) == 3
        body = b'id: 1\ndata: {"k":1}\n\n'
        assert writes[0] == b"%x\r\n%b\r\n" % (len(body), body)
        assert all(write is writes[0] for write in writes)  # framed once, for every one


class FakeCycle:
    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.flow = type("Flow", (), {"write_paused": False})()
        self.chunked_encoding = True
        self.disconnected = self.response_complete = False


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return False


def test_direct_bodies_share_the_framing_of_one_chunk_and_frame_the_next_anew() -> None:
    transports = [FakeTransport() for _ in range(3)]
    bodies = [DirectBody(FakeCycle(transport)) for transport in transports]
    first, second = b"data: a\n\n", b"data: bb\n\n"
    for chunk in (first, second, first):
        for body in bodies:
            assert body.write(chunk)
    for transport in transports:
        assert transport.writes == [
            b"9\r\ndata: a\n\n\r\n",
            b"a\r\ndata: bb\n\n\r\n",
            b"9\r\ndata: a\n\n\r\n",
        ]
    for write in range(3):
        assert transports[1].writes[write] is transports[0].writes[write]
        assert transports[2].writes[write] is transports[0].writes[write]


def test_every_connection_gets_every_event_once_in_order_a_slow_reader_included() -> None:
    """A reader that takes nothing for a while is skipped (its outlet is blocked) and
    catches up from the history once it reads: the same events, in the same order."""
    big = "x" * (64 << 10)
    count = 100  # 6.4 MiB: more than a slow connection's buffers hold (tcp_wmem max 4 MiB)
    with Server({"live": None}, control=True, ping=0) as server:
        fast = Client(server.url)
        slow = Client(server.url, receive_buffer=4096)
        feed = feed_of(server, "/live")
        wait_until(lambda: feed.subscribers == 2, message="two connections")
        blocked = []
        for n in range(1, count + 1):
            assert server.publish("/live", f"{n} {big}") == str(n)
            if n % 10 == 0:
                assert fast.read_until_ids(n)[-1] == n  # the fast one keeps up
            blocked.append(any(s.outlet.blocked for s in feed._subscribers))
        assert any(blocked), "the slow reader was never held up: the test proves nothing"
        assert fast.read_until_ids(count) == list(range(1, count + 1))
        assert slow.read_until_ids(count) == list(range(1, count + 1))
        # A client that had the third last event resumes with the two after it, then
        # goes live.
        resumed = Client(server.url, f"Last-Event-ID: {count - 2}\r\n")
        assert resumed.read_until_ids(2) == [count - 1, count]
        wait_until(lambda: feed.subscribers == 3, message="three connections")
        assert server.publish("/live", "after") == str(count + 1)
        for client, had in ((fast, count), (slow, count), (resumed, 2)):
            assert client.read_until_ids(had + 1)[-1] == count + 1
            assert sorted(set(client.ids)) == client.ids  # no event twice
            client.close()
