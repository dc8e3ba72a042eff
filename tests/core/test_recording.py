"""The recording format, both sides: ``Recorder`` writes it, ``read_recording`` and
``serve`` read it back. The bytes are pinned: recordings are committed as fixtures."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest

from sseplay.errors import InputError
from sseplay.eventfile import FieldMapping, load_event_file
from sseplay.model import Event
from sseplay.recording import RecordedEvent, Recorder, read_recording, recorded_cue

# What sseplay wrote for these events before the format moved into sseplay.recording.
ENVELOPES = (
    b'{"offset":0.0,"event":"message","id":null,"data":"plain"}\n'
    b'{"offset":0.0,"event":"tick","id":"7","data":"two\\nlines \\u2028 \xf0\x9f\x8e\x89'
    b' \\u0000","retry":3000}\n'
    b'{"offset":0.5,"event":"message","id":"","data":"","retry":50}\n'
    b'{"offset":1.25,"event":"message","id":null,"data":"{\\"a\\":1}","retry":3000}\n'
)
# And what serve sent for them (without the id lines, which depend on the replay).
BODIES = [
    b"data: plain\n\n",
    b"retry: 3000\nevent: tick\ndata: two\ndata: lines \xe2\x80\xa8 \xf0\x9f\x8e\x89 \x00\n\n",
    b"retry: 50\ndata: \n\n",
    b'retry: 3000\ndata: {"a":1}\n\n',
]


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    path = tmp_path / "rec.jsonl"
    clock = iter([100.0, 100.0000004, 100.5, 101.25])
    with mock.patch("sseplay.recording.time.monotonic", side_effect=clock):
        recorder = Recorder(path, "http://127.0.0.1:1/events", 100.0)
        recorder.event(Event("plain"), None)
        recorder.event(Event("two\nlines \u2028 🎉 \x00", "tick", "7"), 3000)
        recorder.event(Event("", "message", "", 50), 3000)
        recorder.event(Event('{"a":1}'), 3000)
        recorder.flush()
        recorder.close()
    return path


def test_the_recorder_writes_the_same_bytes_as_before(recording: Path) -> None:
    header, _, envelopes = recording.read_bytes().partition(b"\n")
    assert envelopes == ENVELOPES
    fields = json.loads(header)
    assert fields["sseplay"] == "recording"
    assert fields["version"] == 1
    assert fields["url"] == "http://127.0.0.1:1/events"
    assert list(fields) == ["sseplay", "version", "url", "started"]


def test_serve_reads_a_recording_into_the_same_bytes_as_before(recording: Path) -> None:
    file = load_event_file("rec.jsonl", recording, FieldMapping())
    assert file.recording
    assert [cue.body for cue in file.cues(0, file.count)] == BODIES
    assert [cue.id for cue in file.cues(0, file.count)] == [None, "7", None, None]
    assert list(file.times or []) == [0.0, 0.0, 0.5, 1.25]
    assert file.event_types == {"message", "tick"}


def test_read_recording_yields_the_events_with_their_offsets(recording: Path) -> None:
    assert list(read_recording(recording)) == [
        RecordedEvent(0.0, Event("plain")),
        RecordedEvent(0.0, Event("two\nlines \u2028 🎉 \x00", "tick", "7", 3000)),
        RecordedEvent(0.5, Event("", "message", None, 50)),
        RecordedEvent(1.25, Event('{"a":1}', "message", None, 3000)),
    ]


def test_read_recording_reads_gzip(recording: Path, tmp_path: Path) -> None:
    packed = tmp_path / "rec.jsonl.gz"
    packed.write_bytes(gzip.compress(recording.read_bytes()))
    assert list(read_recording(packed)) == list(read_recording(recording))


def test_what_read_recording_yields_is_what_serve_sends(recording: Path) -> None:
    lines = recording.read_bytes().splitlines()[1:]
    for line, (_, event) in zip(lines, read_recording(recording), strict=True):
        cue, _ = recorded_cue(json.loads(line))
        assert cue.id == event.id


@pytest.mark.parametrize(
    ("content", "where", "problem"),
    [
        (b'{"data": "x"}\n', ":1", "not a recording"),
        (b"", "", "the file is empty"),
        (b'{"sseplay": "recording"}\n{"data": 1}\n', ":2", 'a string "data"'),
        (b'{"sseplay": "recording"}\n{"data": "x", "event": "a\\nb"}\n', ":2", "line break"),
        (b'{"sseplay": "recording"}\n\n{"data": "x", "offset": "soon"}\n', ":3", "'soon'"),
        (b'{"sseplay": "recording"}\n{"data": "x"\n', ":2", ""),
    ],
)
def test_read_recording_says_where_and_what(
    tmp_path: Path, content: bytes, where: str, problem: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(InputError) as caught:
        list(read_recording(path))
    assert caught.value.where == f"{path}{where}"
    assert problem in caught.value.problem


def test_read_recording_of_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot be read"):
        list(read_recording(tmp_path / "none.jsonl"))


def test_tail_start_up_loads_neither_the_indexer_nor_the_server_stack() -> None:
    """``sseplay tail`` needs the writer only: not the file readers ``serve`` uses."""
    probe = (
        "import sys\n"
        "import sseplay.recording, sseplay.client.render\n"
        "loaded = {m for m in sys.modules if m.split('.')[0] in "
        "('sseplay', 'fastapi', 'uvicorn', 'sse_starlette', 'starlette')}\n"
        "print(sorted(loaded & {'sseplay.eventfile', 'sseplay.records', 'sseplay.config', "
        "'fastapi', 'uvicorn', 'sse_starlette', 'starlette'}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
