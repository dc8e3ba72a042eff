"""Pure planning and the player, on a fake clock: no test here sleeps."""

from __future__ import annotations

import asyncio
from array import array

import pytest

from sseplay.schedule import Plan, Timing, due_batches


class FakeClock:
    """Time moves only when the player sleeps; ``lag`` makes every wake-up late."""

    def __init__(self, lag: float = 0.0) -> None:
        self.now = 100.0
        self.lag = lag
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.sleeps.append(seconds)
            self.now += seconds + self.lag


def play(
    plan: Plan, start: int = 0, lag: float = 0.0, limit: int = 1024
) -> list[tuple[float, int, int]]:
    clock = FakeClock(lag)

    async def collect() -> list[tuple[float, int, int]]:
        out = []
        async for first, stop in due_batches(
            plan, start, clock=clock, sleep=clock.sleep, limit=limit
        ):
            out.append((round(clock.now - 100.0, 9), first, stop))
            if stop >= 50:
                break
        return out

    return asyncio.run(collect())


def test_first_event_goes_out_at_once_then_at_the_interval() -> None:
    assert play(Plan(3, None, Timing(interval=0.5))) == [(0, 0, 1), (0.5, 1, 2), (1.0, 2, 3)]


def test_late_wake_ups_do_not_accumulate_drift() -> None:
    plan = Plan(40, None, Timing(interval=0.1))
    batches = play(plan, lag=0.03)
    # Each wake-up is 30 ms late, yet event k still goes out at k * 100 ms + 30 ms, never later.
    for when, first, _ in batches[1:]:
        assert when == pytest.approx(first * 0.1 + 0.03)


def test_events_already_due_go_out_together() -> None:
    plan = Plan(10, None, Timing(interval=0.1))
    batches = play(plan, lag=0.25)
    assert batches[1] == (pytest.approx(0.35), 1, 4)


def test_interval_zero_sends_everything_in_batches() -> None:
    plan = Plan(120, None, Timing(interval=0))
    batches = play(plan, limit=40)
    assert batches == [(0, 0, 40), (0, 40, 80)]  # play() stops once 50 are out
    assert plan.due_stop(80, 0.0, limit=1000) == 120


def test_timestamps_speed_and_max_gap() -> None:
    times = array("d", [0, 4, 10, 70])
    plan = Plan(4, times, Timing(speed=2, max_gap=5))
    assert [plan.offset(n) for n in range(4)] == [0, 2, 5, 10]
    assert play(plan) == [(0, 0, 1), (2, 1, 2), (5, 2, 3), (10, 3, 4)]


def test_loop_continues_numbering_and_keeps_the_cadence() -> None:
    plan = Plan(3, None, Timing(interval=1, loop=True))
    assert [plan.offset(n) for n in range(7)] == [0, 1, 2, 3, 4, 5, 6]
    timed = Plan(3, array("d", [0, 1, 3]), Timing(loop=True))
    # A timed loop pauses for the mean gap (1.5 s) between rounds.
    assert [timed.offset(n) for n in range(6)] == [0, 1, 3, 4.5, 5.5, 7.5]


def test_resume_plays_the_rest_with_original_gaps() -> None:
    plan = Plan(5, array("d", [0, 1, 3, 6, 10]), Timing())
    assert play(plan, start=2) == [(0, 2, 3), (3, 3, 4), (7, 4, 5)]


def test_plan_needs_an_event() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Plan(0, None, Timing())
