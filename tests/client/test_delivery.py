"""``tail --check-delivery``'s judge, on synthetic arrival lists: what it calls buffered,
the culprit it names, and what it lets pass."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from sseplay.client.delivery import (
    Arrival,
    Delivery,
    DeliveryOptions,
    canary_stamp,
    judge,
    lag_report,
    parse_duration,
)
from sseplay.errors import UsageError

STREAM = [("content-type", "text/event-stream"), ("cache-control", "no-store")]
EVENT_BYTES = 52


def canary(
    arrived: Sequence[float],
    interval: float,
    headers: Sequence[tuple[str, str]] = STREAM,
    *,
    clock_offset: float = 0.0,
    sizes: Sequence[int] | None = None,
    ended: float | None = None,
) -> Delivery:
    """Event n (from 1) sent at n * interval, arriving at ``arrived[n - 1]`` (seconds
    after the request; the headers came at 0.01); the reader's wall clock is
    ``clock_offset`` ahead of the sender's."""
    arrivals = []
    total = 0
    for n, at in enumerate(arrived, 1):
        wall_ns = round((at + clock_offset) * 1e9)
        arrivals.append(Arrival(at, wall_ns, total, n, round(n * interval * 1e9)))
        total += sizes[n - 1] if sizes is not None else EVENT_BYTES
    end = ended if ended is not None else (arrived[-1] if arrived else 0.0) + interval
    return Delivery(0.0, 0.01, headers, arrivals, end)


def plain(arrived: Sequence[float], headers: Sequence[tuple[str, str]] = STREAM) -> Delivery:
    arrivals = [Arrival(at, round(at * 1e9), n * EVENT_BYTES) for n, at in enumerate(arrived)]
    return Delivery(0.0, 0.01, headers, arrivals, arrived[-1] + 0.1)


def steady(count: int, interval: float, delay: float = 0.002) -> list[float]:
    return [n * interval + delay for n in range(1, count + 1)]


def test_a_stream_that_arrives_as_it_was_sent_passes_with_its_lags() -> None:
    jitter = [0.002, 0.004, 0.001, 0.003] * 10
    arrived = [n * 0.2 + jitter[n - 1] for n in range(1, 41)]
    verdict = judge(canary(arrived, 0.2), DeliveryOptions())
    assert not verdict.buffered
    assert verdict.line.startswith("delivered as sent: 40 events in 8.")
    assert "lag p50 1 ms, max 3 ms (relative to the fastest event)" in verdict.line
    report = lag_report(verdict)
    assert report is not None
    assert report["count"] == 40
    assert report["max"] == pytest.approx(3.0)
    assert report["offset_min"] == pytest.approx(1.0)


def test_a_clock_offset_between_the_hosts_cancels_out() -> None:
    verdict = judge(canary(steady(20, 0.1), 0.1, clock_offset=-37.5), DeliveryOptions())
    assert not verdict.buffered, verdict.line
    assert lag_report(verdict)["offset_min"] == pytest.approx(-37_498.0)  # type: ignore[index]


def test_everything_at_the_end_through_gzip_is_named_as_compression() -> None:
    headers = [*STREAM, ("content-encoding", "gzip")]
    arrived = [8.1 + n * 0.000075 for n in range(1, 41)]
    verdict = judge(canary(arrived, 0.2, headers), DeliveryOptions())
    assert verdict.buffered
    assert verdict.line == (
        "events 1-40 arrived within 3 ms after 8.1 s of silence (up to 7.80 s late, "
        "--max-lag 0.25 s); the response has Content-Encoding: gzip: compression "
        "middleware holds the stream; exclude text/event-stream"
    )


def _released(sizes: Sequence[int], interval: float, block: int) -> tuple[list[float], list[int]]:
    """A hop that passes on exactly ``block`` bytes at a time: when each event (sent every
    ``interval``) arrives, and how many bytes had come before its block."""
    arrived: list[float] = []
    counted: list[int] = []
    end = released = 0
    for n, size in enumerate(sizes, 1):
        end += size
        while released + block <= end:  # a block is full: what it completes goes
            released += block
            at = n * interval + 0.001
            while len(arrived) < n and sum(sizes[: len(arrived) + 1]) <= released:
                arrived.append(at + len(arrived) * 0.00001)
                counted.append(released - block)
    return arrived, counted


