"""A response played on a timetable: its head, then the pieces of its body, each at its
absolute deadline, by the server's shared ``Timer`` into an ``Outlet``: no task per
connection.

Used for every answer that is worked out whole before it is sent: a recorded exchange
played back (``sseplay.recordings``) and a shaped model response (``sseplay.shapes``).
The deadlines are seconds after the request came (``origin``): absolute, so nothing
drifts however long the body runs; what is due together goes out in one write.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter

from sseplay.model import PING, ends_block, stream_tail
from sseplay.outlet import Listener, Outlet
from sseplay.timer import TIMER_SLACK, Timer

# A piece's deadline and its bytes (``TimedResponse.pieces``), as C callables.
DEADLINE = itemgetter(0)
_DATA = itemgetter(1)


@dataclass(frozen=True, slots=True)
class TimedResponse:
    """A whole response as it is played: the status and headers, when the head goes out,
    and the pieces of the body with their deadlines (seconds after the request came, in
    order). ``is_stream``: an event stream, which may get ``: ping`` comments."""

    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    head_at: float
    pieces: tuple[tuple[float, bytes], ...]
    is_stream: bool


class TimedPlayer(Listener):
    """One response body played by the shared timer: each piece at its absolute deadline
    (``origin`` plus its offset), what is due together in one write, and a ``: ping``
    after ``ping`` seconds of silence when asked for (event streams only).

    ``one_by_one``: each piece in a write of its own, for an outlet that counts writes as
    events (a fault on a stream that is not SSE: NDJSON lines, a JSON array).

    A ping goes only where an event has ended: a piece may end inside one (a recorded
    network read, ``--chunks``), and a comment there would end its line, its blank line
    the event (WHATWG HTML 9.2.6)."""

    __slots__ = (
        "_last_write",
        "_next",
        "_on_end",
        "_tail",
        "one_by_one",
        "origin",
        "ping",
        "response",
        "timer",
    )

    def __init__(
        self,
        outlet: Outlet,
        response: TimedResponse,
        timer: Timer,
        origin: float,
        ping: float,
        on_end: Callable[[TimedPlayer], None] | None = None,
        *,
        one_by_one: bool = False,
    ) -> None:
        super().__init__(outlet)
        self.response = response
        self.timer = timer
        self.origin = origin
        self.ping = ping if response.is_stream else 0.0
        self.one_by_one = one_by_one
        self._next = 0
        self._last_write = timer.time()
        self._on_end = on_end
        # The last bytes written (with pings on): whether an event has ended there.
        self._tail = b"\n\n"
        outlet.on_drained = self._drained

    def begin(self) -> None:
        when = self.play(self.timer.time())
        if when is not None:
            self.timer.at(when, self)

    def play(self, now: float) -> float | None:
        pieces = self.response.pieces
        horizon = now - self.origin + TIMER_SLACK
        while not self.outlet.blocked:  # else ``_drained`` brings it back
            start = self._next
            if self.one_by_one:
                stop = start + 1 if start < len(pieces) and pieces[start][0] <= horizon else start
            else:
                # What is due, found in C: a long recording all due at once (--interval 0)
                # is 100,000 pieces, which a loop in Python took 10 ms to walk.
                stop = bisect_right(pieces, horizon, lo=start, key=DEADLINE)
            if stop > start:
                chunk = b"".join(map(_DATA, pieces[start:stop]))
                self.sent += stop - self._next
                self._next = stop
                self._last_write = now
                if self.ping:
                    self._tail = stream_tail(self._tail, chunk)
                if stop == len(pieces):
                    self._write_end(chunk)
                    return None
                if not self.outlet.write(chunk):
                    return None
                if self.one_by_one:
                    continue  # the next piece, if it is due too
            elif not pieces:
                self._write_end(b"")
                return None
            elif (
                self.ping
                and now - self._last_write >= self.ping - TIMER_SLACK
                and ends_block(self._tail)
            ):
                self._last_write = now
                if not self.outlet.write(PING):
                    return None
            due = self.origin + pieces[self._next][0]
            if self.ping and ends_block(self._tail):
                return min(due, self._last_write + self.ping)
            return due
        return None

    def _write_end(self, chunk: bytes) -> None:
        self.outlet.write(chunk, more_body=False)
        if not self.outlet.blocked:
            self._finished()

    def _drained(self) -> None:
        if self.outlet.completed:
            self._finished()
        else:
            self.timer.at(self.timer.time(), self)

    def _finished(self) -> None:
        if self.complete:
            return
        self.complete = True
        if self._on_end is not None:
            self._on_end(self)
