"""Recordings served back (issue 24, ``serve DIR``): each request matched to its recording
and answered with the recorded status, headers and body, byte for byte, on the recorded
timing; a request that matches none is a 404 that says why."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from sseplay.recordings import Recordings
from sseplay.server import Server
from tests.http.recordings_support import JSON, raw_request, write_recording
from tests.support import wait_until

# Comments, odd spacing, events with and without id:, retry:, CRLF and CR line ends.
BLOCKS = [
    (0.010, ": welcome\n\n"),
    (0.020, 'data: {"n":1}\n\n'),
    (0.030, "id:7\nevent:  odd\ndata:two  spaces  \n\n"),
    (0.040, "data: crlf\r\ndata: second\r\n\r\n"),
    (0.050, "retry: 250\rdata: cr\r\r"),
    (0.060, ": ping\n\ndata: [DONE]\n\n"),
]


def test_an_event_stream_is_replayed_byte_for_byte(tmp_path: Path) -> None:
    write_recording(tmp_path / "GET-v1-stream.jsonl", blocks=BLOCKS)
    with Server(Recordings(tmp_path)) as server:
        answer = raw_request(server.url + "/v1/stream")
        assert answer.status == 200
        assert answer.body == "".join(text for _, text in BLOCKS).encode()
        # The recorded headers, and none that framed the recorded connection.
        assert answer.header("content-type") == "text/event-stream"
        assert answer.header("cache-control") == "no-cache"
        assert answer.header("content-length") is None
        # Block by block: one write each (nothing added, no ping, no id).
        assert [data for _, data in answer.chunks] == [text.encode() for _, text in BLOCKS]


def test_the_timing_follows_the_offsets_scaled_by_speed(tmp_path: Path) -> None:
    blocks = [(0.0, "data: a\n\n"), (2.0, "data: b\n\n"), (4.0, "data: c\n\n")]
    write_recording(tmp_path / "slow.jsonl", blocks=blocks)
    with Server(Recordings(tmp_path, speed=20)) as server:
        answer = raw_request(server.url + "/v1/stream")
    times = [when for when, _ in answer.chunks]
    assert [data for _, data in answer.chunks] == [b"data: a\n\n", b"data: b\n\n", b"data: c\n\n"]
    # 2 s / 20 = 0.1 s apart: never sooner (absolute deadlines), and far from the 2 s
    # the recording took (a busy machine may be late, never 20 times late).
    assert times[1] - times[0] >= 0.09
    assert times[2] - times[0] >= 0.19
    assert times[2] - times[0] < 3.0


def test_max_gap_and_interval_shape_the_timing(tmp_path: Path) -> None:
    blocks = [(0.0, "data: a\n\n"), (30.0, "data: b\n\n")]
    write_recording(tmp_path / "long.jsonl", blocks=blocks)
    with Server(Recordings(tmp_path, max_gap=0.05)) as server:
        answer = raw_request(server.url + "/v1/stream")
        assert answer.body == b"data: a\n\ndata: b\n\n"
    with Server(Recordings(tmp_path, interval=0.05)) as server:
        answer = raw_request(server.url + "/v1/stream")
        assert answer.body == b"data: a\n\ndata: b\n\n"


def test_chunks_reproduce_the_recorded_read_boundaries(tmp_path: Path) -> None:
    # One event that the upstream wrote in two pieces 0.4 s apart.
    block = "data: hello world\n\n"
    write_recording(
        tmp_path / "split.jsonl",
        blocks=[(0.4, block)],
        reads=[(0.0, 8), (0.4, len(block) - 8)],
    )
    with Server(Recordings(tmp_path, chunks=True)) as server:
        answer = raw_request(server.url + "/v1/stream")
    assert [data for _, data in answer.chunks] == [b"data: he", b"llo world\n\n"]
    assert answer.chunks[1][0] - answer.chunks[0][0] >= 0.35
    # Without --chunks the same bytes go out as the block they make.
    with Server(Recordings(tmp_path)) as server:
        answer = raw_request(server.url + "/v1/stream")
    assert [data for _, data in answer.chunks] == [block.encode()]


def test_with_chunks_a_ping_goes_between_events_never_inside_one(tmp_path: Path) -> None:
    # The upstream wrote the first event in two reads 0.3 s apart (CRLF line ends, cut
    # between them), the second 0.3 s after: --ping 0.05 has a silence in each gap, and
    # ": ping" inside the first event would end its line and the event with it.
    first, second = "data: hello\r\ndata: world\r\n\r\n", "data: next\n\n"
    write_recording(
        tmp_path / "split.jsonl",
        blocks=[(0.3, first), (0.6, second)],
        reads=[(0.0, 13), (0.3, len(first) - 13), (0.6, len(second))],
    )
    with Server(Recordings(tmp_path, chunks=True, ping=0.05)) as server:
        answer = raw_request(server.url + "/v1/stream")
    assert answer.body.replace(b": ping\n\n", b"") == (first + second).encode()
    assert (first + ": ping\n\n").encode() in answer.body  # still, between the events
    assert answer.body.startswith(first.encode())


def _chat(tmp_path: Path, name: str, body: dict[str, Any], reply: str) -> Path:
    return write_recording(
        tmp_path / name,
        method="POST",
        target="/v1/chat/completions",
        body=json.dumps(body),
        blocks=[(0.01, f"data: {reply}\n\n")],
    )


def test_a_json_body_matches_whatever_its_key_order_and_a_different_one_is_a_404(
    tmp_path: Path,
) -> None:
    _chat(tmp_path, "chat.jsonl", {"model": "m", "messages": [{"content": "hi"}]}, "hello")
    with Server(Recordings(tmp_path)) as server:
        url = server.url + "/v1/chat/completions"
        reordered = b'{ "messages" : [{"content":"hi"}],\n "model":"m" }'
        answer = raw_request(url, "POST", reordered)
        assert answer.status == 200
        assert answer.body == b"data: hello\n\n"
        other = httpx.post(url, json={"model": "m", "messages": [{"content": "bye"}]}, timeout=10)
        assert other.status_code == 404
        explained = other.json()
        assert "POST /v1/chat/completions" in explained["error"]
        assert explained["closest"].endswith("chat.jsonl")
        assert "body" in explained["differs"]
        assert "bye" in explained["differs"]
        assert explained["recorded"][0]["method"] == "POST"
        assert explained["recorded"][0]["path"] == "/v1/chat/completions"


def test_match_ignore_leaves_volatile_fields_out(tmp_path: Path) -> None:
    _chat(tmp_path, "chat.jsonl", {"model": "m", "user": "ann", "metadata": {"run": 1}}, "ok")
    asked = {"model": "m", "user": "bob", "metadata": {"run": 2}}
    with Server(Recordings(tmp_path)) as server:
        url = server.url + "/v1/chat/completions"
        assert httpx.post(url, json=asked, timeout=10).status_code == 404
    with Server(Recordings(tmp_path, match_ignore=("user", "metadata.*"))) as server:
        url = server.url + "/v1/chat/completions"
        answer = httpx.post(url, json=asked, timeout=10)
        assert answer.status_code == 200
        assert answer.content == b"data: ok\n\n"


def test_the_nth_request_gets_the_nth_recording_then_the_last(tmp_path: Path) -> None:
    for number, reply in enumerate(("one", "two"), 1):
        _chat(tmp_path, f"chat-{number}.jsonl", {"model": "m"}, reply)
    with Server(Recordings(tmp_path)) as server:
        url = server.url + "/v1/chat/completions"
        replies = [httpx.post(url, json={"model": "m"}, timeout=10).content for _ in range(3)]
    assert replies == [b"data: one\n\n", b"data: two\n\n", b"data: two\n\n"]


def test_a_partial_recording_is_said_so_and_plays(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_recording(
        tmp_path / "cut.jsonl", blocks=[(0.01, "data: a\n\n"), (0.02, "data: b\n\n")], end=None
    )
    with caplog.at_level(logging.INFO, logger="sseplay.server"):
        recordings = Recordings(tmp_path)
    lines = [r.getMessage() for r in caplog.records if "partial recording" in r.getMessage()]
    assert lines == [f"{path}: partial recording (no end line): played as far as it goes"]
    with Server(recordings) as server:
        assert raw_request(server.url + "/v1/stream").body == b"data: a\n\ndata: b\n\n"


def test_a_json_response_is_replayed_whole(tmp_path: Path) -> None:
    write_recording(
        tmp_path / "POST-v1-items.jsonl",
        method="POST",
        target="/v1/items?page=2",
        body='{"name":"x"}',
        status=201,
        headers=[*JSON, ["x-request-id", "abc"], ["transfer-encoding", "chunked"]],
        pieces=[(0.01, '{"id":1,'), (0.02, '"name":"x"}')],
    )
    with Server(Recordings(tmp_path)) as server:
        answer = httpx.post(server.url + "/v1/items?page=2", json={"name": "x"}, timeout=10)
        assert answer.status_code == 201
        assert answer.content == b'{"id":1,"name":"x"}'
        assert answer.headers["x-request-id"] == "abc"
        assert answer.headers["content-length"] == str(len(answer.content))
        assert "transfer-encoding" not in answer.headers
        # Another query is another request.
        assert httpx.post(server.url + "/v1/items", json={"name": "x"}).status_code == 404


def test_healthz_lists_the_recordings(tmp_path: Path) -> None:
    stream = write_recording(tmp_path / "a.jsonl", blocks=BLOCKS)
    chat = _chat(tmp_path, "b.jsonl", {"model": "m"}, "x")
    with Server(Recordings(tmp_path)) as server:
        health = httpx.get(server.url + "/healthz", timeout=10).json()
    assert health["status"] == "ok"
    assert health["recordings"] == [
        {"method": "GET", "path": "/v1/stream", "file": str(stream)},
        {"method": "POST", "path": "/v1/chat/completions", "file": str(chat)},
    ]


def test_the_sse_server_fixture_serves_a_directory(
    tmp_path: Path, sse_server: Callable[..., Server]
) -> None:
    write_recording(tmp_path / "a.jsonl", blocks=BLOCKS)
    server = sse_server(tmp_path, speed=10)
    assert isinstance(server.recordings, Recordings)
    assert server.url.count("/") == 2  # the base URL, standing for the upstream
    answer = httpx.get(server.url + "/v1/stream", timeout=10)
    assert answer.content == "".join(text for _, text in BLOCKS).encode()


def test_a_request_waiting_for_its_recorded_head_is_answered_when_the_server_stops(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The upstream took 30 s to answer: the server stopping meanwhile answers the request
    # (503) rather than leaving it to uvicorn's graceful timeout, which cancels it with a
    # traceback.
    write_recording(tmp_path / "slow.jsonl", response_offset=30.0, blocks=[(30.0, "data: x\n\n")])
    caplog.set_level(logging.INFO)
    server = Server(Recordings(tmp_path))
    with server:
        parts = urlsplit(server.base_url)
        client = socket.create_connection((parts.hostname, parts.port), timeout=10)
        client.sendall(b"GET /v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        wait_until(lambda: any("playing" in r.getMessage() for r in caplog.records))
        server.stop()
    with client:
        head = client.recv(65536)
    assert head.startswith(b"HTTP/1.1 503 ")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
