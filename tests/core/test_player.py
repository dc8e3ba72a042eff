"""The shared timer, per-client players and the broadcast, on a fake clock: nothing sleeps."""

from __future__ import annotations

from pathlib import Path

import pytest

from sseplay.broadcast import BROADCAST_HISTORY_BYTES, Broadcast
from sseplay.eventfile import FieldMapping, load_event_file
from sseplay.model import PING
from sseplay.player import Player
from sseplay.replay import Replay, Start
from sseplay.schedule import DEFAULT_BATCH_LIMIT, Timing
from sseplay.timer import TIMER_SLACK, Timer
from tests.conftest import make_stream, write_lines
from tests.support import FakeClock, FakeOutlet


def replay(tmp_path: Path, count: int, timing: Timing, name: str = "e.jsonl") -> Replay:
    path = write_lines(tmp_path / name, [{"n": n} for n in range(count)])
    return make_stream(path, timing=timing).replay


def player(
    clock: FakeClock, timer: Timer, source: Replay, start: int = 0, ping: float = 0
) -> tuple[Player, FakeOutlet]:
    outlet = FakeOutlet(clock)
    played = Player(outlet, source, timer, Start(start), ping, None)  # type: ignore[arg-type]
    played.begin(b"")
    return played, outlet


def test_first_event_goes_out_at_once_then_at_the_interval(tmp_path: Path) -> None:
    clock = FakeClock()
    _, outlet = player(clock, Timer(clock), replay(tmp_path, 3, Timing(interval=0.5)))
    clock.advance(5)
    assert outlet.times() == [0, 0.5, 1.0]
    assert outlet.ids() == [[1], [2], [3]]
    # The last event and the end of the response go out in one write.
    assert [more for _, _, more in outlet.writes] == [True, True, False]


def test_late_wake_ups_do_not_accumulate_drift(tmp_path: Path) -> None:
    clock = FakeClock(lag=0.03)
    _, outlet = player(clock, Timer(clock), replay(tmp_path, 40, Timing(interval=0.1)))
    clock.advance(10)
    # Every timer fires 30 ms late, yet event k still goes out at k * 100 ms + 30 ms.
    for when, (event_id,) in zip(outlet.times()[1:], outlet.ids()[1:], strict=True):
        assert when == pytest.approx((event_id - 1) * 0.1 + 0.03)


def test_events_already_due_go_out_together(tmp_path: Path) -> None:
    clock = FakeClock(lag=0.25)
    _, outlet = player(clock, Timer(clock), replay(tmp_path, 10, Timing(interval=0.1)))
    clock.advance(0.1)
    assert outlet.ids()[:2] == [[1], [2, 3, 4]]
    assert outlet.times()[1] == pytest.approx(0.35)


def test_interval_zero_writes_in_batches_and_lets_the_loop_run(tmp_path: Path) -> None:
    clock = FakeClock()
    limit = DEFAULT_BATCH_LIMIT
    _, outlet = player(clock, Timer(clock), replay(tmp_path, 2 * limit + 7, Timing(interval=0)))
    clock.advance(0)
    assert [len(ids) for ids in outlet.ids()] == [limit, limit, 7]
    assert outlet.times() == [0, 0, 0]
    # Each later batch is its own timer callback: other connections' I/O runs in between.
    assert clock.fired == 2


def test_resume_plays_the_rest_with_original_gaps(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "t.jsonl", [{"t": t} for t in (0, 1, 3, 6, 10)])
    timed = make_stream(path, mapping=FieldMapping(time_field="t"), timing=Timing()).replay
    clock = FakeClock()
    _, outlet = player(clock, Timer(clock), timed, start=2)
    clock.advance(20)
    assert outlet.ids() == [[3], [4], [5]]
    assert outlet.times() == [0, 3, 7]


