"""--epoch: a broadcast timeline that starts at a wall-clock moment shared by servers."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from sseplay.broadcast import BROADCAST_HISTORY, due_count
from sseplay.config import ServerConfig
from sseplay.epoch import parse_epoch
from sseplay.errors import ExitCode, UsageError
from sseplay.http.hub import AppOptions
from sseplay.schedule import Plan, Timing
from tests.conftest import make_stream, run_cli, write_json

INTERVAL = 0.05


def timed_ids(
    url: str, count: int, headers: dict[str, str] | None = None
) -> list[tuple[int, float]]:
    """(id, wall-clock arrival) of the first ``count`` events of a stream."""
    got: list[tuple[int, float]] = []
    with httpx.stream("GET", url, headers=headers, timeout=10) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("id: "):
                got.append((int(line[4:]), time.time()))
                if len(got) == count:
                    break
    return got


def events_file(tmp_path: Path, count: int) -> Path:
    return write_json(tmp_path / "ticks.json", [{"n": n} for n in range(count)])


def test_epoch_parses_iso_with_a_zone_and_unix_seconds() -> None:
    assert parse_epoch("1748779200") == 1748779200.0
    assert parse_epoch(" 1748779200.25 ") == 1748779200.25
    assert parse_epoch("2025-06-01T12:00:00Z") == 1748779200.0
    assert parse_epoch("2025-06-01T14:00:00+02:00") == 1748779200.0
    when = datetime(2025, 6, 1, 12, tzinfo=UTC)
    assert ServerConfig(broadcast=True, epoch=when).epoch == 1748779200.0  # type: ignore[arg-type]
    assert ServerConfig(broadcast=True, epoch="2025-06-01T12:00:00Z").epoch == 1748779200.0  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("tomorrow", "is not a moment: write it as ISO-8601 with a zone"),
        ("2025-06-01T12:00:00", "has no time zone: add Z"),
        ("1748779200000", "looks like milliseconds"),
        ("-5", "is not a moment"),
    ],
)
def test_a_bad_epoch_is_one_line_that_says_how_to_write_it(text: str, says: str) -> None:
    with pytest.raises(UsageError, match=says):
        parse_epoch(text)


def test_epoch_without_broadcast_is_a_usage_error_from_the_command(tmp_path: Path) -> None:
    path = events_file(tmp_path, 3)
    result = run_cli("serve", str(path), "--port", "0", "--epoch", "1748779200")
    assert result.returncode == ExitCode.USAGE
    assert result.stderr.strip().splitlines() == [
        "sseplay: error: --epoch sets when a --broadcast timeline starts: add --broadcast "
        "(a client's own replay starts when it connects)"
    ]
    result = run_cli("serve", str(path), "--port", "0", "--broadcast", "--epoch", "noon")
    assert result.returncode == ExitCode.USAGE
    assert len(result.stderr.strip().splitlines()) == 1
    assert "--epoch 'noon' is not a moment" in result.stderr


def test_a_future_epoch_waits_and_its_first_event_comes_at_the_epoch(
    tmp_path: Path, live: Callable[..., Any]
) -> None:
    epoch = time.time() + 0.5
    stream = make_stream(events_file(tmp_path, 5), timing=Timing(interval=INTERVAL))
    server = live([stream], AppOptions(ServerConfig(broadcast=True, ping=0, epoch=epoch)))
    got = timed_ids(server.url + "/events", 5)
    assert [n for n, _ in got] == [1, 2, 3, 4, 5]
    lateness = [at - (epoch + (n - 1) * INTERVAL) for n, at in got]
    assert all(-0.002 < late < 0.05 for late in lateness), lateness


def test_a_past_epoch_starts_where_the_timeline_is_and_keeps_what_resumes_need(
    tmp_path: Path, live: Callable[..., Any]
) -> None:
    """A server started after the epoch (another host, a restarted worker) is where the
    others are, and a client that was on another one resumes from its Last-Event-ID."""
    epoch = time.time() - 1.0  # 20 events are due
    stream = make_stream(events_file(tmp_path, 200), timing=Timing(interval=INTERVAL))
    server = live([stream], AppOptions(ServerConfig(broadcast=True, ping=0, epoch=epoch)))
    (first, at), *_ = timed_ids(server.url + "/events", 1)
    # Event n is due at (n - 1) * INTERVAL after the epoch; it arrived at ``at``. The server
    # maps the epoch onto its loop clock, the test reads the wall clock: allow a few ms.
    assert abs((first - 1) * INTERVAL - (at - epoch)) <= 1.5 * INTERVAL, (first, at - epoch)
    resumed = timed_ids(server.url + "/events", 5, {"Last-Event-ID": "3"})
    assert [n for n, _ in resumed] == [4, 5, 6, 7, 8]


def test_an_epoch_whose_timeline_is_over_answers_204(
    tmp_path: Path, live: Callable[..., Any]
) -> None:
    epoch = time.time() - 60
    stream = make_stream(events_file(tmp_path, 5), timing=Timing(interval=INTERVAL))
    server = live([stream], AppOptions(ServerConfig(broadcast=True, ping=0, epoch=epoch)))
    assert httpx.get(server.url + "/events", timeout=5).status_code == 204
    assert httpx.get(server.url + "/healthz", timeout=5).json()["status"] == "ok"


def test_due_count_jumps_over_the_rounds_of_a_loop() -> None:
    plan = Plan(10, None, Timing(interval=1.0, loop=True))
    assert due_count(plan, -1) == 0
    assert due_count(plan, 0) == 1
    assert due_count(plan, 9.5) == 10
    # A year of rounds: found at once, not walked.
    year = timedelta(days=365).total_seconds()
    assert due_count(plan, year + 0.5) == int(year) + 1
    finite = Plan(10, None, Timing(interval=1.0))
    assert due_count(finite, 1e9) == 10
    assert BROADCAST_HISTORY > 0
