"""The JSON splitters of ``tail --framing`` (sseplay.framing): one event per JSON value,
whatever the chunks the bytes arrive in."""

from __future__ import annotations

import json
import re

import pytest

from sseplay.framing import FramingError, JsonArraySplitter, NdjsonSplitter, splitter
from sseplay.model import Event
from sseplay.parser import EventStreamParser, EventTooLarge

VALUES = [
    {"a": 1, "text": 'he said "hi", [ok] {x}\\', "nested": {"list": [1, [2, {"b": "]"}]]}},
    {"text": "café, 東京 \u2028 \\u0041"},
    [1, 2, {"c": ","}],
    "a string, with a comma ]",
    3.5,
    None,
    True,
]
COMPACT = [json.dumps(v, separators=(",", ":"), ensure_ascii=False) for v in VALUES]


def feed_in_pieces(split: NdjsonSplitter | JsonArraySplitter, body: bytes, size: int) -> list[str]:
    events: list[Event] = []
    for start in range(0, len(body), size):
        events.extend(split.feed(body[start : start + size]))
    events.extend(split.close())
    assert all(e.event == "message" and e.id is None and e.retry is None for e in events)
    return [e.data for e in events]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_a_json_array_streamed_gemini_style_gives_each_element(size: int) -> None:
    body = ("[" + ",\r\n".join(json.dumps(v, indent=2) for v in VALUES) + "]").encode()
    assert feed_in_pieces(JsonArraySplitter(), body, size) == COMPACT


@pytest.mark.parametrize("size", [1, 2, 5, 1000])
def test_ndjson_gives_one_event_a_line_and_skips_blank_ones(size: int) -> None:
    body = ("\ufeff" + "\r\n\n".join(json.dumps(v) for v in VALUES) + "\n").encode()
    assert feed_in_pieces(NdjsonSplitter(), body, size) == COMPACT


def test_an_element_is_an_event_as_soon_as_the_comma_after_it_arrives() -> None:
    split = JsonArraySplitter()
    assert split.feed(b'[{"a": "x\\') == []
    assert split.feed(b'"y"}') == []
    assert [e.data for e in split.feed(b",\r\n")] == ['{"a":"x\\"y"}']
    assert [e.data for e in split.feed(b'{"b":2}]')] == ['{"b":2}']


def test_an_empty_array_and_a_cut_one() -> None:
    assert feed_in_pieces(JsonArraySplitter(), b" [ ] ", 1) == []
    assert feed_in_pieces(JsonArraySplitter(), b'[{"a":1},{"b":', 4) == ['{"a":1}']


def test_an_ndjson_last_line_without_lf_counts_when_whole() -> None:
    assert feed_in_pieces(NdjsonSplitter(), b'{"a":1}\n{"b":2}', 3) == ['{"a":1}', '{"b":2}']
    assert feed_in_pieces(NdjsonSplitter(), b'{"a":1}\n{"b":', 3) == ['{"a":1}']


@pytest.mark.parametrize(
    ("split", "body", "said"),
    [
        (NdjsonSplitter(), b'{"a":1}\nnot json\n', "a line is not JSON"),
        (JsonArraySplitter(), b'{"a":1}', "does not start with '['"),
        (JsonArraySplitter(), b"[1,,2]", "empty element"),
        (JsonArraySplitter(), b"[1,]", "empty element"),
        (JsonArraySplitter(), b"[1]x", "after the array"),
        (JsonArraySplitter(), b"[1, nope]", "an element of the array is not JSON"),
    ],
)
def test_a_body_that_is_not_the_framing_raises(
    split: NdjsonSplitter | JsonArraySplitter, body: bytes, said: str
) -> None:
    with pytest.raises(FramingError, match=re.escape(said)):
        split.feed(body)


def test_a_trailing_comma_split_over_chunks_raises() -> None:
    split = JsonArraySplitter()
    assert [e.data for e in split.feed(b"[1,")] == ["1"]
    with pytest.raises(FramingError, match="empty element"):
        split.feed(b"]")


def test_reset_starts_a_new_array_for_a_new_connection() -> None:
    split = JsonArraySplitter()
    assert [e.data for e in split.feed(b'[{"a":1},{"b')] == ['{"a":1}']
    split.reset()
    assert [e.data for e in split.feed(b'[{"a":1}]')] == ['{"a":1}']


@pytest.mark.parametrize("split", [NdjsonSplitter(10), JsonArraySplitter(10)])
def test_max_event_size_holds(split: NdjsonSplitter | JsonArraySplitter) -> None:
    with pytest.raises(EventTooLarge):
        split.feed(b'[{"a": "' + b"x" * 20)


def test_sse_is_the_event_stream_parser() -> None:
    assert isinstance(splitter("sse"), EventStreamParser)
