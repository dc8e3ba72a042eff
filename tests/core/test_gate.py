"""A route's timeline paused, stepped and resumed (``sseplay.gate``, issue 26), on the
shared fake clock: nothing sleeps."""

from __future__ import annotations

from pathlib import Path

import pytest

from sseplay.gate import Gate, GatedFeed
from sseplay.model import encode_body, with_id
from sseplay.outlet import Outlet
from sseplay.player import Player
from sseplay.replay import Replay, Start
from sseplay.schedule import Timing
from sseplay.timer import Timer
from tests.conftest import make_stream, write_lines
from tests.support import FakeClock, FakeOutlet


def replay(tmp_path: Path, count: int, timing: Timing) -> Replay:
    path = write_lines(tmp_path / "e.jsonl", [{"n": n} for n in range(count)])
    return make_stream(path, timing=timing).replay


def gated_player(
    clock: FakeClock, timer: Timer, gate: Gate, source: Replay
) -> tuple[Player, FakeOutlet]:
    outlet = FakeOutlet(clock)
    played = Player(outlet, source, timer, Start(0), 0, None)  # type: ignore[arg-type]
    played.gate = gate
    gate.join(outlet, 0, played.wake)  # type: ignore[arg-type]
    played.begin(b"")
    return played, outlet


def sent_of(*players: Player) -> object:
    counts = {player.outlet: player for player in players}
    return lambda outlet: counts[outlet].sent


def sent_ids(outlet: FakeOutlet) -> list[int]:
    return [event_id for ids in outlet.ids() for event_id in ids]


def test_paused_nothing_goes_out_and_advance_releases_exactly_n(tmp_path: Path) -> None:
    clock = FakeClock()
    timer, gate = Timer(clock), Gate(clock)
    source = replay(tmp_path, 20, Timing(interval=0.5))
    first, one = gated_player(clock, timer, gate, source)
    clock.advance(1.1)  # events 1, 2, 3
    assert sent_ids(one) == [1, 2, 3]
    gate.pause(sent_of(first))  # type: ignore[arg-type]
    second, two = gated_player(clock, timer, gate, source)  # joins while paused
    clock.advance(10)
    assert sent_ids(one) == [1, 2, 3]
    assert two.writes == []  # a new connection is held too
    gate.advance(3, sent_of(first, second))  # type: ignore[arg-type]
    clock.advance(10)
    assert sent_ids(one) == [1, 2, 3, 4, 5, 6]
    assert sent_ids(two) == [1, 2, 3]
    gate.advance(2, sent_of(first, second))  # type: ignore[arg-type]
    clock.advance(0)  # the timer plays them at once
    assert sent_ids(one)[-2:] == [7, 8]
    assert sent_ids(two) == [1, 2, 3, 4, 5]


def test_a_resumed_timed_replay_keeps_its_gaps(tmp_path: Path) -> None:
    clock = FakeClock()
    timer, gate = Timer(clock), Gate(clock)
    played, outlet = gated_player(clock, timer, gate, replay(tmp_path, 5, Timing(interval=1.0)))
    clock.advance(1.25)  # events 1 (t=0) and 2 (t=1); event 3 is due at t=2
    gate.pause(sent_of(played))  # type: ignore[arg-type]
    clock.advance(30)
    assert sent_ids(outlet) == [1, 2]
    gate.resume()  # at t=31.25: held 30 s, so event 3 comes at 32, 4 at 33
    clock.advance(10)
    assert sent_ids(outlet) == [1, 2, 3, 4, 5]
    assert outlet.times()[2:] == pytest.approx([32.0, 33.0, 34.0])
    assert outlet.writes[-1][2] is False  # and the replay ends as it would have


def test_resumed_before_the_next_deadline_nothing_is_played_twice(tmp_path: Path) -> None:
    clock = FakeClock()
    timer, gate = Timer(clock), Gate(clock)
    played, outlet = gated_player(clock, timer, gate, replay(tmp_path, 4, Timing(interval=1.0)))
    gate.pause(sent_of(played))  # type: ignore[arg-type]
    clock.advance(0.5)
    gate.resume()  # still in the timer (event 2 due at 1): shifted, not woken twice
    clock.advance(10)
    assert sent_ids(outlet) == [1, 2, 3, 4]
    assert outlet.times() == pytest.approx([0, 1.5, 2.5, 3.5])


def live(wire_id: int, text: str) -> tuple[str, bytes]:
    return str(wire_id), with_id(wire_id, encode_body(text))


def test_a_gated_feed_holds_published_events_and_releases_n(tmp_path: Path) -> None:
    clock = FakeClock()
    gate = Gate(clock)
    feed = GatedFeed(Timer(clock), 0, gate, first=2)
    outlet = FakeOutlet(clock)
    subscriber = feed.subscribe(outlet)  # type: ignore[arg-type]
    gate.join(outlet, 0, lambda held_for: feed.wake(subscriber))  # type: ignore[arg-type]
    feed.admit(subscriber)
    assert feed.next_id() == "3"
    feed.publish([live(3, "a")])
    assert sent_ids(outlet) == [3]
    gate.pause(lambda _: subscriber.sent)
    feed.publish([live(4, "b"), live(5, "c")])
    feed.publish([live(6, "d")])
    assert sent_ids(outlet) == [3]
    gate.advance(2, lambda _: subscriber.sent)
    assert sent_ids(outlet) == [3, 4, 5]
    gate.resume()
    assert sent_ids(outlet) == [3, 4, 5, 6]
    feed.publish([live(7, "e")])
    assert sent_ids(outlet) == [3, 4, 5, 6, 7]
    # Its ids are positions, counted on from the file's two events.
    assert feed.position_of("4") == 3
    assert feed.published("4")
    assert not feed.published("2")
    assert not feed.published("8")
    assert feed.resume("4").position == 4


def test_a_connection_the_gate_does_not_know_is_held() -> None:
    gate = Gate(FakeClock())
    gate.pause(lambda _: 0)
    stranger: Outlet = object()  # type: ignore[assignment]
    assert gate.room(stranger, 0) == 0
    gate.resume()
    assert gate.room(stranger, 0) is None
