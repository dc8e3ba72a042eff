"""A replay: an event file on a plan, turned into wire bytes; resuming.

Ids: by default event ``n`` (0-based sequence number, counting on across the
rounds of a loop) has id ``n + 1``. With ``--id-field`` the record's own id is
used, and from the second round of a loop on it gets ``#round`` appended so that
ids stay unique and a resume lands in the right round.

Bytes are handed out synchronously (``chunk``) because one timer writes to every
connection of a route: a file too large to keep in memory is read back from disk
in pages of at most ``PAGE_SIZE`` records and about ``PAGE_BYTES``, off the event
loop (``fetch``), into a cache of at most ``PAGE_CACHE_BYTES`` that every connection
shares. A file that changes under the server (shrinks, is replaced or rewritten) is
noticed at the next page read and ends the streams of that file, with one log line.

Last-Event-ID (WHATWG HTML 9.2.4) is matched exactly: a numeric id is ASCII digits
read as an integer, never a float, and an id that names no event of the replay is
unknown (the client gets the replay from the start, and a comment that says so).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import anyio.to_thread

from sseplay.eventfile import CHECKPOINT_STRIDE, Cue, EventFile
from sseplay.model import encode_comment, encode_retry, with_id
from sseplay.schedule import DEFAULT_BATCH_LIMIT, Plan

logger = logging.getLogger("sseplay.replay")

ROUND_SEPARATOR = "#"
# A page is what one read from disk brings in: at most the records between two checkpoints,
# and fewer when they are large, so that a page is about PAGE_BYTES (at the file's average).
PAGE_SIZE = CHECKPOINT_STRIDE
PAGE_BYTES = 4 << 20
# The pages of files read from disk kept for all connections, per file, in bytes: the
# least recently used go first. The page being read is kept even when it alone is larger.
PAGE_CACHE_BYTES = 32 << 20
# What a cached event costs besides its bytes: the Cue, its bytes object, a list slot.
CUE_OVERHEAD = 120
# A numeric Last-Event-ID of a looped replay names an event only up to here: 2**53 keeps
# every sequence number exact as a float, and an event due more than a century into the
# replay is no event a client can have seen. Beyond, the deadlines of a resumed stream would
# lose their precision (25 digits made 1.5 million events due in 2 s).
MAX_SEQUENCE = 1 << 53
LOOP_HORIZON_SECONDS = 100 * 365.25 * 86400
# Ids are shown in comments and log lines cut to this many characters.
SHOWN_ID_CHARACTERS = 40
_POSITIVE_INTEGER = re.compile(r"[1-9][0-9]{0,15}", re.ASCII)
# About the most bytes one write of due events holds: a client that is not keeping up is
# noticed (and cut off) before the server has buffered much for it.
CHUNK_BYTES = 512 << 10


class Unreadable(Exception):
    """A file read from disk while serving could not be read (deleted, changed, broken)."""


def positive_integer(text: str) -> int | None:
    """``text`` as an integer if it is 1 to 16 ASCII digits without a leading zero, else
    None: no sign, space, fraction, exponent or non-ASCII digit (``str.isdigit`` takes
    ``²``, which ``int`` refuses), and never more digits than a sequence number can have."""
    return int(text) if _POSITIVE_INTEGER.fullmatch(text) else None


def decode_id(raw: bytes) -> str | None:
    """A Last-Event-ID as sent: UTF-8 (WHATWG 9.2.4 sends the id as UTF-8, and every client
    does); None when the bytes are not UTF-8, which names no event."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def shown_id(last_event_id: str | bytes) -> str:
    """An id for a comment or a log line: escaped, and cut short when long, so that a client
    cannot make the server echo kilobytes back or write them into its log."""
    text = repr(last_event_id)
    if len(last_event_id) <= SHOWN_ID_CHARACTERS:
        return text
    kept = last_event_id[:SHOWN_ID_CHARACTERS]
    unit = "bytes" if isinstance(last_event_id, bytes) else "characters"
    return f"{kept!r}... ({len(last_event_id)} {unit})"


def _identity(path: Path) -> tuple[int, int, int, int]:
    """What tells the file checked at start-up from a changed one."""
    status = os.stat(path)
    return status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns


@dataclass(frozen=True, slots=True)
class Start:
    """Where a connection starts: sequence number, and whether its Last-Event-ID was known."""

    n: int
    known: bool = True


FROM_THE_START = Start(0)
UNKNOWN = Start(0, known=False)


