"""Live events pushed to many connections as they arrive: the ``Feed``.

A ``Feed`` is one route's live events. Whatever produces them (a followed file or pipe,
``sseplay.sources.follow``; a Redis stream) calls ``publish`` with events already encoded, and
every connection at the live edge gets them in the same write, at once: no timer delay,
one chunk encoded once and written to everyone. It is the one fan-out for every live
source: a ``--broadcast`` timeline (``sseplay.broadcast``) is a timed producer into a feed.

Interface (the names are stable: other sources build on them)::

    feed = Feed(timer, ping, first=0, on_end=None)
    feed.start()                         # pings while idle, on the shared Timer
    feed.publish([(event_id, wire), ...])  # wire: the event's bytes, ``id:`` line included
    feed.publish_encoded(events, chunk, end=False)  # the wires already joined
    feed.end()                           # the input is over: subscribers get the end
    feed.fail()                          # the input failed: every response ends now
    subscribers = feed.release()         # every subscriber, let go (for a hand-over)
    resume = feed.resume(last_event_id)  # where a connection starts (override point)
    subscriber = feed.subscribe(outlet, resume)  # registered, nothing written yet
    feed.admit(subscriber, preamble, backlog)    # preamble + backlog, then what it missed
    feed.unsubscribe(subscriber)
    feed.adopt([(event_id, wire), ...])  # older events for the history (a hand-over)

Positions: every published event takes the next position (``first``, ``first + 1``...);
``feed.position`` is the position the next event will take, and a subscriber's
``seen_until`` is the first position it still needs. The history keeps the newest
events, at most ``FEED_HISTORY`` of them and ``FEED_HISTORY_BYTES`` (the newest is always
kept), for connections that resume and for subscribers that fell behind (a blocked
outlet is skipped and catches up from the history once its write has gone out, so one
slow client never holds the others; a client that reads nothing is cut off after the
send timeout by its outlet).

Resuming (the extension point): ``resume(last_event_id)`` turns a Last-Event-ID (WHATWG
HTML 9.2.4) into a ``Resume``: the position to start at and a ``notice`` (bytes written
before the catch-up). The default looks the id up with ``position_of`` (the ids in the
history; override it when ids are computable, as positions in a file are) and:

- no id: the live edge;
- a known id: the position after it, caught up from the history;
- an id older than the history: the oldest kept, with a comment saying how many events
  were missed and a log warning; never silently;
- an unknown id: the live edge, with a comment that says so.

A source whose store reaches further back than the history (Redis: ``XRANGE``) overrides
``resume`` or does its backfill around it: ``subscribe(outlet, Resume(feed.position))``
registers the connection at the live edge *before* the backfill is read (events
published meanwhile are held for it, in the history), the backfill is read up to
``feed.last_id`` (the id of the event before ``feed.position``), and
``admit(subscriber, preamble, backlog=backfill)`` writes it, then the held events: no gap
and no duplicate between the two. Between ``subscribe`` and ``admit`` nothing is
written to the subscriber.

``admit``'s ``backlog`` is written as it is: its events are the source's to count in
``subscriber.sent`` (the log line when the connection ends says how many it got).

Subscribers are ``outlet.Listener``s, so the server's list of connections, ``/healthz``,
shutdown and the send-timeout cut-off treat them like any other stream.

Serving a feed (``sseplay.http.hub``): a route's feed is ``Hub.feeds[route]``, made and
``start``ed in ``Hub.start`` (the producer is a task started there and cancelled in
``Hub.stop_following``). The endpoint asks ``Hub.live_start``, which for a feed that is
not a followed file is ``feed.resume(Last-Event-ID)``; a ``Resume`` whose position is at
or past the end of an ended feed is answered 204 (WHATWG HTML 9.2.3), any other opens
the stream with ``Hub.open(stream, outlet, resume, preamble)`` (subscribe, then admit,
with the ``notice`` after the ``retry:`` preamble).
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sseplay.model import PING, encode_comment
from sseplay.outlet import PIECE_BYTES, Listener, Outlet
from sseplay.replay import shown_id
from sseplay.timer import TIMER_SLACK, Timer

logger = logging.getLogger("sseplay.live")

# The events a feed keeps for connections that resume or fall behind: at most this many,
# and at most this many bytes of them (the newest event is always kept).
FEED_HISTORY = 10_000
FEED_HISTORY_BYTES = 16 << 20
# A subscriber that catches up from the history is written this much at a time (or one
# event, when it is bigger), and the next only while its connection is not held up:
# what a slow client costs is bounded by this, not by the history.
CATCH_UP_BYTES = 256 << 10

# One published event: its id (as the client will send it back in Last-Event-ID) and its
# bytes on the wire, ``id:`` line and blank line included.
LiveEvent = tuple[str, bytes]


@dataclass(frozen=True, slots=True)
class Resume:
    """Where a connection starts in a feed: the first position it needs, and what it is
    told first (a comment about missed events, or a source's own resync event)."""

    position: int
    notice: bytes = b""


class LiveSubscriber(Listener):
    """One connection following a feed; ``seen_until`` is the next position it needs."""

    __slots__ = ("admitted", "seen_until")

    def __init__(self, outlet: Outlet, seen_until: int) -> None:
        super().__init__(outlet)
        self.seen_until = seen_until
        self.admitted = False


class Feed:
    """One route's live events, fanned out to its subscribers as they are published."""

    def __init__(
        self,
        timer: Timer,
        ping: float,
        *,
        first: int = 0,
        on_end: Callable[[], None] | None = None,
        history: int = FEED_HISTORY,
        history_bytes: int = FEED_HISTORY_BYTES,
        index_ids: bool = True,
    ) -> None:
        self.timer = timer
        self.ping = ping
        self.first = first
        self.position = first  # the position the next published event takes
        self.ended = False
        self.closed = False  # for the Timer: a feed that ended needs no more pings
        self.last_id: str | None = None  # the id of the event before ``position``
        self._on_end = on_end
        self._history_limit = history
        self._history_bytes_limit = history_bytes
        self._history: deque[LiveEvent] = deque()
        self.history_bytes = 0
        # Positions of the ids in the history, for ``position_of``; not kept by a feed
        # whose ids are found otherwise (a broadcast's replay computes them).
        self._positions: dict[str, int] = {}
        self._index_ids = index_ids
        # In joining order: every publish writes to everyone in one pass.
        self._subscribers: dict[LiveSubscriber, None] = {}
        self._last_write = 0.0

    # ---- the producer's side ----

    def start(self) -> None:
        """Start the pings (the server is up); a feed with ``ping`` 0 sends none."""
        self._last_write = self.timer.time()
        if self.ping:
            self.timer.at(self._last_write + self.ping, self)

    def publish(self, events: Sequence[LiveEvent]) -> None:
        """Send ``events`` to every subscriber at the live edge in one write, now."""
        if not events or self.ended:
            return
        first = self.position
        for event in events:
            self._remember(event, self.position)
            self.position += 1
        self.last_id = events[-1][0]
        self._last_write = self.timer.time()
        self._fan_out(first, b"".join(wire for _, wire in events))

    def publish_encoded(
        self, events: Sequence[LiveEvent], chunk: bytes, *, end: bool = False
    ) -> None:
        """``publish`` for a producer that has the events' wires joined already (a timeline
        encodes the events due together at once): every subscriber gets that very chunk.
        With ``end`` they are the last: they and the end of the response go out in one
        write, and the feed has ended (``on_end`` is the producer's to call)."""
        if not events or self.ended:
            return
        first = self.position
        for event in events:
            self._remember(event, self.position)
            self.position += 1
        self.last_id = events[-1][0]
        self._last_write = self.timer.time()
        if not end:
            self._fan_out(first, chunk)
            return
        self.ended = self.closed = True
        for subscriber in list(self._subscribers):
            self._deliver_last(subscriber, first, chunk)

    def end(self) -> None:
        """The input is over: each subscriber gets what it has not been sent yet and the
        end of its response; later connections are answered 204 by the server."""
        if self.ended:
            return
        self.ended = self.closed = True
        for subscriber in list(self._subscribers):
            self._catch_up(subscriber)
        if self._on_end is not None:
            self._on_end()

    def fail(self) -> None:
        """The input failed: every subscriber's response ends now, without what it has not
        been sent, and not ``complete`` (the server says why it ended)."""
        self.ended = self.closed = True
        for subscriber in list(self._subscribers):
            subscriber.outlet.write(b"", more_body=False)

    def release(self) -> list[LiveSubscriber]:
        """Let go of every subscriber (oldest first), for another feed to take them on; this
        feed writes to them no more."""
        subscribers = list(self._subscribers)
        self._subscribers.clear()
        return subscribers

    def history(self) -> list[LiveEvent]:
        """The events kept, oldest first: the positions from ``oldest`` up to ``position``."""
        return list(self._history)

    def adopt(self, events: Sequence[LiveEvent]) -> None:
        """Take ``events``, the ones just before ``first``, into the history (oldest first):
        a broadcast handing its subscribers over lets those that lag behind catch up. The
        history's bounds still hold; the newest events win."""
        room = self._history_limit - len(self._history)
        kept = list(events)[-room:] if room > 0 else []
        older: list[LiveEvent] = []
        size = self.history_bytes
        for event in reversed(kept):
            if size + len(event[1]) > self._history_bytes_limit and (older or self._history):
                break
            older.append(event)
            size += len(event[1])
        older.reverse()
        start = self.first - len(older)
        for offset, event in enumerate(older):
            self._positions[event[0]] = start + offset
        self._history.extendleft(reversed(older))
        self.history_bytes = size
        self.first = start

    @property
    def oldest(self) -> int:
        """The position of the oldest event in the history (``position`` when empty)."""
        return self.position - len(self._history)

    # ---- the connections' side ----

    def position_of(self, event_id: str) -> int | None:
        """The position of the event with this id, or None when it is not known. This one
        knows the ids in the history; a feed whose ids can be computed overrides it."""
        return self._positions.get(event_id)

    def resume(self, last_event_id: str | None) -> Resume:
        """Where a connection with this Last-Event-ID starts (see the module docstring)."""
        if not last_event_id:
            return Resume(self.position)
        known = self.position_of(last_event_id)
        shown = shown_id(last_event_id)
        if known is None or known >= self.position:
            logger.warning(
                "a client resumed with an unknown Last-Event-ID %s: live from now", shown
            )
            notice = encode_comment(f"unknown Last-Event-ID {shown}: from the live edge")
            return Resume(self.position, notice)
        wanted = known + 1
        if wanted < self.oldest:
            return Resume(self.oldest, self._missed(wanted, f"after Last-Event-ID {shown}"))
        return Resume(wanted)

    def subscribe(self, outlet: Outlet, resume: Resume | None = None) -> LiveSubscriber:
        """A new subscriber at ``resume.position`` (the live edge when None); nothing is
        written to it until ``admit``, events published meanwhile wait in the history."""
        subscriber = LiveSubscriber(outlet, self.position if resume is None else resume.position)
        outlet.on_drained = lambda: self._catch_up(subscriber)
        self._subscribers[subscriber] = None
        return subscriber

    def admit(
        self, subscriber: LiveSubscriber, preamble: bytes = b"", backlog: bytes = b""
    ) -> None:
        """Write ``preamble`` and ``backlog`` (a source's own backfill), then what the
        subscriber missed from the history; from now on it is live."""
        subscriber.admitted = True
        if preamble or backlog:
            subscriber.outlet.write(preamble + backlog)
        self._catch_up(subscriber)

    def unsubscribe(self, subscriber: LiveSubscriber) -> None:
        self._subscribers.pop(subscriber, None)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    # ---- the Timer's side: pings while idle ----

    def play(self, now: float) -> float | None:
        if self.ended or not self.ping:
            return None
        if now - self._last_write >= self.ping - TIMER_SLACK:
            self._last_write = now
            for subscriber in list(self._subscribers):
                outlet = subscriber.outlet
                if subscriber.admitted and not outlet.blocked and not outlet.closed:
                    outlet.write(PING)
        return self._last_write + self.ping

    # ---- inside ----

    def _remember(self, event: LiveEvent, position: int) -> None:
        history = self._history
        history.append(event)
        index_ids = self._index_ids
        if index_ids:
            self._positions[event[0]] = position
        self.history_bytes += len(event[1])
        while len(history) > 1 and (
            len(history) > self._history_limit or self.history_bytes > self._history_bytes_limit
        ):
            old_id, old_wire = history.popleft()
            self.history_bytes -= len(old_wire)
            if index_ids and self._positions.get(old_id) == position - len(history):
                del self._positions[old_id]

    def _fan_out(self, first: int, chunk: bytes) -> None:
        """Write ``chunk``, the events from position ``first`` on, to every subscriber at
        the live edge: the very same bytes object to each (the HTTP framing around it is
        shared too, ``sseplay.http.uvicorn.direct``), in one pass with no call or object
        per subscriber but its write. This loop is what a publish costs per connection."""
        position = self.position
        count = position - first
        for subscriber in list(self._subscribers):
            outlet = subscriber.outlet
            if outlet.blocked or outlet.closed or not subscriber.admitted:
                continue  # it catches up from the history when admitted or drained
            if subscriber.seen_until != first:
                self._catch_up(subscriber)
                continue
            subscriber.sent += count
            subscriber.seen_until = position
            outlet.write(chunk)

    def _deliver_last(self, subscriber: LiveSubscriber, first: int, chunk: bytes) -> None:
        """``_fan_out`` for the last events, a subscriber at a time: they and the end of the
        response in one write."""
        if not subscriber.admitted or subscriber.closed or subscriber.outlet.blocked:
            return  # it gets the rest and the end once admitted or drained
        if subscriber.seen_until != first:
            self._catch_up(subscriber)
            return
        subscriber.sent += self.position - first
        subscriber.seen_until = self.position
        subscriber.complete = True
        subscriber.outlet.write(chunk, more_body=False)

    def _catch_up(self, subscriber: LiveSubscriber) -> None:
        """Write what ``subscriber`` has not been sent that the history still holds (and
        the end of the response once the feed has ended), ``CATCH_UP_BYTES`` at a time
        for as long as its connection takes them: the rest waits until it has drained.
        Written at once, each slow client's backlog (up to the whole history) sat in its
        connection's buffer, and memory grew with the number of slow clients."""
        outlet = subscriber.outlet
        while True:
            if subscriber.closed or outlet.blocked or outlet.completed:
                return
            if not subscriber.admitted:
                return
            chunk = b""
            if subscriber.seen_until < self.position:
                notice = b""
                if subscriber.seen_until < self.oldest:
                    # It fell behind further than the history reaches while its writes
                    # were held up: said in the stream, never silently skipped.
                    notice = self._missed(subscriber.seen_until, "while this client read slowly")
                    subscriber.seen_until = self.oldest
                    if len(self._history[0][1]) > PIECE_BYTES:
                        # Apart: ``notice + event`` would copy a large event for this client
                        # alone (the loop goes on with the events once the notice is out).
                        outlet.write(notice)
                        continue
                backlog: list[bytes] = []
                size = 0
                skip = subscriber.seen_until - self.oldest
                for _, wire in itertools.islice(self._history, skip, None):
                    if backlog and size + len(wire) > CATCH_UP_BYTES:
                        break
                    backlog.append(wire)
                    size += len(wire)
                subscriber.sent += len(backlog)
                subscriber.seen_until += len(backlog)
                chunk = notice + b"".join(backlog)
            caught_up = subscriber.seen_until >= self.position
            if caught_up and self.ended:
                subscriber.complete = True
                outlet.write(chunk, more_body=False)
                return
            if chunk:
                outlet.write(chunk)
            if caught_up:
                return

    def _missed(self, wanted: int, when: str) -> bytes:
        """The comment (and log warning) for a client that needs events the history no
        longer holds: from ``wanted`` up to the oldest kept."""
        missed = self.oldest - wanted
        logger.warning(
            "a client missed %d events %s: the history keeps the last %d",
            missed,
            when,
            len(self._history),
        )
        return encode_comment(
            f"{missed} events were missed {when}: the server keeps the last {len(self._history)}"
        )