def test_many_players_share_one_armed_timer(tmp_path: Path) -> None:
    clock = FakeClock()
    timer = Timer(clock)
    source = replay(tmp_path, 50, Timing(interval=0.1))
    outlets = []
    for n in range(20):
        clock.advance(0.013)  # connections arrive at scattered moments
        outlets.append(player(clock, timer, source, start=n)[1])
        assert len(clock.armed()) == 1
    clock.advance(0.5)
    assert len(clock.armed()) == 1
    # Each connection keeps its own cadence from its own first event.
    for outlet in outlets:
        gaps = {round(b - a, 6) for a, b in zip(outlet.times(), outlet.times()[1:], strict=False)}
        assert gaps == {0.1}


def test_pings_fill_silences_but_never_interrupt_events(tmp_path: Path) -> None:
    clock = FakeClock()
    source = replay(tmp_path, 3, Timing(interval=2.5))
    _, outlet = player(clock, Timer(clock), source, ping=1.0)
    clock.advance(10)
    pings = [when for when, chunk, _ in outlet.writes if chunk == PING]
    assert pings == [1.0, 2.0, 3.5, 4.5]
    assert outlet.ids() == [[1], [], [], [2], [], [], [3]]


def test_a_closed_player_is_dropped_from_the_timer(tmp_path: Path) -> None:
    clock = FakeClock()
    played, outlet = player(clock, Timer(clock), replay(tmp_path, 10, Timing(interval=0.1)))
    clock.advance(0.15)
    outlet.closed = True
    clock.advance(5)
    assert outlet.ids() == [[1], [2]]
    assert not clock.armed()
    assert not played.complete


def test_a_blocked_player_catches_up_in_one_write_once_drained(tmp_path: Path) -> None:
    clock = FakeClock()
    played, outlet = player(clock, Timer(clock), replay(tmp_path, 10, Timing(interval=0.1)))
    outlet.blocked = True  # the client stopped reading: the timer leaves it alone
    clock.advance(0.55)
    assert outlet.ids() == [[1]]
    outlet.blocked = False
    outlet.on_drained()
    clock.advance(0)
    assert outlet.ids() == [[1], [2, 3, 4, 5, 6]]
    clock.advance(2)
    assert played.complete


def test_broadcast_encodes_each_event_once_for_every_subscriber(tmp_path: Path) -> None:
    clock = FakeClock()
    timer = Timer(clock)
    broadcast = Broadcast(replay(tmp_path, 5, Timing(interval=1)), timer, ping=0)
    broadcast.begin()
    early = FakeOutlet(clock)
    broadcast.admit(broadcast.subscribe(early, None), b"")  # type: ignore[arg-type]
    clock.advance(1.5)
    late = FakeOutlet(clock)
    broadcast.admit(broadcast.subscribe(late, None), b"")  # type: ignore[arg-type]
    clock.advance(10)
    assert early.ids() == [[1], [2], [3], [4], [5]]
    assert late.ids() == [[3], [4], [5]]  # joined live, at the moment everyone else sees
    for (when_a, chunk_a, _), (when_b, chunk_b, _) in zip(
        early.writes[2:], late.writes, strict=True
    ):
        assert when_a == when_b
        assert chunk_a is chunk_b  # the same bytes object: encoded once
    assert broadcast.ended
    assert early.completed
    assert late.completed


def test_broadcast_resume_catches_up_from_history(tmp_path: Path) -> None:
    clock = FakeClock()
    broadcast = Broadcast(replay(tmp_path, 6, Timing(interval=1)), Timer(clock), ping=0)
    broadcast.begin()
    clock.advance(3.5)
    resumed = FakeOutlet(clock)
    subscriber = broadcast.subscribe(resumed, Start(1))  # type: ignore[arg-type]
    broadcast.admit(subscriber, b"retry: 5\n\n")
    clock.advance(5)
    assert resumed.writes[0][1] == b"retry: 5\n\n"
    assert resumed.ids()[1:] == [[2, 3, 4], [5], [6]]


