"""One event-loop timer for the deadlines of many streams.

The server everyone writes first gives each connection a task that sleeps until its
next event; sse-starlette adds a task group, three helper tasks and a cancel scope
per send. At thousands of connections that bookkeeping costs more than the writes.
Here one ``Timer`` keeps every stream's next deadline in a table of millisecond ticks
and, when it fires, plays all that is due: each ``Playable`` (a connection's own replay,
``sseplay.player``; a broadcast timeline, ``sseplay.broadcast``; a feed's pings,
``sseplay.feed``) writes straight into the server's ``send`` (``sseplay.outlet``).

Deadlines are absolute (the start of the stream plus the event's offset in the
plan), so nothing drifts however long a stream runs; events already due go out
together in one write.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
from collections.abc import Callable
from typing import Protocol

# The fan-out's logger name is a user-facing contract: kept from the module it grew in.
logger = logging.getLogger("sseplay.fanout")

# A timer may fire a little early (libuv counts in milliseconds): what is due within
# this much is written now rather than after another wake-up.
TIMER_SLACK = 0.001


class Clock(Protocol):
    """What the timer needs of an event loop; tests pass a fake one."""

    def time(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[], object]) -> asyncio.TimerHandle: ...


class Playable(Protocol):
    """Anything the timer plays: it writes what is due and says when to come back."""

    @property
    def closed(self) -> bool: ...

    def play(self, now: float) -> float | None:
        """Write what is due at ``now``; the next deadline, or None to be left alone."""


class Timer:
    """One event-loop timer for the deadlines of many streams.

    Deadlines are kept in millisecond ticks (a stream is played up to ``TIMER_SLACK``
    early anyway): a dict of the streams due at each tick, and a heap of the ticks,
    so that thousands of streams due in the same millisecond cost one heap entry."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._due: dict[int, list[Playable]] = {}
        self._ticks: list[int] = []
        self._handle: asyncio.TimerHandle | None = None
        self._armed_at = _NEVER
        # --metrics: told how late each round is for each millisecond tick it plays.
        self.on_lag: Callable[[float], None] | None = None

    def time(self) -> float:
        return self.clock.time()

    def at(self, when: float, stream: Playable) -> None:
        tick = self._add(when, stream)
        if tick < self._armed_at:
            self._arm(tick)

    def _add(self, when: float, stream: Playable) -> int:
        tick = math.floor(when * 1000)
        streams = self._due.get(tick)
        if streams is None:
            self._due[tick] = [stream]
            heapq.heappush(self._ticks, tick)
        else:
            streams.append(stream)
        return tick

    def _arm(self, tick: int) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._armed_at = tick
        self._handle = self.clock.call_at(tick / 1000, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self._armed_at = _NEVER
        ticks = self._ticks
        now = self.clock.time()
        last_due_tick = math.floor(now * 1000)
        due: list[Playable] = []
        on_lag = self.on_lag
        while ticks and ticks[0] <= last_due_tick:
            tick = heapq.heappop(ticks)
            due.extend(self._due.pop(tick))
            if on_lag is not None:
                on_lag(now - tick / 1000)
        try:
            # Streams come back only after this round, so a stream that is due again
            # at once (interval 0) lets the event loop run in between.
            for stream in due:
                if not stream.closed:
                    try:
                        when = stream.play(now)
                    except Exception:
                        # A fault in one stream must not cost the others on this tick
                        # their writes: it is dropped (and said so) and the round goes on.
                        logger.exception("a stream failed and was dropped")
                        continue
                    if when is not None:
                        self._add(when, stream)
        finally:
            if ticks:
                self._arm(ticks[0])


_NEVER = 1 << 62
