"""The pure part of ``--follow``: bytes in, complete lines out, each checked into an
event with its positional id (no I/O; ``sseplay.sources.follow`` reads and publishes)."""

from __future__ import annotations

from dataclasses import dataclass

from sseplay.config import FieldMapping
from sseplay.feed import LiveEvent
from sseplay.mapping import RecordMapper
from sseplay.model import with_id
from sseplay.records import MAX_RECORD_BYTES, UTF8_BOM, loads


@dataclass(frozen=True, slots=True)
class Line:
    """One complete line: its 1-based number in the file and its bytes (without LF)."""

    number: int
    data: bytes


@dataclass(frozen=True, slots=True)
class TooLong:
    """A line longer than the record limit, dropped as it came in."""

    number: int


class LineSplitter:
    """Cuts bytes into complete lines as they arrive, in any pieces.

    Only LF ends a line (JSON forbids raw line breaks in strings; a CR before the LF is
    JSON whitespace). The unfinished last line is kept until its LF comes, but never more
    than ``max_record`` bytes of it: a longer line is dropped as it arrives (reported
    once, as ``TooLong``) and what follows its LF is read on."""

    def __init__(self, max_record: int = MAX_RECORD_BYTES, first_line: int = 1) -> None:
        self.max_record = max_record
        self.line = first_line  # the number of the line being read
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._dropping = False

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    def reset(self, first_line: int = 1) -> None:
        """Start over (the file was truncated or replaced): the partial line is gone."""
        self.line = first_line
        self._pending.clear()
        self._pending_bytes = 0
        self._dropping = False

    def feed(self, data: bytes) -> list[Line | TooLong]:
        """The lines ``data`` completes, in order (blank lines are counted, not given)."""
        out: list[Line | TooLong] = []
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                self._keep(data[start:], out)
                return out
            if self._dropping:
                self._dropping = False
            elif self._pending_bytes + end - start > self.max_record:
                out.append(TooLong(self.line))
            else:
                piece = data[start:end]
                if self._pending:
                    self._pending.append(piece)
                    piece = b"".join(self._pending)
                if piece.strip():
                    out.append(Line(self.line, piece))
            self._pending.clear()
            self._pending_bytes = 0
            self.line += 1
            start = end + 1

    def finish(self) -> list[Line | TooLong]:
        """The input is over: its last line, even without a line end (as a file's is)."""
        if self._dropping or not self._pending:
            return []
        piece = b"".join(self._pending)
        self.reset(self.line + 1)
        return [Line(self.line - 1, piece)] if piece.strip() else []

    def _keep(self, rest: bytes, out: list[Line | TooLong]) -> None:
        if not rest or self._dropping:
            return
        if self._pending_bytes + len(rest) > self.max_record:
            out.append(TooLong(self.line))
            self._pending.clear()
            self._pending_bytes = 0
            self._dropping = True
            return
        self._pending.append(rest)
        self._pending_bytes += len(rest)


class RecordChecker:
    """Turns one line into an event's wire bytes with its positional id, or says what is
    wrong with it (ValueError): the same decoding and field mapping as the start-up check."""

    def __init__(self, mapping: FieldMapping) -> None:
        self.mapper = RecordMapper(mapping, recording=False)

    def event(self, data: bytes, number: int) -> LiveEvent:
        """Event number ``number`` (its id) from a line's bytes."""
        if data.startswith(UTF8_BOM):
            data = data[len(UTF8_BOM) :]
        try:
            record = loads(data)
        except ValueError as error:
            message = getattr(error, "msg", None) or str(error)
            raise ValueError(
                f"invalid JSON ({message}): each line must be one JSON value"
            ) from None
        # The time field, if any, must be there, but live records are sent when they are
        # read: timing flags shape the replay of the existing records only.
        cue, _ = self.mapper.cue(record)
        return str(number), cue.body if cue.comment else with_id(number, cue.body)
