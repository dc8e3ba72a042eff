"""One shared timeline for every connection of a route (``--broadcast``): the ``Broadcast``.

The broadcast is a timed producer into a ``Feed`` (``sseplay.feed``): it keeps the
timeline (the plan's absolute deadlines on the shared ``Timer``, the ``--epoch`` origin,
the end, the loop) and publishes each event as it falls due, encoded once; the feed owns
the subscribers, the history (bounded in events and in bytes), the catch-up of clients
that read slowly or resume with Last-Event-ID (``CATCH_UP_BYTES`` at a time, and a
comment saying how many events were missed when the history no longer reaches back),
and the pings.

Positions are sequence numbers in the replay: the event at position ``n`` is the
replay's event ``n``, whose id the replay computes (``Replay.start_after``), so the feed
keeps no index of ids.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from sseplay.feed import FEED_HISTORY, FEED_HISTORY_BYTES, Feed, LiveEvent, LiveSubscriber, Resume
from sseplay.outlet import Outlet
from sseplay.replay import Replay, Start, Unreadable
from sseplay.schedule import Plan
from sseplay.timer import TIMER_SLACK, Timer

# The fan-out's logger name is a user-facing contract: kept from the module it grew in.
logger = logging.getLogger("sseplay.fanout")

# Events a broadcast keeps so that a client reconnecting with Last-Event-ID catches up: at
# most this many, and at most this many bytes of them (the newest event is always kept).
BROADCAST_HISTORY = FEED_HISTORY
BROADCAST_HISTORY_BYTES = FEED_HISTORY_BYTES
# A timeline's events go into its feed without ids: they are found by position.
_UNNAMED = ""


def due_count(plan: Plan, until: float) -> int:
    """How many events of ``plan`` are due at offset ``until`` (seconds from its start),
    without walking the rounds of a looped plan one by one."""
    if until < 0:
        return 0
    first = 0
    if plan.loop and plan.round_length > 0:
        first = int(until // plan.round_length) * plan.count
        if first and plan.offset(first) > until:  # the float division landed a round late
            first -= plan.count
    elif plan.loop:  # every round takes no time: as far as one batch goes
        return plan.count
    return plan.due_stop(first, until, plan.count + 1)


class Broadcast:
    """One shared timeline: every event encoded once, every subscriber sent the same chunk."""

    def __init__(
        self,
        replay: Replay,
        timer: Timer,
        ping: float,
        on_end: Callable[[], None] | None = None,
        *,
        history: int | None = None,
        history_bytes: int | None = None,
    ) -> None:
        # The bounds are read when a broadcast is made, not when this module is imported:
        # a test lowers them to make a client fall behind the history quickly.
        if history is None:
            history = BROADCAST_HISTORY
        if history_bytes is None:
            history_bytes = BROADCAST_HISTORY_BYTES
        self.replay = replay
        self.timer = timer
        self.ended = False
        self._closed = False
        self._on_end = on_end
        self._history_limit = history
        # --follow: at the end of the timeline its subscribers are not ended but handed
        # over (to the route's live feed) with the history, for those that lag behind.
        self.hand_over: Callable[[Broadcast, list[LiveSubscriber]], None] | None = None
        self._origin = 0.0
        self._fetching: asyncio.Task[None] | None = None
        self.feed = Feed(timer, ping, history=history, history_bytes=history_bytes, index_ids=False)

    @property
    def position(self) -> int:
        """The sequence number of the next event to fall due."""
        return self.feed.position

    @property
    def history_bytes(self) -> int:
        return self.feed.history_bytes

    @property
    def closed(self) -> bool:
        """For the Timer: a timeline that ended (or a server that stops) plays no more."""
        return self._closed

    @closed.setter
    def closed(self, value: bool) -> None:
        self._closed = value
        self.feed.closed = value  # and its pings stop

    def begin(self, origin: float | None = None) -> None:
        """Start the timeline now (the server has started), or at ``origin`` on the timer's
        clock (``--epoch``). A future origin waits, with pings meanwhile; a past one starts
        where the timeline is now, after replaying into the history what a client resuming
        from another host or worker may still ask for (ids are positions, so it finds them)."""
        now = self.timer.time()
        self._origin = now if origin is None else origin
        if self._origin < now:
            due = due_count(self.replay.plan, now - self._origin)
            # Nothing is published yet: the feed's positions start here.
            self.feed.first = self.feed.position = max(0, due - self._history_limit)
            logger.info(
                "the broadcast started %.3f s ago (--epoch): %d events are due",
                now - self._origin,
                due,
            )
        elif self._origin > now:
            logger.info("the broadcast starts in %.3f s (--epoch)", self._origin - now)
        self.feed.start()
        self.timer.at(now, self)

    def play(self, now: float) -> float | None:
        plan = self.replay.plan
        feed = self.feed
        position = feed.position
        stop = plan.due_stop(position, now + TIMER_SLACK - self._origin, self.replay.batch_limit)
        if stop > position:
            chunk, stop = self.replay.chunk(position, stop)
            if stop == position:
                self._fetching = asyncio.get_running_loop().create_task(self._fetch())
                return None
            events: list[LiveEvent]
            if stop == position + 1:
                events = [(_UNNAMED, chunk)]
            else:  # the history keeps single events, for any resume point
                chunk_of = self.replay.chunk
                events = [(_UNNAMED, chunk_of(n, n + 1)[0]) for n in range(position, stop)]
            over = self.replay.is_over(stop)
            if over and self.hand_over is not None:
                feed.publish_encoded(events, chunk)
                self.ended = self.closed = True
                logger.info("the broadcast has played the existing records: live from here")
                self.hand_over(self, feed.release())
                return None
            if over:
                self.ended = True
                feed.publish_encoded(events, chunk, end=True)
                self.closed = True
                logger.info("the broadcast has played to its end")
                if self._on_end is not None:
                    self._on_end()
                return None
            feed.publish_encoded(events, chunk)
        return self._origin + plan.offset(feed.position)

    def history(self) -> list[bytes]:
        """The events kept, oldest first: the positions up to ``position``."""
        return [wire for _, wire in self.feed.history()]

    async def _fetch(self) -> None:
        try:
            await self.replay.fetch(self.position)
        except Unreadable:  # logged once by the replay
            self.ended = self.closed = True
            self.feed.fail()
            return
        finally:
            self._fetching = None
        self.timer.at(self.timer.time(), self)

    def subscribe(self, outlet: Outlet, resume: Start | None) -> LiveSubscriber:
        """A new subscriber, live from now, or, when ``resume`` is a known position, from
        there as far as the history reaches. Events before ``resume`` are skipped (a client
        may be ahead of a restarted timeline). Nothing is written until ``admit``."""
        feed = self.feed
        seen_until = feed.position
        if resume is not None and resume.known:
            seen_until = resume.n
            kept = feed.position - feed.oldest
            if resume.n < feed.oldest:
                logger.warning(
                    "a client resumed at event %d, older than the %d kept: it misses %d events",
                    resume.n + 1,
                    kept,
                    feed.oldest - resume.n,
                )
                seen_until = feed.oldest
        return feed.subscribe(outlet, Resume(seen_until))

    def admit(self, subscriber: LiveSubscriber, preamble: bytes) -> None:
        """Write the preamble and what the subscriber missed; from now on it is live."""
        self.feed.admit(subscriber, preamble)

    def unsubscribe(self, subscriber: LiveSubscriber) -> None:
        self.feed.unsubscribe(subscriber)
