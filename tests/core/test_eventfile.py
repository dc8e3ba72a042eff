"""Reading and validating event files: layouts, mapping, and every bad input."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sseplay.errors import InputError
from sseplay.eventfile import FieldMapping, load_event_file
from sseplay.records import (
    UTF8_BOM,
    ArrayScanner,
    BadLine,
    Malformed,
    index_array,
    index_lines,
    iter_lines,
    loads,
)
from tests.conftest import SAMPLES, write_json, write_lines


def bodies(path: Path, mapping: FieldMapping | None = None, **kwargs: Any) -> list[bytes]:
    event_file = load_event_file(path.name, path, mapping or FieldMapping(), **kwargs)
    return [cue.body for cue in event_file.cues(0, event_file.count)]


def error_of(path: Path, mapping: FieldMapping | None = None) -> str:
    with pytest.raises(InputError) as caught:
        load_event_file(path.name, path, mapping or FieldMapping())
    return str(caught.value)


# The event files; samples/turns/ holds turns for serve --shape (tests/core/test_shapes_*).
@pytest.mark.parametrize(
    "sample", sorted(p for p in SAMPLES.iterdir() if p.is_file()), ids=lambda p: p.name
)
def test_every_sample_loads(sample: Path) -> None:
    mapping = {
        "scores.json": FieldMapping(time_field="time"),
        "ticks.jsonl": FieldMapping(time_field="ts", event_field="symbol"),
        "notifications.json": FieldMapping(
            data_field="payload", event_field="type", id_field="id", time_field="at"
        ),
    }.get(sample.name, FieldMapping())
    event_file = load_event_file(sample.name, sample, mapping)
    assert event_file.count >= 3
    assert len(event_file.cues(0, event_file.count)) == event_file.count


def test_layout_is_detected_from_content_not_name(tmp_path: Path) -> None:
    records = [{"a": 1}, [1, 2], "text", 3]
    as_lines = write_lines(tmp_path / "records.json", records)
    as_array = write_json(tmp_path / "records.jsonl", records)
    expected = [b'data: {"a":1}\n\n', b"data: [1,2]\n\n", b"data: text\n\n", b"data: 3\n\n"]
    assert bodies(as_lines) == expected
    assert bodies(as_array) == expected


def test_pretty_printed_array_blank_lines_bom_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_bytes(b'\xef\xbb\xbf[\r\n  {"x": "\xc3\xa9"},\r\n\r\n  2\r\n]\r\n')
    assert bodies(path) == ['data: {"x":"é"}\n\n'.encode(), b"data: 2\n\n"]
    lines = tmp_path / "l.jsonl"
    lines.write_bytes(b'\xef\xbb\xbf{"x": 1}\r\n\r\n   \n{"x": 2}\n')
    assert bodies(lines) == [b'data: {"x":1}\n\n', b'data: {"x":2}\n\n']


def test_gzip_is_read_transparently(tmp_path: Path) -> None:
    path = tmp_path / "events.data"
    path.write_bytes(gzip.compress(b'{"n": 1}\n{"n": 2}\n'))
    assert bodies(path) == [b'data: {"n":1}\n\n', b'data: {"n":2}\n\n']


def test_strings_are_sent_as_text_and_newlines_split_into_data_lines(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "s.jsonl", ["[DONE]", "two\nlines", "a\r\nb\rc", "", "x\u2028y"])
    assert bodies(path) == [
        b"data: [DONE]\n\n",
        b"data: two\ndata: lines\n\n",
        b"data: a\ndata: b\ndata: c\n\n",
        b"data: \n\n",
        "data: x\u2028y\n\n".encode(),
    ]


def test_fields_with_dotted_paths(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "f.jsonl",
        [{"meta": {"kind": "tick", "ids": [7]}, "body": {"v": 1}}],
    )
    mapping = FieldMapping(data_field="body", event_field="meta.kind", id_field="meta.ids.0")
    event_file = load_event_file("f", path, mapping)
    cue = event_file.cues(0, 1)[0]
    assert cue.body == b'event: tick\ndata: {"v":1}\n\n'
    assert cue.id == "7"
    assert event_file.position_of("7") == 0


def test_big_integers_are_valid_records(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    path.write_text('{"n": 123456789012345678901234567890}\n')
    assert bodies(path) == [b'data: {"n":123456789012345678901234567890}\n\n']


def test_large_file_is_read_back_from_disk_in_ranges(tmp_path: Path) -> None:
    records = [{"n": n, "pad": "x" * 50} for n in range(2000)]
    for path in (
        write_lines(tmp_path / "a.jsonl", records),
        write_json(tmp_path / "b.json", records),
    ):
        event_file = load_event_file(path.name, path, FieldMapping(), memory_budget=1000)
        assert not event_file.in_memory
        middle = event_file.cues(700, 703)
        assert [json.loads(c.body[6:])["n"] for c in middle] == [700, 701, 702]
        assert len(event_file.cues(1990, 2000)) == 10


# Deeper than Python's json module recurses (orjson stops at 1,024 levels by itself).
DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "p.json: the file is empty"),
        (b"  \n\n", "p.json: the file is empty"),
        (b"[]", "p.json: the file holds no records"),
        (b'{"a": 1}\n{"a": 2\n', "p.json:2:"),
        (b'[\n {"a": 1},\n {"a" 2}\n]', "p.json:3:"),
        (b'[{"a": 1}', "the array is not closed"),
        (b'{\n  "a": 1\n}\n', "p.json:1:"),
        (b"[1, 2] x", "unexpected content after the closing ']'"),
        (b"[" + DEEP + b"]", "p.json:1:2: invalid JSON array (nested"),
        (DEEP + b"\n", "nested more than about 1,000 levels deep"),
        (b'{"n": 12345678901234567890, "a": ' + DEEP + b"}\n", "p.json:1: invalid JSON (nested"),
        # Read by orjson (1,024 levels), but deeper than json can write it back.
        (b'{"a": ' + b"[" * 1010 + b"]" * 1010 + b"}\n", "p.json:1: record 1: nested more"),
    ],
)
def test_broken_files_say_where(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "p.json"
    path.write_bytes(content)
    assert expected in error_of(path)


def test_missing_unreadable_and_directory(tmp_path: Path) -> None:
    assert "no such file" in error_of(tmp_path / "nope.json")
    assert "is a directory" in error_of(tmp_path)


@pytest.mark.parametrize(
    ("records", "mapping", "expected"),
    [
        (
            [{"a": 1}, {"b": 2}],
            FieldMapping(data_field="a"),
            'record 2: the record has no field "a"',
        ),
        (
            [{"t": "00:05"}, {"t": "00:03"}],
            FieldMapping(time_field="t"),
            "record 2: the time '00:03' is earlier",
        ),
        ([{"t": "soon"}], FieldMapping(time_field="t"), "record 1: cannot read the time 'soon'"),
        ([{"t": 1}, {"t": "00:02"}], FieldMapping(time_field="t"), "use one kind of time"),
        ([{"i": 1}, {"i": 1}], FieldMapping(id_field="i"), "record 2: duplicate id '1'"),
        ([{"i": "a\nb"}], FieldMapping(id_field="i"), "contains a line break"),
        ([{"i": "a\u0000b"}], FieldMapping(id_field="i"), "contains NUL"),
        ([{"e": "x\ry"}], FieldMapping(event_field="e"), "contains a line break"),
        ([{"e": 5}], FieldMapping(event_field="e"), "event type must be a non-empty string"),
        ([{"i": 1.5}], FieldMapping(id_field="i"), "id must be a string or an integer"),
    ],
)
def test_odd_records_say_which(
    tmp_path: Path, records: list[Any], mapping: FieldMapping, expected: str
) -> None:
    message = error_of(write_lines(tmp_path / "r.jsonl", records), mapping)
    assert message.startswith("r.jsonl:")
    assert expected in message


def test_times_of_every_kind(tmp_path: Path) -> None:
    cases = {
        "clock": ["00:01", "00:05", "01:00:10.5"],
        "number": [10, 10.25, 12],
        "iso": ["2026-01-01T00:00:00Z", "2026-01-01T00:00:01.5+00:00", "2026-01-01T01:00:02"],
    }
    expected = {
        "clock": [0, 4, 3609.5],
        "number": [0, 0.25, 2],
        "iso": [0, 1.5, 2],
    }
    for kind, values in cases.items():
        path = write_lines(tmp_path / f"{kind}.jsonl", [{"t": v} for v in values])
        event_file = load_event_file(kind, path, FieldMapping(time_field="t"))
        assert event_file.times is not None
        got = list(event_file.times)
        if kind == "iso":
            got[2] -= 3600
        assert got == pytest.approx(expected[kind]), kind


def test_invalid_utf8_and_a_broken_gzip_are_input_errors(tmp_path: Path) -> None:
    array = tmp_path / "bad-utf8.json"
    array.write_bytes(b'[\n"ok",\n"\xff\xfe"\n]')
    assert "bad-utf8.json:3: invalid JSON in a record" in error_of(array)
    lines = tmp_path / "bad-utf8.jsonl"
    lines.write_bytes(b'"ok"\n"\xff"\n')
    assert "bad-utf8.jsonl:2" in error_of(lines)
    whole = gzip.compress(b"".join(b'{"n": %d}\n' % n for n in range(5000)))
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    assert "cut.jsonl.gz: cannot be read to its end" in error_of(cut)


LINE_PIECES = [
    b'{"n": 1, "text": "caf\xc3\xa9"}',
    b"[1, 2, 3]",
    b'"[DONE]"',
    b"12345678901234567890123",  # beyond 64 bits: decoded exactly by the slow path
    b"",  # a blank line
    b"   \r",  # whitespace only, with the CR of a CRLF file
    b'{"crlf": true}\r',
    b"null",
]


@settings(max_examples=150, deadline=None)
@given(
    pieces=st.lists(st.sampled_from(LINE_PIECES), min_size=1, max_size=40),
    bom=st.booleans(),
    final_newline=st.booleans(),
    bad_at=st.one_of(st.none(), st.integers(min_value=0, max_value=39)),
    block_size=st.sampled_from([7, 64, 1 << 20]),
)
def test_quick_line_index_matches_the_line_by_line_check(
    pieces: list[bytes],
    bom: bool,
    final_newline: bool,
    bad_at: int | None,
    block_size: int,
) -> None:
    if bad_at is not None and bad_at < len(pieces):
        pieces = [*pieces[:bad_at], b'{"broken": ', *pieces[bad_at:]]
    content = (UTF8_BOM if bom else b"") + b"\n".join(pieces) + (b"\n" if final_newline else b"")

    expected_offsets, expected_count, expected_error = [], 0, None
    try:
        for position, _, raw in iter_lines(io.BytesIO(content)):
            loads(raw)
            if expected_count % 3 == 0:
                expected_offsets.append(position)
            expected_count += 1
    except ValueError:
        expected_error = next(
            line for position, line, raw in iter_lines(io.BytesIO(content)) if not _valid(raw)
        )

    with mock.patch("sseplay.records.BLOCK_SIZE", block_size):
        if expected_error is not None:
            with pytest.raises(BadLine) as caught:
                index_lines(io.BytesIO(content), stride=3)
            assert caught.value.line == expected_error
        else:
            count, offsets = index_lines(io.BytesIO(content), stride=3)
            assert count == expected_count
            assert list(offsets) == expected_offsets


def _valid(raw: bytes) -> bool:
    try:
        loads(raw)
    except ValueError:
        return False
    return True


def test_a_large_plain_file_is_checked_quickly_and_served_from_disk(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "big.jsonl", [{"n": n} for n in range(1000)])
    (tmp_path / "bad.jsonl").write_bytes(path.read_bytes() + b'{"n": \n')
    quick = load_event_file("big.jsonl", path, FieldMapping(event_type="tick"), memory_budget=100)
    assert not quick.in_memory
    assert quick.count == 1000
    assert quick.event_types == frozenset({"tick"})
    assert [cue.body for cue in quick.cues(998, 1000)] == [
        b'event: tick\ndata: {"n":998}\n\n',
        b'event: tick\ndata: {"n":999}\n\n',
    ]
    with pytest.raises(InputError, match=r"bad.jsonl:1001:7: invalid JSON"):
        load_event_file("bad.jsonl", tmp_path / "bad.jsonl", FieldMapping(), memory_budget=100)


def _scanned(content: bytes, stride: int) -> tuple[int, list[int]] | None:
    """What the element-by-element check finds: (count, offsets), None when invalid."""
    scanner = ArrayScanner(io.BytesIO(content))
    count, offsets = 0, []
    try:
        scanner.open_array()
        for position, _, raw in scanner.elements():
            loads(raw)
            if count % stride == 0:
                offsets.append(position)
            count += 1
        if scanner.trailing_content():
            return None
    except (Malformed, ValueError):
        return None
    return count, offsets


ARRAY_ELEMENTS = [
    {"n": 1, "text": "caf\u00e9"},
    {"n": 2, "text": "}, {"},  # the compact separator inside a string
    {"n": 3, "nested": [{"a": 1}, {"b": 2}]},
    {"n": 4, "text": "},\n  {"},  # the pretty separator inside a string
    [1, 2],
    "[DONE]",
    12345678901234567890123,
]


@settings(max_examples=200, deadline=None)
@given(
    elements=st.lists(st.sampled_from(ARRAY_ELEMENTS), min_size=1, max_size=30),
    indent=st.sampled_from([None, 2, 4]),
    bom=st.booleans(),
    damage=st.sampled_from([None, "truncate", "trailing", "bad-utf8", "odd-space"]),
    block_size=st.sampled_from([16, 200, 1 << 20]),
)
def test_quick_array_index_never_disagrees_with_the_element_by_element_check(
    elements: list[Any], indent: int | None, bom: bool, damage: str | None, block_size: int
) -> None:
    content = (UTF8_BOM if bom else b"") + json.dumps(elements, indent=indent).encode() + b"\n"
    if damage == "truncate":
        content = content[: len(content) // 2]
    elif damage == "trailing":
        content += b"x"
    elif damage == "bad-utf8":
        content = content.replace(b"caf", b"\xff", 1)
    elif damage == "odd-space":  # one separator unlike the others
        content = content.replace(b",", b" ,", 1)
    with mock.patch("sseplay.records.BLOCK_SIZE", block_size):
        quick = index_array(io.BytesIO(content), stride=3)
    if quick is not None:  # None hands the file to the full check, which is always right
        assert (quick[0], list(quick[1])) == _scanned(content, stride=3)


@pytest.mark.parametrize("indent", [None, 2])
def test_quick_array_index_takes_the_usual_layouts(indent: int | None) -> None:
    records = [{"n": n, "tags": ["a", "b"], "text": "x" * (n % 5)} for n in range(500)]
    content = json.dumps(records, indent=indent).encode()
    one_per_line = ("[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]\n").encode()
    with mock.patch("sseplay.records.BLOCK_SIZE", 1000):
        for layout in (content, one_per_line):
            quick = index_array(io.BytesIO(layout), stride=7)
            assert quick is not None
            assert (quick[0], list(quick[1])) == _scanned(layout, stride=7)


def test_a_large_array_is_checked_quickly_and_still_says_where_it_is_broken(
    tmp_path: Path,
) -> None:
    path = write_json(tmp_path / "big.json", [{"n": n} for n in range(1000)])
    full_check = mock.patch(
        "sseplay.eventfile_index.Indexer._index_fully",
        side_effect=AssertionError("the full check ran"),
    )
    with full_check:
        quick = load_event_file("big.json", path, FieldMapping(), memory_budget=100)
    assert not quick.in_memory
    assert quick.count == 1000
    assert [cue.body for cue in quick.cues(998, 1000)] == [
        b'data: {"n":998}\n\n',
        b'data: {"n":999}\n\n',
    ]
    broken = tmp_path / "broken.json"
    broken.write_bytes(path.read_bytes().replace(b'{"n": 999}', b'{"n": 999'))
    with pytest.raises(InputError, match=r"broken.json:1:\d+: invalid JSON array"):
        load_event_file("broken.json", broken, FieldMapping(), memory_budget=100)


def test_quick_array_index_gives_up_early_on_an_array_laid_out_otherwise() -> None:
    """Two elements set the separator; if the rest never uses it, the fast check must not
    read the whole file into memory looking for it."""
    content = b'[{"a": 1},{"b": 2},' + b", ".join(b"%d" % n for n in range(20_000)) + b"]"
    stream = io.BytesIO(content)
    with mock.patch("sseplay.records.BLOCK_SIZE", 1000):
        assert index_array(stream, stride=3) is None
    assert stream.tell() <= 18 * 1000  # 16 blocks and a little, not the whole file
    assert len(content) > 100_000
    assert _scanned(content, stride=3) is not None  # the full check takes it


HEADER = '{"sseplay": "recording", "version": 1}'


@pytest.mark.parametrize(
    ("name", "lines", "mapping", "message"),
    [
        (
            "r.jsonl",
            [HEADER],
            FieldMapping(),
            "r.jsonl: the file holds no records: nothing to replay",
        ),
        (
            "r.json",
            [f"[{HEADER},", '{"data": "x"}]'],
            FieldMapping(),
            "r.json:1: a recording must be JSON Lines",
        ),
        (
            "r.jsonl",
            [HEADER, '{"data": "x"}'],
            FieldMapping(event_type="tick"),
            "r.jsonl:1: this is a recording from 'sseplay tail --record': it replays as "
            "recorded, so drop --data-field/--event-field/--id-field/--event-type/--time-field",
        ),
        (
            "r.jsonl",
            [
                HEADER,
                '{"data": "x", "id": "a"}',
                '{"data": "y", "id": "b"}',
                '{"data": "z", "id": "a"}',
            ],
            FieldMapping(),
            "r.jsonl:4: record 3: duplicate id 'a' (record 1 has it too): ids must be unique "
            "for resuming to work",
        ),
        (
            "r.jsonl",
            [HEADER, '{"data": "x", "offset": 2}', '{"data": "y", "offset": 1}'],
            FieldMapping(),
            "r.jsonl:3: record 2: the time 1 is earlier than the record before it (2): sort "
            "the records by time",
        ),
        (
            "t.jsonl",
            ['{"t": 1}', '{"t": "00:02"}'],
            FieldMapping(time_field="t"),
            "t.jsonl:2: record 2: the time '00:02' is a clock, but record 1 has a number: use "
            "one kind of time throughout",
        ),
        (
            "t.jsonl",
            ['{"t": 1}', '{"t": "' + "9" * 40 + '"}'],
            FieldMapping(time_field="t"),
            "t.jsonl:2: record 2: cannot read the time '99999999999999999999999... (42 "
            "characters): out of range",
        ),
    ],
)
def test_every_check_of_the_full_pass_says_where_and_what(
    tmp_path: Path, name: str, lines: list[str], mapping: FieldMapping, message: str
) -> None:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as caught:
        load_event_file(name, path, mapping)
    assert str(caught.value).startswith(message)


def test_a_recording_may_repeat_the_id_of_the_event_before(tmp_path: Path) -> None:
    """A server that sends no new id keeps the last one (WHATWG 9.2.6): tail records it."""
    path = tmp_path / "r.jsonl"
    events = ['{"data": "x", "id": "a"}', '{"data": "y", "id": "a"}', '{"data": "z"}']
    path.write_text("\n".join([HEADER, *events]) + "\n")
    file = load_event_file("r.jsonl", path, FieldMapping())
    assert file.count == 3
    assert file.id_positions == {"a": 1}
    assert list(file.times or []) == [0.0, 0.0, 0.0]
