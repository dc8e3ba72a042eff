"""``--follow`` at start-up: what is followed (``FollowInput``), and from where: a file's
complete lines are its existing records, checked as any file is; what comes after them,
or standard input, is live (``sseplay.sources.follow`` reads it)."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from sseplay.config import FieldMapping
from sseplay.errors import InputError
from sseplay.eventfile import DEFAULT_MEMORY_BUDGET, EventFile, load_event_file
from sseplay.records import UTF8_BOM, is_gzip, open_binary, sniff_layout

STDIN_LABEL = "<stdin>"
# The most bytes one look reads: more are read at once, without waiting for the next look.
READ_BYTES = 256 << 10
# The last bytes read are read again with the next ones: when they differ, the file was
# truncated and written again past where it was read (which its size alone cannot tell).
SEEN_BYTES = 64
# Reading back from the end of a file for its last line end, this much at a time.
_TAIL_BYTES = 64 << 10


@dataclass(frozen=True, slots=True)
class FollowInput:
    """What a followed route reads: a file from ``offset`` (where its complete lines
    ended at start-up, after ``count`` records on ``lines`` lines), or standard input."""

    label: str
    path: Path | None  # None: standard input
    offset: int
    count: int
    lines: int
    mapping: FieldMapping
    from_end: bool = False
    retry: int | None = None
    stdin_fd: int = 0
    # The file that was checked, (st_dev, st_ino), and its SEEN_BYTES before ``offset``:
    # a file replaced or rewritten between the check and the follower's first look is
    # then read from its start, not from the old file's offset.
    identity: tuple[int, int] | None = None
    seen: bytes | None = None


def complete_lines_end(path: Path) -> int:
    """The byte offset just after the file's last line end (0 when it has none)."""
    with path.open("rb", buffering=0) as file:
        end = os.fstat(file.fileno()).st_size
        while end > 0:
            start = max(0, end - _TAIL_BYTES)
            file.seek(start)
            block = file.read(end - start)
            found = block.rfind(b"\n")
            if found >= 0:
                return start + found + 1
            end = start
    return 0


def _identity_and_seen(path: Path, end: int) -> tuple[tuple[int, int], bytes]:
    """The file's (st_dev, st_ino) and its last SEEN_BYTES before ``end``."""
    with path.open("rb", buffering=0) as file:
        status = os.fstat(file.fileno())
        keep = min(end, SEEN_BYTES)
        return (status.st_dev, status.st_ino), os.pread(file.fileno(), keep, end - keep)


def _count_lines(path: Path, stop: int) -> int:
    count = 0
    with path.open("rb", buffering=0) as file:
        while stop > 0:
            block = file.read(min(READ_BYTES, stop))
            if not block:
                break
            count += block.count(b"\n")
            stop -= len(block)
    return count


def _blank(path: Path, stop: int) -> bool:
    """Whether the first ``stop`` bytes are only whitespace (a file with no record yet)."""
    with path.open("rb", buffering=0) as file:
        while stop > 0:
            block = file.read(min(READ_BYTES, stop))
            if not block:
                return True
            if block.removeprefix(UTF8_BOM).strip():
                return False
            stop -= len(block)
    return True


def prepare_file(
    label: str,
    path: Path,
    mapping: FieldMapping,
    *,
    from_end: bool = False,
    retry: int | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> tuple[EventFile | None, FollowInput]:
    """Check the existing records of a file to follow (its complete lines now): the file
    to replay (None when it has no record yet) and where following it starts."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise InputError(
            label, "no such file: check the path (--follow needs the file to exist)"
        ) from None
    except OSError as error:
        raise InputError(label, f"cannot be read: {error.strerror}") from None
    if not stat.S_ISREG(mode):
        raise InputError(
            label,
            "--follow reads a regular file, or standard input: give - and pipe it in "
            "(sseplay serve - --follow < PIPE)",
        )
    try:
        if is_gzip(path):
            raise InputError(
                label, "a gzip file cannot be followed: --follow needs plain JSON Lines"
            )
        end = complete_lines_end(path)
        identity, seen = _identity_and_seen(path, end)
        with open_binary(path, False) as stream:
            layout = sniff_layout(stream)
        if layout != "array" and end:
            # And in the part that is checked, as the check sniffs it: the whole file can
            # say JSON Lines where the complete lines alone are one JSON array.
            with open_binary(path, False, limit=end) as stream:
                layout = sniff_layout(stream)
        blank = _blank(path, end)
    except OSError as error:
        raise InputError(label, f"cannot be read: {error.strerror or error}") from None
    if layout == "array":
        raise InputError(
            label,
            "this is a JSON array: --follow needs JSON Lines (one record per line), "
            "so that records can be appended",
        )
    if blank:
        lines = _count_lines(path, end)
        return None, FollowInput(
            label, path, end, 0, lines, mapping, from_end, retry, identity=identity, seen=seen
        )
    event_file = load_event_file(label, path, mapping, memory_budget, prefix=end)
    if not event_file.positional_ids:
        raise InputError(
            label,
            "this is a recording from 'sseplay tail --record', which keeps its own ids: "
            "--follow numbers events by position (serve the recording without --follow)",
        )
    lines = _count_lines(path, end)
    return event_file, FollowInput(
        label,
        path,
        end,
        event_file.count,
        lines,
        mapping,
        from_end,
        retry,
        identity=identity,
        seen=seen,
    )


def prepare_stdin(
    mapping: FieldMapping, *, from_end: bool = False, retry: int | None = None, fd: int = 0
) -> FollowInput:
    """Standard input, read as it arrives: every record is live."""
    return FollowInput(STDIN_LABEL, None, 0, 0, 0, mapping, from_end, retry, fd)
