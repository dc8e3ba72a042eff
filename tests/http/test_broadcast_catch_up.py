"""A --broadcast client that reads slowly is told what it missed, on a real server."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import httpx
import pytest

import sseplay.broadcast
from sseplay import Server, Stream

HISTORY = 8
EVENT_BYTES = 32 << 10
MISSED = re.compile(
    rb": (\d+) events were missed while this client read slowly: the server keeps the last (\d+)\n"
)


def _most_bytes_held_on_the_way() -> int:
    """An upper bound on what a connection holds between the broadcast and a client that
    reads nothing: the server's socket buffer at its largest (Linux: tcp_wmem), uvicorn's
    write buffer, one write of due events (CHUNK_BYTES), and the client's small buffer."""
    largest_send_buffer = 8 << 20
    wmem = Path("/proc/sys/net/ipv4/tcp_wmem")
    if wmem.exists():
        largest_send_buffer = int(wmem.read_text().split()[2])
    return largest_send_buffer + (1 << 20) + (64 << 10)


class SlowReader:
    """A client on a raw socket with a small receive buffer, that reads only when told;
    what it read is scanned once, as it comes (the ids, any gap, the notice)."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(10)
        self.sock.connect((host, port))
        self.sock.sendall(f"GET /events HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        self.received = bytearray()
        self.scanned = 0  # up to the end of the last whole line looked at
        self.ids: list[int] = []
        self.notice: re.Match[bytes] | None = None
        self.ids_before_notice: list[int] = []
        self.gap = False

    def read(self) -> None:
        self.received += self.sock.recv(1 << 20)
        end = self.received.rfind(b"\n") + 1
        if end <= self.scanned:
            return
        lines = bytes(self.received[self.scanned : end])
        self.scanned = end
        for line in lines.split(b"\n"):
            found = MISSED.fullmatch(line + b"\n")
            if found and self.notice is None:
                self.notice = found
                self.ids_before_notice = list(self.ids)
            elif line.startswith(b"id: "):
                number = int(line[4:])
                if self.ids and number != self.ids[-1] + 1 and self.notice is None:
                    self.gap = True
                self.ids.append(number)


def test_a_slow_broadcast_client_is_told_how_many_events_it_missed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Events published while a client's writes are held up beyond what the history keeps
    are said in the stream when it reads again ("N events were missed"), as a followed
    file's or a Redis route's feed says them; they used to vanish without a word."""
    monkeypatch.setattr(sseplay.broadcast, "BROADCAST_HISTORY", HISTORY)
    records = [{"n": n, "pad": "x" * EVENT_BYTES} for n in range(50)]
    stream = Stream.from_records(records, interval=0.004, loop=True)
    with Server(stream, broadcast=True, ping=0, send_timeout=60) as server:
        host, port = "127.0.0.1", int(server.url.split(":")[2].split("/")[0])
        slow = SlowReader(host, port)
        while not slow.ids:
            slow.read()
        # The slow client reads nothing more. A fast client sees the broadcast go on until
        # more than every buffer on the way could hold, plus the history, has been sent.
        needed = _most_bytes_held_on_the_way() + 2 * HISTORY * EVENT_BYTES
        seen = 0
        with httpx.stream("GET", server.url, timeout=10) as fast:
            for chunk in fast.iter_raw():
                seen += len(chunk)
                if seen > needed:
                    break
        while slow.notice is None and not slow.gap:
            slow.read()
        # And a few events after the notice.
        while slow.notice is not None and len(slow.ids) < len(slow.ids_before_notice) + 3:
            slow.read()
        slow.sock.close()
    notice = slow.notice
    assert notice is not None, "events vanished from a slow client without a word"
    missed, kept = int(notice.group(1)), int(notice.group(2))
    assert kept == HISTORY
    assert missed > 0
    before = slow.ids_before_notice
    after_ids = slow.ids[len(before) :]
    # No id lost without a word: consecutive up to the notice, then on from exactly as many
    # events later as it says, consecutive again.
    assert before == list(range(before[0], before[0] + len(before)))
    assert after_ids[0] == before[-1] + missed + 1
    assert after_ids == list(range(after_ids[0], after_ids[0] + len(after_ids)))
