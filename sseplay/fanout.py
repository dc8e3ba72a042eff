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
import contextlib
import heapq
import itertools
import logging
import math
import socket
import struct
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol, cast

from sseplay.http.uvicorn.direct import DirectBody
from sseplay.model import PING as PING  # re-exported: tests take it from here
from sseplay.model import encode_retry
from sseplay.replay import Replay, Start, Unreadable
from sseplay.schedule import Plan

if TYPE_CHECKING:
    from sseplay.faults.spec import Chosen

logger = logging.getLogger("sseplay.fanout")

# A timer may fire a little early (libuv counts in milliseconds): what is due within
# this much is written now rather than after another wake-up.
TIMER_SLACK = 0.001
# Events a broadcast keeps so that a client reconnecting with Last-Event-ID catches up: at
# most this many, and at most this many bytes of them (the newest event is always kept).
BROADCAST_HISTORY = 10_000
BROADCAST_HISTORY_BYTES = 16 << 20
# Pings during a ``stall`` with ``pings=keep`` when the server sends none (--ping 0).
DEFAULT_STALL_PING = 15.0

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
        """Whether chunks go straight to the server's transport (see
        ``sseplay.http.uvicorn.direct``)."""
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

    def held_by_connection(self) -> None:
        """No request task waits on this response any more (its connection holds it, see
        ``HeadLimitedHttpToolsProtocol.hold``): a stream cut off, or whose write failed,
        is ended by dropping its connection, which then tells its end."""
        self.task = None
        self._on_cut_off = Outlet._drop

    def _drop(self) -> None:
        if self._direct is not None:
            self._direct.abort()

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
        ends = last and self.hand_over is None
        if self._write(now, prefix + chunk if prefix else chunk, not ends) and not last:
            return self._next_wake()
        if last and self.hand_over is not None:
            self.hand_over(self)
        elif last and not self.outlet.blocked:
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
        # --follow: at the end of the timeline its subscribers are not ended but handed
        # over (to the route's live feed) with the history, for those that lag behind.
        self.hand_over: Callable[[Broadcast, list[Subscriber]], None] | None = None
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
            over = self.replay.is_over(stop)
            self.ended = over and self.hand_over is None
            self._last_write = now
            for subscriber in list(self._subscribers):
                self._deliver(subscriber, first, chunk)
            if over and self.hand_over is not None:
                self.ended = self.closed = True
                subscribers = list(self._subscribers)
                self._subscribers.clear()
                logger.info("the broadcast has played the existing records: live from here")
                self.hand_over(self, subscribers)
                return None
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

    def history(self) -> list[bytes]:
        """The events kept, oldest first: the positions up to ``position``."""
        return list(self._history)

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


# Faults (see ``sseplay.faults.spec``): a connection chosen for one gets a ``FaultyOutlet``
# instead of an ``Outlet``; every other connection keeps the plain one, so that the
# fan-out path runs nothing more per event when no fault is configured.

# Between two slices of ``slice``: long enough for the client to read each in its own
# read on a local connection, short enough for a test to be fast.
SLICE_PAUSE = 0.002
# How often a ``reset`` looks whether what it wrote has left the transport, and for how
# long at most: the reset must not throw away the event before it.
RESET_POLL = 0.005
RESET_WAIT = 2.0


class _Pause:
    __slots__ = ("keep_pings", "seconds")

    def __init__(self, seconds: float | None, keep_pings: bool) -> None:
        self.seconds = seconds  # None: until the client goes
        self.keep_pings = keep_pings


