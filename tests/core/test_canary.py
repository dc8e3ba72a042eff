"""The canary's timeline on a fake clock: an event every interval stamped as it is
written, a one-byte comment between two events, absolute deadlines, no catch-up burst."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest

from sseplay.canary import COMMENT, MAX_PAD, Canary, CanaryTimeline, pad_length
from sseplay.errors import UsageError
from sseplay.outlet import Outlet
from sseplay.parser import EventStreamParser
from sseplay.timer import Timer
from tests.support import FakeClock, FakeOutlet


def started(interval: float, lag: float = 0.0) -> tuple[FakeClock, CanaryTimeline, FakeOutlet]:
    clock = FakeClock(lag=lag)
    stamps = iter(range(1_000_000_000, 10**12, 1000))
    timeline = CanaryTimeline(Canary(interval), Timer(clock), clock_ns=lambda: next(stamps))
    timeline.begin()
    outlet = FakeOutlet(clock)
    feed = timeline.feed
    feed.admit(feed.subscribe(cast(Outlet, outlet)))
    return clock, timeline, outlet


def test_events_every_interval_with_a_comment_between_and_their_stamps() -> None:
    clock, _, outlet = started(0.2)
    clock.advance(1.0)
    assert outlet.times() == pytest.approx([0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    chunks = [chunk for _, chunk, _ in outlet.writes]
    assert chunks[1::2] == [COMMENT] * 4
    parser = EventStreamParser()
    events = parser.feed(b"".join(chunks))
    data: list[dict[str, Any]] = [json.loads(event.data) for event in events]
    assert [d["seq"] for d in data] == [1, 2, 3, 4, 5]
    assert [event.id for event in events] == ["1", "2", "3", "4", "5"]
    # Stamped by the clock at the moment of each write, one reading per event.
    assert [d["sent_ns"] for d in data] == [1_000_000_000 + 1000 * n for n in range(5)]
    assert [len(d["pad"]) for d in data] == [pad_length(n) for n in range(1, 6)]
    assert all(0 <= pad_length(n) <= MAX_PAD for n in range(1000))
    assert len({pad_length(n) for n in range(100)}) > 50  # sizes that vary


def test_a_late_loop_skips_the_steps_it_missed_instead_of_a_burst() -> None:
    clock, timeline, outlet = started(0.2)
    clock.advance(0.25)
    clock.now += 1.0  # the loop was busy for a second
    clock.advance(0.01)
    clock.advance(0.4)
    # The step due at 0.3 (a comment) goes out late, once; the eleven due meanwhile are
    # skipped; then the absolute grid again (events at 1.4 and 1.6).
    assert outlet.times() == pytest.approx([0.2, 1.25, 1.3, 1.4, 1.5, 1.6])
    assert outlet.ids() == [[1], [], [], [2], [], [3]]
    assert timeline.seq == 3


def test_a_resuming_client_catches_up_and_a_stopped_canary_writes_no_more() -> None:
    clock, timeline, outlet = started(0.1)
    clock.advance(0.5)
    late = FakeOutlet(clock)
    feed = timeline.feed
    feed.admit(feed.subscribe(cast(Outlet, late), feed.resume("2")))
    assert late.ids() == [[3, 4, 5]]
    timeline.stop()
    written = len(outlet.writes)
    clock.advance(1.0)
    assert len(outlet.writes) == written


def test_the_interval_must_be_more_than_0() -> None:
    for bad in (0, -1.0, float("inf")):
        with pytest.raises(UsageError, match="--canary needs an --interval of more than 0"):
            Canary(bad)
    with pytest.raises(UsageError, match="--interval must be a number"):
        Canary(True)
