"""Faults act on a recorded event stream as on any file's (issue 24: "faults ... apply to
recordings as to any file"): by event, named by --fault, by the request, or armed live."""

from __future__ import annotations

from pathlib import Path

import httpx

from sseplay import Recordings, Server
from sseplay.parser import EventStreamParser
from tests.conftest import ServeProcess
from tests.http.recordings_support import raw_request, write_recording

BLOCKS = [(0.0, "id: 1\ndata: one\n\n"), (0.01, ": kept\n\n"), (0.02, "data: two\n\n")]
BLOCKS += [(0.03, "data: three\n\n")]


def recording(tmp_path: Path) -> Path:
    write_recording(tmp_path / "a.jsonl", method="POST", target="/v1/s", blocks=BLOCKS)
    return tmp_path


def test_a_drop_fault_ends_a_recorded_stream_after_its_nth_event(tmp_path: Path) -> None:
    with Server(Recordings(recording(tmp_path)), faults=["drop:after=2,conn=1"]) as server:
        first = httpx.post(server.base_url + "/v1/s", timeout=10).text
        second = httpx.post(server.base_url + "/v1/s", timeout=10).text
    assert first == "id: 1\ndata: one\n\n: kept\n\ndata: two\n\n"  # the comment kept too
    assert second == "".join(block for _, block in BLOCKS)  # conn=1 only


def test_a_request_names_its_own_fault_on_a_recording(tmp_path: Path) -> None:
    with Server(Recordings(recording(tmp_path)), fault_header=True) as server:
        url = server.base_url + "/v1/s"
        skipped = httpx.post(url, headers={"Sseplay-Fault": "skip:at=2"}, timeout=10).text
        refused = httpx.post(url, headers={"Sseplay-Fault": "status:code=503"}, timeout=10)
    assert skipped == "id: 1\ndata: one\n\n: kept\n\ndata: three\n\n"
    assert refused.status_code == 503


# One event stream, read by the proxy in three reads that cut through its events.
SPLIT = [(0.0, "data: one\n\n"), (0.0, "data: two\n\n"), (0.0, "data: three\n\n")]
SPLIT_READS = [(0.0, 8), (0.0, 10), (0.0, 17)]  # "data: on" "e\n\ndata: t" "wo\n\n..."


def split_recording(tmp_path: Path) -> Path:
    write_recording(
        tmp_path / "a.jsonl", method="POST", target="/v1/s", blocks=SPLIT, reads=SPLIT_READS
    )
    return tmp_path


def test_with_chunks_faults_count_and_act_on_the_recorded_reads(tmp_path: Path) -> None:
    # Every read is due at once: each still goes out, and is counted, on its own.
    recordings = Recordings(split_recording(tmp_path), chunks=True)
    with Server(recordings, faults=["drop:after=2,conn=1"], fault_header=True) as server:
        url = server.base_url + "/v1/s"
        dropped = raw_request(url, "POST")
        skipped = raw_request(url, "POST", headers={"Sseplay-Fault": "skip:at=2"})
        whole = raw_request(url, "POST")
    assert [data for _, data in dropped.chunks] == [b"data: on", b"e\n\ndata: t"]
    assert skipped.body == b"data: on" + b"wo\n\ndata: three\n\n"
    assert whole.body == "".join(text for _, text in SPLIT).encode()  # conn=1 only


def test_with_chunks_a_drop_s_retry_inside_an_event_makes_no_event_of_it(
    tmp_path: Path,
) -> None:
    # The first read ends inside "data: one": a retry: written straight after it would be
    # the rest of that line ("data: onretry: 500"), and its blank line an event of it.
    with Server(Recordings(split_recording(tmp_path), chunks=True), fault_header=True) as server:
        url = server.base_url + "/v1/s"
        inside = raw_request(url, "POST", headers={"Sseplay-Fault": "drop:after=1,retry=500"})
        between = raw_request(url, "POST", headers={"Sseplay-Fault": "drop:after=3,retry=500"})
    for answer, events in ((inside, []), (between, ["one", "two", "three"])):
        parser = EventStreamParser()
        got = parser.feed(answer.body) + parser.close()
        assert [event.data for event in got] == events
        assert parser.retry == 500  # the client still has the retry
    assert inside.body.startswith(b"data: on")


def test_with_chunks_a_stall_inside_an_event_keeps_its_pings_out_of_it(tmp_path: Path) -> None:
    # A stall after the first read (inside "data: one") that keeps pings: a ping there
    # would end that line, and its blank line the half event.
    recordings = Recordings(split_recording(tmp_path), chunks=True)
    with Server(recordings, ping=0.1, fault_header=True) as server:
        url = server.base_url + "/v1/s"
        stalled = raw_request(url, "POST", headers={"Sseplay-Fault": "stall:after=1,for=0.35"})
    assert stalled.body == "".join(text for _, text in SPLIT).encode()


def test_the_command_takes_faults_with_chunks(tmp_path: Path) -> None:
    with ServeProcess(
        str(split_recording(tmp_path)), "--chunks", "--fault", "drop:after=1"
    ) as server:
        base = "/".join(server.url.split("/")[:3])
        body = raw_request(base + "/v1/s", "POST").body
    assert body == b"data: on"


def test_a_fault_armed_on_a_recorded_stream_acts_from_then(tmp_path: Path) -> None:
    slow = [(0.0, "data: one\n\n")] + [(0.2 * n, f"data: {n}\n\n") for n in range(1, 30)]
    write_recording(tmp_path / "a.jsonl", method="POST", target="/v1/s", blocks=slow)
    with (
        Server(Recordings(tmp_path), control=True) as server,
        httpx.stream("POST", server.base_url + "/v1/s", timeout=10) as response,
    ):
        lines = response.iter_lines()
        assert next(lines) == "data: one"
        (connection,) = server.connections()
        armed = server.fault("drop:after=1", conn=connection["id"])
        rest = [line for line in lines if line]
    assert armed["events"] >= 1
    assert len(rest) == 1  # one more event, then the drop (29 were recorded)
    (entry,) = server.journal()
    assert entry["ended"] == "fault:drop"
