"""When each token is sent: absolute offsets from the request (issue 25, pacing).

Offsets are computed from the start, each on its own (``ttft + i / tps``), never by
adding rounded gaps: a long answer does not drift, as every replay in sseplay plays
absolute deadlines.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from sseplay.errors import UsageError


@dataclass(frozen=True, slots=True)
class Pacing:
    ttft: float = 0.0  # seconds before the first token
    tps: float = 0.0  # tokens per second after it; 0 = as fast as possible
    jitter: float = 0.0  # a fraction of each gap, drawn from a seeded random.Random

    def __post_init__(self) -> None:
        for flag, value, most in (
            ("--ttft", self.ttft, math.inf),
            ("--tps", self.tps, math.inf),
            ("--jitter", self.jitter, 1.0),
        ):
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or math.isnan(value)
                or not 0 <= value <= most
                or value == math.inf
            ):
                bound = "between 0 and 1" if most == 1.0 else "a finite number from 0"
                raise UsageError(f"{flag} must be {bound}, not {value!r}")


def token_offsets(count: int, pacing: Pacing, seed: int) -> list[float]:
    """Seconds from the request at which each of ``count`` tokens is sent.

    The first is at ``ttft``; token ``i`` at ``ttft + (i + u) / tps`` with ``u`` drawn
    uniformly from ``[-jitter/2, jitter/2)``: each token stays within half a gap of its
    slot, so with ``jitter <= 1`` no gap is negative (and any that rounding would make
    negative is held at zero); tps 0 sends every token at ``ttft``.
    """
    if count <= 0:
        return []
    if pacing.tps <= 0:
        return [pacing.ttft] * count
    draw = random.Random(seed)
    offsets = [pacing.ttft]
    for index in range(1, count):
        shift = (draw.random() - 0.5) * pacing.jitter if pacing.jitter else 0.0
        offsets.append(max(offsets[-1], pacing.ttft + (index + shift) / pacing.tps))
    return offsets
