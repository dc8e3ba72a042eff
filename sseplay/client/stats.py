"""``--stats``: what one tail measured (events, bytes, connections, reconnects, time to the
first event, inter-arrival times), reported as one JSON object however the tail ends.
Imported only when the figures are asked for."""

from __future__ import annotations

import json
import math
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sseplay.errors import ExitCode, OutputFailed

# Inter-arrival times kept exactly up to this many (800 KB); past it a uniform sample of
# this size (reservoir sampling, Vitter's algorithm R), so memory stays bounded however
# long the tail runs. min and max stay exact.
MAX_SAMPLES = 100_000


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of sorted values."""
    rank = max(math.ceil(fraction * len(ordered)), 1)
    return ordered[rank - 1]


class TailStats:
    """What one tail measured: events, bytes, connections, reconnects, time to the first
    event and the inter-arrival times. ``reconnecting_stream`` fills it in; ``report()`` is the
    ``--stats`` JSON object. Pass one as ``stats=`` to read it after the run."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.started: float | None = None
        self.ended: float | None = None
        self.events = 0
        self.shown = 0
        self.bytes = 0
        self.connections = 0
        self.reconnects = 0
        self.first_event: float | None = None
        self._last_event: float | None = None
        self._gaps: list[float] = []  # ms
        self._gap_count = 0
        self._gap_min = math.inf
        self._gap_max = -math.inf
        self._random = random.Random(0)
        self.exit_code: int | None = None

    def start(self) -> None:
        self.started = self._clock()

    def connected(self) -> None:
        self.connections += 1

    def reconnecting(self) -> None:
        self.reconnects += 1

    def received(self, size: int, events: int) -> None:
        """A chunk of ``size`` bytes that completed ``events`` events, all arriving now."""
        self.bytes += size
        if not events:
            return
        now = self._clock()
        if self.first_event is None:
            self.first_event = now
        if self._last_event is not None:
            self._gap((now - self._last_event) * 1000)
        for _ in range(events - 1):  # the rest of a chunk came with the first
            self._gap(0.0)
        self._last_event = now
        self.events += events

    def _gap(self, ms: float) -> None:
        self._gap_count += 1
        self._gap_min = min(self._gap_min, ms)
        self._gap_max = max(self._gap_max, ms)
        if len(self._gaps) < MAX_SAMPLES:
            self._gaps.append(ms)
            return
        slot = self._random.randrange(self._gap_count)
        if slot < MAX_SAMPLES:
            self._gaps[slot] = ms

    def finish(self, exit_code: int) -> None:
        if self.ended is None:
            self.ended = self._clock()
            self.exit_code = exit_code

    def report(self) -> dict[str, Any]:
        def ms(seconds: float | None) -> float | None:
            return None if seconds is None else round(seconds * 1000, 3)

        start = self.started if self.started is not None else self._clock()
        end = self.ended if self.ended is not None else self._clock()
        gaps: dict[str, Any] | None = None
        if self._gap_count:
            ordered = sorted(self._gaps)
            gaps = {
                "count": self._gap_count,
                "min": round(self._gap_min, 3),
                "p50": round(percentile(ordered, 0.50), 3),
                "p90": round(percentile(ordered, 0.90), 3),
                "p99": round(percentile(ordered, 0.99), 3),
                "max": round(self._gap_max, 3),
            }
        code = self.exit_code
        return {
            "events": self.events,
            "shown": self.shown,
            "bytes": self.bytes,
            "connections": self.connections,
            "reconnects": self.reconnects,
            "first_event_ms": None if self.first_event is None else ms(self.first_event - start),
            "inter_arrival_ms": gaps,
            "duration_ms": ms(end - start),
            "exit_code": code,
            "result": None if code is None else ExitCode(code).name.lower(),
        }


def write_stats(report: dict[str, Any], destination: str | os.PathLike[str] | None) -> None:
    """The report as one JSON line: on stderr (``destination`` None) or into a file."""
    line = json.dumps(report, separators=(",", ":")) + "\n"
    if destination is None:
        sys.stderr.write(line)
        sys.stderr.flush()
        return
    try:
        Path(destination).write_text(line, encoding="utf-8")
    except OSError as error:
        raise OutputFailed(f"--stats-file {destination}: {error.strerror or error}") from None
