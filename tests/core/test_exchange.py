"""The recording format of an exchange (version 2, issue 24): blocks cut byte for byte,
whole lines written as the exchange goes, read back with file:line errors."""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sseplay.errors import InputError
from sseplay.exchange import (
    Block,
    BlockSplitter,
    ExchangeWriter,
    Read,
    RecordedRequest,
    RecordedResponse,
    is_exchange_header,
    is_stream_type,
    load_exchanges,
    read_exchange,
    recording_name,
    unique_path,
)
from sseplay.recording import Recorder

# (name, stream, the blocks it is cut into; the last may be the unterminated rest)
VECTORS: list[tuple[str, bytes, list[bytes]]] = [
    ("lf", b"data: 1\n\ndata: 2\n\n", [b"data: 1\n\n", b"data: 2\n\n"]),
    ("crlf", b"data: 1\r\n\r\ndata: 2\r\n\r\n", [b"data: 1\r\n\r\n", b"data: 2\r\n\r\n"]),
    ("cr", b"data: 1\r\rdata: 2\r\r", [b"data: 1\r\r", b"data: 2\r\r"]),
    (
        "mixed",
        b"event: a\r\ndata: 1\rid: 7\n\r\ndata: 2\n\r: c\r\n\n",
        [b"event: a\r\ndata: 1\rid: 7\n\r\n", b"data: 2\n\r", b": c\r\n\n"],
    ),
    ("cr then lf ends one line", b"data: 1\r\n\r\n", [b"data: 1\r\n\r\n"]),
    ("lf then cr", b"data: 1\n\rdata: 2\r\n\n", [b"data: 1\n\r", b"data: 2\r\n\n"]),
    (
        "comment-only blocks",
        b": ping\n\n:\n\ndata: x\n: note\n\n",
        [b": ping\n\n", b":\n\n", b"data: x\n: note\n\n"],
    ),
    ("empty lines alone", b"\n\r\n\rdata: 1\n\n\n", [b"\n", b"\r\n", b"\r", b"data: 1\n\n", b"\n"]),
    (
        "bom kept as bytes",
        b"\xef\xbb\xbfdata: 1\n\ndata: 2\n\n",
        [b"\xef\xbb\xbfdata: 1\n\n", b"data: 2\n\n"],
    ),
    ("bom then an empty line", b"\xef\xbb\xbf\ndata: 1\n\n", [b"\xef\xbb\xbf\n", b"data: 1\n\n"]),
    ("a bom later is content", b"\n\xef\xbb\xbf\n\n", [b"\n", b"\xef\xbb\xbf\n\n"]),
    ("unterminated tail", b"data: 1\n\ndata: 2\nid: 3", [b"data: 1\n\n", b"data: 2\nid: 3"]),
    ("tail ends with one line end", b"data: 1\n\ndata: 2\r\n", [b"data: 1\n\n", b"data: 2\r\n"]),
    ("field order and spacing", b"id:1\ndata:a\nevent:  x \n\n", [b"id:1\ndata:a\nevent:  x \n\n"]),
    ("not utf-8", b"data: \xff\xfe\n\n", [b"data: \xff\xfe\n\n"]),
    ("nothing", b"", []),
]


def cut(splitter: BlockSplitter, pieces: list[bytes]) -> list[bytes]:
    blocks = []
    for piece in pieces:
        blocks += splitter.feed(piece)
    rest = splitter.rest()
    return blocks + ([rest] if rest else [])


@pytest.mark.parametrize(("name", "stream", "blocks"), VECTORS, ids=[v[0] for v in VECTORS])
def test_blocks_are_cut_byte_exact_at_every_boundary(
    name: str, stream: bytes, blocks: list[bytes]
) -> None:
    assert b"".join(blocks) == stream, "the vector itself"
    assert cut(BlockSplitter(), [stream]) == blocks, "whole"
    assert cut(BlockSplitter(), [stream[i : i + 1] for i in range(len(stream))]) == blocks
    for i in range(len(stream) + 1):
        for j in range(i, len(stream) + 1):
            pieces = [stream[:i], stream[i:j], stream[j:]]
            assert cut(BlockSplitter(), pieces) == blocks, f"split at {i} and {j}"


