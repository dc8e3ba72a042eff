"""The routes of one app and their open connections: the ``Hub`` (shared timer,
broadcasts, live feeds, resume policy) and what it is built from."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sseplay.broadcast import Broadcast
from sseplay.config import ServerConfig
from sseplay.feed import Feed, LiveSubscriber, Resume
from sseplay.gate import Gate, GatedFeed
from sseplay.model import encode_comment
from sseplay.outlet import Listener, Outlet
from sseplay.player import Player
from sseplay.replay import (
    FROM_THE_START,
    UNKNOWN,
    Replay,
    Start,
    positive_integer,
    shown_id,
)
from sseplay.timer import Timer

if TYPE_CHECKING:
    from sseplay.faults.spec import Chosen, FaultCounters
    from sseplay.http.access import AccessRules
    from sseplay.http.control import Control
    from sseplay.http.journal import RequestJournal
    from sseplay.metrics import Metrics

    # Imported where a followed file or a Redis stream is served: a server of plain
    # files starts without them (start-up time, issue 12).
    from sseplay.sources.follow import Follower
    from sseplay.sources.follow_input import FollowInput
    from sseplay.sources.redis_feed import RedisFeed, RedisStream

logger = logging.getLogger("sseplay.server")

# The headers of every event stream, byte for byte as sse-starlette 3.7.1 gave them:
# ``no-store`` so no cache keeps it, ``X-Accel-Buffering: no`` so nginx does not buffer
# it. Written out, not borrowed: importing sse-starlette replaces uvicorn's
# ``Server.handle_exit`` for the whole process, and a library server leaves it alone.
EVENT_STREAM_HEADERS: list[tuple[bytes, bytes]] = [
    (b"cache-control", b"no-store"),
    (b"connection", b"keep-alive"),
    (b"x-accel-buffering", b"no"),
    (b"content-type", b"text/event-stream; charset=utf-8"),
]


@dataclass(frozen=True, slots=True)
class Route:
    """A route served from a file (replayed, and perhaps followed)."""

    route: str
    label: str
    # The records to replay; None for a followed input with none at start-up.
    replay: Replay | None
    # --follow: what is read for live events after the replay (``sseplay.sources.follow``).
    follow: FollowInput | None = None


@dataclass(frozen=True, slots=True)
class LiveRoute:
    """A route served live from a Redis stream (``sseplay.sources.redis_feed``)."""

    route: str
    label: str
    source: RedisStream


@dataclass(frozen=True, slots=True)
class AppOptions:
    """What an app serves with: the server's options as they were given (one object, read
    where it is needed, never copied field by field), and what ``Server`` works out from
    them once."""

    config: ServerConfig = field(default_factory=ServerConfig)
    # --token and the Host check (``sseplay.http.access``); None = every request is answered.
    access: AccessRules | None = None
    # The seed of the faults' p= draws: ``config.seed``, or one drawn at start-up, and
    # whether the user already knows it (given, or logged at start-up).
    seed: int = 0
    seed_named: bool = False
    # Body chunks straight to uvicorn's transport when it allows (see ``direct``).
    direct_writes: bool = True


class Hub:
    """The streams of one app: the shared timer, the broadcasts, every open connection."""

    def __init__(
        self,
        streams: Sequence[Route],
        options: AppOptions,
        on_complete: Callable[[], None] | None,
        on_over: Callable[[], None] | None = None,
    ) -> None:
        self.options = options
        self.on_complete = on_complete
        # Runs after a client was answered 204 (the replay is over): --once stops then.
        self.on_over = on_over
        self.listeners: set[Listener] = set()
        self.headers = EVENT_STREAM_HEADERS
        self.cut_off = 0
        self.stopping = False
        # What else ends when the server stops (the exchanges ``--record-missing`` relays).
        self.on_stop: list[Callable[[], None]] = []
        self._timer: Timer | None = None
        self._streams = streams
        self.broadcasts: dict[str, Broadcast] = {}
        # --broadcast: when the shared timelines began, on the timer (set at start).
        self.broadcast_origin = 0.0
        # Redis routes: each one's reader and feed, started and stopped with the app.
        self.redis_feeds: dict[str, RedisFeed] = {}
        # --follow: each followed route's live feed, and the follower that feeds it.
        self.feeds: dict[str, Feed] = {}
        self.followers: dict[str, Follower] = {}
        self._following: list[asyncio.Task[None]] = []
        # Connections handed over from their replay to a feed: the old listener -> the new.
        self._moved: dict[Listener, Listener] = {}
        # Shaped routes (``sseplay.http.shaped``): requests so far per route, which picks
        # each one's turn; kept here, where a control API can reach it.
        self.turn_counts: dict[str, int] = {}
        # What else ``POST /_sseplay/reset`` counts from zero (a scenario's counts).
        self.on_reset: list[Callable[[], None]] = []
        # --control (``sseplay.http.control``): the API's state, and each file route's gate.
        self.control: Control | None = None
        # --control or --expect-client: every request to a stream route, journaled.
        self.journal: RequestJournal | None = None
        self.gates: dict[str, Gate] = {}
        # --metrics (``sseplay.metrics``): the counters, or None.
        self.metrics: Metrics | None = None
        # Faults are looked at per connection only when there are any to look at (or
        # when the control API may arm some at run time).
        config = options.config
        self.faulty = bool(config.faults) or config.fault_header or config.control
        # Whether the seed is known to the user; else it is logged the first time a
        # request's own fault (--fault-header) draws from it.
        self.seed_named = options.seed_named
        # Fault injection is imported only by a server that has faults to inject.
        self.fault_counters: FaultCounters | None = None
        if self.faulty:
            from sseplay.faults.spec import FaultCounters

            self.fault_counters = FaultCounters()

    def fire(self, chosen: Chosen, route: str, number: int, where: str) -> bool:
        """Count and log one firing of a fault; False once its ``times=`` are used up."""
        assert self.fault_counters is not None
        if not self.fault_counters.fire(chosen):
            return False
        kind = chosen.spec.kind
        logger.info(
            "fault %s fired on %s connection %d %s",
            kind,
            route,
            number,
            where,
            extra={"route": route, "connection": number, "kind": kind, "reason": where},
        )
        if self.metrics is not None:
            self.metrics.fault_fired(kind)
        return True

    @property
    def timer(self) -> Timer:
        if self._timer is None:
            self._timer = Timer(asyncio.get_running_loop())
            if self.metrics is not None:
                self._timer.on_lag = self.metrics.lag
        return self._timer

    def start(self) -> None:
        """Start the broadcasts' timelines (they run from the moment the server is up) and
        the followers of followed inputs."""
        loop = asyncio.get_running_loop()
        if self.options.config.control:
            self._start_control()
        for stream in self._streams:
            if stream.follow is None:
                continue
            from sseplay.sources.follow import Follower, GrowingReplay, new_feed

            ping, gate = self.options.config.ping, self.gates.get(stream.route)
            feed: Feed
            if gate is not None:  # --control: its live part is held by the gate too
                first = stream.follow.count
                feed = GatedFeed(self.timer, ping, gate, first=first, on_end=self._broadcast_ended)
            else:
                feed = new_feed(stream.follow, self.timer, ping, self._broadcast_ended)
            replay = stream.replay if isinstance(stream.replay, GrowingReplay) else None
            follower = Follower(stream.follow, feed, replay)
            self.feeds[stream.route] = feed
            self.followers[stream.route] = follower
            feed.start()
            self._following.append(loop.create_task(follower.run()))
        if self.options.config.broadcast:
            origin = None
            if self.options.config.epoch is not None:
                # The epoch is a wall-clock moment shared by hosts and workers; the timer
                # runs on the loop's monotonic clock, so it is mapped onto it once, here.
                origin = self.timer.time() + (self.options.config.epoch - time.time())
            # Recorded streams share a timeline each from the same moment (recorded.py).
            self.broadcast_origin = self.timer.time() if origin is None else origin
            for stream in self._streams:
                if stream.replay is None:
                    continue
                broadcast = Broadcast(
                    stream.replay, self.timer, self.options.config.ping, self._broadcast_ended
                )
                if stream.follow is not None:
                    broadcast.hand_over = self._broadcast_handed_over
                self.broadcasts[stream.route] = broadcast
                broadcast.begin(origin)

    def _start_control(self) -> None:
        """--control: every file route gets a gate, and one that is not followed a live
        part after its file's events (as with --follow), where published events go."""
        for stream in self._streams:
            gate = self.gates[stream.route] = Gate(self.timer.clock)
            replay = stream.replay
            if stream.follow is not None or (replay is not None and replay.plan.loop):
                continue  # a followed input feeds its own; a loop never gets to one
            first = replay.file.count if replay is not None else 0
            feed = GatedFeed(self.timer, self.options.config.ping, gate, first=first)
            self.feeds[stream.route] = feed
            feed.start()

    async def stop_following(self) -> None:
        """Stop the followers (the server is stopping)."""
        tasks, self._following = self._following, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _broadcast_ended(self) -> None:
        if self.on_complete is not None:
            self.on_complete()

    def open(
        self, stream: Route, outlet: Outlet, start: Start | Resume, preamble: bytes
    ) -> Listener:
        """Start a connection's stream; it is listed before its first write, so that a
        shutdown at any moment ends it. A ``Resume`` starts it in the route's live feed."""
        gate = self.gates.get(stream.route)
        if isinstance(start, Resume):
            feed = self.feeds[stream.route]
            live = feed.subscribe(outlet, start)
            self.listeners.add(live)
            if gate is not None and isinstance(feed, GatedFeed):
                gate.join(outlet, 0, _waker(feed, live))
            feed.admit(live, preamble)
            return live
        assert stream.replay is not None
        broadcast = self.broadcasts.get(stream.route)
        if broadcast is not None:
            # A first connection joins live; a resuming one catches up from the history.
            resume = start if start.n or not start.known else None
            subscriber = broadcast.subscribe(outlet, resume)
            self.listeners.add(subscriber)
            broadcast.admit(subscriber, preamble)
            return subscriber
        ping = self.options.config.ping
        player = Player(outlet, stream.replay, self.timer, start, ping, self.on_complete)
        if stream.route in self.feeds:  # followed, or --control: it goes on live
            player.hand_over = self._player_handed_over
        if gate is not None:
            player.gate = gate
            gate.join(outlet, 0, player.wake)
        self.listeners.add(player)
        player.begin(preamble)
        return player

    def live_start(self, stream: Route, last_event_id: str | None, known: bool) -> Start | Resume:
        """Where a connection to a route with a live feed (``self.feeds``) starts: for a
        followed file, a ``Start`` in the replay of its existing records (it goes on into
        the feed at their end) or a ``Resume`` in the feed; for any other feed, where its
        ``resume`` says. ``known`` is False for a Last-Event-ID that is not UTF-8."""
        route = stream.route
        feed, follower = self.feeds[route], self.followers.get(route)
        if isinstance(feed, GatedFeed) and follower is None and stream.replay is not None:
            return self._control_start(stream.replay, feed, last_event_id, known)
        if follower is None:  # a feed of another source: its own resume rules
            resume = feed.resume(last_event_id if known else None)
            if known:
                return resume
            return Resume(resume.position, self._unknown(True, last_event_id, "the live edge"))
        source = follower.source
        broadcast = self.broadcasts.get(route)
        replaying = (
            stream.replay is not None
            and follower.reset_at is None
            and (broadcast is None or not broadcast.closed)
        )
        if last_event_id and known:
            number = positive_integer(last_event_id)
            if number is not None and number <= feed.position:
                if number < source.count and replaying:
                    return Start(number)
                return feed.resume(last_event_id)
        unknown = bool(last_event_id) or not known
        if source.from_end:
            return Resume(feed.position, self._unknown(unknown, last_event_id, "the live edge"))
        if replaying:
            return UNKNOWN if unknown else FROM_THE_START
        # No existing records to replay (none at start-up, or the file was truncated or
        # replaced since): the live part from its start, as far as the history reaches.
        if self.options.config.broadcast:
            first = feed.position  # a broadcast is joined live
        else:
            first = feed.first if follower.reset_at is None else follower.reset_at
        if first < feed.oldest:
            logger.warning(
                "%s: a new client starts at event %d: the %d before are no longer kept",
                route,
                feed.oldest + 1,
                feed.oldest - first,
            )
        notice = self._unknown(unknown, last_event_id, "the start")
        return Resume(max(first, feed.oldest), notice)

    @staticmethod
    def _control_start(
        replay: Replay, feed: GatedFeed, last_event_id: str | None, known: bool
    ) -> Start | Resume:
        """--control on a file route: a published event's id resumes in the live part,
        the file's own ids in the replay (its last one: at the start of the live part)."""
        if not known:
            return UNKNOWN
        if last_event_id and feed.published(last_event_id):
            return feed.resume(last_event_id)
        start = replay.start_after(last_event_id)
        if start.known and start.n >= replay.file.count:
            return Resume(start.n)
        return start

    @staticmethod
    def _unknown(unknown: bool, last_event_id: str | None, where: str) -> bytes:
        if not unknown:
            return b""
        return encode_comment(
            f"unknown Last-Event-ID {shown_id(last_event_id or '')}: from {where}"
        )

    def _player_handed_over(self, player: Player) -> None:
        """A connection's replay of the existing records is over: it goes on in the feed."""
        for stream in self._streams:
            if stream.replay is player.replay:
                feed = self.feeds[stream.route]
                subscriber = feed.subscribe(player.outlet, Resume(player.n))
                self._move(player, subscriber)
                if isinstance(feed, GatedFeed):
                    feed.gate.rejoin(player.outlet, _waker(feed, subscriber))
                feed.admit(subscriber)
                return

    def _broadcast_handed_over(
        self, broadcast: Broadcast, subscribers: list[LiveSubscriber]
    ) -> None:
        """The broadcast has played the existing records: its subscribers go on in the feed,
        which takes its history so that those that lag behind catch up (ids = positions)."""
        route = next(r for r, known in self.broadcasts.items() if known is broadcast)
        feed = self.feeds[route]
        history = broadcast.history()
        oldest = broadcast.position - len(history)
        feed.adopt([(str(oldest + i + 1), wire) for i, wire in enumerate(history)])
        for old in subscribers:
            new = feed.subscribe(old.outlet, Resume(old.seen_until))
            self._move(old, new)
            feed.admit(new)

    def _move(self, old: Listener, new: Listener) -> None:
        new.sent = old.sent
        self.listeners.discard(old)
        self.listeners.add(new)
        self._moved[old] = new
        if self.control is not None:
            self.control.moved(new)

    def close(self, stream: Route, listener: Listener) -> Listener:
        """The connection has ended; the listener that had it last (after a hand-over)."""
        listener = self._moved.pop(listener, listener)
        listener.outlet.close()
        self.listeners.discard(listener)
        gate = self.gates.get(stream.route)
        if gate is not None:
            gate.leave(listener.outlet)
        feed = self.feeds.get(stream.route)
        if feed is not None and isinstance(listener, LiveSubscriber):
            feed.unsubscribe(listener)
        broadcast = self.broadcasts.get(stream.route)
        if broadcast is not None and isinstance(listener, LiveSubscriber):
            broadcast.unsubscribe(listener)
        return listener

    def cut_off_stream(self, outlet: Outlet) -> None:
        """A client took nothing for the send timeout: end its request (ASGI has no other
        way to drop a connection); uvicorn's complaint about that is filtered out."""
        self.cut_off += 1
        if outlet.task is not None:
            outlet.task.cancel()

    def close_all(self) -> None:
        """End every open stream: the server is stopping."""
        self.stopping = True
        for stop in self.on_stop:
            stop()
        for broadcast in self.broadcasts.values():
            broadcast.closed = True
        for feed in self.feeds.values():
            feed.closed = True
        for listener in list(self.listeners):
            outlet = listener.outlet
            if isinstance(listener, JoiningListener):
                # Mid-backfill: its request may wait on Redis (a page, a lost server) and
                # its transport may hold a page the client has not taken, so an end
                # written now could not go out. It is dropped and its request ended
                # (it resumes at the next server); left alone, it would hold the server
                # until uvicorn's graceful timeout cancels it, with a traceback.
                task, direct = outlet.task, outlet.direct
                if not outlet.closed:
                    outlet.cut()
                if direct and task is not None:  # else cut() has cancelled it
                    task.cancel()
            elif outlet.blocked:
                outlet.cut()
            elif not outlet.closed and not outlet.completed:
                outlet.write(b"", more_body=False)


def _waker(feed: GatedFeed, subscriber: LiveSubscriber) -> Callable[[float], None]:
    """What the gate calls when it lets a feed's subscriber go on (``sseplay.gate``)."""
    return lambda held_for: feed.wake(subscriber)


class JoiningListener(Listener):
    """A connection to a Redis route while it is joining the feed (its backfill is read
    and written): the server stopping ends it, and cancels the join (``Hub.close_all``)."""

    __slots__ = ()
