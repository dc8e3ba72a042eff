"""The recording format: written by ``sseplay tail --record``, replayed by ``sseplay serve``.

A recording is JSON Lines (one compact JSON object a line, ``json_line``). The first
line is a header, every other line the envelope of one event as ``tail`` received it::

    {"sseplay":"recording","version":1,"url":"http://...","started":"2026-...+00:00"}
    {"offset":0.012,"event":"message","id":"1","data":"{\\"n\\":1}"}
    {"offset":0.5,"event":"tick","id":null,"data":"two\\nlines","retry":3000}

``offset`` is seconds since ``tail`` started; ``retry`` is present only where the
server's reconnection time changed (or the event carried its own). Both sides of the
format live here, and nothing here imports the server stack or the file indexer:
``sseplay tail`` loads this module at start-up.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, NamedTuple, cast

import orjson

from sseplay.errors import InputError, OutputFailed, UsageError
from sseplay.model import DEFAULT_EVENT_TYPE, Cue, Event, check_field, encode_without_id

# The first line of a recording: {"sseplay": "recording", "version": 1, ...}.
RECORDING_KEY = "sseplay"
RECORDING_MARK = "recording"
RECORDING_VERSION = 1
_GZIP_MAGIC = b"\x1f\x8b"


def json_line(item: dict[str, Any]) -> str:
    """One compact JSON object and a newline. U+2028 and U+2029 are escaped: JSON allows
    them raw, but line-splitting tools (and str.splitlines) treat them as line ends."""
    text = orjson.dumps(item).decode()
    if "\u2028" in text or "\u2029" in text:
        text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return text + "\n"


def recording_header(url: str) -> dict[str, Any]:
    return {
        RECORDING_KEY: RECORDING_MARK,
        "version": RECORDING_VERSION,
        "url": url,
        "started": datetime.now(UTC).isoformat(timespec="milliseconds"),
    }


def is_header(record: Any) -> bool:
    """Whether a decoded record is the first line of a recording."""
    return isinstance(record, dict) and record.get(RECORDING_KEY) == RECORDING_MARK


# ---- reading -------------------------------------------------------------------------


def recorded_event(record: Any) -> tuple[Event, Any]:
    """(the event an envelope records, as ``serve`` sends it again; its raw ``offset``).

    An empty type is the default type, an empty id no id, and a ``retry`` that is not a
    whole number of milliseconds is ignored, as a browser ignores it (WHATWG 9.2.6).
    Raises ValueError saying what is wrong with the envelope."""
    if not isinstance(record, dict) or not isinstance(record.get("data"), str):
        raise ValueError('a recorded event must be an object with a string "data"')
    event_type = record.get("event", DEFAULT_EVENT_TYPE)
    event_id = record.get("id")
    if not isinstance(event_type, str) or not isinstance(event_id, str | None):
        raise ValueError('"event" and "id" of a recorded event must be strings')
    check_field("event type", event_type)
    if event_id:
        check_field("id", event_id)
    retry = record.get("retry")
    if isinstance(retry, bool) or not isinstance(retry, int) or retry < 0:
        retry = None
    event = Event(record["data"], event_type or DEFAULT_EVENT_TYPE, event_id or None, retry)
    return event, record.get("offset", 0)


def recorded_cue(record: Any) -> tuple[Cue, Any]:
    """An envelope ready to serve: (its cue, its raw ``offset``); ValueError when invalid."""
    event, offset = recorded_event(record)
    return Cue(event.id, encode_without_id(event)), offset


class RecordedEvent(NamedTuple):
    """One event of a recording: seconds since the recording started, and the event."""

    offset: float
    event: Event


def read_recording(path: str | Path) -> Iterator[RecordedEvent]:
    """The events of a recording file in order (plain or gzip). Raises InputError
    (``file:line: what is wrong``) for a file that is not a recording or a bad line."""
    label = str(path)
    try:
        with _open(Path(path)) as stream:
            yield from _read_events(label, stream)
    except OSError as error:
        raise InputError(label, f"cannot be read: {error.strerror or error}") from None
    except EOFError as error:  # a gzip stream that breaks off
        raise InputError(label, f"cannot be read to its end: {error}") from None


def _open(path: Path) -> IO[bytes]:
    with path.open("rb") as stream:
        compressed = stream.read(2) == _GZIP_MAGIC
    if not compressed:
        return path.open("rb")
    import gzip  # only for a compressed recording

    return cast(IO[bytes], gzip.open(path, "rb"))


def _read_events(label: str, stream: IO[bytes]) -> Iterator[RecordedEvent]:
    # The JSON Lines splitter of every reader of sseplay: LF ends a line (a recording's
    # data may hold U+2028 or U+0085 raw), a UTF-8 byte-order mark is skipped, and no
    # line is read past the record limit ``serve`` has too. Imported here: tail, which
    # writes recordings, loads this module at start-up and never reads one.
    from sseplay import records

    header_seen = False
    lines = records.iter_lines(stream, max_record=records.MAX_RECORD_BYTES)
    while True:
        try:
            _, line_number, line = next(lines)
        except StopIteration:
            break
        except records.RecordTooLong as error:
            raise InputError(f"{label}:{error.line}", _too_long(error.limit)) from None
        try:
            record = orjson.loads(line)
            if not header_seen:
                if not is_header(record):
                    raise ValueError(
                        "not a recording: the first line of a file written by "
                        "'sseplay tail --record' is its header"
                    )
                header_seen = True
                continue
            event, offset = recorded_event(record)
            yield RecordedEvent(_seconds(offset), event)
        except ValueError as error:
            raise InputError(f"{label}:{line_number}", str(error)) from None
    if not header_seen:
        raise InputError(label, "the file is empty: a recording starts with its header line")


def _too_long(limit: int) -> str:
    shown = f"{limit >> 20} MiB" if limit % (1 << 20) == 0 else f"{limit:,} bytes"
    return (
        f"a record longer than {shown}, the most sseplay reads as one line: "
        "check that this is a recording"
    )


def _seconds(offset: Any) -> float:
    if isinstance(offset, bool) or not isinstance(offset, int | float):
        raise ValueError(f"the offset {offset!r} is not a number of seconds")
    if not math.isfinite(offset) or offset < 0:
        raise ValueError(f"the offset {offset!r} is not a time since the recording started")
    return float(offset)


# ---- writing -------------------------------------------------------------------------


class Recorder:
    """Writes ``--record`` files: a header line, then an envelope per event that
    ``sseplay serve`` replays with the original types, ids, retry and timing.

    The file only ever holds whole lines: each chunk's lines are written together, and a
    write that fails (disk full, file too large) is cut back to the last whole line
    before the error is raised."""

    def __init__(self, path: Path, url: str, started: float) -> None:
        self.path = path
        self.started = started
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        except OSError as error:
            raise UsageError(f"--record {path}: cannot write: {error.strerror}") from None
        self._pending: list[bytes] = [json_line(recording_header(url)).encode()]
        self._written = 0  # bytes of whole lines in the file
        self._events = 0  # events in the file
        self._pending_events = 0
        self._retry: int | None = None  # the reconnection time last written
        self.flush()

    def event(self, event: Event, stream_retry: int | None) -> None:
        envelope: dict[str, Any] = {
            "offset": round(time.monotonic() - self.started, 6),
            "event": event.event,
            "id": event.id,
            "data": event.data,
        }
        # A server usually sends retry: in a block of its own, which dispatches no event
        # (WHATWG 9.2.6); the stream's reconnection time goes with the next event instead.
        retry = event.retry if event.retry is not None else stream_retry
        if retry is not None and (event.retry is not None or retry != self._retry):
            envelope["retry"] = self._retry = retry
        self._pending.append(json_line(envelope).encode())
        self._pending_events += 1

    def flush(self) -> None:
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        done = 0
        try:
            while done < len(data):
                done += os.write(self._fd, data[done:])
        except OSError as error:
            with contextlib.suppress(OSError):  # a device (/dev/full) cannot be truncated
                os.ftruncate(self._fd, self._written)
            raise OutputFailed(
                f"--record {self.path}: {error.strerror or error}; "
                f"it holds the first {self._events} events, in whole lines"
            ) from None
        self._written += done
        self._events += self._pending_events
        self._pending_events = 0

    def close(self) -> None:
        os.close(self._fd)