class _Sliced:
    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class _End:
    """The last chunk of the response (``more_body`` false)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class _HangUp:
    __slots__ = ("reset",)

    def __init__(self, reset: bool) -> None:
        self.reset = reset


_Item = bytes | _Pause | _Sliced | _End | _HangUp


def _is_event(block: bytes) -> bool:
    """Whether a block (up to and with its blank line) is an event, not a comment or a
    lone ``retry:``: sseplay writes every event with a ``data:`` line (WHATWG 9.2.6: a
    block without data dispatches nothing)."""
    return block.startswith(b"data:") or b"\ndata:" in block


class FaultyOutlet(Outlet):
    """An outlet that carries out the faults chosen for its connection.

    It sees the same writes as an ``Outlet`` (whole blocks: events, comments, ``retry:``)
    and counts the events in them; a fault acts before or after event N of this
    connection. Pauses (``stall``, ``delay``, ``slice``) and hang-ups go through a queue
    drained by a task of its own; meanwhile the outlet says it is ``blocked``, so that the
    player or the broadcast holds back, exactly as for a client that reads slowly, and
    resumes on ``on_drained``."""

    __slots__ = (
        "_base_blocked",
        "_chosen",
        "_drain",
        "_fire",
        "_jitter",
        "_owed_drain",
        "_ping",
        "_producer_drained",
        "_pump",
        "_queue",
        "_slicing",
        "_started",
        "_transport",
        "events",
        "fault_end",
    )

    def __init__(
        self,
        send: Send,
        send_timeout: float,
        on_cut_off: Callable[[Outlet], None],
        direct: DirectBody | None,
        task: asyncio.Task[None] | None,
        *,
        chosen: list[Chosen],
        fire: Callable[[Chosen, str], bool],
        transport: asyncio.BaseTransport | None,
        ping: float,
        jitter: Callable[[int], float],
    ) -> None:
        self._base_blocked = False
        self._producer_drained: Callable[[], None] = _nothing
        self._pump: asyncio.Task[None] | None = None
        super().__init__(send, send_timeout, on_cut_off, direct, task)
        self._chosen = chosen
        self._fire = fire
        self._transport = transport
        self._ping = ping or DEFAULT_STALL_PING
        self._jitter = jitter
        self._queue: deque[_Item] = deque()
        self._drain = asyncio.Event()
        self._owed_drain = False
        self._slicing = False
        self._started = False
        self.events = 0
        # Why the stream ended early ("fault drop"), or None.
        self.fault_end: str | None = None

    # ``Outlet`` sets ``blocked`` and calls ``on_drained`` for its own writes; here both
    # also cover the queue, and the producer is told only once the queue is empty.

    @property
    def blocked(self) -> bool:
        return self._base_blocked or self._pump is not None

    @blocked.setter
    def blocked(self, value: bool) -> None:
        self._base_blocked = value

    @property
    def on_drained(self) -> Callable[[], None]:
        return self._base_drained

    @on_drained.setter
    def on_drained(self, callback: Callable[[], None]) -> None:
        self._producer_drained = callback

    def _base_drained(self) -> None:
        if self._pump is not None:
            self._drain.set()
        elif self._owed_drain:
            self._owed_drain = False
            self._producer_drained()

    def write(self, chunk: bytes, more_body: bool = True) -> bool:
        if self.fault_end is not None or self.closed or self.completed:
            return False
        if not self._started:
            self._started = True
            self._after(0)
        start = 0
        while self.fault_end is None:
            end = chunk.find(b"\n\n", start)
            if end < 0:
                if start < len(chunk):
                    self._emit(chunk[start:])
                break
            block = chunk[start : end + 2]
            start = end + 2
            if _is_event(block):
                self._event(block)
            else:
                self._emit(block)
        if self.fault_end is not None:
            return False
        if not more_body:
            self._put(_End(b""))
        if self._pump is None and not self._base_blocked:
            return True
        self._owed_drain = True
        return False

    def _event(self, block: bytes) -> None:
        n = self.events = self.events + 1
        out = [block]
        for chosen in self._chosen:
            spec = chosen.spec
            kind = spec.kind
            if kind == "cut" and n == spec.after + 1 and self._fire(chosen, spec.where):
                keep = len(block) // 2 if spec.cut_bytes is None else spec.cut_bytes
                self._emit(block[:keep])
                self._end("fault cut", _HangUp(reset=False))
                return
            if kind == "delay" and n > spec.after:
                if n == spec.after + 1 and not self._fire(chosen, spec.where):
                    # Its times= are used up: not for this connection either.
                    self._chosen = [other for other in self._chosen if other is not chosen]
                    continue
                extra = spec.ms + (self._jitter(n) * spec.jitter_ms if spec.jitter_ms else 0)
                self._put(_Pause(extra / 1000, keep_pings=False))
            elif n != spec.at:
                continue
            elif kind == "skip" and self._fire(chosen, spec.where):
                out = []
            elif kind == "duplicate" and self._fire(chosen, spec.where):
                out = out * 2
            elif kind == "malformed" and self._fire(chosen, spec.where):
                from sseplay.faults.spec import malform

                out = [malform(event, spec.damage) for event in out]
        for event in out:
            self._emit(event)
        self._after(n)

    def _after(self, n: int) -> None:
        """What fires after event ``n`` of this connection (0: before the first)."""
        for chosen in self._chosen:
            spec = chosen.spec
            if spec.after != n or spec.kind not in ("drop", "reset", "stall", "slice"):
                continue
            if not self._fire(chosen, spec.where):
                continue
            if spec.kind == "drop":
                if spec.retry is not None:
                    self._emit(encode_retry(spec.retry))
                self._end("fault drop", _End(b""))
                return
            if spec.kind == "reset":
                self._end("fault reset", _HangUp(reset=True))
                return
            if spec.kind == "stall":
                self._put(_Pause(spec.seconds or None, spec.keep_pings))
            else:
                self._slicing = True

    def _end(self, why: str, last: _Item) -> None:
        self._put(last)
        self.fault_end = why

    def _emit(self, data: bytes) -> None:
        if self._slicing:
            self._put(_Sliced(data))
        elif self._pump is None and not self._base_blocked:
            super().write(data)
        else:
            self._put(data)

    def _put(self, item: _Item) -> None:
        self._queue.append(item)
        if self._pump is None:
            self._pump = self._loop.create_task(self._run_queue())

    async def _run_queue(self) -> None:
        try:
            while self._queue and not self.closed:
                item = self._queue.popleft()
                await self._drained()
                if isinstance(item, bytes):
                    super().write(item)
                elif isinstance(item, _Sliced):
                    await self._write_slices(item.data)
                elif isinstance(item, _Pause):
                    await self._pause(item)
                elif isinstance(item, _End):
                    super().write(item.data, more_body=False)
                else:
                    await self._hang_up(item.reset)
            await self._drained()
        finally:
            self._pump = None
        if not self.closed and self.fault_end is None and self._owed_drain:
            self._owed_drain = False
            self._producer_drained()

    async def _drained(self) -> None:
        """Wait until the last write has gone out (the client reads slowly)."""
        while self._base_blocked and not self.closed:
            self._drain.clear()
            await self._drain.wait()

    async def _write_slices(self, data: bytes) -> None:
        size = next(c.spec.size for c in self._chosen if c.spec.kind == "slice")
        for start in range(0, len(data), size):
            await asyncio.sleep(SLICE_PAUSE)
            await self._drained()
            if self.closed:
                return
            super().write(data[start : start + size])

    async def _pause(self, pause: _Pause) -> None:
        loop = self._loop
        end = math.inf if pause.seconds is None else loop.time() + pause.seconds
        while not self.closed:
            left = end - loop.time()
            if left <= 0:
                return
            if pause.keep_pings:
                await asyncio.sleep(min(left, self._ping))
                if loop.time() < end and not self._base_blocked:
                    super().write(PING)
            elif math.isinf(left):
                await loop.create_future()  # until the client goes: close() cancels it
            else:
                await asyncio.sleep(left)

    async def _hang_up(self, reset: bool) -> None:
        """Close the connection under the response: gracefully (FIN) for ``cut``, with a
        TCP RST for ``reset`` (SO_LINGER 0, RFC 9293 section 3.10.7.1's abort)."""
        transport = self._transport
        if transport is None or transport.is_closing():
            # Not uvicorn's httptools protocol: ending the response is what is left.
            super().write(b"", more_body=False)
            return
        if not reset:
            transport.close()  # what is buffered goes out first
            return
        waited = 0.0
        while getattr(transport, "get_write_buffer_size", lambda: 0)() and waited < RESET_WAIT:
            await asyncio.sleep(RESET_POLL)
            waited += RESET_POLL
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        if isinstance(transport, asyncio.WriteTransport):
            transport.abort()
        else:
            transport.close()

    def close(self) -> None:
        super().close()
        pump, self._pump = self._pump, None
        if pump is not None and pump is not asyncio.current_task():
            pump.cancel()
        self._queue.clear()
