"""Recordings written by hand in the version 2 format of issue 24 (one JSON object a line),
and a raw HTTP/1.1 client that keeps the chunk boundaries a server wrote."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sseplay.exchange import Exchange, read_exchange

SSE = [["content-type", "text/event-stream"], ["cache-control", "no-cache"]]
JSON = [["content-type", "application/json"]]


def write_recording(
    path: Path,
    *,
    method: str = "GET",
    target: str = "/v1/stream",
    body: str = "",
    status: int = 200,
    headers: Sequence[Sequence[str]] = SSE,
    response_offset: float = 0.001,
    blocks: Sequence[tuple[float, str]] = (),
    pieces: Sequence[tuple[float, str]] = (),
    reads: Sequence[tuple[float, int]] | None = None,
    end: str | None = "complete",
) -> Path:
    """One exchange: ``blocks`` for an event stream, ``pieces`` for another body; the
    reads default to one per block or piece."""
    path_part, _, query = target.partition("?")
    lines: list[dict[str, Any]] = [
        {
            "sseplay": "recording",
            "version": 2,
            "upstream": "http://127.0.0.1:9",
            "started": "2026-12-06T17:30:00.000+00:00",
            "request": {
                "method": method,
                "path": path_part,
                "query": query,
                "headers": [["content-type", "application/json"]] if body else [],
                "body": body,
            },
        },
        {"offset": response_offset, "response": {"status": status, "headers": list(headers)}},
    ]
    parts = [(offset, text, "block") for offset, text in blocks]
    parts += [(offset, text, "body") for offset, text in pieces]
    if reads is None:
        reads = [(offset, len(text.encode())) for offset, text, _ in parts]
    events: list[tuple[float, int, dict[str, Any]]] = [
        (offset, 0, {"offset": offset, "read": size}) for offset, size in reads
    ]
    events += [(offset, 1, {"offset": offset, kind: text}) for offset, text, kind in parts]
    lines += [line for _, _, line in sorted(events, key=lambda e: (e[0], e[1]))]
    if end is not None:
        last = max([response_offset, *(offset for offset, _, _ in parts)])
        lines.append({"offset": last + 0.001, "end": end})
    path.write_text("".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines))
    return path


class RawResponse:
    def __init__(self, head: bytes, chunks: list[tuple[float, bytes]]) -> None:
        self.head = head
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = [
            (name.strip().lower(), value.strip())
            for name, _, value in (line.partition(":") for line in lines[1:])
        ]
        # Each HTTP chunk the server framed (one write each), with when it arrived.
        self.chunks = chunks

    @property
    def body(self) -> bytes:
        return b"".join(data for _, data in self.chunks)

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key == name), None)


def raw_request(
    url: str,
    method: str = "GET",
    body: bytes = b"",
    timeout: float = 10,
    headers: dict[str, str] | None = None,
) -> RawResponse:
    """One request on a fresh socket; the response read to its end, chunk by chunk (or
    by Content-Length), each chunk stamped with ``time.monotonic()`` when it was whole."""
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        head = (
            f"{method} {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n"
            + "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
            + "\r\n"
        ).encode()
        sock.sendall(head + body)
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            data = sock.recv(65536)
            assert data, f"the connection closed before the head: {buffer!r}"
            buffer += data
        head, _, buffer = buffer.partition(b"\r\n\r\n")
        response = RawResponse(head, [])
        length = response.header("content-length")
        if length is not None or method == "HEAD":
            size = 0 if method == "HEAD" else int(length or 0)
            while len(buffer) < size:
                data = sock.recv(65536)
                assert data, "the connection closed before the end of the body"
                buffer += data
            response.chunks.append((time.monotonic(), buffer))
            return response
        assert response.header("transfer-encoding") == "chunked", head
        while True:
            while b"\r\n" not in buffer:
                data = sock.recv(65536)
                assert data, "the connection closed inside the chunked body"
                buffer += data
            size_line, _, buffer = buffer.partition(b"\r\n")
            size = int(size_line, 16)
            while len(buffer) < size + 2:
                data = sock.recv(65536)
                assert data, "the connection closed inside a chunk"
                buffer += data
            if size == 0:
                return response
            response.chunks.append((time.monotonic(), buffer[:size]))
            buffer = buffer[size + 2 :]


def only_recording(directory: Path) -> Exchange:
    """The one recording the proxy wrote into ``directory``."""
    files = sorted(directory.glob("*.jsonl"))
    assert len(files) == 1, files
    return read_exchange(files[0])
