"""``tail --record`` writes issue 24's lossless format (version 2): comments, ``id:``
present or absent, field order, spacing and line ends kept, each read's size; ``serve FILE``
plays it byte for byte, exactly as it plays the recording proxy's file of the same stream,
and ``tail --expect`` reads it."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

from sseplay import RecordingProxy, Recordings, Server
from sseplay.exchange import read_exchange
from tests.conftest import SSE_HEAD, RawServer, ServeProcess, run_cli
from tests.http.recordings_support import raw_request
from tests.support import recorded_events, wait_until

# What the upstream writes: a comment, an event with no id, odd spacing and field order,
# CRLF and CR line ends, a retry: block, a comment-only block, an unterminated last line.
FIRST = b': welcome\n\ndata: {"n":1}\n\nevent:  odd\ndata:two  spaces  \nid:7\n\n'
SECOND = b"data: crlf\r\ndata: second\r\n\r\nretry: 250\r\r: ping\n\ndata: [DONE]\n\ndata: cut"
BODY = FIRST + SECOND


def _upstream(conn: socket.socket, request: bytes, number: int) -> None:
    conn.sendall(SSE_HEAD + FIRST)
    time.sleep(0.05)  # two reads, 50 ms apart
    conn.sendall(SECOND)


def test_tail_record_plays_byte_for_byte_as_the_proxy_s_recording(tmp_path: Path) -> None:
    tailed = tmp_path / "tail.jsonl"
    proxied = tmp_path / "proxy"
    with RawServer(_upstream) as upstream:
        result = run_cli("tail", upstream.url, "--no-reconnect", "-q", "--record", str(tailed))
        assert result.returncode == 0, result.stderr
        origin = upstream.url.removesuffix("/events")
        with RecordingProxy(origin, proxied) as proxy:
            assert raw_request(proxy.url + "/events").body == BODY
            wait_until(lambda: any(read_exchange(p).end for p in proxied.glob("*.jsonl")))
        # --expect reads the recording: the same stream again passes.
        expected = run_cli(
            "tail", upstream.url, "--no-reconnect", "-q", "--expect", str(tailed), timeout=15
        )
        assert expected.returncode == 0, expected.stderr

    header = json.loads(tailed.read_text().splitlines()[0])
    assert header["version"] == 2
    assert header["request"]["method"] == "GET"
    assert header["request"]["path"] == "/events"
    recorded = read_exchange(tailed)
    assert recorded.complete
    assert b"".join(block.raw for block in recorded.blocks) == BODY
    assert sum(read.size for read in recorded.reads) == len(BODY)
    assert len(recorded.reads) >= 2
    # Blocks cut where the proxy cuts them.
    [by_proxy] = [read_exchange(path) for path in proxied.glob("*.jsonl")]
    assert [b.raw for b in recorded.blocks] == [b.raw for b in by_proxy.blocks]

    with ServeProcess(str(tailed)) as served:
        from_tail = raw_request(served.url + "/events")
    with Server(Recordings(proxied)) as server:
        from_proxy = raw_request(server.url + "/events")
    assert from_tail.body == from_proxy.body == BODY

    # The events, as a client parses them: no id on the first, "7" from the second on.
    events = [(e.event, e.id, e.data) for _, e in recorded_events(tailed)]
    assert events[:2] == [("message", None, '{"n":1}'), (" odd", "7", "two  spaces  ")]


def test_an_old_version_1_recording_still_plays(tmp_path: Path) -> None:
    old = tmp_path / "old.jsonl"
    old.write_text(
        '{"sseplay":"recording","version":1,"url":"http://h/events","started":"2026-01-01"}\n'
        '{"offset":0.0,"event":"message","id":"1","data":"one"}\n'
        '{"offset":0.01,"event":"tick","id":null,"data":"two"}\n'
    )
    with ServeProcess(str(old), "--ping", "0") as served:
        body = raw_request(served.url).body
    assert b"id: 1\ndata: one\n\n" in body
    assert b"event: tick\ndata: two\n\n" in body
