"""The sans-IO parser against the WHATWG-derived conformance vectors and property tests."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sse_starlette import ServerSentEvent

from sseplay.model import Event, encode
from sseplay.parser import EventStreamParser, EventTooLarge
from tests.conftest import CONFORMANCE

TEXT_CASES = json.loads((CONFORMANCE / "sse_vectors.json").read_text())
BYTE_CASES = json.loads((CONFORMANCE / "sse_vectors_bytes.json").read_text())


def parse(chunks: list[bytes]) -> tuple[list[dict[str, str]], int | None, str]:
    parser = EventStreamParser()
    events = []
    for chunk in chunks:
        events += parser.feed(chunk)
    events += parser.close()
    shown = [{"type": e.event, "data": e.data, "id": e.id or ""} for e in events]
    return shown, parser.retry, parser.last_event_id


def case_bytes(case: dict[str, Any]) -> tuple[bytes, list[bytes]]:
    if "stream" in case:
        whole = case["stream"].encode("utf-8")
        return whole, [whole]
    chunks = [bytes.fromhex(h) for h in case["chunks_hex"]]
    return b"".join(chunks), chunks


def splits(whole: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(whole)), min(len(whole) - 1, rng.randint(1, 8))))
    return [whole[a:b] for a, b in zip([0, *cuts], [*cuts, len(whole)], strict=True)]


@pytest.mark.parametrize("case", TEXT_CASES + BYTE_CASES, ids=lambda c: c["name"])
def test_conformance_vector(case: dict[str, Any]) -> None:
    expected = (case["events"], case["retry"], case["last_event_id"])
    whole, chunks = case_bytes(case)
    assert parse(chunks) == expected, "as given"
    assert parse([whole]) == expected, "whole"
    assert parse([whole[i : i + 1] for i in range(len(whole))]) == expected, "byte by byte"
    if len(whole) > 1:
        for seed in range(20):
            assert parse(splits(whole, seed)) == expected, f"random split {seed}"


def test_vectors_are_all_there() -> None:
    assert len(TEXT_CASES) >= 40
    assert len(BYTE_CASES) >= 5


def test_reset_keeps_last_event_id_and_retry_but_drops_a_partial_block() -> None:
    parser = EventStreamParser()
    parser.feed(b"retry: 50\nid: 7\ndata: a\n\ndata: half")
    parser.reset()
    assert parser.feed(b"data: b\n\n") == [Event("b", id="7")]
    assert parser.retry == 50


def test_event_too_large_is_refused() -> None:
    parser = EventStreamParser(max_event_size=100)
    with pytest.raises(EventTooLarge):
        parser.feed(b"data: " + b"x" * 60 + b"\ndata: " + b"y" * 60 + b"\n")
    with pytest.raises(EventTooLarge):
        EventStreamParser(max_event_size=100).feed(b"data: " + b"z" * 200)
    # A whole simple block in one chunk, behind small ones: the fast path checks it too.
    small = b"id: 1\ndata: ok\n\n" * 10
    with pytest.raises(EventTooLarge):
        EventStreamParser(max_event_size=100).feed(small + b"id: 2\ndata: " + b"z" * 200 + b"\n\n")
    assert (
        len(EventStreamParser(max_event_size=100).feed(small + b"data: " + b"z" * 90 + b"\n\n"))
        == 11
    )


safe_field = st.text(
    alphabet=st.characters(blacklist_characters="\r\n\0", blacklist_categories=("Cs",)),
    min_size=1,
)
any_data = st.text(alphabet=st.characters(blacklist_categories=("Cs",)))


@settings(max_examples=300, deadline=None)
@given(data=any_data, event=safe_field, event_id=safe_field, retry=st.integers(0, 10**9))
def test_sse_starlette_events_parse_back(data: str, event: str, event_id: str, retry: int) -> None:
    """Whatever sse-starlette encodes, the parser reads back (CR and CRLF become LF, as in
    every browser; a leading space of a value is kept because the encoder adds one)."""
    for sep in ("\r\n", "\n", "\r"):
        wire = ServerSentEvent(data, event=event, id=event_id, retry=retry, sep=sep).encode()
        parser = EventStreamParser()
        events = parser.feed(wire) + parser.close()
        expected_data = data.replace("\r\n", "\n").replace("\r", "\n")
        expected_type = event if event != "" else "message"
        assert events == [Event(expected_data, expected_type, event_id, retry)]
        assert parser.last_event_id == event_id


@settings(max_examples=300, deadline=None)
@given(data=any_data, event=safe_field, event_id=safe_field, seed=st.integers(0, 1000))
def test_our_encoding_parses_back_in_any_split(
    data: str, event: str, event_id: str, seed: int
) -> None:
    wire = encode(Event(data, event, event_id))
    expected = Event(data.replace("\r\n", "\n").replace("\r", "\n"), event, event_id)
    chunks = splits(wire, seed) if len(wire) > 1 else [wire]
    parser = EventStreamParser()
    events = [e for chunk in chunks for e in parser.feed(chunk)]
    assert events == [expected]


def test_unicode_line_separators_are_not_line_ends() -> None:
    parser = EventStreamParser()
    events = parser.feed('data: {"a":"x\u2028y\u0085z\u000bw"}\n\n'.encode())
    assert events == [Event('{"a":"x\u2028y\u0085z\u000bw"}')]


MIXED_STREAM = (
    b"data: plain\n\n"
    b'id: 7\nevent: tick\ndata: {"n": 1}\n\n'
    b"data:no space\n\n"
    b"data:  two spaces\n\n"
    b": a comment\ndata: after a comment\n\n"
    b"id: 8\ndata: first line\ndata: second line\n\n"
    b"retry: 500\ndata: with retry\n\n"
    b"data: next\n\n"
    b"id: has\x00nul\ndata: id ignored\n\n"
    b"id\ndata: id reset by a bare field name\n\n"
    b"event: only type\n\n"
    b"id: 9\n\n"
    b"data: after an id-only block\n\n"
    b"data: crlf\r\n\r\n"
    b"id: 10\ndata: unterminated"
)


def test_whole_blocks_and_single_bytes_give_the_same_events() -> None:
    """Fed whole, simple blocks take the block-at-a-time path; fed a byte at a time,
    every block goes line by line. The two must agree exactly."""
    whole = EventStreamParser()
    events_whole = whole.feed(MIXED_STREAM) + whole.close()
    single = EventStreamParser()
    events_single = [
        event for i in range(len(MIXED_STREAM)) for event in single.feed(MIXED_STREAM[i : i + 1])
    ]
    events_single += single.close()
    assert events_whole == events_single
    assert (whole.last_event_id, whole.retry) == (single.last_event_id, single.retry)
    assert [e.data for e in events_whole][:4] == ["plain", '{"n": 1}', "no space", " two spaces"]
    assert events_whole[1] == Event('{"n": 1}', "tick", "7")
    assert events_whole[6].retry == 500
    assert events_whole[7].retry is None
    assert whole.last_event_id == "9"  # the unterminated block's id is never committed