def test_whole_pieces_cut_as_byte_by_byte_does() -> None:
    """The splitter's shortcut for pieces of whole LF-ended events gives what the
    general path gives (one byte at a time never takes the shortcut)."""
    rng = random.Random(24)
    parts = [b"data: x", b"\n", b"\n\n", b"\r", b"\r\n", b": c", b"id: 1", b"\xef\xbb\xbf"]
    for _ in range(3000):
        stream = b"".join(rng.choice(parts) for _ in range(rng.randint(0, 12)))
        bounds = sorted(rng.sample(range(len(stream) + 1), min(3, len(stream) + 1)))
        pieces = [stream[a:b] for a, b in zip([0, *bounds], [*bounds, len(stream)], strict=True)]
        one_by_one = [stream[i : i + 1] for i in range(len(stream))]
        assert cut(BlockSplitter(), pieces) == cut(BlockSplitter(), one_by_one), stream


def test_a_cr_at_the_end_of_a_piece_waits_for_the_next() -> None:
    splitter = BlockSplitter()
    assert splitter.feed(b"data: 1\r\n\r") == []  # the CR may be half of a CRLF
    assert splitter.feed(b"\ndata: 2") == [b"data: 1\r\n\r\n"]
    assert splitter.feed(b"\r") == []
    assert splitter.feed(b"\r") == []
    assert splitter.feed(b"x") == [b"data: 2\r\r"]
    assert splitter.rest() == b"x"
    assert splitter.rest() == b""


def test_a_block_is_returned_as_soon_as_its_empty_line_is_known() -> None:
    splitter = BlockSplitter()
    assert splitter.feed(b"data: 1\n") == []
    assert splitter.feed(b"\n") == [b"data: 1\n\n"]  # an LF is never held


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("text/event-stream", True),
        ("Text/Event-Stream; charset=utf-8", True),
        (" text/event-stream ;x=1", True),
        ("text/plain", False),
        ("text/event-streams", False),
        (None, False),
    ],
)
def test_is_stream_type(value: str | None, expected: bool) -> None:
    assert is_stream_type(value) is expected


REQUEST = RecordedRequest(
    "POST",
    "/v1/chat/completions",
    "a=1&key=sk-query-secret",
    (("content-type", "application/json"), ("Authorization", "Bearer sk-header-secret")),
    b'{"model": "m", "stream": true}',
)


def write_stream(path: Path) -> Path:
    writer = ExchangeWriter(path, "http://127.0.0.1:9000", REQUEST)
    writer.response(
        0.0123,
        200,
        [("Content-Type", "text/event-stream"), ("Set-Cookie", "session=sk-cookie-secret")],
    )
    writer.read(0.0125, 16)
    writer.block(0.0125, b"data: {}\r\nid: 1\n\n")
    writer.read(0.5, 9)
    writer.block(0.5, b": ping\n\n\xff")
    writer.end(0.9)
    return path


