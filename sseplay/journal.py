"""The journal (issue 26): every request to a stream route, in order, as its client made
it and as it ended, for a test to read and for the verdicts (``sseplay.verdict``) to
judge. Pure: the HTTP layer (``sseplay.http.journal``) tells it when a request starts
and ends; it keeps no socket, no request and no clock of its own (``clock`` gives the
entries' times, ``monotonic`` the gaps, which a change of the wall clock must not bend).

It is bounded in bytes: each entry is counted by an estimate of its JSON size when it
opens (a request's headers and the first ``MAX_BODY`` bytes of its body make most of
it), and once the total passes ``max_bytes`` the oldest entries are dropped and counted
in ``dropped``. The Python objects of an entry take about three times its JSON
(``benchmarks/control_load.py`` measures it). Entries are written per connection start
and end, never per event.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sseplay.config import DEFAULT_JOURNAL_BYTES  # 4 MiB: some 8,000 browser requests

# A request's body is kept up to this many bytes.
MAX_BODY = 4096
# What an entry costs beyond its texts: its keys, numbers and punctuation in JSON.
ENTRY_OVERHEAD = 260
# What a header costs beyond its name and value: quotes, colon, comma.
HEADER_OVERHEAD = 6
# How many clients' last end times are remembered (for ``gap_ms``): a client not seen
# for this many other clients starts anew.
MAX_CLIENTS = 10_000
# How an entry's request ended ("fault:KIND" for a fault that ended it).
ENDINGS = ("end", "204", "client left", "cut off", "error")


@dataclass(slots=True)
class Entry:
    """One request to a stream route: what its client sent, and, once it has ended, what
    it got and how it ended (``ended`` stays None while it is open)."""

    seq: int
    time: float
    route: str
    client: str
    connection: int
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: str
    last_event_id: str | None
    gap_ms: float | None = None
    status: int | None = None
    events: int = 0
    last_id: str | None = None
    ended: str | None = None
    retry_ms: int | None = None
    size: int = field(default=0, repr=False)

    def as_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": self.time,
            "route": self.route,
            "client": self.client,
            "connection": self.connection,
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "body": self.body,
            "last_event_id": self.last_event_id,
            "status": self.status,
            "events": self.events,
            "last_id": self.last_id,
            "ended": self.ended,
            "gap_ms": self.gap_ms,
            "retry_ms": self.retry_ms,
        }


def _size(entry: Entry, headers_size: int | None) -> int:
    texts = (entry.route, entry.client, entry.method, entry.path, entry.query, entry.body)
    size = ENTRY_OVERHEAD + sum(map(len, texts)) + len(entry.last_event_id or "")
    if headers_size is None:
        headers_size = sum(len(name) + len(value) for name, value in entry.headers.items())
    return size + headers_size + HEADER_OVERHEAD * len(entry.headers)


# What a listener is told: ("open" | "end", the entry) or ("dropped", the count so far).
Listener = Callable[[str, Any], None]


class Journal:
    """The requests so far, oldest first, within ``max_bytes``."""

    def __init__(
        self,
        max_bytes: int = DEFAULT_JOURNAL_BYTES,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] | None = None,
    ) -> None:
        if max_bytes < ENTRY_OVERHEAD:
            raise ValueError(f"a journal needs at least {ENTRY_OVERHEAD} bytes")
        self.max_bytes = max_bytes
        self.clock = clock
        # A given ``clock`` alone (a test's) measures the gaps too.
        self.monotonic = monotonic or (time.monotonic if clock is time.time else clock)
        self.entries: deque[Entry] = deque()
        self.size = 0
        self.dropped = 0
        self.listeners: list[Listener] = []
        self._seq = 0
        # Per client: when its last request ended (for the next one's gap).
        self._ended_at: OrderedDict[str, float] = OrderedDict()

    def open(
        self,
        *,
        route: str,
        client: str,
        connection: int,
        method: str,
        path: str,
        query: str,
        headers: dict[str, str],
        body: str,
        last_event_id: str | None,
        headers_size: int | None = None,
    ) -> Entry:
        """A request has come: its entry, open (``headers_size``: the lengths of the
        headers' names and values, when the caller has counted them)."""
        now = self.clock()
        self._seq += 1
        before = self._ended_at.get(client)
        gap = None if before is None else round(max(0.0, self.monotonic() - before) * 1000, 3)
        entry = Entry(
            self._seq,
            now,
            route,
            client,
            connection,
            method,
            path,
            query,
            headers,
            body[:MAX_BODY],
            last_event_id,
            gap,
        )
        entry.size = _size(entry, headers_size)
        self.entries.append(entry)
        self.size += entry.size
        self._tell("open", entry)
        self._bound()
        return entry

    def end(
        self,
        entry: Entry,
        *,
        ended: str,
        status: int | None,
        events: int = 0,
        last_id: str | None = None,
        retry_ms: int | None = None,
    ) -> None:
        """The request has ended (``ended``: one of ``ENDINGS`` or ``fault:KIND``)."""
        if entry.ended is not None:
            return
        entry.ended, entry.status, entry.events = ended, status, events
        entry.last_id, entry.retry_ms = last_id, retry_ms
        ended_at = self._ended_at
        ended_at[entry.client] = self.monotonic()
        ended_at.move_to_end(entry.client)
        if len(ended_at) > MAX_CLIENTS:
            ended_at.popitem(last=False)
        self._tell("end", entry)

    def clear(self) -> None:
        """Forget every entry and every client (``POST /_sseplay/reset``)."""
        self.entries.clear()
        self._ended_at.clear()
        self.size = 0
        self.dropped = 0

    def listing(self) -> list[dict[str, Any]]:
        return [entry.as_json() for entry in self.entries]

    def _bound(self) -> None:
        dropped = 0
        while self.size > self.max_bytes and len(self.entries) > 1:
            self.size -= self.entries.popleft().size
            dropped += 1
        if dropped:
            self.dropped += dropped
            self._tell("dropped", self.dropped)

    def _tell(self, kind: str, what: Any) -> None:
        for listener in self.listeners:
            listener(kind, what)
