"""A route's timeline held and stepped by a test: the ``Gate`` (``--control``, issue 26).

While a gate is paused no connection of its route gets an event, new connections
included; ``advance(n)`` lets each connection have exactly ``n`` more, and ``resume`` lets
them all go on. What writes to the connections asks ``room(outlet, sent)`` before it
writes events: a connection's own replay (``sseplay.player``) and a live feed
(``GatedFeed`` here, the ``sseplay.feed.Feed`` that published events go through).

Counting: a connection's allowance is the events it had been sent when the pause began
(or when it joined, if later), plus what ``advance`` released since. Connections are
known by their outlet, which stays the same when a replay hands a connection over to
the route's feed (``sent`` is carried over with it).

A timed replay keeps its gaps: on ``resume`` each connection is told how long it was
held (from the pause, or from when it joined), and shifts its absolute deadlines by that
much (``Player.wake``), so the next event comes as long after the resume as it was due
after the pause.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

from sseplay.feed import Feed, LiveSubscriber
from sseplay.outlet import Outlet
from sseplay.replay import positive_integer
from sseplay.timer import Clock, Timer

# Told how long its connection was held (0 for an ``advance``): it writes what it may now.
Wake = Callable[[float], None]


@dataclass(slots=True)
class _Member:
    wake: Wake
    joined: float
    # The events it had been sent when the pause began or it joined, and the gate's
    # ``released`` then: its allowance is ``baseline + released - released_at``.
    baseline: int = 0
    released_at: int = 0


class Gate:
    """Whether a route's connections may be sent events now, and how many."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.paused = False
        self.paused_at = 0.0
        # Events released to each connection by ``advance`` since the pause began.
        self.released = 0
        self._members: dict[Outlet, _Member] = {}

    def join(self, outlet: Outlet, sent: int, wake: Wake) -> None:
        """A connection of the route, before its first write."""
        self._members[outlet] = _Member(wake, self.clock.time(), sent, self.released)

    def rejoin(self, outlet: Outlet, wake: Wake) -> None:
        """The connection goes on with another writer (a replay handed over to a feed)."""
        member = self._members.get(outlet)
        if member is not None:
            member.wake = wake

    def leave(self, outlet: Outlet) -> None:
        self._members.pop(outlet, None)

    def room(self, outlet: Outlet, sent: int) -> int | None:
        """How many more events this connection may be sent now; None: no limit."""
        if not self.paused:
            return None
        member = self._members.get(outlet)
        if member is None:  # not a member: it is held, as a new connection would be
            return 0
        return max(0, member.baseline + self.released - member.released_at - sent)

    def pause(self, sent_of: Callable[[Outlet], int]) -> None:
        """Hold every connection where it is now (``sent_of``: what each has been sent)."""
        if self.paused:
            return
        self.paused = True
        self.paused_at = self.clock.time()
        self.released = 0
        for outlet, member in self._members.items():
            member.baseline = sent_of(outlet)
            member.released_at = 0

    def advance(self, count: int, sent_of: Callable[[Outlet], int]) -> None:
        """Let each connection have ``count`` more events (pausing first if need be)."""
        self.pause(sent_of)
        self.released += count
        self._wake_all(lambda member: 0.0)

    def resume(self) -> None:
        if not self.paused:
            return
        self.paused = False
        now = self.clock.time()
        self._wake_all(lambda member: now - max(self.paused_at, member.joined))

    def _wake_all(self, held_for: Callable[[_Member], float]) -> None:
        for member in list(self._members.values()):
            member.wake(held_for(member))

    @property
    def members(self) -> int:
        return len(self._members)


class GatedFeed(Feed):
    """A route's live feed under a ``Gate``: published events (``--control``) and the
    events after a file's. Its ids are positions, counted on from the file's (id k is the
    event at position k - 1), as a followed file's are, so they resume like any event."""

    def __init__(
        self,
        timer: Timer,
        ping: float,
        gate: Gate,
        *,
        first: int = 0,
        on_end: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(timer, ping, first=first, on_end=on_end)
        self.gate = gate

    def position_of(self, event_id: str) -> int | None:
        number = positive_integer(event_id)
        if number is None or number > self.position:
            return None
        return number - 1

    def published(self, event_id: str) -> bool:
        """Whether ``event_id`` names an event of this feed (not one of the file's)."""
        position = self.position_of(event_id)
        return position is not None and position >= self.first

    def next_id(self) -> str:
        return str(self.position + 1)

    def wake(self, subscriber: LiveSubscriber) -> None:
        """The gate let go: what the subscriber may have now goes out."""
        self._catch_up(subscriber)

    def _fan_out(self, first: int, chunk: bytes) -> None:
        if self.gate.paused:
            for subscriber in list(self._subscribers):
                self._catch_up(subscriber)  # as much as its allowance lets through
            return
        super()._fan_out(first, chunk)

    def _catch_up(self, subscriber: LiveSubscriber) -> None:
        room = self.gate.room(subscriber.outlet, subscriber.sent)
        if room is None:
            super()._catch_up(subscriber)
            return
        outlet = subscriber.outlet
        if room <= 0 or not subscriber.admitted or subscriber.closed or outlet.blocked:
            return
        notice = b""
        if subscriber.seen_until < self.oldest:
            notice = self._missed(subscriber.seen_until, "while this client was held")
            subscriber.seen_until = self.oldest
        skip = subscriber.seen_until - self.oldest
        wires = [wire for _, wire in itertools.islice(self.history(), skip, skip + room)]
        if not wires and not notice:
            return
        subscriber.sent += len(wires)
        subscriber.seen_until += len(wires)
        outlet.write(notice + b"".join(wires))
