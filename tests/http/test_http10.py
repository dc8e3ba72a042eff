"""HTTP/1.0 clients get a close-delimited body: HTTP/1.0 has no chunked transfer coding
(RFC 9112 section 7: chunked is HTTP/1.1's), and a body without Content-Length ends
where the connection closes (RFC 9112 section 6.3)."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import pytest

from sseplay.config import ServerConfig
from sseplay.http.hub import AppOptions
from sseplay.schedule import Timing
from sseplay.server import Server
from sseplay.stream import Stream
from tests.conftest import SAMPLES, make_stream, write_lines

SCORES_WIRE = (
    b'id: 1\ndata: {"time":"00:01","scores":"1:0","event":"Goal! Team A scores!"}\n\n'
    b'id: 2\ndata: {"time":"00:05","scores":"1:1","event":"Goal! Team B scores!"}\n\n'
    b'id: 3\ndata: {"time":"00:10","scores":"2:1","event":"Goal! Team A scores again!"}\n\n'
)


def raw_get(port: int, request: bytes) -> tuple[list[bytes], bytes]:
    """The response's head lines (lower-cased) and body, read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        received = b""
        deadline = time.monotonic() + 20
        while chunk := sock.recv(65536):  # b"": the server closed the connection
            received += chunk
            assert time.monotonic() < deadline, "the server did not close the connection"
    head, _, body = received.partition(b"\r\n\r\n")
    return head.lower().split(b"\r\n"), body


def dechunk(body: bytes) -> bytes:
    data = b""
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            assert body == b"\r\n"
            return data
        data, body = data + body[:size], body[size + 2 :]


def request(version: bytes, port: int, route: bytes = b"/events") -> bytes:
    return b"GET %b HTTP/%b\r\nHost: 127.0.0.1:%d\r\n\r\n" % (route, version, port)


def test_an_http_1_0_client_gets_a_close_delimited_replay() -> None:
    with Server(Stream.from_file(SAMPLES / "scores.json", interval=0)) as server:
        port = int(server.url.rsplit(":", 1)[1].split("/")[0])
        head, body = raw_get(port, request(b"1.0", port))
        assert head[0].startswith(b"http/1.1 200")
        assert not any(line.startswith(b"transfer-encoding") for line in head)
        # One Connection header, saying close: the body ends where the connection does.
        assert [line for line in head if line.startswith(b"connection:")] == [b"connection: close"]
        assert body == SCORES_WIRE
        # An HTTP/1.1 client still gets chunks.
        head, body = raw_get(
            port, request(b"1.1", port).replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
        )
        assert b"transfer-encoding: chunked" in head
        assert dechunk(body) == SCORES_WIRE
        # Answers with a length keep it (and /healthz still answers an HTTP/1.0 client).
        head, body = raw_get(port, request(b"1.0", port, b"/healthz"))
        assert any(line.startswith(b"content-length:") for line in head)
        assert b'"status":"ok"' in body


@pytest.mark.parametrize("direct_writes", [True, False], ids=["direct", "asgi-send"])
def test_each_write_of_an_http_1_0_stream_is_unframed(
    live: Any, tmp_path: Path, direct_writes: bool
) -> None:
    lines = [f"event {n}" for n in range(20)]
    path = write_lines(tmp_path / "twenty.jsonl", lines)
    stream = make_stream(path, timing=Timing(interval=0.005))
    server = live([stream], AppOptions(ServerConfig(ping=0), direct_writes=direct_writes))
    head, body = raw_get(server.port, request(b"1.0", server.port))
    assert not any(line.startswith(b"transfer-encoding") for line in head)
    assert body == b"".join(b"id: %d\ndata: event %d\n\n" % (n + 1, n) for n in range(20))
