"""Writing due events to many connections from one timer.

The server everyone writes first gives each connection a task that sleeps until its
next event; sse-starlette adds a task group, three helper tasks and a cancel scope
per send. At thousands of connections that bookkeeping costs more than the writes.
Here one ``Timer`` keeps every stream's next deadline in a table of millisecond ticks
and, when it fires, writes all that is due straight into the server's ``send``. A
connection costs a task only while its client reads too slowly (back-pressure), and is
cut off when that lasts longer than the send timeout, so one frozen reader never holds
up the rest.

Deadlines are absolute (the start of the stream plus the event's offset in the
plan), so nothing drifts however long a stream runs; events already due go out
together in one write.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol, cast

from sseplay.direct import DirectBody
from sseplay.model import PING as PING  # re-exported: tests take it from here
from sseplay.replay import Replay, Start, Unreadable
from sseplay.schedule import Plan

logger = logging.getLogger("sseplay.fanout")

# A timer may fire a little early (libuv counts in milliseconds): what is due within
# this much is written now rather than after another wake-up.
TIMER_SLACK = 0.001
# Events a broadcast keeps so that a client reconnecting with Last-Event-ID catches up: at
# most this many, and at most this many bytes of them (the newest event is always kept).
BROADCAST_HISTORY = 10_000
BROADCAST_HISTORY_BYTES = 16 << 20

Send = Callable[[dict[str, Any]], Awaitable[None]]


class Clock(Protocol):
    """What the timer needs of an event loop; tests pass a fake one."""

    def time(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[], object]) -> asyncio.TimerHandle: ...


class Stream(Protocol):
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
        self._due: dict[int, list[Stream]] = {}
        self._ticks: list[int] = []
        self._handle: asyncio.TimerHandle | None = None
        self._armed_at = _NEVER

    def time(self) -> float:
        return self.clock.time()

    def at(self, when: float, stream: Stream) -> None:
        tick = self._add(when, stream)
        if tick < self._armed_at:
            self._arm(tick)

    def _add(self, when: float, stream: Stream) -> int:
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
        due: list[Stream] = []
        while ticks and ticks[0] <= last_due_tick:
            due.extend(self._due.pop(heapq.heappop(ticks)))
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


class Outlet:
    """One response body, written from the timer without a task per write.

    ``send`` is the ASGI server's coroutine function. Driving its coroutine by hand
    finishes it in one step unless the transport is paused (the client's buffers are
    full); only then does the rest of that write become a task, and ``on_drained``
    runs once it has gone out."""

    __slots__ = (
        "_direct",
        "_finisher",
        "_loop",
        "_on_cut_off",
        "_send",
        "_send_timeout",
        "_timeout",
        "blocked",
        "closed",
        "completed",
        "cut_off",
        "failure",
        "on_drained",
        "task",
    )

    def __init__(
        self,
        send: Send,
        send_timeout: float,
        on_cut_off: Callable[[Outlet], None],
        direct: DirectBody | None = None,
        task: asyncio.Task[None] | None = None,
    ) -> None:
        self._send: Send | None = send
        # The request's task, which holds the connection open until it ends.
        self.task = task
        self._direct = direct
        self._loop = asyncio.get_running_loop()
        self._send_timeout = send_timeout
        self._on_cut_off = on_cut_off
        self._finisher: asyncio.Task[None] | None = None
        self._timeout: asyncio.TimerHandle | None = None
        self.on_drained: Callable[[], None] = _nothing
        self.blocked = False
        self.closed = False
        self.completed = False
        self.cut_off = False
        # Why a write to this connection failed (it is then closed), or None.
        self.failure: str | None = None

    @property
    def direct(self) -> bool:
        """Whether chunks go straight to the server's transport (see ``sseplay.direct``)."""
        return self._direct is not None and self._direct.fast

    def write(self, chunk: bytes, more_body: bool = True) -> bool:
        """Send ``chunk`` (the last one when ``more_body`` is false); False when the client
        is not keeping up and the write finishes later, or when the write failed (the
        connection is then ended: ``failure`` says why). It never raises: one connection's
        failure must not reach the timer, the broadcast or the other connections."""
        send = self._send
        if self.completed or self.closed or send is None:
            return False
        direct = self._direct
        try:
            if direct is not None and direct.gone:
                self.fail("its connection was closed under it")
                return False
            if more_body and chunk and direct is not None and direct.write(chunk):
                return True
            if not more_body:
                self.completed = True
            message = {"type": "http.response.body", "body": chunk, "more_body": more_body}
            # ASGI's send is a coroutine function; typed Awaitable by Starlette.
            coroutine = cast(Coroutine[Any, Any, None], send(message))
            try:
                blocker = coroutine.send(None)
            except StopIteration:
                return True
        except OSError:  # ASGI 2.4: the server may say so when the client has gone
            self.closed = True
            return False
        except Exception as error:  # uvloop's RuntimeError on a closed transport, and others
            self.fail(f"a write failed: {type(error).__name__}: {error}")
            return False
        self.blocked = True
        self._finisher = self._loop.create_task(self._finish(coroutine, blocker))
        self._timeout = self._loop.call_later(self._send_timeout, self.cut)
        return False

    async def _finish(self, coroutine: Coroutine[Any, Any, None], blocker: object) -> None:
        try:
            while True:
                if isinstance(blocker, asyncio.Future):
                    # Wait without taking its result: the coroutine takes it (or its error).
                    await asyncio.wait((blocker,))
                else:  # a bare yield, as asyncio.sleep(0) does
                    await asyncio.sleep(0)
                try:
                    blocker = coroutine.send(None)
                except StopIteration:
                    break
        except asyncio.CancelledError:
            coroutine.close()
            raise
        except OSError:
            self.closed = True
        except Exception as error:
            self.blocked = False
            self._finisher = None
            self.fail(f"a write failed: {type(error).__name__}: {error}")
            return
        self.blocked = False
        self._finisher = None
        if self._timeout is not None:
            self._timeout.cancel()
            self._timeout = None
        if not self.closed:
            self.on_drained()

    def cut(self) -> None:
        """The client took nothing for ``send_timeout`` seconds: stop writing to it and
        drop the connection (the server's ``send`` stays paused until it reads)."""
        self._timeout = None
        self.cut_off = True
        if self._direct is not None and self._direct.fast:
            # The server sees the connection lost and tells the response so.
            self._direct.abort()
        else:
            self._on_cut_off(self)
        self.close()

    def fail(self, reason: str) -> None:
        """A write to this connection failed: end it, and only it. Its request is ended
        the way a client cut off is (the server may never tell it of the loss)."""
        if self.closed:
            return
        self.failure = reason
        self._on_cut_off(self)
        self.close()

    def close(self) -> None:
        self.closed = True
        # A closed outlet lets go of the connection: its listener may wait in the timer's
        # table until its next deadline, and the listener's callback points back at it.
        # Without that cycle, and without the server's objects, what a connection leaves
        # goes at once, by reference counting, not at a collector pass (rare by design,
        # see server.py), so clients that come and go never grow the server.
        self.on_drained = _nothing
        self.task = None
        self._send = None
        self._direct = None
        if self._timeout is not None:
            self._timeout.cancel()
            self._timeout = None
        if self._finisher is not None:
            self._finisher.cancel()
            self._finisher = None


