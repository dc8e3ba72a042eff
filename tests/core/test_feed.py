"""The live ``Feed`` on a fake clock and fake outlets: publish, end, resume, history, pings."""

from __future__ import annotations

import logging

import pytest

from sseplay.feed import CATCH_UP_BYTES, Feed, LiveEvent, Resume
from sseplay.model import PING, with_id
from sseplay.timer import Timer
from tests.support import FakeClock, FakeOutlet


def event(n: int, size: int = 0) -> LiveEvent:
    return str(n), with_id(n, b"data: %d%b\n\n" % (n, b"x" * size))


def ids(outlet: FakeOutlet) -> list[int]:
    return [n for write in outlet.ids() for n in write]


def feed_with(clock: FakeClock, ping: float = 0, **kwargs: int) -> Feed:
    feed = Feed(Timer(clock), ping, **kwargs)
    feed.start()
    return feed


def joined(feed: Feed, clock: FakeClock, resume: Resume | None = None) -> FakeOutlet:
    outlet = FakeOutlet(clock)
    subscriber = feed.subscribe(outlet, resume)  # type: ignore[arg-type]
    feed.admit(subscriber, b"retry: 5\n\n")
    return outlet


def test_a_published_batch_goes_to_every_subscriber_in_one_write_at_once() -> None:
    clock = FakeClock()
    feed = feed_with(clock)
    outlets = [joined(feed, clock) for _ in range(3)]
    clock.advance(1)
    feed.publish([event(1), event(2)])
    for outlet in outlets:
        assert outlet.writes[0][1] == b"retry: 5\n\n"
        assert outlet.writes[1] == (1.0, event(1)[1] + event(2)[1], True)
    # One chunk for everyone: the very same bytes object.
    assert len({id(outlet.writes[1][1]) for outlet in outlets}) == 1


def test_end_ends_every_response_after_what_it_was_not_sent() -> None:
    clock = FakeClock()
    feed = feed_with(clock)
    live, slow = joined(feed, clock), joined(feed, clock)
    slow.blocked = True
    feed.publish([event(1)])
    feed.end()
    assert live.writes[-1] == (0, b"", False)
    assert ids(live) == [1]
    slow.blocked = False
    slow.on_drained()
    assert ids(slow) == [1]
    assert slow.writes[-1][2] is False
    assert feed.ended


def test_a_subscriber_is_written_nothing_before_it_is_admitted() -> None:
    clock = FakeClock()
    feed = feed_with(clock)
    outlet = FakeOutlet(clock)
    subscriber = feed.subscribe(outlet, None)  # type: ignore[arg-type]
    feed.publish([event(1)])
    assert outlet.writes == []
    # The source's own backfill, then the events held for it: no gap, no duplicate.
    feed.admit(subscriber, b"", event(0)[1])
    assert ids(outlet) == [0, 1]
    feed.publish([event(2)])
    assert ids(outlet) == [0, 1, 2]
    assert subscriber.sent == 2  # the backlog is the source's to count


def test_resume_catches_up_from_the_history_then_goes_live() -> None:
    clock = FakeClock()
    feed = feed_with(clock)
    feed.publish([event(n) for n in range(1, 6)])
    outlet = joined(feed, clock, feed.resume("2"))
    assert ids(outlet) == [3, 4, 5]
    feed.publish([event(6)])
    assert ids(outlet) == [3, 4, 5, 6]


def test_resume_older_than_the_history_is_said_in_the_stream_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    feed = feed_with(clock, history=3)
    feed.publish([event(n) for n in range(1, 11)])
    assert feed.oldest == 7
    resume = Feed.resume(feed, "1")  # an id the history no longer knows
    assert resume == Resume(10, resume.notice)  # unknown: the live edge
    caplog.set_level(logging.WARNING, "sseplay.live")

    class Positional(Feed):
        def position_of(self, event_id: str) -> int | None:
            return int(event_id) - 1

    numbered = Positional(Timer(clock), 0, history=3)
    numbered.publish([event(n) for n in range(1, 11)])
    resume = numbered.resume("2")
    assert resume.position == 7
    assert b"5 events were missed" in resume.notice
    assert "missed 5 events" in caplog.text
    outlet = FakeOutlet(clock)
    numbered.admit(numbered.subscribe(outlet, resume), resume.notice)  # type: ignore[arg-type]
    assert outlet.writes[0][1].startswith(b": 5 events were missed")
    assert ids(outlet) == [8, 9, 10]


def test_an_unknown_id_starts_at_the_live_edge_with_a_comment() -> None:
    clock = FakeClock()
    feed = feed_with(clock)
    feed.publish([event(1)])
    resume = feed.resume("nope")
    assert resume.position == feed.position
    assert resume.notice.startswith(b": unknown Last-Event-ID 'nope'")


