"""Connections still waiting for their request head: closed when the head takes too
long, and, near the open-file limit, closed oldest first to keep room for new clients.

A connection that never finishes its request head (slowloris) costs the server nothing
but an open file, and nothing in uvicorn ever closes it: its keep-alive timeout runs
only between requests, and only once a first response is complete. Enough of them take
every file the process may open; then ``accept`` fails, and healthy clients, ``/healthz``
among them, get nothing. Here each head has ``header_timeout`` seconds from its first
byte (from the connection's start, for its first request); and when the connections
come near the open-file limit, the oldest of those still waiting for their head are
closed first, so that a reserve of files is always left for new ones."""

from __future__ import annotations

import asyncio
import logging
import os
from itertools import islice
from typing import Protocol

from uvicorn.server import ServerState

logger = logging.getLogger("sseplay.server")

# Files kept free for new connections, besides those the process had open when it began
# serving: at least RESERVE_FILES, or one in RESERVE_SHARE of the limit.
RESERVE_FILES = 32
RESERVE_SHARE = 64
# After the warning that the limit is near, it is given again only once the connections
# have fallen below this share of the room (one line per episode, not per connection).
CALM_SHARE = 0.75


class Waiter(Protocol):
    """A connection waiting for a request head (``HeadLimitedHttpToolsProtocol``)."""

    def head_timed_out(self) -> None: ...

    def drop(self) -> None: ...


class HeadWatch(ServerState):
    """uvicorn's ``ServerState`` (shared by the connections of one server), which also
    keeps the connections waiting for a request head, oldest first, and their deadlines.

    One timer per server, set for the oldest deadline, instead of one per connection:
    every connection waits for a head at least once, most for a few milliseconds."""

    def __init__(self, header_timeout: float) -> None:
        super().__init__()
        self.header_timeout = header_timeout
        # Connection -> when its head is due (loop time). A dict keeps the order of
        # arrival, and with one timeout for all that is the order of the deadlines.
        self.waiting: dict[Waiter, float] = {}
        # Connections dropped to make room, whose loss the loop has yet to report.
        self.dropped: set[Waiter] = set()
        # How many connections fit under the open-file limit with the reserve; None: no
        # limit (or none known).
        self.room: int | None = None
        self.near_limit = False
        self._timer: asyncio.TimerHandle | None = None

    def measure_room(self) -> None:
        """Work out ``room`` from the open-file limit now, and the files already open."""
        try:
            import resource
        except ImportError:  # Windows: no such limit
            return
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return
        reserve = max(RESERVE_FILES, soft // RESERVE_SHARE)
        self.room = max(soft - open_files() - reserve, 1)

    def wait_for_head(self, connection: Waiter, loop: asyncio.AbstractEventLoop) -> None:
        """``connection`` is waiting for (the rest of) a request head."""
        if connection in self.waiting:
            return
        self.waiting[connection] = loop.time() + self.header_timeout
        if self._timer is None:
            self._timer = loop.call_at(self.waiting[connection], self._expire, loop)

    def head_arrived(self, connection: Waiter) -> None:
        self.waiting.pop(connection, None)

    def gone(self, connection: Waiter) -> None:
        self.waiting.pop(connection, None)
        self.dropped.discard(connection)

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        now = loop.time()
        waiting = self.waiting
        while waiting:
            connection, due = next(iter(waiting.items()))
            if due > now:
                self._timer = loop.call_at(due, self._expire, loop)
                return
            del waiting[connection]
            connection.head_timed_out()

    def admit(self, connection: Waiter) -> None:
        """A connection has just been made: near the limit, make room for it (and for
        the next) by dropping the oldest connections still waiting for their head."""
        if self.room is None:
            return
        count = len(self.connections) - len(self.dropped)
        over = count - self.room
        if over <= 0:
            if self.near_limit and count < self.room * CALM_SHARE:
                self.near_limit = False
            return
        if not self.near_limit:
            self.near_limit = True
            logger.warning(
                "%d connections open, near the open-file limit: the oldest of those still "
                "sending their request head are closed to keep room for new clients "
                "(raise the limit with ulimit -n)",
                count,
            )
        for victim in list(islice(self.waiting, over + 1)):
            if over <= 0:
                break
            if victim is connection:  # the newest: it has had no time yet
                continue
            del self.waiting[victim]
            self.dropped.add(victim)
            victim.drop()
            over -= 1


def open_files() -> int:
    """How many files this process has open (0 where that cannot be told)."""
    for directory in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(directory))
        except OSError:
            continue
    return 0
