"""Hostile clients and files changing under the server (issue 11): raw sockets, each attack
bounded in time and memory. Whatever one client or one file does, everyone else is served,
``/healthz`` answers and SIGTERM stops the server with exit 0 and no traceback."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sseplay.config import ServerConfig
from sseplay.eventfile import FieldMapping, load_event_file
from sseplay.http.hub import AppOptions, Route
from sseplay.http.uvicorn.protocol import MAX_REQUEST_HEAD_BYTES
from sseplay.parser import EventStreamParser
from sseplay.replay import Replay
from sseplay.schedule import Plan, Timing
from tests.conftest import ROOT, make_stream, write_lines


class Server:
    """``sseplay serve`` as a subprocess, with the in-memory budget for encoded events lowered
    (``budget``), so that a small file is served from disk as a 64 MiB one is."""

    def __init__(self, *args: str, budget: int | None = None) -> None:
        setup = "import sseplay.eventfile as s;"
        if budget is not None:
            setup += f"s.load_event_file.__defaults__ = ({budget},);"
        command = [
            sys.executable,
            "-c",
            setup + "from sseplay.cli.app import main; main()",
            "serve",
            "--port",
            "0",
            *args,
        ]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0, cwd=ROOT
        )
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], 15)
        assert ready, "sseplay serve printed no URL"
        self.url = self.process.stdout.readline().decode().strip()
        assert self.url.startswith("http://"), self.stop()
        self.base = self.url.rsplit("/", 1)[0]
        self.port = int(self.base.rsplit(":", 1)[1])

    def stop(self) -> tuple[int, str]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            _, err = self.process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate()
            return -1, "SIGTERM ignored: " + err.decode()[-2000:]
        return self.process.returncode, err.decode()


@contextlib.contextmanager
def serving(*args: str, budget: int | None = None) -> Iterator[Server]:
    server = Server(*args, budget=budget)
    try:
        yield server
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.communicate()


def healthz_answers(server: Server) -> bool:
    try:
        return httpx.get(server.base + "/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def stream_reader(port: int, path: str = "/events", headers: str = "") -> socket.socket:
    conn = socket.create_connection(("127.0.0.1", port), timeout=5)
    conn.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n".encode())
    return conn


LAST_CHUNK = b"\r\n0\r\n\r\n"  # the end of a chunked response body (RFC 9112 section 7.1)


def drain(
    conn: socket.socket, seconds: float, limit: int = 50 << 20, until: bytes | None = None
) -> bytes:
    """What the server sends on ``conn`` for ``seconds`` (at most ``limit`` bytes), or up
    to the end of a response body with ``until=LAST_CHUNK``."""
    received = bytearray()
    deadline = time.monotonic() + seconds
    while len(received) < limit and not (until and received.endswith(until)):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        conn.settimeout(left)
        try:
            chunk = conn.recv(1 << 20)
        except (TimeoutError, ConnectionResetError):
            break
        if not chunk:
            break
        received += chunk
    return bytes(received)


# --- 11.1: a file served from disk that changes under the server ---------------------------


def _shrink(path: Path) -> None:
    """Cut at a record boundary: a page read back comes up short (the old endless loop)."""
    data = path.read_bytes()
    with path.open("r+b") as file:
        file.truncate(data.index(b"\n", len(data) // 10) + 1)


def _cut_mid_record(path: Path) -> None:
    size = path.stat().st_size
    with path.open("r+b") as file:
        file.truncate(size // 3)


def _replace(path: Path) -> None:
    replacement = path.with_suffix(".new")
    write_lines(replacement, [{"other": n} for n in range(5)])
    os.replace(replacement, path)


def _rewrite_in_place(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2 :] = b"#" * (len(data) - len(data) // 2)
    path.write_bytes(bytes(data))


CHANGES = {
    "truncated": _shrink,
    "cut-mid-record": _cut_mid_record,
    "replaced": _replace,
    "rewritten": _rewrite_in_place,
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("broadcast", [False, True], ids=["per-client", "broadcast"])
@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_served_file_that_changes_ends_its_streams_and_nothing_else(
    tmp_path: Path, change: str, broadcast: bool
) -> None:
    path = write_lines(tmp_path / "big.jsonl", [{"n": n, "pad": "x" * 100} for n in range(20_000)])
    other = write_lines(tmp_path / "other.jsonl", list(range(1000)))
    mode = ["--broadcast"] if broadcast else []
    args = ["--interval", "0.002", *mode, f"/events={path}", f"/other={other}"]
    with serving(*args, budget=10_000) as server:
        readers = [stream_reader(server.port) for _ in range(3)]
        bystander = stream_reader(server.port, "/other")
        for conn in readers:
            assert drain(conn, 0.3).startswith(b"HTTP/1.1 200")
        CHANGES[change](path)
        # Every affected stream ends (the server closes the connection) within a few seconds.
        ends = []
        for conn in readers:
            ends.append(drain(conn, 8, until=LAST_CHUNK).endswith(LAST_CHUNK))
            conn.close()
        assert healthz_answers(server)
        # The other route is still served, on time.
        assert b"data: " in drain(bystander, 0.3)
        bystander.close()
        assert all(ends), ends
        code, err = server.stop()
    assert code == 0, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "big.jsonl changed while being served" in line]
    assert len(lines) == 1, err
    assert err.count("left /events after") == 3
    assert err.count("(its file cannot be read any more)") == 3


# --- 11.2: pipelined requests, then a hang-up ------------------------------------------


PIPELINED = b"GET /events HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("direct", [True, False], ids=["fast-path", "asgi-send"])
@pytest.mark.parametrize("broadcast", [False, True], ids=["per-client", "broadcast"])
def test_pipelined_requests_then_a_hang_up_end_only_that_connection(
    live: Any, tmp_path: Path, broadcast: bool, direct: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    path = write_lines(tmp_path / "ticks.jsonl", list(range(100_000)))
    stream = make_stream(path, timing=Timing(interval=0.005))
    server = live(
        [stream], AppOptions(ServerConfig(ping=0, broadcast=broadcast), direct_writes=direct)
    )
    good = stream_reader(server.port)
    assert drain(good, 0.1)
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as hostile:
            hostile.sendall(PIPELINED)
            hostile.recv(100)  # the first response has started
    # Everyone else is still served, without a pause, and the server forgets the hang-ups.
    before = len(drain(good, 0.2))
    assert before > 0
    deadline = time.monotonic() + 5
    while len(server.hub.listeners) > 1 and time.monotonic() < deadline:
        assert drain(good, 0.05)
    assert len(server.hub.listeners) == 1
    assert httpx.get(server.url + "/healthz", timeout=5).json()["connections"] == 1
    assert len(drain(good, 0.2)) > 0
    good.close()
    assert "Traceback" not in caplog.text
    assert "Exception in ASGI application" not in caplog.text
    assert "without completing response" not in caplog.text


@pytest.mark.timeout(60)
@pytest.mark.parametrize("broadcast", [False, True], ids=["per-client", "broadcast"])
def test_after_pipelined_hang_ups_sigterm_exits_0_without_a_traceback(
    tmp_path: Path, broadcast: bool
) -> None:
    path = write_lines(tmp_path / "ticks.jsonl", list(range(100_000)))
    mode = ["--broadcast"] if broadcast else []
    with serving("--interval", "0.01", *mode, str(path)) as server:
        good = stream_reader(server.port)
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as hostile:
                hostile.sendall(PIPELINED)
                hostile.recv(100)
        time.sleep(0.2)
        assert b"data: " in drain(good, 0.3)
        good.close()
        code, err = server.stop()
    assert code == 0, err
    assert "Traceback" not in err


# --- 11.3 and 10.2: Last-Event-ID, exactly ------------------------------------------------


def _events_after(port: int, last_event_id: bytes, seconds: float) -> tuple[int, bytes]:
    """(status, body) of a stream resumed with this raw Last-Event-ID, read for ``seconds``."""
    status, body, _ = _timed_events_after(port, last_event_id, seconds)
    return status, body


def _timed_events_after(
    port: int, last_event_id: bytes, seconds: float
) -> tuple[int, bytes, float]:
    """``_events_after``, and how long the reading really took: on a busy machine the
    reader may be held up past ``seconds``, and every event due meanwhile comes."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(
            b"GET /events HTTP/1.1\r\nHost: x\r\nLast-Event-ID: " + last_event_id + b"\r\n\r\n"
        )
        received = drain(conn, seconds, limit=5 << 20)
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body, time.monotonic() - started


