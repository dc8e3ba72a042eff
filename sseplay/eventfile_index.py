"""The start-up check of an event file: one pass that validates every record and indexes it.

``Indexer.run`` finds what serving a file needs (``Found``): a byte offset every
``CHECKPOINT_STRIDE`` records, the time offsets of a timed replay, the ids when they are
the records' own, and, when the encoded events are small enough, the events themselves.
A large file whose records need no mapping is only checked to be JSON, at the speed of
the scanner (``sseplay.records``). ``sseplay.eventfile.load_event_file`` runs it.
"""

from __future__ import annotations

import itertools
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sseplay.config import FieldMapping
from sseplay.errors import InputError
from sseplay.mapping import RecordMapper, parse_time
from sseplay.model import DEFAULT_EVENT_TYPE, Cue, event_type_of
from sseplay.recording import is_header
from sseplay.records import (
    MAX_RECORD_BYTES,
    ArrayScanner,
    BadLine,
    Layout,
    Malformed,
    RecordTooLong,
    index_array,
    index_lines,
    iter_lines,
    line_and_column,
    loads,
    open_binary,
)

CHECKPOINT_STRIDE = 256
MAX_LISTED_TYPES = 200


def _shorten(text: str, keep: int = 24) -> str:
    return text if len(text) <= keep else f"{text[:keep]}... ({len(text)} characters)"


@dataclass(slots=True)
class Found:
    """What the check of a file found: all that serving it needs."""

    count: int
    checkpoints: array[int]
    recording: bool = False
    times: array[float] | None = None
    id_positions: dict[str, int] | None = None  # None: ids are positions
    cached: list[Cue] | None = None
    event_types: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Indexer:
    """The one pass over a file that validates it and finds what serving it needs."""

    label: str
    path: Path
    compressed: bool
    layout: Layout
    mapping: FieldMapping
    memory_budget: int
    max_record: int = MAX_RECORD_BYTES
    on_read: Callable[[int], None] | None = None
    prefix: int | None = None

    def run(self) -> Found:
        found = None
        if not self._needs_each_record():
            found = self._index_quickly()
        if found is None:
            found = self._index_fully()
        if found.count == 0:
            raise InputError(self.label, "the file holds no records: nothing to replay")
        return found

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

    def _index_quickly(self) -> Found | None:
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
        return Found(count, checkpoints, event_types=frozenset({event_type}))

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

    def _index_fully(self) -> Found:
        with self._open() as stream:
            records = self._records(stream)
            first = next(records, None)
            if first is None:
                return Found(0, array("q"))
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

    def _check_each(self, records: Iterator[tuple[int, int, Any]], recording: bool) -> Found:
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
                if len(event_types) < MAX_LISTED_TYPES and not cue.comment:
                    event_types.add(event_type_of(cue.body))
                ids.add(cue.id, index)
                if timeline is not None:
                    timeline.add(raw_time)
            except ValueError as error:
                raise self._fail_at(line, f"record {index + 1}: {error}") from None
            cache.add(cue)
        own_ids = recording or self.mapping.id_field is not None
        return Found(
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
