"""The wire form of what sseplay sends, made in one place (sseplay.model) and pinned byte
for byte; and the same bytes as sse-starlette's ``ServerSentEvent``, the encoder the
FastAPI world uses (WHATWG HTML 9.2.6)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sse_starlette import ServerSentEvent

from sseplay.feed import PING as FANOUT_PING
from sseplay.model import (
    PING,
    Event,
    encode,
    encode_body,
    encode_comment,
    encode_retry,
    encode_without_id,
    field_problem,
    with_id,
)

AWKWARD = ["", "\r", "\n", "\r\n", "\n\r", "a\r\nb\rc\nd", "\u2028\u2029\x85", "\0", "🎉", " x "]


@pytest.mark.parametrize(
    ("event", "wire"),
    [
        (Event("x"), b"data: x\n\n"),
        (Event(""), b"data: \n\n"),
        (Event("a\r\nb\rc\nd"), b"data: a\ndata: b\ndata: c\ndata: d\n\n"),
        (Event("\n"), b"data: \ndata: \n\n"),
        (Event("\u2028\0🎉"), "data: \u2028\0🎉\n\n".encode()),
        (Event("x", "tick"), b"event: tick\ndata: x\n\n"),
        (Event("x", "message", "7"), b"id: 7\ndata: x\n\n"),
        (Event("x", "t", "", 0), b"id: \nretry: 0\nevent: t\ndata: x\n\n"),
        (Event("x", retry=3000), b"retry: 3000\ndata: x\n\n"),
    ],
)
def test_an_event_on_the_wire(event: Event, wire: bytes) -> None:
    assert encode(event) == wire


def test_the_other_blocks_sseplay_sends() -> None:
    assert encode_retry(3000) == b"retry: 3000\n\n"
    assert encode_comment("unknown\r\nid") == b": unknown\n: id\n\n"
    assert PING == FANOUT_PING == b": ping\n\n"
    assert with_id(12, b"data: x\n\n") == b"id: 12\ndata: x\n\n"
    assert with_id("é#2", b"data: x\n\n") == "id: é#2\ndata: x\n\n".encode()
    assert encode_without_id(Event("x", "t", "9", 5)) == b"retry: 5\nevent: t\ndata: x\n\n"


texts = st.lists(st.sampled_from([*AWKWARD, "a", "é", "\t", ":", "data: "]), max_size=8).map(
    "".join
)
field = st.text(min_size=1, max_size=8).filter(lambda value: field_problem("id", value) is None)


@settings(max_examples=300, deadline=None)
@given(data=texts | st.text(), event_type=st.none() | field, event_id=st.none() | field)
def test_the_same_bytes_as_sse_starlette(
    data: str, event_type: str | None, event_id: str | None
) -> None:
    """ServerSentEvent writes ``retry:`` after the data, sseplay before it (the order of
    fields in a block does not matter to a browser); without retry the bytes are equal."""
    ours = encode(Event(data, event_type or "message", event_id))
    theirs = ServerSentEvent(data, event=event_type, id=event_id, sep="\n").encode()
    if event_type == "message":  # sseplay leaves out the default type
        theirs = theirs.replace(b"event: message\n", b"", 1)
    assert ours == theirs
    body = encode_body(data, event_type or "message")
    assert ours == (body if event_id is None else with_id(event_id, body))