def _at_most_due(events: int, elapsed: float, interval: float) -> bool:
    """No flood: at most the events due in ``elapsed`` (the first at once), and two more
    for the rounding at either end."""
    return events <= elapsed / interval + 3


@pytest.mark.timeout(60)
def test_a_huge_id_with_loop_is_unknown_not_a_flood(live: Any, tmp_path: Path) -> None:
    path = write_lines(tmp_path / "three.jsonl", ["a", "b", "c"])
    server = live([make_stream(path, timing=Timing(interval=0.1, loop=True))])
    status, body, elapsed = _timed_events_after(server.port, b"1" * 25, 0.5)
    assert status == 200
    events = body.count(b"\ndata: ")
    assert _at_most_due(events, elapsed, 0.1)  # the first event at once, then one each 0.1 s
    assert b"unknown Last-Event-ID" in body
    assert b"id: 1\n" in body  # from the start


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("round_suffix", "known"),
    [("1", True), ("1" * 25, False), ("9" * 400, False), ("\u00b2", False), ("01", False)],
    ids=["round-1", "25-digits", "400-digits", "superscript-two", "leading-zero"],
)
def test_round_suffixes_of_own_ids_are_parsed_exactly_too(
    live: Any, tmp_path: Path, round_suffix: str, known: bool
) -> None:
    path = write_lines(tmp_path / "own.jsonl", [{"id": f"e{n}", "n": n} for n in range(3)])
    stream = make_stream(
        path, mapping=FieldMapping(id_field="id"), timing=Timing(interval=0.1, loop=True)
    )
    server = live([stream])
    status, body, elapsed = _timed_events_after(server.port, f"e1#{round_suffix}".encode(), 0.5)
    assert status == 200
    assert _at_most_due(body.count(b"\ndata: "), elapsed, 0.1)
    if known:
        assert b"id: e2#1\n" in body.split(b"\n\n")[0]
    else:
        assert b"unknown Last-Event-ID" in body
        assert b"id: e0\n" in body


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "last_event_id",
    [b"9" * 400, "\u00b2".encode(), b"\xb2", "\u0663".encode(), b"1e3", b"+2", b"0", b"2.0"],
    ids=[
        "400-digits",
        "superscript-two",
        "latin1-superscript",
        "arabic-three",
        "1e3",
        "+2",
        "zero",
        "float",
    ],
)
@pytest.mark.parametrize("loop", [False, True], ids=["once", "loop"])
def test_ids_that_are_not_ascii_integers_are_unknown_never_an_error(
    live: Any, tmp_path: Path, last_event_id: bytes, loop: bool
) -> None:
    path = write_lines(tmp_path / "three.jsonl", ["a", "b", "c"])
    server = live([make_stream(path, timing=Timing(interval=0.05, loop=loop))])
    status, body = _events_after(server.port, last_event_id, 0.3)
    assert status == 200
    assert b"unknown Last-Event-ID" in body
    assert b"id: 1\n" in body
    assert last_event_id not in body or len(last_event_id) < 40  # not echoed back in full
    assert httpx.get(server.url + "/healthz", timeout=5).status_code == 200


