"""``tail --check-delivery``'s run: read one connection for ``--timeout`` (or ``--count``
events), noting when the headers and each event came, then ``judge`` it
(``sseplay.client.delivery``)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from sseplay.client.delivery import (
    Arrival,
    Delivery,
    DeliveryOptions,
    Verdict,
    canary_stamp,
    judge,
    lag_report,
)
from sseplay.client.hooks import Hooks
from sseplay.client.options import TailOptions
from sseplay.client.reconnect import reconnecting_stream
from sseplay.client.stats import TailStats, write_stats
from sseplay.errors import Buffered, ExitCode, TimedOut
from sseplay.model import Event

if TYPE_CHECKING:
    import httpx


class _Noted:
    """What the hooks of one connection note, on the monotonic and the wall clock."""

    def __init__(self) -> None:
        self.headers_at: float | None = None
        self.headers: list[tuple[str, str]] = []
        self.received = 0
        self.before = 0  # the bytes before the chunk being read
        self.arrivals: list[Arrival] = []

    def connected(self, response: httpx.Response) -> None:
        self.headers_at = time.monotonic()
        self.headers = [(name.lower(), value) for name, value in response.headers.multi_items()]

    def raw(self, chunk: bytes) -> None:
        self.before = self.received
        self.received += len(chunk)

    def event(self, event: Event, stream_retry: int | None) -> None:
        at, wall_ns = time.monotonic(), time.time_ns()
        stamp = canary_stamp(event.data)
        seq, sent_ns = stamp if stamp is not None else (None, None)
        self.arrivals.append(Arrival(at, wall_ns, self.before, seq, sent_ns))


async def check_delivery(
    options: TailOptions, delivery: DeliveryOptions, status: Callable[[str], None]
) -> Verdict:
    """Read the stream of ``options`` (one connection: no reconnecting) until its
    ``timeout`` or ``count``, and judge how it came. A stream that sent no headers within
    the timeout raises ``TimedOut``, as tail does."""
    noted = _Noted()
    hooks = Hooks(noted.raw, status, noted.event, noted.connected)
    requested_at = time.monotonic()
    try:
        async with contextlib.aclosing(reconnecting_stream(options, hooks)) as batches:
            async for _ in batches:
                pass
    except TimedOut:
        if noted.headers_at is None:
            raise
    ended_at = time.monotonic()
    headers_at = noted.headers_at if noted.headers_at is not None else ended_at
    return judge(
        Delivery(requested_at, headers_at, noted.headers, noted.arrivals, ended_at), delivery
    )


def conclude(
    verdict: Verdict, stats: object, destination: str | None, status: Callable[[str], None]
) -> None:
    """Write the ``--stats`` report (``stats``, a TailStats, with the lag percentiles) to
    ``destination`` (None: stderr), then say the verdict: raise ``Buffered`` with its line
    (exit 12), or tell its line and notes."""
    if isinstance(stats, TailStats):
        stats.exit_code = int(ExitCode.BUFFERED if verdict.buffered else ExitCode.OK)
        report = stats.report()
        report["lag_ms"] = lag_report(verdict)
        write_stats(report, destination)
    if verdict.buffered:
        raise Buffered(verdict.line)
    status(verdict.line)
    for note in verdict.notes:
        status(f"note: {note}")