def test_one_write_holds_about_half_a_megabyte_of_large_events(tmp_path: Path) -> None:
    clock = FakeClock()
    source = replay(tmp_path, 200, Timing(interval=0), name="big.jsonl")
    large = make_stream(
        write_lines(tmp_path / "large.jsonl", ["x" * 10_000] * 200), timing=Timing(interval=0)
    ).replay
    assert source.batch_limit == DEFAULT_BATCH_LIMIT
    assert large.batch_limit == 52  # 512 KiB of ~10 KB events
    _, outlet = player(clock, Timer(clock), large)
    clock.advance(0)
    sizes = [len(chunk) for _, chunk, _ in outlet.writes]
    assert len(sizes) == 4
    assert max(sizes) <= 540_000


@pytest.mark.parametrize("lag", [0.0, 0.004, 0.25])
@pytest.mark.parametrize("ping", [0.0, 0.35])
def test_each_write_holds_exactly_the_events_due_from_memory_or_from_disk(
    tmp_path: Path, lag: float, ping: float
) -> None:
    """A player works out "only event n is due" on a short path and searches for a
    backlog otherwise; a file kept in memory and one read back from disk must both put
    every event on the wire in the first write at or after its deadline, and not before."""
    path = write_lines(tmp_path / "e.jsonl", [{"n": n} for n in range(30)])
    timing = Timing(interval=0.1, loop=True)
    in_memory = make_stream(path, timing=timing).replay
    on_disk = Replay(
        load_event_file("e.jsonl", path, FieldMapping(), memory_budget=10), in_memory.plan
    )
    assert in_memory.file.in_memory
    assert not on_disk.file.in_memory
    # A page from disk is fetched by a task on the event loop; here it is loaded at once.
    on_disk._pages[0] = on_disk.file.cues(0, 30)
    outlets = []
    for source in (in_memory, on_disk):
        clock = FakeClock(lag=lag)
        _, outlet = player(clock, Timer(clock), source, start=3, ping=ping)
        clock.advance(4)
        outlets.append(outlet)
    assert outlets[0].writes == outlets[1].writes
    plan, sent = in_memory.plan, 3
    for when, ids in zip(outlets[0].times(), outlets[0].ids(), strict=True):
        due = [
            n + 1 for n in range(3, 200) if plan.offset(n) - plan.offset(3) <= when + TIMER_SLACK
        ]
        assert ids == due[sent - 3 :]
        sent += len(ids)
    assert sent > 35  # into the second round of the loop


def test_broadcast_history_is_bounded_in_bytes_not_only_in_events(tmp_path: Path) -> None:
    """10,000 events of 1 MB each were 10 GB of history, kept with no client connected."""
    path = write_lines(tmp_path / "mb.jsonl", ["x" * 1_000_000] * 24)  # 24 MB
    source = make_stream(path, timing=Timing(interval=0.01, loop=True)).replay
    clock = FakeClock()
    broadcast = Broadcast(source, Timer(clock), ping=0)
    broadcast.begin()
    clock.advance(1)  # about 100 events of 1 MB, nobody listening
    assert broadcast.position > 90
    assert broadcast.history_bytes <= BROADCAST_HISTORY_BYTES
    history = broadcast.history()
    kept = sum(map(len, history))
    assert kept == broadcast.history_bytes
    assert kept > BROADCAST_HISTORY_BYTES - 1_100_000  # full up to one event
    # A client resuming from before the history catches up from its oldest event, every
    # event the history holds, CATCH_UP_BYTES at a time (one event when it is larger).
    resumed = FakeOutlet(clock)
    broadcast.admit(broadcast.subscribe(resumed, Start(1)), b"")  # type: ignore[arg-type]
    oldest = broadcast.position - len(history)
    assert [n for ids in resumed.ids() for n in ids] == list(
        range(oldest + 1, broadcast.position + 1)
    )
    assert all(len(ids) == 1 for ids in resumed.ids())