@pytest.mark.timeout(60)
def test_ids_are_utf8_in_the_header_and_percent_encoded_utf8_in_the_query(
    live: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    records = [{"id": ident, "n": n} for n, ident in enumerate(["a", "é", "日本", "z"])]
    path = write_lines(tmp_path / "ids.jsonl", records)
    server = live([make_stream(path, mapping=FieldMapping(id_field="id"))])
    # The header, as a browser sends it: the id's UTF-8 bytes.
    status, body = _events_after(server.port, "é".encode(), 0.3)
    assert status == 200
    assert body.count(b"\ndata: ") == 2
    assert b"unknown" not in body
    # The query parameter of a first connection: percent-encoded UTF-8.
    parser = EventStreamParser()
    response = httpx.get(server.url + "/events?lastEventId=%E6%97%A5%E6%9C%AC", timeout=5)
    assert [e.id for e in parser.feed(response.content)] == ["z"]
    # Not UTF-8: unknown, from the start, and logged as such.
    status, body = _events_after(server.port, b"\xe9", 0.3)
    assert b"unknown Last-Event-ID" in body
    assert body.count(b"\ndata: ") == 4
    response = httpx.get(server.url + "/events?lastEventId=%E9", timeout=5)
    assert b"unknown Last-Event-ID" in response.content
    assert "unknown Last-Event-ID" in caplog.text


@pytest.mark.timeout(60)
def test_an_unknown_id_is_not_echoed_back_in_full(
    live: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    path = write_lines(tmp_path / "three.jsonl", ["a", "b", "c"])
    server = live([make_stream(path)])
    long_id = b"x" * 8000
    status, body = _events_after(server.port, long_id, 0.3)
    assert status == 200
    assert b"unknown Last-Event-ID" in body
    assert b"x" * 100 not in body
    assert "x" * 100 not in caplog.text
    assert "unknown Last-Event-ID" in caplog.text


# --- request heads beyond the limit ------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("shape", ["one-header", "many-headers", "long-url"])
def test_a_request_head_beyond_the_limit_gets_431_and_costs_nothing(
    live: Any, tmp_path: Path, shape: str
) -> None:
    path = write_lines(tmp_path / "three.jsonl", ["a", "b", "c"])
    server = live([make_stream(path)])
    size = 4 << 20  # 4 MiB of head, sent as fast as the server takes it
    if shape == "one-header":
        head = b"GET /events HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * size + b"\r\n\r\n"
    elif shape == "many-headers":
        head = b"GET /events HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * (size // 8) + b"\r\n"
    else:
        head = b"GET /events?" + b"a" * size + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
        with contextlib.suppress(OSError):  # the server may close while we still send
            conn.sendall(head)
        answer = drain(conn, 5)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert time.monotonic() - started < 5
    # Just within the limit is fine.
    padding = MAX_REQUEST_HEAD_BYTES - 200
    within = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * padding + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
        conn.sendall(within)
        assert drain(conn, 1).startswith(b"HTTP/1.1 200 ")


# --- many at once -----------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_many_hostile_clients_at_once_leave_the_others_served(live: Any, tmp_path: Path) -> None:
    path = write_lines(tmp_path / "ticks.jsonl", list(range(100_000)))
    stream = make_stream(path, timing=Timing(interval=0.01, loop=True))
    server = live([stream], AppOptions(ServerConfig(ping=0)))
    good = stream_reader(server.port)
    assert drain(good, 0.1)
    attacks = [PIPELINED] * 10
    attacks += [
        b"GET /events HTTP/1.1\r\nHost: x\r\nLast-Event-ID: " + ident + b"\r\n\r\n"
        for ident in (b"1" * 25, b"9" * 400, "\u00b2".encode(), b"\xff\xfe")
    ] * 5
    attacks += [b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * (1 << 20) + b"\r\n\r\n"] * 5
    conns = []
    for attack in attacks:
        conn = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        with contextlib.suppress(OSError):
            conn.sendall(attack)
        conns.append(conn)
    for conn in conns:
        conn.close()
    received = drain(good, 0.5)
    # Ticks every 10 ms: about 50 in 0.5 s, none lost to the attacks.
    assert received.count(b"\ndata: ") >= 25
    deadline = time.monotonic() + 5
    while len(server.hub.listeners) > 1 and time.monotonic() < deadline:
        drain(good, 0.05)
    assert len(server.hub.listeners) == 1
    good.close()


def _disk_replay(path: Path, budget: int, timing: Timing) -> Route:
    event_file = load_event_file(path.name, path, FieldMapping(), memory_budget=budget)
    assert not event_file.in_memory
    return Route("/events", path.name, Replay(event_file, Plan(event_file.count, None, timing)))