def test_a_stream_is_written_and_read_back(tmp_path: Path) -> None:
    path = write_stream(tmp_path / "r.jsonl")
    text = path.read_text()
    assert "secret" not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert is_exchange_header(lines[0])
    assert lines[0]["request"] == {
        "method": "POST",
        "path": "/v1/chat/completions",
        "query": "a=1&key=***",
        "headers": [["content-type", "application/json"], ["authorization", "***"]],
        "body": '{"model": "m", "stream": true}',
    }
    assert lines[1] == {
        "offset": 0.0123,
        "response": {
            "status": 200,
            "headers": [["content-type", "text/event-stream"], ["set-cookie", "***"]],
        },
    }
    assert lines[3] == {"offset": 0.0125, "block": "data: {}\r\nid: 1\n\n"}
    assert base64.b64decode(lines[5]["block_b64"]) == b": ping\n\n\xff"
    assert lines[6] == {"offset": 0.9, "end": "complete"}

    exchange = read_exchange(path)
    assert exchange.path == path
    assert exchange.upstream == "http://127.0.0.1:9000"
    assert exchange.request.query == "a=1&key=***"
    assert exchange.request.body == REQUEST.body
    assert exchange.response == RecordedResponse(
        200, (("content-type", "text/event-stream"), ("set-cookie", "***"))
    )
    assert exchange.response_offset == 0.0123
    assert exchange.is_stream
    assert exchange.blocks == (
        Block(0.0125, b"data: {}\r\nid: 1\n\n"),
        Block(0.5, b": ping\n\n\xff"),
    )
    assert exchange.reads == (Read(0.0125, 16), Read(0.5, 9))
    assert exchange.body == ()
    assert exchange.complete


def test_another_body_is_kept_in_pieces(tmp_path: Path) -> None:
    request = RecordedRequest("GET", "/x", "", (), b"\x00\xff")
    writer = ExchangeWriter(tmp_path / "r.jsonl", "http://u", request)
    writer.response(0.1, 404, [("content-type", "application/json")])
    writer.body(0.2, b'{"ok":')
    writer.body(0.3, b"\xe2\x82")  # half a character: base64
    writer.end(0.4, "client left")
    writer.block(0.5, b"ignored after the end")
    writer.close()
    exchange = read_exchange(writer.path)
    assert exchange.request.body == b"\x00\xff"
    assert not exchange.is_stream
    assert exchange.body == (Block(0.2, b'{"ok":'), Block(0.3, b"\xe2\x82"))
    assert exchange.end == "client left"
    assert not exchange.complete


def test_the_writer_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text("taken\n")
    writer = ExchangeWriter(path, "http://u", REQUEST)
    writer.close()
    writer.close()
    assert path.read_text() == "taken\n"
    assert writer.path == tmp_path / "r-2.jsonl"
    exchange = read_exchange(writer.path)
    assert exchange.response is None
    assert exchange.end is None


def test_a_partial_recording_plays_what_it_has(tmp_path: Path) -> None:
    path = write_stream(tmp_path / "r.jsonl")
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:4]) + lines[4][:7])  # cut in the middle of a line
    exchange = read_exchange(path)
    assert exchange.end is None
    assert not exchange.complete
    assert [block.raw for block in exchange.blocks] == [b"data: {}\r\nid: 1\n\n"]


WRITER_SCRIPT = """
import sys, time
from pathlib import Path
from sseplay.exchange import ExchangeWriter, RecordedRequest
writer = ExchangeWriter(Path(sys.argv[1]), "http://u", RecordedRequest("GET", "/s", "", (), b""))
writer.response(0.0, 200, [("content-type", "text/event-stream")])
n = 0
while True:
    n += 1
    writer.block(n / 1000, b"data: " + b"x" * (n % 5000) + b"\\n\\n")
"""


def test_kill_9_leaves_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "killed.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(WRITER_SCRIPT), str(path)],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    try:
        deadline = time.monotonic() + 30
        while (not path.exists() or path.stat().st_size < 1 << 20) and process.poll() is None:
            assert time.monotonic() < deadline, "the writer wrote nothing"
            time.sleep(0.01)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL
    exchange = read_exchange(path)
    assert exchange.end is None
    assert len(exchange.blocks) > 10
    for number, block in enumerate(exchange.blocks, 1):
        assert block.raw == b"data: " + b"x" * (number % 5000) + b"\n\n"


