"""One connection's own replay, played by the shared timer: the ``Player``.

Event ``n`` is due at the stream's origin plus its offset in the plan (absolute
deadlines: nothing drifts); what is already due goes out together in one write, and
pings fill silences longer than ``ping``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from sseplay.model import PING
from sseplay.outlet import PIECE_BYTES, Listener, Outlet
from sseplay.replay import Replay, Start, Unreadable
from sseplay.timer import TIMER_SLACK, Timer

if TYPE_CHECKING:
    from sseplay.gate import Gate


class Player(Listener):
    """One connection's own replay, from ``start``, played by the shared timer."""

    __slots__ = (
        "_due",
        "_fetching",
        "_held",
        "_last_write",
        "_on_complete",
        "gate",
        "hand_over",
        "n",
        "origin",
        "ping",
        "replay",
        "timer",
    )

    def __init__(
        self,
        outlet: Outlet,
        replay: Replay,
        timer: Timer,
        start: Start,
        ping: float,
        on_complete: Callable[[], None] | None,
    ) -> None:
        super().__init__(outlet)
        self.replay = replay
        self.timer = timer
        self.n = start.n
        self.ping = ping
        now = timer.time()
        # Event n is due at origin + offset(n): the first one now, the rest keep their gaps.
        self.origin = now - replay.plan.offset(start.n)
        self._due = now  # when event ``self.n`` is due
        self._last_write = now
        self._on_complete = on_complete
        self._fetching: asyncio.Task[None] | None = None
        # --follow: at the end of the replay the connection is not ended but handed over
        # (to the route's live feed), which then writes to its outlet.
        self.hand_over: Callable[[Player], None] | None = None
        # --control: the route's gate (``sseplay.gate``), asked before events go out;
        # ``_held``: it stopped asking the timer for wake-ups while the gate held it.
        self.gate: Gate | None = None
        self._held = False
        outlet.on_drained = self._drained

    def begin(self, preamble: bytes) -> None:
        """Write the preamble with the first event (due at once) and join the timer."""
        when = self._write_due(self.timer.time(), preamble)
        if when is not None:
            self.timer.at(when, self)

    def play(self, now: float) -> float | None:
        if self.outlet.blocked or self._fetching is not None:
            return None
        return self._write_due(now, b"")

    def wake(self, held_for: float) -> None:
        """The gate let go (``sseplay.gate``): the deadlines move on by ``held_for`` (the
        gaps of a timed replay are kept), and what may go out now does."""
        self.origin += held_for
        self._due += held_for
        if self._held and not self.closed:
            self._held = False
            self.timer.at(self.timer.time(), self)

    def _write_due(self, now: float, prefix: bytes) -> float | None:
        plan = self.replay.plan
        n = self.n
        if self.gate is not None and self.gate.paused:
            return self._write_released(now, prefix)
        horizon = now + TIMER_SLACK
        # Under load the answer is nearly always "event n, and only it", thousands of
        # times a second: with n's deadline kept, that takes one offset, and only a
        # backlog (a late wake-up, interval 0) needs the search for what else is due.
        following: float | None = None
        if self._due > horizon:
            stop = n
        else:
            following = self.origin + plan.offset(n + 1)
            if following > horizon:
                stop = n + 1
            else:
                stop = plan.due_stop(n, horizon - self.origin, self.replay.batch_limit)
        if stop == n:
            if prefix and not self._write(now, prefix, True):
                return None
            ping_due = self.ping and now - self._last_write >= self.ping - TIMER_SLACK
            if ping_due and not self._write(now, PING, True):
                return None
            return self._next_wake()
        chunk, stop = self.replay.chunk(n, stop)
        if stop == n:  # a file read from disk: its next page is not loaded yet
            if prefix and not self._write(now, prefix, True):
                return None
            self._fetching = asyncio.get_running_loop().create_task(self._fetch())
            return None
        if prefix and len(chunk) > PIECE_BYTES:
            # Apart: ``prefix + chunk`` would copy a large event for this connection alone.
            # Held up, the prefix goes out first and the chunk is taken again once drained.
            if not self._write(now, prefix, True):
                return None
            prefix = b""
        self.sent += stop - n
        self.n = stop
        if following is not None and stop == n + 1:
            self._due = following
        else:
            self._due = self.origin + plan.offset(stop)
        last = self.replay.is_over(stop)
        ends = last and self.hand_over is None
        if self._write(now, prefix + chunk if prefix else chunk, not ends) and not last:
            return self._next_wake()
        if last and self.hand_over is not None:
            self.hand_over(self)
        elif last and not self.outlet.blocked:
            self._finished()
        return None

    def _write_released(self, now: float, prefix: bytes) -> float | None:
        """``_write_due`` while the gate is paused: what ``advance`` released goes out at
        once, whatever its deadline; then the player waits, out of the timer, for ``wake``."""
        assert self.gate is not None
        n = self.n
        room = self.gate.room(self.outlet, self.sent) or 0
        stop = int(min(n + room, self.replay.plan.total))
        chunk, stop = self.replay.chunk(n, stop) if stop > n else (b"", n)
        if stop == n:
            if prefix:
                self._write(now, prefix, True)
            if room and not self.replay.is_over(n):  # its next page is not loaded yet
                self._fetching = asyncio.get_running_loop().create_task(self._fetch())
                return None
            self._held = True
            return None
        self.sent += stop - n
        self.n = stop
        self._due = self.origin + self.replay.plan.offset(stop)
        last = self.replay.is_over(stop)
        ends = last and self.hand_over is None
        self._write(now, prefix + chunk, not ends)
        if last and self.hand_over is not None:
            self.hand_over(self)
        elif last and not self.outlet.blocked:
            self._finished()
        elif not last:
            self._held = not self.outlet.blocked  # else ``_drained`` brings it back
        return None

    def _write(self, now: float, chunk: bytes, more_body: bool) -> bool:
        self._last_write = now
        return self.outlet.write(chunk, more_body)

    def _next_wake(self) -> float:
        if self.ping:
            return min(self._due, self._last_write + self.ping)
        return self._due

    async def _fetch(self) -> None:
        try:
            await self.replay.fetch(self.n)
        except Unreadable:  # logged once by the replay, for all its streams
            self.outlet.write(b"", more_body=False)
            return
        finally:
            self._fetching = None
        if not self.closed:
            self.timer.at(self.timer.time(), self)

    def _drained(self) -> None:
        if self.hand_over is not None and self.replay.is_over(self.n):
            return  # handed over: the feed looks after the outlet now
        if self.outlet.completed:
            self._finished()
        else:
            self.timer.at(self.timer.time(), self)

    def _finished(self) -> None:
        self.complete = True
        if self._on_complete is not None:
            self._on_complete()
