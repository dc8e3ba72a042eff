"""A replay: an event file on a plan, turned into bytes; resuming; the shared broadcast.

Ids: by default event ``n`` (0-based sequence number, counting on across the
rounds of a loop) has id ``n + 1``. With ``--id-field`` the record's own id is
used, and from the second round of a loop on it gets ``#round`` appended so that
ids stay unique and a resume lands in the right round.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import anyio.to_thread

from sseplay.model import encode_comment, encode_retry
from sseplay.schedule import Plan, due_batches
from sseplay.source import Cue, EventFile

logger = logging.getLogger("sseplay.replay")

ROUND_SEPARATOR = "#"
# Events a broadcast keeps so that a client reconnecting with Last-Event-ID catches up.
BROADCAST_HISTORY = 10_000


@dataclass(frozen=True, slots=True)
class Start:
    """Where a connection starts: sequence number, and whether its Last-Event-ID was known."""

    n: int
    known: bool = True


class Replay:
    def __init__(self, file: EventFile, plan: Plan, retry: int | None = None) -> None:
        self.file = file
        self.plan = plan
        self.retry = retry
        # Round one of a file held in memory, ids included: the common case costs one join.
        self._first_round: list[bytes] | None = None
        if file.in_memory:
            self._first_round = self._encode(0, file.cues(0, file.count))

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
            return Start(0)
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

    async def events(self, first: int, stop: int) -> list[bytes]:
        """Wire bytes of events ``first`` to ``stop`` (sequence numbers, exclusive)."""
        count = self.file.count
        out: list[bytes] = []
        n = first
        while n < stop:
            round_number, index = divmod(n, count)
            end = min(stop - round_number * count, count)
            if round_number == 0 and self._first_round is not None:
                out.extend(self._first_round[index:end])
            elif self.file.in_memory:
                out.extend(self._encode(round_number, self.file.cues(index, end), index))
            else:
                # Reading a large file is blocking I/O: keep it off the event loop.
                cues = await anyio.to_thread.run_sync(self.file.cues, index, end)
                out.extend(self._encode(round_number, cues, index))
            n = round_number * count + end
        return out


async def play(
    replay: Replay, start: Start, on_sent: Callable[[int], None]
) -> AsyncIterator[bytes]:
    """One connection's own replay: each due batch as one chunk. ``on_sent`` gets the
    number of events whose chunk was taken by the server (sent, or about to be)."""
    async for first, stop in due_batches(replay.plan, start.n):
        yield b"".join(await replay.events(first, stop))
        on_sent(stop - first)


@dataclass(slots=True)
class _Batch:
    first: int
    stop: int
    chunk: bytes
    events: list[bytes]


class Broadcast:
    """One shared timeline: every event encoded once, every subscriber sent the same chunk."""

    def __init__(self, replay: Replay) -> None:
        self.replay = replay
        self.position = 0  # sequence number of the next event to fall due
        self.ended = False
        self._subscribers: set[asyncio.Queue[_Batch | None]] = set()
        self._history: deque[bytes] = deque(maxlen=BROADCAST_HISTORY)

    async def run(self) -> None:
        async for first, stop in due_batches(self.replay.plan, 0):
            events = await self.replay.events(first, stop)
            batch = _Batch(first, stop, b"".join(events), events)
            self._history.extend(events)
            self.position = stop
            for queue in self._subscribers:
                queue.put_nowait(batch)
        self.ended = True
        for queue in self._subscribers:
            queue.put_nowait(None)

    def catch_up(self, start: Start) -> bytes:
        """Events already played that a resuming client missed, as far as history reaches."""
        if start.n >= self.position:
            return b""
        oldest = self.position - len(self._history)
        if start.n < oldest:
            logger.warning(
                "a client resumed at event %d, older than the %d kept: it misses %d events",
                start.n + 1,
                len(self._history),
                oldest - start.n,
            )
        skip = max(0, start.n - oldest)
        return b"".join(list(self._history)[skip:])

    async def follow(
        self, resume: Start | None, on_sent: Callable[[int], None]
    ) -> AsyncIterator[bytes]:
        """A subscriber's stream: live from now, or, when ``resume`` is a known position,
        the events it missed first. Events before ``resume`` are skipped (a client may be
        ahead of a restarted timeline)."""
        queue: asyncio.Queue[_Batch | None] = asyncio.Queue()
        self._subscribers.add(queue)
        try:
            seen_until = self.position
            if resume is not None and resume.known:
                backlog = self.catch_up(resume)
                if backlog:
                    yield backlog
                    on_sent(self.position - resume.n)
                seen_until = max(resume.n, self.position)
            while (batch := await queue.get()) is not None:
                if batch.stop <= seen_until:
                    continue
                if batch.first < seen_until:
                    yield b"".join(batch.events[seen_until - batch.first :])
                else:
                    yield batch.chunk
                on_sent(batch.stop - max(batch.first, seen_until))
        finally:
            self._subscribers.discard(queue)
