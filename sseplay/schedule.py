"""When each event is due: pure planning, played by ``timer.Timer``.

Events are numbered by a sequence number ``n`` that keeps counting across the
rounds of a looped replay. Every deadline is an absolute offset from the start
of the replay, so a replay never drifts however long it runs: a late wake-up
makes the next events due sooner, it does not push them back.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_right

from sseplay.config import DEFAULT_INTERVAL
from sseplay.config import Timing as Timing  # re-exported: planning takes it

# The most events written in one chunk; all due events go out together up to this.
DEFAULT_BATCH_LIMIT = 4096


class Plan:
    """The due time of every event, in seconds from the start of the replay."""

    def __init__(self, count: int, times: array[float] | None, timing: Timing) -> None:
        if count < 1:
            raise ValueError("a plan needs at least one event")
        self.count = count
        self.loop = timing.loop
        # How many events the replay has: infinite when it loops.
        self.total: float = math.inf if timing.loop else count
        self._offsets: array[float] | None = None
        if times is not None and timing.interval is None:
            offsets: array[float] = array("d")
            elapsed = previous = 0.0
            for moment in times:
                gap = (moment - previous) / timing.speed
                if timing.max_gap is not None:
                    gap = min(gap, timing.max_gap)
                elapsed += gap
                offsets.append(elapsed)
                previous = moment
            self._offsets = offsets
            # A looped timed replay pauses between rounds for the mean gap of the file.
            pause = elapsed / (count - 1) if count > 1 else DEFAULT_INTERVAL / timing.speed
            self.interval = 0.0
            self.round_length = elapsed + pause
        else:
            self.interval = (DEFAULT_INTERVAL if timing.interval is None else timing.interval) / (
                timing.speed
            )
            self.round_length = self.interval * count

    def offset(self, n: int) -> float:
        rounds, index = divmod(n, self.count)
        within = self._offsets[index] if self._offsets is not None else index * self.interval
        return rounds * self.round_length + within

    def due_stop(self, n: int, until: float, limit: int = DEFAULT_BATCH_LIMIT) -> int:
        """The first sequence number from ``n`` not yet due at offset ``until``, at most
        ``n + limit``: events ``n`` to the result (exclusive) are due now."""
        ceiling = min(n + limit, self.total)
        if ceiling <= n or self.offset(n) > until:
            return n
        # The common case under load: one event due, the next one not yet.
        if n + 1 == ceiling or self.offset(n + 1) > until:
            return n + 1
        stop = n
        while stop < ceiling and self.offset(stop) <= until:
            rounds, index = divmod(stop, self.count)
            round_until = until - rounds * self.round_length
            if self._offsets is not None:
                last = bisect_right(self._offsets, round_until, lo=index)
            elif self.interval > 0:
                last = min(self.count, math.floor(round_until / self.interval) + 1)
                # Guard the float division against landing one event off.
                while last > index + 1 and (last - 1) * self.interval > round_until:
                    last -= 1
            else:
                last = self.count
            stop = int(min(ceiling, rounds * self.count + max(last, index + 1)))
        return stop