def _nothing() -> None:
    pass


class Listener:
    """What a connection's response holds: its outlet and how many events it got."""

    __slots__ = ("complete", "outlet", "sent")

    def __init__(self, outlet: Outlet) -> None:
        self.outlet = outlet
        self.sent = 0
        self.complete = False

    @property
    def closed(self) -> bool:
        return self.outlet.closed


class Player(Listener):
    """One connection's own replay, from ``start``, played by the shared timer."""

    __slots__ = (
        "_due",
        "_fetching",
        "_last_write",
        "_on_complete",
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

    def _write_due(self, now: float, prefix: bytes) -> float | None:
        plan = self.replay.plan
        n = self.n
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
        self.sent += stop - n
        self.n = stop
        if following is not None and stop == n + 1:
            self._due = following
        else:
            self._due = self.origin + plan.offset(stop)
        last = self.replay.is_over(stop)
        if self._write(now, prefix + chunk if prefix else chunk, not last) and not last:
            return self._next_wake()
        if last and not self.outlet.blocked:
            self._finished()
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
        if self.outlet.completed:
            self._finished()
        else:
            self.timer.at(self.timer.time(), self)

    def _finished(self) -> None:
        self.complete = True
        if self._on_complete is not None:
            self._on_complete()


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


class Subscriber(Listener):
    """One connection following a broadcast; ``seen_until`` is the next event it needs."""

    __slots__ = ("seen_until",)

    def __init__(self, outlet: Outlet, seen_until: int) -> None:
        super().__init__(outlet)
        self.seen_until = seen_until


class Broadcast:
    """One shared timeline: every event encoded once, every subscriber sent the same chunk."""

    def __init__(
        self,
        replay: Replay,
        timer: Timer,
        ping: float,
        on_end: Callable[[], None] | None = None,
    ) -> None:
        self.replay = replay
        self.timer = timer
        self.ping = ping
        self.position = 0  # sequence number of the next event to fall due
        self.ended = False
        self.closed = False
        self._on_end = on_end
        self._origin = 0.0
        self._last_write = 0.0
        self._fetching: asyncio.Task[None] | None = None
        # In joining order (a dict, not a set): each tick writes to everyone in one pass,
        # and a set would reshuffle that order as it grows, moving a subscriber's moment
        # within the pass from one event to the next.
        self._subscribers: dict[Subscriber, None] = {}
        self._history: deque[bytes] = deque()
        self.history_bytes = 0

    def begin(self, origin: float | None = None) -> None:
        """Start the timeline now (the server has started), or at ``origin`` on the timer's
        clock (``--epoch``). A future origin waits, with pings meanwhile; a past one starts
        where the timeline is now, after replaying into the history what a client resuming
        from another host or worker may still ask for (ids are positions, so it finds them)."""
        now = self.timer.time()
        self._origin = now if origin is None else origin
        self._last_write = now
        if self._origin < now:
            due = due_count(self.replay.plan, now - self._origin)
            self.position = max(0, due - BROADCAST_HISTORY)
            logger.info(
                "the broadcast started %.3f s ago (--epoch): %d events are due",
                now - self._origin,
                due,
            )
        elif self._origin > now:
            logger.info("the broadcast starts in %.3f s (--epoch)", self._origin - now)
        self.timer.at(now, self)

    def play(self, now: float) -> float | None:
        plan = self.replay.plan
        stop = plan.due_stop(
            self.position, now + TIMER_SLACK - self._origin, self.replay.batch_limit
        )
        if stop > self.position:
            chunk, stop = self.replay.chunk(self.position, stop)
            if stop == self.position:
                self._fetching = asyncio.get_running_loop().create_task(self._fetch())
                return None
            first, self.position = self.position, stop
            if stop == first + 1:
                self._remember(chunk)
            else:  # the history keeps single events, for any resume point
                for n in range(first, stop):
                    self._remember(self.replay.chunk(n, n + 1)[0])
            self.ended = self.replay.is_over(stop)
            self._last_write = now
            for subscriber in list(self._subscribers):
                self._deliver(subscriber, first, chunk)
            if self.ended:
                self.closed = True
                logger.info("the broadcast has played to its end")
                if self._on_end is not None:
                    self._on_end()
                return None
        elif self.ping and now - self._last_write >= self.ping - TIMER_SLACK:
            self._last_write = now
            for subscriber in list(self._subscribers):
                if not subscriber.outlet.blocked:
                    subscriber.outlet.write(PING)
        due = self._origin + plan.offset(self.position)
        return min(due, self._last_write + self.ping) if self.ping else due

    def _remember(self, event: bytes) -> None:
        """Keep an event for resuming clients, within the history's count and bytes."""
        history = self._history
        history.append(event)
        self.history_bytes += len(event)
        while len(history) > 1 and (
            len(history) > BROADCAST_HISTORY or self.history_bytes > BROADCAST_HISTORY_BYTES
        ):
            self.history_bytes -= len(history.popleft())

    async def _fetch(self) -> None:
        try:
            await self.replay.fetch(self.position)
        except Unreadable:  # logged once by the replay
            self.ended = self.closed = True
            for subscriber in list(self._subscribers):
                subscriber.outlet.write(b"", more_body=False)
            return
        finally:
            self._fetching = None
        self.timer.at(self.timer.time(), self)

    def _deliver(self, subscriber: Subscriber, first: int, chunk: bytes) -> None:
        if subscriber.closed or subscriber.outlet.blocked:
            return  # it catches up from the history once its write has gone out
        if subscriber.seen_until != first:
            self._catch_up(subscriber)
            return
        subscriber.sent += self.position - first
        subscriber.seen_until = self.position
        subscriber.complete = self.ended
        subscriber.outlet.write(chunk, more_body=not self.ended)

    def subscribe(self, outlet: Outlet, resume: Start | None) -> Subscriber:
        """A new subscriber, live from now, or, when ``resume`` is a known position, from
        there as far as the history reaches. Events before ``resume`` are skipped (a client
        may be ahead of a restarted timeline). Nothing is written until ``admit``."""
        seen_until = self.position
        if resume is not None and resume.known:
            seen_until = resume.n
            oldest = self.position - len(self._history)
            if resume.n < oldest:
                logger.warning(
                    "a client resumed at event %d, older than the %d kept: it misses %d events",
                    resume.n + 1,
                    len(self._history),
                    oldest - resume.n,
                )
                seen_until = oldest
        subscriber = Subscriber(outlet, seen_until)
        outlet.on_drained = lambda: self._catch_up(subscriber)
        self._subscribers[subscriber] = None
        return subscriber

    def admit(self, subscriber: Subscriber, preamble: bytes) -> None:
        """Write the preamble and what the subscriber missed; from now on it is live."""
        if preamble:
            subscriber.outlet.write(preamble)
        self._catch_up(subscriber)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.pop(subscriber, None)

    def _catch_up(self, subscriber: Subscriber) -> None:
        """Write the events ``subscriber`` has missed that are still in the history."""
        if subscriber.closed or subscriber.outlet.blocked or subscriber.outlet.completed:
            return
        missed = self.position - subscriber.seen_until
        chunk = b""
        if missed > 0:
            skip = max(0, len(self._history) - missed)
            backlog = list(itertools.islice(self._history, skip, None))
            subscriber.sent += len(backlog)
            subscriber.seen_until = self.position
            chunk = b"".join(backlog)
        subscriber.complete = self.ended
        if chunk or self.ended:
            subscriber.outlet.write(chunk, more_body=not self.ended)
