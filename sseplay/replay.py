"""A replay: an event file on a plan, turned into wire bytes; resuming.

Ids: by default event ``n`` (0-based sequence number, counting on across the
rounds of a loop) has id ``n + 1``. With ``--id-field`` the record's own id is
used, and from the second round of a loop on it gets ``#round`` appended so that
ids stay unique and a resume lands in the right round.

Bytes are handed out synchronously (``chunk``) because one timer writes to every
connection of a route: a file too large to keep in memory is read back from disk
in pages of ``PAGE_SIZE`` records, off the event loop (``fetch``), into a small
cache that every connection shares.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass

import anyio.to_thread

from sseplay.model import encode_comment, encode_retry
from sseplay.schedule import DEFAULT_BATCH_LIMIT, Plan
from sseplay.source import CHECKPOINT_STRIDE, Cue, EventFile

ROUND_SEPARATOR = "#"
# A page is what one read from disk brings in: the records between two checkpoints.
PAGE_SIZE = CHECKPOINT_STRIDE
# Pages of a file read from disk kept for all connections (64 x 256 records).
CACHED_PAGES = 64
# About the most bytes one write of due events holds: a client that is not keeping up is
# noticed (and cut off) before the server has buffered much for it.
CHUNK_BYTES = 512 << 10


class Unreadable(Exception):
    """A file read from disk while serving could not be read (deleted, changed, broken)."""


@dataclass(frozen=True, slots=True)
class Start:
    """Where a connection starts: sequence number, and whether its Last-Event-ID was known."""

    n: int
    known: bool = True


FROM_THE_START = Start(0)


class Replay:
    def __init__(self, file: EventFile, plan: Plan, retry: int | None = None) -> None:
        self.file = file
        self.plan = plan
        self.retry = retry
        # Round one of a file held in memory, ids included: the common case is a lookup.
        self._first_round: list[bytes] | None = None
        if file.in_memory:
            self._first_round = self._encode(0, file.cues(0, file.count))
            average = sum(map(len, self._first_round)) / file.count
        else:
            average = file.path.stat().st_size / file.count
        # Events already due go out together, up to this many per write.
        self.batch_limit = max(1, min(DEFAULT_BATCH_LIMIT, int(CHUNK_BYTES // max(average, 1))))
        self._pages: OrderedDict[int, list[Cue]] = OrderedDict()
        self._loading: dict[int, asyncio.Future[None]] = {}

    def preamble(self, start: Start, last_event_id: str | None) -> bytes:
        parts = []
        if self.retry is not None:
            parts.append(encode_retry(self.retry))
        if not start.known:
            parts.append(encode_comment(f"unknown Last-Event-ID {last_event_id!r}: from the start"))
        return b"".join(parts)

    def start_after(self, last_event_id: str | None) -> Start:
        """The first event a client with this Last-Event-ID has not seen (WHATWG 9.2.4)."""
        if not last_event_id:
            return FROM_THE_START
        n = self._sequence_after(last_event_id)
        if n is None:
            return Start(0, known=False)
        return Start(n)

    def _sequence_after(self, last_event_id: str) -> int | None:
        count = self.file.count
        if self.file.positional_ids:
            if last_event_id.isdigit() and last_event_id[0] != "0":
                n = int(last_event_id)
                if self.plan.loop or n <= count:
                    return n
            return None
        position = self.file.position_of(last_event_id)
        if position is not None:
            return position + 1
        base, separator, round_text = last_event_id.rpartition(ROUND_SEPARATOR)
        if separator and round_text.isdigit() and self.plan.loop:
            position = self.file.position_of(base)
            if position is not None:
                return int(round_text) * count + position + 1
        return None

    def is_over(self, n: int) -> bool:
        return n >= self.plan.total

    def _encode(self, round_number: int, cues: list[Cue], first_index: int = 0) -> list[bytes]:
        """Wire bytes of ``cues``, records ``first_index``... of round ``round_number``."""
        first_n = round_number * self.file.count + first_index
        out = []
        for offset, cue in enumerate(cues):
            if self.file.positional_ids:
                out.append(b"id: %d\n%b" % (first_n + offset + 1, cue.body))
            elif cue.id is None:
                out.append(cue.body)
            elif round_number == 0:
                out.append(b"id: %b\n%b" % (cue.id.encode(), cue.body))
            else:
                ident = f"{cue.id}{ROUND_SEPARATOR}{round_number}".encode()
                out.append(b"id: %b\n%b" % (ident, cue.body))
        return out

    def chunk(self, first: int, stop: int) -> tuple[bytes, int]:
        """The wire bytes of events ``first`` up to ``stop`` (sequence numbers, exclusive) that
        are at hand, and the sequence number after the last of them. Short of ``stop`` only
        for a file read from disk whose next page is not loaded yet: ``fetch`` it."""
        count = self.file.count
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
            page_number, within = divmod(index, PAGE_SIZE)
            page = self._pages.get(page_number)
            if page is None:
                break
            self._pages.move_to_end(page_number)
            take = page[within : within + end - index]
            out.extend(take)
            index += len(take)
        return out

    async def fetch(self, n: int) -> None:
        """Load the page that holds event ``n`` from disk, in a worker thread; connections
        waiting for the same page share one read."""
        page_number = (n % self.file.count) // PAGE_SIZE
        if page_number in self._pages:
            return
        loading = self._loading.get(page_number)
        if loading is not None:
            await asyncio.shield(loading)
            return
        loading = asyncio.get_running_loop().create_future()
        self._loading[page_number] = loading
        try:
            start = page_number * PAGE_SIZE
            stop = min(start + PAGE_SIZE, self.file.count)
            try:
                # Reading a file is blocking I/O: keep it off the event loop.
                cues = await anyio.to_thread.run_sync(self.file.cues, start, stop)
            except (OSError, EOFError, ValueError) as error:
                reason = getattr(error, "strerror", None) or str(error)
                raise Unreadable(
                    f"{self.file.label} cannot be read any more ({reason}): the stream ends here"
                ) from None
            self._pages[page_number] = cues
            while len(self._pages) > CACHED_PAGES:
                self._pages.popitem(last=False)
        finally:
            del self._loading[page_number]
            loading.set_result(None)
