"""The server on a real uvicorn and real sockets: bytes on the wire, ids, resume, 204, modes."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import json
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from sseplay.config import ServerConfig
from sseplay.eventfile import FieldMapping, load_event_file
from sseplay.http.app import create_app
from sseplay.http.hub import AppOptions, Route
from sseplay.model import Event
from sseplay.parser import EventStreamParser
from sseplay.replay import PAGE_CACHE_BYTES, Replay
from sseplay.schedule import Plan, Timing
from sseplay.server import once_wait
from tests.conftest import (
    ROOT,
    SAMPLES,
    LiveServer,
    ServeProcess,
    make_stream,
    read_stream,
    sseplay,
    write_lines,
)

SCORES_WIRE = (
    b'id: 1\ndata: {"time":"00:01","scores":"1:0","event":"Goal! Team A scores!"}\n\n'
    b'id: 2\ndata: {"time":"00:05","scores":"1:1","event":"Goal! Team B scores!"}\n\n'
    b'id: 3\ndata: {"time":"00:10","scores":"2:1","event":"Goal! Team A scores again!"}\n\n'
)


def collect(
    url: str,
    limit: int | None = None,
    method: str = "GET",
    absolute: bool = False,
    **kwargs: Any,
) -> list[tuple[float, Event]]:
    """Read a stream with a real client; (seconds since the response headers, event) per
    event. Timed from the headers because building an httpx client takes tens of ms."""
    parser = EventStreamParser()
    out: list[tuple[float, Event]] = []
    with httpx.stream(method, url, timeout=10, **kwargs) as response:
        started = 0.0 if absolute else time.monotonic()
        assert response.status_code == 200
        for chunk in response.iter_raw():
            for event in parser.feed(chunk):
                out.append((time.monotonic() - started, event))
                if limit is not None and len(out) >= limit:
                    return out
    return out


def data_of(events: list[tuple[float, Event]]) -> list[str]:
    return [event.data for _, event in events]


@pytest.mark.parametrize("direct_writes", [True, False], ids=["direct", "asgi-send"])
def test_bytes_on_the_wire_and_headers(live: Any, direct_writes: bool) -> None:
    server = live([make_stream(SAMPLES / "scores.json")], AppOptions(direct_writes=direct_writes))
    response = read_stream(server.url + "/events")
    assert response.status_code == 200
    assert response.content == SCORES_WIRE
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-accel-buffering"] == "no"


def test_resume_with_header_or_query_and_204_at_the_end(live: Any) -> None:
    server = live([make_stream(SAMPLES / "scores.json")])
    url = server.url + "/events"
    after_one = read_stream(url, {"Last-Event-ID": "1"}).content
    assert after_one == SCORES_WIRE[SCORES_WIRE.index(b"id: 2") :]
    assert read_stream(url + "?lastEventId=2").content.startswith(b"id: 3\n")
    # A reconnecting browser sends the header while the URL keeps its first query.
    assert read_stream(url + "?lastEventId=1", {"Last-Event-ID": "2"}).content.startswith(b"id: 3")
    done = read_stream(url, {"Last-Event-ID": "3"})
    assert done.status_code == 204
    assert done.content == b""


def test_unknown_id_replays_from_the_start_with_a_comment(live: Any) -> None:
    server = live([make_stream(SAMPLES / "scores.json")])
    body = read_stream(server.url + "/events", {"Last-Event-ID": "nope"}).content
    assert body.startswith(b": unknown Last-Event-ID 'nope': from the start\n\n")
    assert body.endswith(SCORES_WIRE)


def test_retry_field_and_pings_are_sent(live: Any, tmp_path: Path) -> None:
    path = write_lines(tmp_path / "two.jsonl", ["a", "b"])
    stream = make_stream(path, timing=Timing(interval=0.25), retry=1500)
    server = live([stream], AppOptions(ServerConfig(ping=0.1)))
    body = read_stream(server.url + "/events").content
    assert body.startswith(b"retry: 1500\n\nid: 1\ndata: a\n\n")
    assert b": ping\n\n" in body
    parser = EventStreamParser()
    assert [e.data for e in parser.feed(body)] == ["a", "b"]  # pings are never events


def test_post_opens_a_stream_and_healthz_answers(live: Any) -> None:
    server = live([make_stream(SAMPLES / "llm.jsonl", route="/v1/chat/completions")])
    events = collect(server.url + "/v1/chat/completions", method="POST", json={"stream": True})
    assert data_of(events)[-1] == "[DONE]"
    assert len(events) == 11
    health = httpx.get(server.url + "/healthz").json()
    assert health["worker"] == os.getpid()  # this process serves alone
    assert {key: health[key] for key in ("status", "connections", "workers", "streams")} == {
        "status": "ok",
        "connections": 0,
        "workers": 1,
        "streams": [
            {
                "route": "/v1/chat/completions",
                "file": "llm.jsonl",
                "events": 11,
                "types": ["message"],
            }
        ],
    }


def test_cors_any_origin_without_credentials_or_a_restricted_list(live: Any) -> None:
    server = live([make_stream(SAMPLES / "scores.json")])
    response = read_stream(server.url + "/events", {"Origin": "http://example.test"})
    assert response.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in response.headers
    limited = live(
        [make_stream(SAMPLES / "scores.json")],
        AppOptions(ServerConfig(ping=0, cors=("http://ok.test",))),
    )
    ok = read_stream(limited.url + "/events", {"Origin": "http://ok.test"})
    assert ok.headers["access-control-allow-origin"] == "http://ok.test"
    other = read_stream(limited.url + "/events", {"Origin": "http://evil.test"})
    assert "access-control-allow-origin" not in other.headers


def test_each_connection_gets_its_own_replay_on_time(live: Any, tmp_path: Path) -> None:
    path = write_lines(tmp_path / "ten.jsonl", list(range(10)))
    server = live([make_stream(path, timing=Timing(interval=0.05))])
    first = collect(server.url + "/events")
    second = collect(server.url + "/events")
    assert data_of(first) == data_of(second) == [str(n) for n in range(10)]
    arrivals = [when for when, _ in first]
    assert arrivals[0] < 0.02, "the first event goes out at once"
    for k, when in enumerate(arrivals):
        # No drift: event k arrives k * 50 ms after the stream started, give or take
        # scheduling noise, never a growing delay.
        assert k * 0.05 - 0.005 <= when <= k * 0.05 + 0.04


def test_timestamps_from_records_with_speed(live: Any) -> None:
    mapping = FieldMapping(time_field="time")
    stream = make_stream(SAMPLES / "scores.json", mapping=mapping, timing=Timing(speed=40))
    events = collect(live([stream]).url + "/events")
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(events)]
    assert gaps == [pytest.approx(0.1, abs=0.04), pytest.approx(0.125, abs=0.04)]


def test_loop_keeps_ids_unique_and_resumes_in_a_later_round(live: Any) -> None:
    stream = make_stream(SAMPLES / "scores.json", timing=Timing(interval=0, loop=True))
    server = live([stream])
    events = collect(server.url + "/events", limit=7)
    assert [e.id for _, e in events] == ["1", "2", "3", "4", "5", "6", "7"]
    assert data_of(events)[3] == data_of(events)[0]
    resumed = collect(server.url + "/events", limit=2, headers={"Last-Event-ID": "5"})
    assert [e.id for _, e in resumed] == ["6", "7"]


def test_own_ids_event_types_and_loop_suffix(live: Any) -> None:
    mapping = FieldMapping(data_field="payload", event_field="type", id_field="id")
    stream = make_stream(
        SAMPLES / "notifications.json", mapping=mapping, timing=Timing(interval=0, loop=True)
    )
    server = live([stream])
    events = [e for _, e in collect(server.url + "/events", limit=7)]
    assert [e.id for e in events] == [
        "n-101",
        "n-102",
        "n-103",
        "n-104",
        "n-105",
        "n-101#1",
        "n-102#1",
    ]
    assert events[0].event == "notification"
    assert events[0].data == '{"title":"Welcome back","body":"You have 3 unread messages."}'
    resumed = collect(server.url + "/events", limit=1, headers={"Last-Event-ID": "n-101#1"})
    assert resumed[0][1].id == "n-102#1"


def test_a_file_read_back_from_disk_is_served_whole(live: Any, tmp_path: Path) -> None:
    path = write_lines(tmp_path / "many.jsonl", [{"n": n} for n in range(3000)])
    event_file = load_event_file("many", path, FieldMapping(), memory_budget=10_000)
    assert not event_file.in_memory
    replay = Replay(event_file, Plan(event_file.count, None, Timing(interval=0)))
    server = live([Route("/events", "many", replay)])
    events = collect(server.url + "/events")
    assert [e.id for _, e in events] == [str(n) for n in range(1, 3001)]
    assert events[2999][1].data == '{"n":2999}'
    resumed = collect(server.url + "/events", headers={"Last-Event-ID": "2500"})
    assert resumed[0][1].data == '{"n":2500}'
    assert len(resumed) == 500


def test_broadcast_shares_one_timeline_and_late_joiners_join_live(
    live: Any, tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "b.jsonl", list(range(40)))
    stream = make_stream(path, timing=Timing(interval=0.03))
    server = live([stream], AppOptions(ServerConfig(ping=0, broadcast=True)))
    url = server.url + "/events"
    first = collect(url, limit=5)
    second = collect(url, limit=5)
    # The second client joined later: it sees later events, not a replay from the start.
    assert int(data_of(second)[0]) > int(data_of(first)[0])
    assert [e.id for _, e in second] == [str(int(second[0][1].id or 0) + k) for k in range(5)]
    # A client resuming catches up without duplicates or gaps.
    resumed = collect(url, limit=8, headers={"Last-Event-ID": "3"})
    assert [e.data for _, e in resumed] == [str(n) for n in range(3, 11)]


def test_broadcast_clients_see_the_same_moment(live: Any, tmp_path: Path) -> None:
    import threading

    path = write_lines(tmp_path / "m.jsonl", list(range(20)))
    # 0.2 s apart: on a busy machine the two readers may connect an event or two apart.
    server = live(
        [make_stream(path, timing=Timing(interval=0.2))],
        AppOptions(ServerConfig(ping=0, broadcast=True)),
    )
    results: list[list[tuple[float, Event]]] = [[], []]

    def reader(slot: int) -> None:
        results[slot] = collect(server.url + "/events", limit=6, absolute=True)

    threads = [threading.Thread(target=reader, args=(slot,)) for slot in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    one, two = results
    common = {e.id for _, e in one} & {e.id for _, e in two}
    assert len(common) >= 4
    when_one = {e.id: t for t, e in one}
    when_two = {e.id: t for t, e in two}
    for ident in common:
        assert abs(when_one[ident] - when_two[ident]) < 0.05


def test_broadcast_ends_with_204_for_newcomers(live: Any, tmp_path: Path) -> None:
    path = write_lines(tmp_path / "short.jsonl", ["x", "y"])
    server = live(
        [make_stream(path, timing=Timing(interval=0))],
        AppOptions(ServerConfig(ping=0, broadcast=True)),
    )
    deadline = time.monotonic() + 5
    while read_stream(server.url + "/events").status_code != 204:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_on_complete_runs_after_a_whole_replay_not_after_a_disconnect(
    live: Any, tmp_path: Path
) -> None:
    completed: list[bool] = []
    path = write_lines(tmp_path / "slow.jsonl", list(range(50)))
    server = live(
        [make_stream(path, timing=Timing(interval=0.02))], None, lambda: completed.append(True)
    )
    collect(server.url + "/events", limit=3)  # leaves early
    time.sleep(0.1)
    assert completed == []
    assert len(collect(server.url + "/events")) == 50
    deadline = time.monotonic() + 2
    while not completed:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_two_routes(live: Any) -> None:
    streams = [
        make_stream(SAMPLES / "scores.json", "/scores"),
        make_stream(SAMPLES / "llm.jsonl", "/llm"),
    ]
    server = live(streams)
    assert read_stream(server.url + "/scores").content == SCORES_WIRE
    assert data_of(collect(server.url + "/llm"))[-1] == "[DONE]"
    assert httpx.get(server.url + "/nothing").status_code == 404


@pytest.mark.parametrize("direct_writes", [True, False], ids=["direct", "asgi-send"])
def test_a_client_that_stops_reading_is_cut_off_without_slowing_others(
    live: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture, direct_writes: bool
) -> None:
    caplog.set_level("INFO")
    big = write_lines(tmp_path / "big.jsonl", ["x" * 10_000] * 2_000)  # 20 MB at interval 0
    steady = write_lines(tmp_path / "steady.jsonl", list(range(20)))
    server = live(
        [
            make_stream(big, "/big"),
            make_stream(steady, "/steady", timing=Timing(interval=0.03)),
        ],
        AppOptions(ServerConfig(ping=0, send_timeout=0.3), direct_writes=direct_writes),
    )
    frozen = socket.socket()
    frozen.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    frozen.connect(("127.0.0.1", server.port))
    frozen.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")  # and never reads
    try:
        events = collect(server.url + "/steady")
        # The other client's events keep their 30 ms cadence while the frozen one stalls.
        assert data_of(events) == [str(n) for n in range(20)]
        lateness = [when - n * 0.03 for n, (when, _) in enumerate(events)]
        assert max(lateness) < 0.1
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and "cut off" not in caplog.text:
            time.sleep(0.02)
        assert "cut off: it read nothing for 0.3 s" in caplog.text
        # Dropped, not gracefully closed: what was buffered for it is gone.
        frozen.settimeout(5)
        received = 0
        with contextlib.suppress(ConnectionResetError):
            while chunk := frozen.recv(1 << 20):
                received += len(chunk)
        assert received < 20_000_000
    finally:
        frozen.close()
    assert "without completing response" not in caplog.text


@pytest.mark.parametrize("direct_writes", [True, False], ids=["direct", "asgi-send"])
def test_held_streams_take_the_fast_path_under_uvicorn_unless_told_not_to(
    live: Any, tmp_path: Path, direct_writes: bool
) -> None:
    path = write_lines(tmp_path / "slow.jsonl", list(range(5)))
    stream = make_stream(path, timing=Timing(interval=30))
    server = live([stream], AppOptions(ServerConfig(ping=0), direct_writes=direct_writes))
    with httpx.stream("GET", server.url + "/events", timeout=10) as response:
        chunks = response.iter_raw()  # kept: closing it would close the connection
        next(chunks)
        (listener,) = server.hub.listeners
        assert listener.outlet.direct is direct_writes
        assert httpx.get(server.url + "/healthz").json()["connections"] == 1


def test_streams_ended_by_a_stopping_server_are_logged_as_such(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    path = write_lines(tmp_path / "slow.jsonl", list(range(5)))
    app = create_app(
        [make_stream(path, timing=Timing(interval=30))], AppOptions(ServerConfig(ping=0))
    )
    with LiveServer(app) as server, httpx.stream("GET", server.url + "/events") as response:
        chunks = response.iter_raw()
        next(chunks)
        server.server.should_exit = True
        assert b"".join(chunks) == b""  # the response ends cleanly, nothing more
    assert "left /events after 1 events (the server stopped)" in caplog.text


@pytest.mark.parametrize("broadcast", [False, True], ids=["per-client", "broadcast"])
def test_a_file_that_cannot_be_read_back_ends_the_stream_with_one_line(
    live: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture, broadcast: bool
) -> None:
    path = write_lines(tmp_path / "gone.jsonl", [{"n": n} for n in range(3000)])
    event_file = load_event_file("gone.jsonl", path, FieldMapping(), memory_budget=10_000)
    replay = Replay(event_file, Plan(event_file.count, None, Timing(interval=0.01)))
    path.unlink()  # deleted while being served: no page of it is loaded yet
    options = AppOptions(ServerConfig(ping=0, broadcast=broadcast))
    server = live([Route("/events", "gone.jsonl", replay)], options)
    response = read_stream(server.url + "/events")
    assert response.status_code in (200, 204)
    assert b"data:" not in response.content
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == [
        "gone.jsonl cannot be read any more (No such file or directory): the stream ends here"
    ]
    assert "Traceback" not in caplog.text


# Every kind of request the server answers, as raw bytes; a stream is hung up on once its
# headers are in, anything else is read until the server closes the connection.
CLOSE = b"Connection: close\r\n\r\n"
REQUESTS = {
    "stream": b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n",
    "post-stream": b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
    "head": b"HEAD /events HTTP/1.1\r\nHost: x\r\n" + CLOSE,
    "204-after-the-end": b"GET /events HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 5\r\n" + CLOSE,
    "healthz": b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + CLOSE,
    "viewer": b"GET / HTTP/1.1\r\nHost: x\r\n" + CLOSE,
    "404": b"GET /nothing HTTP/1.1\r\nHost: x\r\n" + CLOSE,
    "cors-preflight": b"OPTIONS /events HTTP/1.1\r\nHost: x\r\nOrigin: http://a.test\r\n"
    b"Access-Control-Request-Method: GET\r\n" + CLOSE,
    "not-http": b"NONSENSE\r\n\r\n",
}


@pytest.mark.parametrize("broadcast", [False, True], ids=["per-client", "broadcast"])
@pytest.mark.parametrize("kind", sorted(REQUESTS))
def test_what_a_request_leaves_is_freed_at_once_not_left_to_the_collector(
    live: Any, tmp_path: Path, broadcast: bool, kind: str
) -> None:
    """The server's collector rarely looks at older objects (see GC_THRESHOLDS): anything a
    request left in a reference cycle would hold its memory long after it ended, and
    clients that come and go would grow the server without bound."""
    path = write_lines(tmp_path / "slow.jsonl", list(range(5)))
    stream = make_stream(path, timing=Timing(interval=30))
    server = live([stream], AppOptions(ServerConfig(ping=0, broadcast=broadcast)))
    port = int(server.url.rsplit(":", 1)[1])
    request = REQUESTS[kind]
    # Closed players wait in the timer's table until their next deadline, 30 s away: what
    # they hold then is reachable, and must not be the connection's own objects either.
    gc.collect()
    tasks_before = _tasks()
    gc.disable()
    try:
        for _ in range(10):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
                conn.sendall(request)
                received = b""
                while chunk := conn.recv(65536):
                    received += chunk
                    if kind.endswith("stream") and b"\r\n\r\n" in received:
                        break
                assert received.startswith(b"HTTP/1.1 ")
        deadline = time.monotonic() + 10
        while server.hub.listeners:
            assert time.monotonic() < deadline, "the server never saw the clients leave"
            time.sleep(0.01)
        time.sleep(0.05)  # the server finishes its side of the last connection
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        left = sorted({type(o).__qualname__ for o in gc.garbage if _served_by_us(o)})
        held = [o for o in gc.get_objects() if type(o).__qualname__ == "RequestResponseCycle"]
        tasks_after = _tasks()
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert left == []
    assert held == []
    assert tasks_after == tasks_before


def _tasks() -> int:
    return sum(isinstance(thing, asyncio.Task) for thing in gc.get_objects())


def _served_by_us(thing: object) -> bool:
    module = type(thing).__module__.split(".")[0]
    return module in ("sseplay", "uvicorn", "starlette", "fastapi", "asyncio", "_asyncio")


# --- serve --once (issue 10.5) -------------------------------------------------------------


@pytest.mark.timeout(60)
def test_once_answers_the_clients_reconnect_with_204_and_tail_exits_0_by_itself() -> None:
    """Both processes for real: tail reconnects after the end, as every EventSource does;
    the server answers 204 (the replay is over), tail stops for good, the server exits."""
    with ServeProcess(
        "samples/scores.json", "--interval", "0", "--retry", "100", "--once"
    ) as serve:
        started = time.monotonic()
        tail = subprocess.run(
            sseplay("tail", serve.url, "--format", "json"),
            capture_output=True,
            text=True,
            timeout=20,
            cwd=ROOT,
        )
        assert tail.returncode == 0, tail.stderr
        assert [json.loads(line)["id"] for line in tail.stdout.splitlines()] == ["1", "2", "3"]
        assert "204" in tail.stderr
        _, err = serve.process.communicate(timeout=10)
        elapsed = time.monotonic() - started
    assert serve.process.returncode == 0, err
    assert b"Traceback" not in err
    assert b"asked /events for more after its end (Last-Event-ID '3'): 204 No Content" in err
    assert b"--once: the replay is over for its client, stopping" in err
    assert elapsed < 5  # not the whole wait: the server stopped once it had answered


@pytest.mark.timeout(60)
def test_once_stops_after_a_bounded_wait_when_the_client_never_comes_back() -> None:
    with ServeProcess(
        "samples/scores.json", "--interval", "0", "--retry", "200", "--once"
    ) as serve:
        body = httpx.get(serve.url, timeout=10).text
        finished = time.monotonic()
        assert body.count("data: ") == 3
        serve.process.communicate(timeout=10)
        waited = time.monotonic() - finished
    assert serve.process.returncode == 0
    assert 1.0 <= waited < 3  # the retry time (0.2 s) and a second more, then it exits


def test_once_waits_for_the_longest_default_reconnect_and_never_long() -> None:
    path = SAMPLES / "scores.json"
    assert once_wait([make_stream(path)]) == 6.0  # Firefox reconnects after 5 s
    assert once_wait([make_stream(path, retry=100), make_stream(path, "/b")]) == 1.1
    assert once_wait([make_stream(path, retry=3_600_000)]) == 30.0


# --- 204 answers and unknown ids are logged (issue 10.11) ---------------------------------


def test_unknown_ids_and_204_answers_are_logged(
    live: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    server = live([make_stream(SAMPLES / "scores.json")])
    assert read_stream(server.url + "/events", {"Last-Event-ID": "nope"}).status_code == 200
    assert read_stream(server.url + "/events", {"Last-Event-ID": "3"}).status_code == 204
    messages = [r.getMessage() for r in caplog.records if r.name == "sseplay.server"]
    assert any(
        m.endswith(
            "connected to /events with an unknown Last-Event-ID 'nope': replaying from the start"
        )
        for m in messages
    ), messages
    assert any(
        m.endswith("asked /events for more after its end (Last-Event-ID '3'): 204 No Content")
        for m in messages
    ), messages


def test_favicon_is_served_not_a_404(live: Any) -> None:
    server = live([make_stream(SAMPLES / "scores.json")])
    response = httpx.get(server.url + "/favicon.ico", timeout=5)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/svg+xml"
    assert response.content.startswith(b"<svg")


# --- memory bounded in bytes (issue 11.4) --------------------------------------------------


@pytest.mark.timeout(60)
def test_the_page_cache_of_a_file_read_from_disk_is_bounded_in_bytes(
    live: Any, tmp_path: Path
) -> None:
    """Records of 40 KB: 64 pages of 256 of them were 655 MB of cache."""
    record = "x" * 40_000
    path = write_lines(tmp_path / "wide.jsonl", [record] * 1_200)  # 48 MB
    event_file = load_event_file("wide.jsonl", path, FieldMapping(), memory_budget=10_000)
    replay = Replay(event_file, Plan(event_file.count, None, Timing(interval=0)))
    server = live([Route("/events", "wide.jsonl", replay)])
    with httpx.stream("GET", server.url + "/events", timeout=30) as response:
        received = sum(len(chunk) for chunk in response.iter_raw())
    assert received > 48_000_000
    cached = sum(len(cue.body) for page in replay._pages.values() for cue in page)
    largest_page = 4 << 20
    assert cached <= PAGE_CACHE_BYTES + largest_page
    assert replay.cached_bytes <= PAGE_CACHE_BYTES + largest_page
