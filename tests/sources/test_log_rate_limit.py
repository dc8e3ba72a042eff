"""Repeated warnings are one line, then a count (issue 23): ``RepeatFilter`` with an
injected clock and timer, then ``sseplay serve --follow`` fed thousands of bad lines."""

from __future__ import annotations

import io
import logging
import re
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sseplay.log_limit import RepeatFilter, limit_repeats
from tests.conftest import ROOT, sseplay, write_lines

SKIPPED = "%s:%d: %s: the record is skipped"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeTimers:
    """``schedule(delay, callback)``, kept until the test runs them."""

    def __init__(self) -> None:
        self.pending: list[tuple[float, Callable[[], None]]] = []

    def __call__(self, delay: float, callback: Callable[[], None]) -> None:
        self.pending.append((delay, callback))

    def run(self) -> None:
        pending, self.pending = self.pending, []
        for _, callback in pending:
            callback()


def record(
    msg: str, *args: object, name: str = "sseplay.follow", level: int = logging.WARNING
) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def limiter() -> tuple[RepeatFilter, list[logging.LogRecord], FakeClock, FakeTimers]:
    emitted: list[logging.LogRecord] = []
    clock, timers = FakeClock(), FakeTimers()
    return RepeatFilter(emitted.append, 1.0, clock=clock, schedule=timers), emitted, clock, timers


def test_the_first_line_passes_its_repeats_are_counted_and_the_count_comes_at_the_window_end() -> (
    None
):
    limit, emitted, clock, timers = limiter()
    assert limit.filter(record(SKIPPED, "log.jsonl", 1, "invalid JSON"))
    for line in range(2, 5):
        clock.now += 0.1
        assert not limit.filter(record(SKIPPED, "log.jsonl", line, "invalid JSON"))
    # One timer, for the end of the window that began with the first line.
    assert [round(delay, 6) for delay, _ in timers.pending] == [0.9]
    timers.run()  # too early: the fake clock is still inside the window
    assert emitted == []
    assert len(timers.pending) == 1  # so it waits again
    clock.now = 101.0
    timers.run()
    assert [r.getMessage() for r in emitted] == [
        "(3 similar lines suppressed in 1 s; the last: log.jsonl:4: invalid JSON: "
        "the record is skipped)"
    ]
    assert emitted[0].name == "sseplay.follow"
    assert emitted[0].levelno == logging.WARNING
    assert limit.filter(emitted[0])  # the count line itself is never held back
    # After the window, the next line of that kind is written at once.
    assert limit.filter(record(SKIPPED, "log.jsonl", 9, "invalid JSON"))
    assert timers.pending == []


def test_the_count_comes_before_the_next_line_when_that_line_is_first() -> None:
    limit, emitted, clock, _ = limiter()
    assert limit.filter(record(SKIPPED, "a", 1, "x"))
    assert not limit.filter(record(SKIPPED, "a", 2, "x"))
    clock.now += 5
    assert limit.filter(record(SKIPPED, "a", 3, "x"))
    assert [r.getMessage() for r in emitted] == [
        "(1 similar lines suppressed in 1 s; the last: a:2: x: the record is skipped)"
    ]


def test_kinds_are_the_logger_and_the_template_and_only_sseplay_warnings_are_limited() -> None:
    limit, emitted, _, _ = limiter()
    assert limit.filter(record(SKIPPED, "a", 1, "x"))
    assert limit.filter(record(SKIPPED, "a", 1, "x", name="sseplay.live"))  # another logger
    assert limit.filter(record("a client missed %d events", 3))  # another template
    assert not limit.filter(record("a client missed %d events", 4))
    for _ in range(3):
        assert limit.filter(record(SKIPPED, "a", 1, "x", level=logging.INFO))
        assert limit.filter(record(SKIPPED, "a", 1, "x", name="uvicorn.error"))
    assert emitted == []


def test_flush_writes_the_counts_still_pending() -> None:
    limit, emitted, _, _ = limiter()
    limit.filter(record(SKIPPED, "a", 1, "x"))
    limit.filter(record(SKIPPED, "a", 2, "x"))
    limit.filter(record("other %s", "y"))
    limit.flush()
    assert [r.getMessage() for r in emitted] == [
        "(1 similar lines suppressed in 1 s; the last: a:2: x: the record is skipped)"
    ]


def test_on_a_real_handler_the_count_is_written_through_it_in_order() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    limit = limit_repeats(handler, window=60)
    logger = logging.getLogger("sseplay.test_log_rate_limit")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        for line in range(1, 1001):
            logger.warning(SKIPPED, "f", line, "bad")
        limit.flush()
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    assert out.getvalue().splitlines() == [
        "f:1: bad: the record is skipped",
        "(999 similar lines suppressed in 60 s; the last: f:1000: bad: the record is skipped)",
    ]


# ---- the command ----

SUMMARY = re.compile(r"^\d\d:\d\d:\d\d \(([\d,]+) similar lines suppressed")
BAD_LINES = 5_000


def test_follow_fed_thousands_of_bad_lines_writes_a_few_lines_and_a_count(
    tmp_path: Path,
) -> None:
    path = write_lines(tmp_path / "log.jsonl", [{"n": 1}])
    process = subprocess.Popen(
        sseplay("serve", str(path), "--follow", "--port", "0"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    lines: list[str] = []

    def read_stderr() -> None:
        assert process.stderr is not None
        lines.extend(line.rstrip("\n") for line in process.stderr)

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        assert process.stdout is not None
        assert select.select([process.stdout], [], [], 15)[0], "no URL"
        assert process.stdout.readline().startswith("http://")
        with path.open("ab") as file:
            file.write(b"{not json\n" * BAD_LINES)
        # Every bad line is accounted for, written or counted, within a second of the last.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _total(lines) < BAD_LINES:
            time.sleep(0.01)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(15)
        reader.join(15)
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()
    assert process.returncode == 0, "\n".join(lines[-5:])
    shown, counts = _accounted(lines)
    assert counts, "one line says how many were suppressed"
    assert shown + len(counts) < 20, "\n".join(lines[:40])
    assert shown + sum(counts) == BAD_LINES, "\n".join(lines[:40])
    assert "log.jsonl:2: invalid JSON" in next(line for line in lines if "skipped" in line)


def _total(lines: list[str]) -> int:
    shown, counts = _accounted(list(lines))
    return shown + sum(counts)


def _accounted(lines: list[str]) -> tuple[int, list[int]]:
    """How many bad lines were written one by one, and the counts of those suppressed."""
    counts = [int(m.group(1).replace(",", "")) for line in lines if (m := SUMMARY.match(line))]
    shown = sum("the record is skipped" in line and not SUMMARY.match(line) for line in lines)
    return shown, counts