def test_a_slow_subscriber_never_holds_the_others_and_catches_up_in_one_write() -> None:
    clock = FakeClock()
    feed = feed_with(clock)
    fast, slow = joined(feed, clock), joined(feed, clock)
    slow.blocked = True
    for n in range(1, 4):
        feed.publish([event(n)])
    assert ids(fast) == [1, 2, 3]
    assert ids(slow) == []
    slow.blocked = False
    slow.on_drained()
    assert slow.ids()[-1] == [1, 2, 3]


def test_a_subscriber_that_falls_out_of_the_history_is_told_so() -> None:
    clock = FakeClock()
    feed = feed_with(clock, history=2)
    slow = joined(feed, clock)
    slow.blocked = True
    feed.publish([event(n) for n in range(1, 6)])
    slow.blocked = False
    slow.on_drained()
    assert slow.writes[-1][1].startswith(b": 3 events were missed while this client read slowly")
    assert ids(slow) == [4, 5]


def test_the_history_is_bounded_in_bytes_and_count() -> None:
    clock = FakeClock()
    feed = feed_with(clock, history=100, history_bytes=10_000)
    feed.publish([event(n, size=1000) for n in range(50)])
    assert feed.history_bytes <= 10_000
    assert feed.position - feed.oldest == feed.history_bytes // len(event(0, 1000)[1])
    feed.publish([event(n) for n in range(50, 300)])
    assert feed.position - feed.oldest == 100
    assert feed.position_of("0") is None  # forgotten with its event
    assert feed.position_of("299") == 299


def test_pings_go_out_only_while_idle() -> None:
    clock = FakeClock()
    feed = feed_with(clock, ping=1.0)
    outlet = joined(feed, clock)
    clock.advance(0.6)
    feed.publish([event(1)])
    clock.advance(0.6)  # 1.2 s from the start, but only 0.6 s since the event
    assert [chunk for _, chunk, _ in outlet.writes].count(PING) == 0
    clock.advance(0.5)
    assert [chunk for _, chunk, _ in outlet.writes].count(PING) == 1
    feed.end()
    clock.advance(10)
    assert [chunk for _, chunk, _ in outlet.writes].count(PING) == 1


def test_adopted_events_let_a_lagging_subscriber_catch_up_across_the_hand_over() -> None:
    clock = FakeClock()
    feed = feed_with(clock, first=5)
    feed.publish([event(6)])
    feed.adopt([event(n) for n in range(1, 6)])
    assert feed.oldest == 0
    outlet = joined(feed, clock, Resume(3))
    assert ids(outlet) == [4, 5, 6]
    assert feed.position_of("2") == 1


def test_admitting_after_the_end_writes_the_rest_and_the_end() -> None:
    clock = FakeClock()
    feed = feed_with(clock)
    feed.publish([event(1), event(2)])
    feed.end()
    outlet = joined(feed, clock, Resume(1))
    assert ids(outlet) == [2]
    assert outlet.writes[-1][2] is False
    feed.publish([event(3)])  # nothing after the end
    assert feed.position == 2


class _SlowOutlet(FakeOutlet):
    """A connection whose buffer is full after every write, until it is drained."""

    def write(self, chunk: bytes, more_body: bool = True) -> bool:
        super().write(chunk, more_body)
        self.blocked = True
        return False

    def drain(self) -> None:
        self.blocked = False
        self.on_drained()


def test_a_slow_subscriber_catches_up_in_bounded_writes() -> None:
    # The whole backlog went out in one write, up to the history's 16 MiB per slow client,
    # all of it held in that connection's buffer: memory grew with the slow clients.
    clock = FakeClock()
    feed = Feed(Timer(clock), 0)
    feed.start()
    slow = _SlowOutlet(clock)
    feed.admit(feed.subscribe(slow, None), b"")  # type: ignore[arg-type]
    slow.blocked = True
    events = [(str(n), with_id(n, b"data: " + b"x" * 10_000 + b"\n\n")) for n in range(1, 801)]
    for start in range(0, len(events), 100):
        feed.publish(events[start : start + 100])  # 8 MB while it reads nothing
    for _ in range(len(events)):
        if slow.completed or feed.position == sum(len(ids) for ids in slow.ids()):
            break
        slow.drain()
    assert max(len(chunk) for _, chunk, _ in slow.writes) <= CATCH_UP_BYTES + 10_100
    assert [n for write in slow.ids() for n in write] == list(range(1, 801))
    slow.drain()
    feed.publish([(str(801), with_id(801, b"data: live\n\n"))])  # then live, as ever
    assert slow.ids()[-1] == [801]
