"""When each token is sent: absolute offsets from the request (issue 25, pacing)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Pacing:
    ttft: float = 0.0  # seconds before the first token
    tps: float = 0.0  # tokens per second after it; 0 = as fast as possible
    jitter: float = 0.0  # a fraction of each gap, drawn from a seeded random.Random


def token_offsets(count: int, pacing: Pacing, seed: int) -> list[float]:
    raise NotImplementedError