def test_bursts_of_the_same_size_point_at_a_byte_threshold() -> None:
    sizes = [30, 250, 45, 180, 60, 300, 20] * 40  # the periods differ, the blocks do not
    arrived, counted = _released(sizes, 0.01, 4096)
    delivery = canary(arrived, 0.01)
    arrivals = [
        Arrival(a.at, a.wall_ns, count, a.seq, a.sent_ns)
        for a, count in zip(delivery.arrivals, counted, strict=True)
    ]
    held = Delivery(0.0, 0.01, STREAM, arrivals, arrived[-1] + 0.1)
    verdict = judge(held, DeliveryOptions())
    assert verdict.buffered
    assert "a hop holds about 4.0 KiB before it sends" in verdict.line, verdict.line
    assert "proxy_buffering off" in verdict.line


def test_bursts_at_a_steady_period_point_at_a_flush_timer() -> None:
    sizes = [30, 250, 45, 180, 60, 300, 20] * 15  # the periods are equal, the sizes not
    arrived = [(1 + (n - 1) // 20) * 1.0 + 0.001 + (n % 20) * 0.00001 for n in range(1, 101)]
    arrived.sort()
    verdict = judge(canary(arrived, 0.05, sizes=sizes), DeliveryOptions())
    assert verdict.buffered
    assert "a hop sends what it holds every 1.0 s" in verdict.line, verdict.line


def test_headers_then_no_event_for_several_intervals_is_buffered() -> None:
    verdict = judge(Delivery(0.0, 0.01, STREAM, [], 3.01), DeliveryOptions(expected_interval=0.2))
    assert verdict.buffered
    assert verdict.line.startswith("the headers came, then no event in 3.0 s; a hop between")
    late_first = judge(plain([2.0, 2.2, 2.4]), DeliveryOptions(expected_interval=0.2))
    assert late_first.buffered
    assert late_first.line.startswith("the headers came, then event 1 arrived after 2.0 s")


def test_a_plain_stream_is_judged_against_the_expected_interval() -> None:
    good = judge(plain(steady(10, 0.1)), DeliveryOptions(expected_interval=0.1))
    assert not good.buffered, good.line
    assert "no burst after a silence (--expected-interval 0.1 s)" in good.line
    held = steady(3, 0.1) + [1.5 + n * 0.001 for n in range(5)] + [1.6, 1.7]
    bad = judge(plain(held), DeliveryOptions(expected_interval=0.1))
    assert bad.buffered
    assert bad.line.startswith("events 4-8 arrived within 4 ms after 1.2 s of silence")
    unjudged = judge(plain(held), DeliveryOptions())
    assert not unjudged.buffered
    assert "only the headers were judged" in unjudged.line


def test_content_length_on_a_stream_is_buffered_whatever_the_timing() -> None:
    headers = [*STREAM, ("content-length", "2080")]
    verdict = judge(canary(steady(10, 0.1), 0.1, headers), DeliveryOptions())
    assert verdict.buffered
    assert verdict.line.startswith("10 events came; the response has Content-Length: 2080:")


def test_compression_that_flushes_each_event_passes_with_a_note() -> None:
    headers = [*STREAM, ("content-encoding", "gzip"), ("via", "1.1 edge")]
    verdict = judge(canary(steady(10, 0.1), 0.1, headers), DeliveryOptions())
    assert not verdict.buffered, verdict.line
    assert "Content-Encoding: gzip on an event stream" in verdict.notes
    assert "Via: 1.1 edge" in verdict.notes
    assert any("no-transform" in note for note in verdict.notes)


def test_a_lag_over_max_lag_names_the_late_event() -> None:
    arrived = steady(10, 0.1)
    arrived[5:9] = [1.0, 1.0005, 1.001, 1.0015]  # events 6-9 held until event 10
    strict = judge(canary(arrived, 0.1), DeliveryOptions(max_lag="250ms"))
    assert strict.buffered
    assert strict.line.startswith("events 6-10 arrived within 2 ms after 0.5 s of silence")
    lenient = judge(canary(arrived, 0.1), DeliveryOptions(max_lag="1s"))
    assert not lenient.buffered


def test_durations_and_canary_stamps() -> None:
    assert parse_duration("--max-lag", "250ms") == 0.25
    assert parse_duration("--max-lag", "0.5s") == 0.5
    assert parse_duration("--max-lag", "2") == 2.0
    for bad in ("fast", "-1s", "0", "1h"):
        with pytest.raises(UsageError, match="--max-lag must be a duration"):
            parse_duration("--max-lag", bad)
    assert canary_stamp('{"seq": 3, "sent_ns": 17}') == (3, 17)
    for other in ('{"seq": "3", "sent_ns": 17}', "[1]", "{oops sent_ns", "hello"):
        assert canary_stamp(other) is None
