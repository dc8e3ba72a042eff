"""``read_recording`` splits JSON Lines with the one splitter every reader of sseplay
uses (``sseplay.records.iter_lines``): its byte-order mark and its record limit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import sseplay.records
from sseplay.errors import InputError
from sseplay.model import Event
from sseplay.recording import RecordedEvent, read_recording

HEADER = b'{"sseplay":"recording","version":1,"url":"http://h/e","started":"2026-01-01"}\n'


def test_a_recording_saved_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + HEADER + b'{"offset":0.5,"data":"x"}\n')
    assert list(read_recording(path)) == [RecordedEvent(0.5, Event("x"))]


def test_a_line_longer_than_the_record_limit_is_refused_at_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sseplay.records, "MAX_RECORD_BYTES", 1000)
    path = tmp_path / "long.jsonl"
    long_line = json.dumps({"offset": 0, "data": "y" * 2000}).encode() + b"\n"
    path.write_bytes(HEADER + b'{"data":"x"}\n' + long_line)
    with pytest.raises(InputError) as caught:
        list(read_recording(path))
    assert caught.value.where == f"{path}:3"
    assert "a record longer than 1,000 bytes" in caught.value.problem


def test_only_lf_ends_a_line(tmp_path: Path) -> None:
    path = tmp_path / "seps.jsonl"
    data = "a\u2028b\x85c\x1cd\re"
    path.write_bytes(HEADER + json.dumps({"data": data}, ensure_ascii=False).encode() + b"\n")
    assert [event.data for _, event in read_recording(path)] == [data]