class Replay:
    def __init__(
        self, file: EventFile, plan: Plan, retry: int | None = None, *, no_ids: bool = False
    ) -> None:
        self.file = file
        self.plan = plan
        self.retry = retry
        # --no-ids: every event without its ``id:`` line.
        self.no_ids = no_ids
        # Round one of a file held in memory, ids included: the common case is a lookup.
        self._first_round: list[bytes] | None = None
        if file.in_memory:
            self._first_round = self._encode(0, file.cues(0, file.count))
            average = sum(map(len, self._first_round)) / file.count
        else:
            average = file.path.stat().st_size / file.count
        # Events already due go out together, up to this many per write.
        self.batch_limit = max(1, min(DEFAULT_BATCH_LIMIT, int(CHUNK_BYTES // max(average, 1))))
        self.page_size = max(1, min(PAGE_SIZE, int(PAGE_BYTES // max(average, 1))))
        self._pages: OrderedDict[int, list[Cue]] = OrderedDict()
        self._page_bytes: dict[int, int] = {}
        self.cached_bytes = 0
        self._loading: dict[int, asyncio.Future[None]] = {}
        self._identity = None if file.in_memory else _identity(file.path)
        # Set once the file is found changed or unreadable: every stream of it ends.
        self._failure: str | None = None

    @property
    def failed(self) -> bool:
        """The file was found changed or unreadable: its streams end."""
        return self._failure is not None

    def preamble(self, start: Start, shown: str = "") -> bytes:
        """What a connection gets before its first event: the retry time, and for an
        unknown Last-Event-ID a comment that says so (``shown``: the id, cut short)."""
        parts = []
        if self.retry is not None:
            parts.append(encode_retry(self.retry))
        if not start.known:
            parts.append(encode_comment(f"unknown Last-Event-ID {shown}: from the start"))
        return b"".join(parts)

    def start_after(self, last_event_id: str | None) -> Start:
        """The first event a client with this Last-Event-ID has not seen (WHATWG 9.2.4)."""
        if not last_event_id:
            return FROM_THE_START
        n = self._sequence_after(last_event_id)
        if n is None:
            return UNKNOWN
        return Start(n)

    def _sequence_after(self, last_event_id: str) -> int | None:
        count = self.file.count
        if self.file.positional_ids:
            n = positive_integer(last_event_id)
            return n if n is not None and self._in_replay(n) else None
        position = self.file.position_of(last_event_id)
        if position is not None:
            return position + 1
        base, separator, round_text = last_event_id.rpartition(ROUND_SEPARATOR)
        if separator and self.plan.loop:
            rounds = positive_integer(round_text)
            position = self.file.position_of(base)
            if rounds is not None and position is not None:
                n = rounds * count + position + 1
                return n if self._in_replay(n) else None
        return None

    def _in_replay(self, n: int) -> bool:
        """Whether ``n`` events (sequence numbers 0 to n - 1) can have been sent."""
        if not self.plan.loop:
            return n <= self.file.count
        return n <= MAX_SEQUENCE and self.plan.offset(n) <= LOOP_HORIZON_SECONDS

    def is_over(self, n: int) -> bool:
        return n >= self.plan.total

    def _encode(self, round_number: int, cues: list[Cue], first_index: int = 0) -> list[bytes]:
        """Wire bytes of ``cues``, records ``first_index``... of round ``round_number``."""
        first_n = round_number * self.file.count + first_index
        out = []
        if self.no_ids:
            return [cue.body for cue in cues]
        for offset, cue in enumerate(cues):
            if cue.comment:
                # No id: an id line would set the client's last event ID (9.2.6) with no
                # event. The comment keeps its position, so the events around it keep
                # their numbers (record numbers) and resuming is unchanged.
                out.append(cue.body)
            elif self.file.positional_ids:
                out.append(with_id(first_n + offset + 1, cue.body))
            elif cue.id is None:
                out.append(cue.body)
            elif round_number == 0:
                out.append(with_id(cue.id, cue.body))
            else:
                out.append(with_id(f"{cue.id}{ROUND_SEPARATOR}{round_number}", cue.body))
        return out

    def chunk(self, first: int, stop: int) -> tuple[bytes, int]:
        """The wire bytes of events ``first`` up to ``stop`` (sequence numbers, exclusive) that
        are at hand, and the sequence number after the last of them. Short of ``stop`` only
        for a file read from disk whose next page is not loaded yet: ``fetch`` it."""
        count = self.file.count
        if self._failure is not None:
            return b"", first
        if self._first_round is not None and stop <= count:
            if stop == first + 1:
                return self._first_round[first], stop
            return b"".join(self._first_round[first:stop]), stop
        parts: list[bytes] = []
        n = first
        while n < stop:
            round_number, index = divmod(n, count)
            end = min(stop - round_number * count, count)
            if round_number == 0 and self._first_round is not None:
                parts.extend(self._first_round[index:end])
            elif self.file.in_memory:
                parts.extend(self._encode(round_number, self.file.cues(index, end), index))
            else:
                cues = self._cached_cues(index, end)
                if not cues:
                    break
                parts.extend(self._encode(round_number, cues, index))
                end = index + len(cues)
            n = round_number * count + end
        return b"".join(parts), n

    def _cached_cues(self, index: int, end: int) -> list[Cue]:
        """Records ``index``.. up to ``end`` of one round from the page cache (a prefix)."""
        out: list[Cue] = []
        while index < end:
            page_number, within = divmod(index, self.page_size)
            page = self._pages.get(page_number)
            if page is None:
                break
            self._pages.move_to_end(page_number)
            take = page[within : within + end - index]
            if not take:  # never: a page is whole (``_read_page``); but never spin here
                break
            out.extend(take)
            index += len(take)
        return out

    async def fetch(self, n: int) -> None:
        """Load the page that holds event ``n`` from disk, in a worker thread; connections
        waiting for the same page share one read. Raises Unreadable when the file cannot
        be read or has changed since it was checked (logged once, for every stream)."""
        if self._failure is not None:
            raise Unreadable(self._failure)
        page_number = (n % self.file.count) // self.page_size
        if page_number in self._pages:
            return
        loading = self._loading.get(page_number)
        if loading is not None:
            await asyncio.shield(loading)
            if self._failure is not None:
                raise Unreadable(self._failure)
            return
        loading = asyncio.get_running_loop().create_future()
        self._loading[page_number] = loading
        try:
            start = page_number * self.page_size
            stop = min(start + self.page_size, self.file.count)
            try:
                # Reading a file is blocking I/O: keep it off the event loop.
                cues = await anyio.to_thread.run_sync(self._read_page, start, stop)
            except Unreadable as error:
                self._failure = str(error)
                logger.error("%s", error)
                raise
            self._keep(page_number, cues)
        finally:
            del self._loading[page_number]
            loading.set_result(None)

    def _read_page(self, start: int, stop: int) -> list[Cue]:
        """Records ``start`` to ``stop`` of the file as it was checked (in a worker thread).
        The file is compared with what was checked before and after the read: a file that
        shrank, grew, was replaced or rewritten would give other records, or fewer (a page
        that is short would never be left), or records that are no longer valid."""
        label = self.file.label
        try:
            before = _identity(self.file.path)
            cues = self.file.cues(start, stop) if before == self._identity else []
            after = _identity(self.file.path)
        except (OSError, EOFError, ValueError, RecursionError) as error:
            if self._identity is not None and not isinstance(error, OSError):
                with_change = self._change_of(self.file.path)
                if with_change:
                    raise Unreadable(self._changed(with_change)) from None
            reason = getattr(error, "strerror", None) or str(error)
            raise Unreadable(
                f"{label} cannot be read any more ({reason}): the stream ends here"
            ) from None
        if before != self._identity or after != self._identity:
            raise Unreadable(self._changed(self._change_of(self.file.path) or "it was modified"))
        if len(cues) != stop - start:
            raise Unreadable(self._changed(f"records {start + 1}-{stop} are not all there"))
        return cues

    def _change_of(self, path: Path) -> str:
        """How the file differs from the one checked at start-up ('' when it does not)."""
        try:
            device, inode, size, mtime = _identity(path)
        except OSError as error:
            return error.strerror or str(error)
        assert self._identity is not None
        if (device, inode) != self._identity[:2]:
            return "it was replaced by another file"
        if size != self._identity[2]:
            return f"its size went from {self._identity[2]:,} to {size:,} bytes"
        if mtime != self._identity[3]:
            return "it was modified"
        return ""

    def _changed(self, how: str) -> str:
        return (
            f"{self.file.label} changed while being served ({how}): the stream ends here; "
            "restart sseplay to serve the file as it is now"
        )

    def _keep(self, page_number: int, cues: list[Cue]) -> None:
        """Cache a page; the least recently used go while the cache is over its bytes."""
        size = sum(len(cue.body) + CUE_OVERHEAD for cue in cues)
        self._pages[page_number] = cues
        self._page_bytes[page_number] = size
        self.cached_bytes += size
        while self.cached_bytes > PAGE_CACHE_BYTES and len(self._pages) > 1:
            oldest, _ = self._pages.popitem(last=False)
            self.cached_bytes -= self._page_bytes.pop(oldest)
