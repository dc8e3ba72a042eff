"""The faulty outlet: the faults chosen for a connection, carried out on its stream.

Faults (see ``sseplay.faults.spec``): a connection chosen for one gets a ``FaultyOutlet``
instead of an ``Outlet``; every other connection keeps the plain one, so that the
fan-out path runs nothing more per event when no fault is configured. Under ``--control``
every stream connection gets one, so that a fault can be armed on it while it streams
(``FaultyOutlet.arm``); with no fault it only counts the events it passes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
import struct
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

from sseplay.model import PING, ends_block, retry_after, stream_tail
from sseplay.outlet import DirectWriter, Outlet, Send

if TYPE_CHECKING:
    from sseplay.faults.spec import Chosen, FaultSpec

# Pings during a ``stall`` with ``pings=keep`` when the server sends none (--ping 0).
DEFAULT_STALL_PING = 15.0
# Between two slices of ``slice``: long enough for the client to read each in its own
# read on a local connection, short enough for a test to be fast.
SLICE_PAUSE = 0.002
# How often a ``reset`` looks whether what it wrote has left the transport, and for how
# long at most: the reset must not throw away the event before it.
RESET_POLL = 0.005
RESET_WAIT = 2.0


def _nothing() -> None:
    pass


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


# The last chunk counted by an outlet with no fault, and its events: a fan-out writes the
# same bytes to every connection, counted once (one chunk held a little longer, at most).
_counted: tuple[bytes | None, int] = (None, 0)


def _count_events(chunk: bytes) -> int:
    """How many events (see ``_is_event``) the whole blocks of ``chunk`` hold."""
    count = start = 0
    while (end := chunk.find(b"\n\n", start)) >= 0:
        if chunk.startswith(b"data:", start) or chunk.find(b"\ndata:", start, end + 2) >= 0:
            count += 1
        start = end + 2
    return count


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
        "_error_frame",
        "_fire",
        "_framed",
        "_jitter",
        "_owed_drain",
        "_ping",
        "_producer_drained",
        "_pump",
        "_queue",
        "_slicing",
        "_started",
        "_tail",
        "_transport",
        "events",
        "fault_end",
        "retry_sent",
    )

    def __init__(
        self,
        send: Send,
        send_timeout: float,
        on_cut_off: Callable[[Outlet], None],
        direct: DirectWriter | None,
        task: asyncio.Task[None] | None,
        *,
        chosen: list[Chosen],
        fire: Callable[[Chosen, str], bool],
        transport: asyncio.BaseTransport | None,
        ping: float,
        jitter: Callable[[int], float],
        error_frame: bytes | None = None,
        framed: bool = False,
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
        # A shaped stream's own mid-stream error (``error-event``); None elsewhere, where
        # the fault only ends the stream.
        self._error_frame = error_frame
        # Each write is one event (a shaped stream that is not SSE: an NDJSON line, an
        # element of a JSON array), instead of blocks ended by a blank line.
        self._framed = framed
        # The last bytes of the stream (framed): a write may end inside an event (a
        # recorded read), where a retry: or a ping of a fault must not go as a block.
        self._tail = b"\n\n"
        self._queue: deque[_Item] = deque()
        self._drain = asyncio.Event()
        self._owed_drain = False
        self._slicing = False
        # Whether what fires before the first event has been looked at (nothing to look
        # at without faults).
        self._started = not chosen
        self.events = 0
        # Why the stream ended early ("fault drop"), or None.
        self.fault_end: str | None = None
        # The retry: a drop fault sent before it ended the stream (the journal's retry_ms).
        self.retry_sent: int | None = None

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
        if not self._chosen and self._pump is None:
            # No fault (yet): the chunk goes out whole, its events counted for one armed
            # later (``arm``). Most chunks are one event or one ping: no loop for those.
            global _counted
            counted = _counted
            if self._framed:
                if chunk and chunk is not PING:
                    self.events += 1
                    self._tail = stream_tail(self._tail, chunk)
            elif chunk is counted[0]:
                self.events += counted[1]
            else:
                events = 0
                if chunk.startswith(b"data:") or b"\ndata:" in chunk:
                    events = 1 if chunk.count(b"\n\n") == 1 else _count_events(chunk)
                self.events += events
                _counted = (chunk, events)
            if Outlet.write(self, chunk, more_body):
                return True
            self._owed_drain = True
            return False
        if self.fault_end is not None or self.closed or self.completed:
            return False
        if not self._started:
            self._started = True
            self._after(0)
        start = 0
        if self._framed:
            if chunk is PING:  # --ping's comment: not a frame of the stream
                self._emit(chunk)
            elif chunk:
                self._event(chunk)
            start = len(chunk)
        while self.fault_end is None and start < len(chunk):
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

    def arm(self, specs: Iterable[FaultSpec]) -> int:
        """Faults armed on this connection while it streams (the control API): their
        ``after=`` and ``at=`` count from the events it has been sent, which are returned.
        Their ``times=`` are counted with those of the same spec named by requests."""
        from sseplay.faults.spec import Chosen  # faults' own module loads when faults are used

        base = self.events
        armed = [
            Chosen(replace(spec, after=spec.after + base, at=spec.at + base), spec)
            for spec in specs
        ]
        self._chosen = [*self._chosen, *armed]
        if self._started:  # else the first write looks at them, with the others
            self._after(base, armed)
        return base

    def _after(self, n: int, chosen_ones: list[Chosen] | None = None) -> None:
        """What fires after event ``n`` of this connection (0: before the first)."""
        for chosen in self._chosen if chosen_ones is None else chosen_ones:
            spec = chosen.spec
            if spec.after != n or spec.kind not in (
                "drop",
                "reset",
                "stall",
                "slice",
                "error-event",
            ):
                continue
            if not self._fire(chosen, spec.where):
                continue
            if spec.kind == "error-event":
                # After a 200 the status cannot change: the provider's error goes in the
                # body, and the response ends (llm-wire.md, "Mid-stream error").
                if self._error_frame:
                    self._emit(self._error_frame)
                self._end("fault error-event", _End(b""))
                return
            if spec.kind == "drop":
                if spec.retry is not None:
                    self._emit(retry_after(self._tail, spec.retry))
                    self.retry_sent = spec.retry
                self._end("fault drop", _End(b""))
                return
            if spec.kind == "reset":
                self._end("fault reset", _HangUp(reset=True))
                return
            if spec.kind == "stall":
                # Pings only between events (a framed write may end inside one).
                between = ends_block(self._tail)
                self._put(_Pause(spec.seconds or None, spec.keep_pings and between))
            else:
                self._slicing = True

    def _end(self, why: str, last: _Item) -> None:
        self._put(last)
        self.fault_end = why

    def _emit(self, data: bytes) -> None:
        if self._framed and data and data is not PING:
            self._tail = stream_tail(self._tail, data)
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
