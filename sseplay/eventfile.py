"""Event files: validated once at start-up, then read back in ranges while serving.

``load_event_file`` checks every record before a socket opens, so a bad file
fails with ``file:line: what is wrong`` and never halfway through a replay. It
keeps only what serving needs: a byte offset every ``CHECKPOINT_STRIDE``
records, the time offsets of a timed replay, and, when the encoded events are
small enough, the events themselves.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import stat
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson

from sseplay.config import FieldMapping as FieldMapping  # re-exported: loading takes it
from sseplay.errors import InputError
from sseplay.model import DEFAULT_EVENT_TYPE, check_field, encode_body, event_type_of
from sseplay.model import Cue as Cue  # re-exported: replay takes it
from sseplay.recording import is_header, recorded_cue
from sseplay.records import (
    MAX_RECORD_BYTES,
    TOO_DEEP,
    ArrayScanner,
    BadLine,
    Layout,
    Malformed,
    RecordTooLong,
    index_array,
    index_lines,
    is_gzip,
    iter_lines,
    line_and_column,
    loads,
    open_binary,
    sniff_layout,
)

CHECKPOINT_STRIDE = 256
MAX_LISTED_TYPES = 200
# Encoded events are kept in memory up to this size; a larger file is read back
# from disk in ranges instead, so memory stays flat however large the file is.
DEFAULT_MEMORY_BUDGET = 64 << 20


_MISSING = object()


def lookup(record: Any, path: str) -> Any:
    """The value at a dotted path (``a.b.0``), or ``_MISSING``; an exact key wins over a path."""
    if isinstance(record, dict) and path in record:
        return record[path]
    value = record
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


# One nesting limit on every Python: json's C encoder stops where the interpreter's C
# recursion limit does (about 990 levels on 3.11, 1,500 on 3.12, 10,000 on 3.13), so
# without it the same file would load on one Python and fail on another.
MAX_DEPTH = 1000


def nested_deeper_than(value: Any, limit: int) -> bool:
    """Whether lists and objects in ``value`` nest more than ``limit`` levels (no recursion)."""
    level = [value] if isinstance(value, list | dict) else []
    for _ in range(limit):
        level = [
            child
            for node in level
            for child in (node.values() if isinstance(node, dict) else node)
            if isinstance(child, list | dict)
        ]
        if not level:
            return False
    return bool(level)


def compact_json(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # beyond 64 bits or 255 levels: orjson refuses what json accepts
        if nested_deeper_than(value, MAX_DEPTH):
            raise ValueError(TOO_DEEP) from None
        try:
            return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        except RecursionError:
            raise ValueError(TOO_DEEP) from None


def as_text(value: Any) -> str:
    """A JSON string is sent as its text (``"[DONE]"`` -> ``[DONE]``), anything else as JSON."""
    return value if isinstance(value, str) else compact_json(value)


_CLOCK = re.compile(r"^(\d+):([0-5]?\d)(?::([0-5]?\d))?(\.\d+)?$", re.ASCII)
# Seconds written as a string: plain decimal notation only. Python's float() would also
# take "nan", "inf", "1_000" and "1e400", none of which is a time a person writes.
_DECIMAL_SECONDS = re.compile(r"^-?\d+(\.\d+)?$", re.ASCII)
# The largest time value, in seconds either way of zero (about 31 million years): far
# beyond any timestamp, still exact to the microsecond as a 64-bit float.
MAX_TIME_SECONDS = 10**15
TIME_FORMS = (
    "write seconds as a number (12.5), a clock (00:05 or 01:02:03) or an ISO-8601 "
    "timestamp (2026-01-01T00:00:05Z)"
)


def _in_range(seconds: int | float) -> float:
    # Compared before float() so that a 400-digit integer is refused, not an OverflowError.
    if not -MAX_TIME_SECONDS <= seconds <= MAX_TIME_SECONDS:
        raise _out_of_range()
    return float(seconds)


def _out_of_range() -> ValueError:
    return ValueError(
        f"out of range: a time is at most {MAX_TIME_SECONDS:,} seconds either way of zero; "
        + TIME_FORMS
    )


def _integer(digits: str) -> int:
    # int() refuses more than 4,300 digits with advice about the interpreter; more
    # than 16 significant digits is out of range in any case.
    if len(digits.lstrip("-").lstrip("0")) > 16:
        raise _out_of_range()
    return int(digits)


def parse_time(value: Any) -> tuple[str, float]:
    """(kind, seconds) of a time value: a number, a clock string or an ISO-8601 timestamp.

    Every value is finite and within MAX_TIME_SECONDS; anything else raises ValueError
    saying which forms are accepted."""
    if isinstance(value, bool):
        raise ValueError(f"true/false is not a time: {TIME_FORMS}")
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"not a finite number: {TIME_FORMS}")
        return "number", _in_range(value)
    if not isinstance(value, str):
        raise ValueError(TIME_FORMS)
    text = value.strip()
    clock = _CLOCK.match(text)
    if clock:
        first, second, third, fraction = clock.groups()
        hours, minutes, seconds = (
            (_integer(first), int(second), int(third))
            if third is not None
            else (0, _integer(first), int(second))
        )
        whole = _in_range(hours * 3600 + minutes * 60 + seconds)
        return "clock", whole + float(fraction or 0)
    if _DECIMAL_SECONDS.match(text):
        _in_range(_integer(text.partition(".")[0]))  # before float()
        return "number", float(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(TIME_FORMS) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return "timestamp", moment.timestamp()


def _shorten(text: str, keep: int = 24) -> str:
    return text if len(text) <= keep else f"{text[:keep]}... ({len(text)} characters)"


class RecordMapper:
    """Turns one decoded record into a cue (and its time), or says what is wrong with it."""

    def __init__(self, mapping: FieldMapping, recording: bool) -> None:
        self.mapping = mapping
        self.recording = recording

    def cue(self, record: Any) -> tuple[Cue, Any]:
        """(cue, raw time value or None)."""
        if self.recording:
            return recorded_cue(record)
        mapping = self.mapping
        data = record
        if mapping.data_field is not None:
            data = self._field(record, mapping.data_field, "--data-field")
        body = encode_body(as_text(data), self._event_type(record))
        event_id = self._event_id(record)
        raw_time = None
        if mapping.time_field is not None:
            raw_time = self._field(record, mapping.time_field, "--time-field")
        return Cue(event_id, body), raw_time

    def _field(self, record: Any, path: str, flag: str) -> Any:
        value = lookup(record, path)
        if value is _MISSING:
            raise ValueError(f'the record has no field "{path}" (check {flag}, or fix the record)')
        return value

    def _event_type(self, record: Any) -> str:
        if self.mapping.event_field is None:
            return self.mapping.event_type or DEFAULT_EVENT_TYPE
        value = self._field(record, self.mapping.event_field, "--event-field")
        if not isinstance(value, str) or not value:
            raise ValueError(f"the event type must be a non-empty string, not {value!r}")
        return check_field("event type", value)

    def _event_id(self, record: Any) -> str | None:
        if self.mapping.id_field is None:
            return None
        value = self._field(record, self.mapping.id_field, "--id-field")
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ValueError(f"the id must be a string or an integer, not {value!r}")
        return check_field("id", str(value))


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class EventFile:
    """A validated event file; ``cues(start, stop)`` reads events back (blocking I/O).

    Made by ``load_event_file`` only (``_Indexer._event_file``)."""

    label: str
    path: Path
    compressed: bool
    layout: Layout
    recording: bool
    count: int
    times: array[float] | None  # offsets of a timed replay, from the first record
    id_positions: dict[str, int] | None  # None: ids are positions (1, 2, ...)
    # The types this file sends (up to MAX_LISTED_TYPES), for the viewer's listeners.
    event_types: frozenset[str] = frozenset()
    mapper: RecordMapper  # how a record read back becomes a cue
    checkpoints: array[int]  # the byte offset of every CHECKPOINT_STRIDE-th record
    cached: list[Cue] | None  # every cue, when they fit in the memory budget

    @property
    def positional_ids(self) -> bool:
        return self.id_positions is None

    def position_of(self, event_id: str) -> int | None:
        """The index of the record an id names, within one round; None when unknown."""
        if self.id_positions is not None:
            return self.id_positions.get(event_id)
        if event_id.isdigit() and 1 <= int(event_id) <= self.count:
            return int(event_id) - 1
        return None

    def cues(self, start: int, stop: int) -> list[Cue]:
        """Records ``start`` to ``stop`` (exclusive) of one round. Blocking: call from a thread
        unless the events are cached (``in_memory``)."""
        if self.cached is not None:
            return self.cached[start:stop]
        return list(self._read(start, stop))

    @property
    def in_memory(self) -> bool:
        return self.cached is not None

    def _read(self, start: int, stop: int) -> Iterator[Cue]:
        checkpoint = start // CHECKPOINT_STRIDE
        offset = self.checkpoints[checkpoint]
        index = checkpoint * CHECKPOINT_STRIDE
        with open_binary(self.path, self.compressed) as stream:
            stream.seek(offset)
            if self.layout == "lines":
                raw_records: Iterator[tuple[int, int, bytes]] = iter_lines(stream, offset)
            else:
                raw_records = ArrayScanner(stream, offset).elements(at_open=False)
            for _, _, raw in raw_records:
                if index >= stop:
                    return
                if index >= start:
                    yield self.mapper.cue(loads(raw))[0]
                index += 1


# How the start-up check reports its progress: (bytes read so far, bytes in all), counted
# in bytes of the file on disk. Called about once per MiB read.
ProgressCallback = Callable[[int, int], None]


def load_event_file(
    label: str,
    path: Path,
    mapping: FieldMapping,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    *,
    max_record_bytes: int = MAX_RECORD_BYTES,
    on_progress: ProgressCallback | None = None,
    prefix: int | None = None,
) -> EventFile:
    """Check every record of a file and index it for serving; raise InputError on anything bad.

    ``path`` must be a regular file: a pipe or a device is read once only, so it is spooled
    first (``sseplay.spool``). No record may be longer than ``max_record_bytes``.
    ``prefix``: read only the file's first bytes, up to there (a file that is still being
    written, followed from there on: ``sseplay.sources.follow``); the file must not be gzip."""
    _require_regular_file(label, path)
    compressed, layout = _sniff(label, path, prefix)
    on_read = None if on_progress is None or prefix is not None else _reporter(path, on_progress)
    indexer = _Indexer(
        label, path, compressed, layout, mapping, memory_budget, max_record_bytes, on_read, prefix
    )
    try:
        return indexer.run()
    except RecordTooLong as error:
        raise indexer.too_long(error) from None
    except (OSError, EOFError) as error:  # a gzip stream that breaks off or is corrupt
        raise InputError(label, f"cannot be read to its end: {error}") from None


def _unreadable(label: str, error: OSError) -> InputError:
    if isinstance(error, FileNotFoundError):
        return InputError(label, "no such file: check the path")
    if isinstance(error, PermissionError):
        return InputError(label, "permission denied: the file cannot be read")
    return InputError(label, f"cannot be read: {error.strerror}")


def _require_regular_file(label: str, path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError as error:
        raise _unreadable(label, error) from None
    if stat.S_ISDIR(mode):
        raise InputError(label, "is a directory, not an event file: name a .json or .jsonl file")
    if not stat.S_ISREG(mode):
        raise InputError(
            label, "is a pipe or a device, not a regular file: copy it to a file (spool it) first"
        )


def _sniff(label: str, path: Path, prefix: int | None = None) -> tuple[bool, Layout]:
    """(whether the file is gzip, its layout); InputError for an empty or unreadable file."""
    try:
        compressed = is_gzip(path)
        with open_binary(path, compressed, limit=prefix) as stream:
            layout = sniff_layout(stream)
    except (FileNotFoundError, PermissionError) as error:
        raise _unreadable(label, error) from None
    except (OSError, EOFError) as error:  # a broken gzip stream, an I/O error
        raise InputError(label, f"cannot be read to its end: {error}") from None
    if layout is None:
        raise InputError(label, "the file is empty: it needs a JSON array or JSON Lines")
    return compressed, layout


def _reporter(path: Path, on_progress: ProgressCallback) -> Callable[[int], None]:
    total = path.stat().st_size

    def on_read(done: int) -> None:
        on_progress(done, total)

    return on_read


@dataclass(slots=True)
class _Found:
    """What the check of a file found: all that serving it needs."""

    count: int
    checkpoints: array[int]
    recording: bool = False
    times: array[float] | None = None
    id_positions: dict[str, int] | None = None  # None: ids are positions
    cached: list[Cue] | None = None
    event_types: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class _Indexer:
    """The one pass over a file that validates it and builds the EventFile."""

    label: str
    path: Path
    compressed: bool
    layout: Layout
    mapping: FieldMapping
    memory_budget: int
    max_record: int = MAX_RECORD_BYTES
    on_read: Callable[[int], None] | None = None
    prefix: int | None = None

    def run(self) -> EventFile:
        found = None
        if not self._needs_each_record():
            found = self._index_quickly()
        if found is None:
            found = self._index_fully()
        if found.count == 0:
            raise InputError(self.label, "the file holds no records: nothing to replay")
        return self._event_file(found)

    def _event_file(self, found: _Found) -> EventFile:
        """The one place an EventFile is made."""
        return EventFile(
            label=self.label,
            path=self.path,
            compressed=self.compressed,
            layout=self.layout,
            recording=found.recording,
            mapper=RecordMapper(self.mapping, recording=found.recording),
            count=found.count,
            checkpoints=found.checkpoints,
            times=found.times,
            id_positions=found.id_positions,
            cached=found.cached,
            event_types=found.event_types,
        )

    def _open(self) -> IO[bytes]:
        return open_binary(self.path, self.compressed, self.on_read, self.prefix)

    # ---- errors, with where they are ----

    def too_long(self, error: RecordTooLong) -> InputError:
        limit = f"{error.limit:,} bytes"
        if error.limit % (1 << 20) == 0:
            limit = f"{error.limit >> 20} MiB"
        problem = (
            f"a record longer than {limit}, the most sseplay reads as one record (a line of "
            "JSON Lines or an element of an array): split it, or check that this is an "
            "event file"
        )
        if error.line is not None:
            return self._fail_at(error.line, problem)
        return self._fail_at_byte(error.position, problem)

    def _fail_at(self, line: int, problem: str) -> InputError:
        return InputError(f"{self.label}:{line}", problem)

    def _fail_at_byte(self, position: int, problem: str) -> InputError:
        line, column = line_and_column(self.path, self.compressed, position)
        return InputError(f"{self.label}:{line}:{column}", problem)

    def _bad_line(self, line: int, error: ValueError) -> InputError:
        column = getattr(error, "colno", None)
        where = f"{self.label}:{line}" + (f":{column}" if column else "")
        message = getattr(error, "msg", str(error))
        return InputError(where, f"invalid JSON ({message}): each line must be one JSON value")

    # ---- the quick check: a large file sent as it is ----

    def _needs_each_record(self) -> bool:
        """Whether checking a record takes more than knowing it is JSON: fields to find,
        times to read, ids to compare, or events to keep in memory."""
        mapping = self.mapping
        return (
            mapping.data_field is not None
            or mapping.event_field is not None
            or mapping.id_field is not None
            or mapping.time_field is not None
            or self.path.stat().st_size <= self.memory_budget
        )

    def _index_quickly(self) -> _Found | None:
        """The whole check of a large file whose records are sent as they are: every
        record decoded at C speed, nothing kept but the checkpoints. None when the file
        turns out to be a recording, or an array whose layout the fast check cannot
        follow: the full check then goes through it and says what is wrong and where."""
        with self._open() as stream:
            if self.layout == "array":
                indexed = self._index_array_quickly(stream)
            else:
                indexed = self._index_lines_quickly(stream)
        if indexed is None:
            return None
        count, checkpoints = indexed
        event_type = self.mapping.event_type or DEFAULT_EVENT_TYPE
        return _Found(count, checkpoints, event_types=frozenset({event_type}))

    def _index_array_quickly(self, stream: IO[bytes]) -> tuple[int, array[int]] | None:
        indexed = index_array(stream, CHECKPOINT_STRIDE, self.max_record)
        if indexed is None:
            return None
        count, checkpoints = indexed
        if count:
            stream.seek(checkpoints[0])
            first = next(ArrayScanner(stream, checkpoints[0]).elements(at_open=False))
            if is_header(loads(first[2])):
                return None  # the full check says a recording must be JSON Lines
        return count, checkpoints

    def _index_lines_quickly(self, stream: IO[bytes]) -> tuple[int, array[int]] | None:
        for _, _, raw in iter_lines(stream, max_record=self.max_record):
            try:
                if is_header(loads(raw)):
                    return None
            except ValueError:
                pass  # reported in order by the check below
            break
        stream.seek(0)
        try:
            return index_lines(stream, CHECKPOINT_STRIDE, self.max_record)
        except BadLine as bad:
            raise self._bad_line(bad.line, bad.error) from None

    # ---- the full check: every record mapped ----

    def _index_fully(self) -> _Found:
        with self._open() as stream:
            records = self._records(stream)
            first = next(records, None)
            if first is None:
                return _Found(0, array("q"))
            if is_header(first[2]):
                self._accept_header(first[1])
                return self._check_each(records, recording=True)
            return self._check_each(itertools.chain([first], records), recording=False)

    def _accept_header(self, line: int) -> None:
        if self.layout != "lines":
            raise self._fail_at(line, "a recording must be JSON Lines")
        if self.mapping.any_set():
            raise self._fail_at(
                line,
                "this is a recording from 'sseplay tail --record': it replays "
                "as recorded, so drop --data-field/--event-field/--id-field/"
                "--event-type/--time-field",
            )

    def _check_each(self, records: Iterator[tuple[int, int, Any]], recording: bool) -> _Found:
        """Map every record, checking its ids and times, and keep what serving needs."""
        mapper = RecordMapper(self.mapping, recording)
        ids = _IdIndex(repeats_allowed=recording)
        timed = recording or self.mapping.time_field is not None
        timeline = _Timeline() if timed else None
        cache = _Cache(self.memory_budget)
        checkpoints: array[int] = array("q")
        event_types: set[str] = set()
        index = -1
        for index, (position, line, record) in enumerate(records):
            if index % CHECKPOINT_STRIDE == 0:
                checkpoints.append(position)
            try:
                cue, raw_time = mapper.cue(record)
                if len(event_types) < MAX_LISTED_TYPES:
                    event_types.add(event_type_of(cue.body))
                ids.add(cue.id, index)
                if timeline is not None:
                    timeline.add(raw_time)
            except ValueError as error:
                raise self._fail_at(line, f"record {index + 1}: {error}") from None
            cache.add(cue)
        own_ids = recording or self.mapping.id_field is not None
        return _Found(
            count=index + 1,
            checkpoints=checkpoints,
            recording=recording,
            times=None if timeline is None else timeline.times,
            id_positions=ids.positions if own_ids else None,
            cached=cache.cues,
            event_types=frozenset(event_types),
        )

    def _records(self, stream: Any) -> Iterator[tuple[int, int, Any]]:
        if self.layout == "lines":
            for position, line, raw in iter_lines(stream, max_record=self.max_record):
                try:
                    yield position, line, loads(raw)
                except ValueError as error:
                    raise self._bad_line(line, error) from None
            return
        scanner = ArrayScanner(stream, max_record=self.max_record)
        try:
            scanner.open_array()
            for position, line, raw in scanner.elements():
                try:
                    record = loads(raw)
                except ValueError as error:  # e.g. invalid UTF-8 inside a string
                    message = getattr(error, "msg", str(error))
                    raise self._fail_at(line, f"invalid JSON in a record ({message})") from None
                yield position, line, record
            if scanner.trailing_content():
                raise Malformed(scanner.position, "unexpected content after the closing ']'")
        except Malformed as error:
            raise self._fail_at_byte(
                error.position, f"invalid JSON array ({error.problem})"
            ) from None


class _IdIndex:
    """The position of every record's own id; a repeated id is refused (resuming could not
    tell the records apart), except the same id on consecutive events of a recording (a
    server that sends no new id keeps the last one)."""

    def __init__(self, repeats_allowed: bool) -> None:
        self.repeats_allowed = repeats_allowed
        self.positions: dict[str, int] = {}

    def add(self, event_id: str | None, index: int) -> None:
        if event_id is None:
            return
        known = self.positions.get(event_id)
        if known is not None and not (self.repeats_allowed and known == index - 1):
            raise ValueError(
                f"duplicate id {event_id!r} (record {known + 1} has it too): "
                "ids must be unique for resuming to work"
            )
        self.positions[event_id] = index


class _Timeline:
    """The offsets of a timed replay from the first record's time: one kind of time
    throughout, never going back."""

    def __init__(self) -> None:
        self.times: array[float] = array("d")
        self._kind = ""
        self._first = self._previous = 0.0
        self._previous_raw: Any = None

    def add(self, raw_time: Any) -> None:
        try:
            kind, seconds = parse_time(raw_time)
        except ValueError as error:
            raise ValueError(f"cannot read the time {_shorten(repr(raw_time))}: {error}") from None
        if not self.times:
            self._kind, self._first = kind, seconds
        elif kind != self._kind:
            raise ValueError(
                f"the time {raw_time!r} is a {kind}, but record 1 has a {self._kind}: "
                "use one kind of time throughout"
            )
        elif seconds < self._previous:
            raise ValueError(
                f"the time {raw_time!r} is earlier than the record before it "
                f"({self._previous_raw!r}): sort the records by time"
            )
        self.times.append(seconds - self._first)
        self._previous, self._previous_raw = seconds, raw_time


class _Cache:
    """The cues of a file while they fit in the memory budget; ``cues`` None past it."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.cues: list[Cue] | None = []
        self._size = 0

    def add(self, cue: Cue) -> None:
        if self.cues is None:
            return
        self.cues.append(cue)
        # What serving it from memory costs: its bytes twice (the cue, and round one with
        # ids in replay.py) and about 160 bytes of objects and list slots around them, as
        # the memory benchmark measured (about 205 bytes an event of 15 bytes).
        self._size += 2 * len(cue.body) + 160
        if self._size > self.budget:
            self.cues = None