def test_broken_lines_are_named_by_file_and_line(tmp_path: Path) -> None:
    path = write_stream(tmp_path / "r.jsonl")
    lines = path.read_text().splitlines(keepends=True)
    cases = {
        "not a JSON line": "{oops\n",
        "is not a number of seconds": '{"offset":"soon","read":3}\n',
        "a line holds one of": '{"offset":1}\n',
        "a second": lines[1],
    }
    for problem, line in cases.items():
        path.write_text("".join([*lines[:3], line, *lines[3:]]))
        with pytest.raises(InputError, match=problem) as caught:
            read_exchange(path)
        assert caught.value.where == f"{path}:4"
    path.write_text("".join([*lines, lines[2]]))
    with pytest.raises(InputError, match="after the end line") as caught:
        read_exchange(path)
    assert caught.value.where == f"{path}:{len(lines) + 1}"
    path.write_text("".join(lines[1:]))
    with pytest.raises(InputError, match="not a recording of an exchange"):
        read_exchange(path)
    path.write_text("")
    with pytest.raises(InputError, match="empty"):
        read_exchange(path)


def v1_recording(path: Path) -> Path:
    Recorder(path, "http://u/s", time.monotonic()).close()
    return path


def test_a_directory_holds_exchanges_in_name_order(tmp_path: Path) -> None:
    write_stream(tmp_path / "b.jsonl")
    write_stream(tmp_path / "a.jsonl")
    (tmp_path / "events.jsonl").write_text('{"data": "an event file"}\n')
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "notes.txt").write_text("not a recording")
    exchanges = load_exchanges(tmp_path)
    assert [exchange.path for exchange in exchanges] == [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    assert load_exchanges(tmp_path / "b.jsonl")[0].path == tmp_path / "b.jsonl"


def test_a_version_1_recording_in_a_directory_is_refused(tmp_path: Path) -> None:
    write_stream(tmp_path / "a.jsonl")
    old = v1_recording(tmp_path / "tail.jsonl")
    with pytest.raises(InputError, match="serve it as a file") as caught:
        load_exchanges(tmp_path)
    assert caught.value.where == str(old)
    with pytest.raises(InputError, match="serve it as a file"):
        read_exchange(old)


def test_recording_names_tell_exchanges_apart() -> None:
    name = recording_name(REQUEST)
    assert name.startswith("POST-v1-chat-completions-")
    assert name.endswith(".jsonl")
    assert len(name) == len("POST-v1-chat-completions-") + 8 + len(".jsonl")
    same = RecordedRequest(
        "post", REQUEST.path, "key=sk-query-secret&a=1", (), b'{"stream":true,"model":"m"}'
    )
    assert recording_name(same) == name, "query order, JSON key order, headers do not count"
    other = RecordedRequest("POST", REQUEST.path, REQUEST.query, (), b'{"model":"n"}')
    assert recording_name(other) != name
    assert recording_name(RecordedRequest("GET", "/", "", (), b"")).startswith("GET-")
    long = recording_name(RecordedRequest("GET", "/" + "é/" * 100 + "x" * 100, "", (), b""))
    assert len(long) <= len("GET-") + 60 + 1 + 8 + len(".jsonl")
    assert all(c.isalnum() or c in "._-" for c in long)


def test_unique_path_counts_up(tmp_path: Path) -> None:
    assert unique_path(tmp_path, "a.jsonl") == tmp_path / "a.jsonl"
    (tmp_path / "a.jsonl").touch()
    assert unique_path(tmp_path, "a.jsonl") == tmp_path / "a-2.jsonl"
    (tmp_path / "a-2.jsonl").touch()
    assert unique_path(tmp_path, "a.jsonl") == tmp_path / "a-3.jsonl"


def test_a_block_that_never_ends_is_given_out_at_the_limit_byte_for_byte() -> None:
    # An upstream that never sends an empty line must not make the splitter hold it all.
    splitter = BlockSplitter(limit=100)
    data = b"data: " + b"x" * 250 + b"\r"
    out: list[bytes] = []
    for start in range(0, len(data), 7):
        out += splitter.feed(data[start : start + 7])
        assert len(splitter._buffer) <= 100 + 7
    out += splitter.feed(b"\n\ndata: y\n\n")
    assert b"".join(out) + splitter.rest() == data + b"\n\ndata: y\n\n"
    assert out[-1] == b"data: y\n\n"
