"""Pure planning: when each event is due."""

from __future__ import annotations

from array import array

import pytest

from sseplay.schedule import Plan, Timing


def test_loop_continues_numbering_and_keeps_the_cadence() -> None:
    plan = Plan(3, None, Timing(interval=1, loop=True))
    assert [plan.offset(n) for n in range(7)] == [0, 1, 2, 3, 4, 5, 6]
    timed = Plan(3, array("d", [0, 1, 3]), Timing(loop=True))
    # A timed loop pauses for the mean gap (1.5 s) between rounds.
    assert [timed.offset(n) for n in range(6)] == [0, 1, 3, 4.5, 5.5, 7.5]


def test_plan_needs_an_event() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Plan(0, None, Timing())


def test_due_stop_finds_every_event_due_at_a_moment() -> None:
    plan = Plan(10, None, Timing(interval=0.1))
    assert plan.due_stop(0, 0.0) == 1
    assert plan.due_stop(1, 0.35) == 4
    assert plan.due_stop(4, 0.35) == 4
    assert plan.due_stop(0, 100.0) == 10


def test_interval_zero_makes_everything_due_in_batches() -> None:
    plan = Plan(120, None, Timing(interval=0))
    assert plan.due_stop(0, 0.0, limit=40) == 40
    assert plan.due_stop(80, 0.0, limit=1000) == 120


def test_timestamps_speed_and_max_gap() -> None:
    times = array("d", [0, 4, 10, 70])
    plan = Plan(4, times, Timing(speed=2, max_gap=5))
    assert [plan.offset(n) for n in range(4)] == [0, 2, 5, 10]
    assert plan.due_stop(0, 4.99) == 2
    assert plan.due_stop(2, 5.0) == 3
