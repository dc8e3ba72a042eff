"""Event files: validated once at start-up, then read back in ranges while serving.

``load_event_file`` checks every record before a socket opens, so a bad file
fails with ``file:line: what is wrong`` and never halfway through a replay. It
keeps only what serving needs: a byte offset every ``CHECKPOINT_STRIDE``
records, the time offsets of a timed replay, and, when the encoded events are
small enough, the events themselves.
"""

from __future__ import annotations

import stat
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sseplay.config import FieldMapping as FieldMapping  # re-exported: loading takes it
from sseplay.errors import InputError
from sseplay.eventfile_index import CHECKPOINT_STRIDE as CHECKPOINT_STRIDE  # replay takes it
from sseplay.eventfile_index import Found, Indexer
from sseplay.mapping import RecordMapper
from sseplay.model import Cue as Cue  # re-exported: replay takes it
from sseplay.records import (
    MAX_RECORD_BYTES,
    ArrayScanner,
    Layout,
    RecordTooLong,
    is_gzip,
    iter_lines,
    loads,
    open_binary,
    sniff_layout,
)

# Encoded events are kept in memory up to this size; a larger file is read back
# from disk in ranges instead, so memory stays flat however large the file is.
DEFAULT_MEMORY_BUDGET = 64 << 20


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class EventFile:
    """A validated event file; ``cues(start, stop)`` reads events back (blocking I/O).

    Made by ``load_event_file`` only (``_event_file``)."""

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
    indexer = Indexer(
        label, path, compressed, layout, mapping, memory_budget, max_record_bytes, on_read, prefix
    )
    try:
        found = indexer.run()
    except RecordTooLong as error:
        raise indexer.too_long(error) from None
    except (OSError, EOFError) as error:  # a gzip stream that breaks off or is corrupt
        raise InputError(label, f"cannot be read to its end: {error}") from None
    return _event_file(indexer, found)


def _event_file(indexer: Indexer, found: Found) -> EventFile:
    """The one place an EventFile is made."""
    return EventFile(
        label=indexer.label,
        path=indexer.path,
        compressed=indexer.compressed,
        layout=indexer.layout,
        recording=found.recording,
        mapper=RecordMapper(indexer.mapping, recording=found.recording),
        count=found.count,
        checkpoints=found.checkpoints,
        times=found.times,
        id_positions=found.id_positions,
        cached=found.cached,
        event_types=found.event_types,
    )


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
