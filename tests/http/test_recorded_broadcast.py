"""``serve DIR --broadcast`` (issue 24: "--broadcast ... apply to recordings as to any
file"): each recorded event stream plays on one timeline from the server's start, every
client on it alike; a client joins where it is, resumes with Last-Event-ID, and gets a 204
once it has played out. Real servers, real sockets."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from sseplay import Recordings, Server
from tests.conftest import ServeProcess
from tests.http.recordings_support import raw_request, write_recording
from tests.support import wait_until

# Six events 0.1 s apart, each with its id.
SIX = [(0.1 * n, f"id: {n}\ndata: event {n}\n\n") for n in range(1, 7)]


def data_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("data:")]


def test_a_later_client_joins_the_timeline_where_it_is(tmp_path: Path) -> None:
    # 0.96 s in all: the later client comes after the third, well before the end.
    twelve = [(0.08 * n, f"id: {n}\ndata: event {n}\n\n") for n in range(1, 13)]
    write_recording(tmp_path / "a.jsonl", target="/feed", blocks=twelve)
    with (
        Server(Recordings(tmp_path), broadcast=True) as server,
        httpx.stream("GET", server.base_url + "/feed", timeout=10) as first,
    ):
        lines = first.iter_lines()
        seen: list[str] = []
        while len(seen) < 3:
            line = next(lines)
            if line.startswith("data:"):
                seen.append(line)
        later = raw_request(server.base_url + "/feed")  # to the end of the timeline
        seen += [line for line in lines if line.startswith("data:")]
    joined = data_lines(later.body.decode())
    assert seen == [f"data: event {n}" for n in range(1, 13)]
    assert 1 <= len(joined) <= 9  # what was still to come when it joined, nothing before
    assert joined == seen[-len(joined) :]


def test_a_client_that_resumes_catches_up_then_follows_the_timeline(tmp_path: Path) -> None:
    write_recording(tmp_path / "a.jsonl", target="/feed", blocks=SIX)
    with Server(Recordings(tmp_path), broadcast=True) as server:
        url = server.base_url + "/feed"
        resumed = httpx.get(url, headers={"Last-Event-ID": "2"}, timeout=10)
        unknown = httpx.get(url, headers={"Last-Event-ID": "nope"}, timeout=10)
        over = httpx.get(url, timeout=10)  # the timeline has played out by now
    assert data_lines(resumed.text) == [f"data: event {n}" for n in range(3, 7)]
    # An id the recording never set: joined where the timeline was (at its end: 204).
    assert unknown.status_code == 204
    assert over.status_code == 204


def test_a_body_that_is_not_a_stream_is_answered_whole_each_time(tmp_path: Path) -> None:
    write_recording(
        tmp_path / "a.jsonl",
        target="/v1/models",
        headers=[["content-type", "application/json"]],
        pieces=[(0.0, '{"data": '), (0.01, "[]}")],
    )
    with Server(Recordings(tmp_path), broadcast=True) as server:
        url = server.base_url + "/v1/models"
        answers = [httpx.get(url, timeout=10) for _ in range(2)]
    assert [answer.json() for answer in answers] == [{"data": []}, {"data": []}]


def test_the_command_serves_recordings_with_broadcast(tmp_path: Path) -> None:
    write_recording(tmp_path / "a.jsonl", target="/feed", blocks=SIX)
    with ServeProcess(str(tmp_path), "--broadcast") as served:
        base = "/".join(served.url.split("/")[:3])
        body = raw_request(base + "/feed").body.decode()
        wait_until(lambda: httpx.get(base + "/feed", timeout=10).status_code == 204)
    assert data_lines(body)[-1] == "data: event 6"


def test_a_resumed_client_keeps_to_the_shared_timeline_whatever_the_timing(
    tmp_path: Path,
) -> None:
    # Recorded all at once, played one every 0.1 s (--interval): a client that resumes
    # after id 2 gets event 3 when the timeline has it, not at the start of its own.
    instant = [(0.0, text) for _, text in SIX]
    write_recording(tmp_path / "a.jsonl", target="/feed", blocks=instant)
    recordings = Recordings(tmp_path, interval=0.1)
    (exchange,) = recordings.exchanges
    whole = recordings.shared_answer(exchange, None, -1.0)  # before the timeline began
    resumed = recordings.shared_answer(exchange, "2", 0.0)
    assert whole is not None
    assert resumed is not None
    assert resumed.pieces == whole.pieces[2:]
    assert recordings.shared_answer(exchange, "6", 0.0) is None  # nothing after it: 204


def test_with_chunks_a_resumed_client_starts_inside_the_read_its_event_ended_in(
    tmp_path: Path,
) -> None:
    three = [(0.0, "id: 1\ndata: a\n\n"), (0.1, "id: 2\ndata: b\n\n"), (0.2, "id: 3\ndata: c\n\n")]
    # Two reads: the first ends 3 bytes into event 2 ("id:"), the second holds the rest.
    write_recording(
        tmp_path / "a.jsonl", target="/feed", blocks=three, reads=[(0.0, 18), (0.2, 28)]
    )
    recordings = Recordings(tmp_path, chunks=True)
    (exchange,) = recordings.exchanges
    whole = recordings.shared_answer(exchange, None, -1.0)
    resumed = recordings.shared_answer(exchange, "1", -1.0)
    assert whole is not None
    assert resumed is not None
    assert [data for _, data in whole.pieces] == [
        b"id: 1\ndata: a\n\nid:",
        b" 2\ndata: b\n\n" + b"id: 3\ndata: c\n\n",
    ]
    # What follows event 1: the rest of the first read (at its time), then the second.
    assert resumed.pieces == ((whole.pieces[0][0], b"id:"), whole.pieces[1])
    after_two = recordings.shared_answer(exchange, "2", -1.0)
    assert after_two is not None
    assert after_two.pieces == ((whole.pieces[1][0], b"id: 3\ndata: c\n\n"),)


# Event 2 lies across the two reads, cut at one of its lines: the first read holds event 1
# and the first line of event 2, the second (0.8 s later) the rest of it and event 3.
TORN = [(0.0, "id: 1\ndata: a\n\n"), (0.0, "id: 2\ndata: b1\ndata: b2\n\n")]
TORN += [(0.8, "id: 3\ndata: c\n\n")]
TORN_READS = [(0.0, 30), (0.8, 25)]  # "...id: 2\ndata: b1\n" | "data: b2\n\nid: 3..."


def test_with_chunks_a_client_that_joins_mid_event_starts_at_the_next_whole_event(
    tmp_path: Path,
) -> None:
    # A joiner gets the events still to come, never the tail of one the timeline is in the
    # middle of: "data: b2" alone would be an event the recording never had.
    write_recording(tmp_path / "a.jsonl", target="/feed", blocks=TORN, reads=TORN_READS)
    recordings = Recordings(tmp_path, chunks=True)
    (exchange,) = recordings.exchanges
    joined = recordings.shared_answer(exchange, None, 0.1)
    assert joined is not None
    assert [data for _, data in joined.pieces] == [b"id: 3\ndata: c\n\n"]
    with Server(recordings, broadcast=True) as server:
        later = raw_request(server.base_url + "/feed")  # after the first read, before the second
    assert later.status == 200
    assert data_lines(later.body.decode()) == ["data: c"]


def test_before_a_future_epoch_a_client_gets_the_head_at_once_as_a_file_s_does(
    tmp_path: Path,
) -> None:
    # The timeline has not begun: the client is answered (200, its headers) and waits for
    # the events, rather than for the head, which a client's own timeout would end first.
    write_recording(tmp_path / "a.jsonl", target="/feed", blocks=SIX)
    epoch = time.time() + 60
    with (
        Server(Recordings(tmp_path), broadcast=True, epoch=epoch) as server,
        httpx.stream("GET", server.base_url + "/feed", timeout=5) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
