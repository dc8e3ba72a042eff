"""Repeated log lines, limited: one line, then a count.

A followed file appended with 100,000 bad lines a second, or 1,000 clients that all fall
behind the history at once, would each be one warning: thousands of lines a second that
bury everything else on the terminal (issue 23: 3,057 warnings in 8 s). ``RepeatFilter``
lets the first line of a kind through, suppresses the lines of that kind that follow
within ``WINDOW_SECONDS``, and then says how many there were, in one line that also
shows the last of them:

    12:00:01 log.jsonl:7: not JSON: the record is skipped
    12:00:02 (4,998 similar lines suppressed in 1 s; the last: log.jsonl:5006: not JSON: ...)

Two lines are "of a kind" when they come from the same logger with the same message
template (``record.msg``, the text before ``%`` formatting), so a line that names a
different file or client is still a repeat. The count is written when the window ends
(a timer thread, so that a burst that stops is still counted), or before the next line of
that kind if it comes first, or at ``flush()`` (the command calls it at exit).

Only sseplay's own loggers and only warnings and errors are limited: an info line is
about one client (joined, left), the access log a server operator asks for, and ``-v``
asks for every debug line. The command installs the filter on its stderr handler
(``sseplay.cli.shared.setup_logging``); a program that embeds sseplay can install it on
its own handler with ``limit_repeats(handler)``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

# How long the lines that repeat the first of their kind are counted instead of written:
# one second keeps a burst to two lines a second per kind (the first, then the count),
# and a problem that recurs once in a while is still written every time.
WINDOW_SECONDS = 1.0
# Lines below this level are never limited (see the module docstring).
LIMITED_LEVEL = logging.WARNING
# The loggers limited: "sseplay" and those under it.
LIMITED_PREFIX = "sseplay"
# The most kinds tracked at once; past it a new kind is written unlimited (messages that
# are built before logging, f-strings, would otherwise each be a kind of their own).
MAX_KINDS = 1_000
# The attribute that marks a count line, so that the filter lets it through.
_SUMMARY = "sseplay_repeats_summary"

Schedule = Callable[[float, Callable[[], None]], object]
Key = tuple[str, str]


def _start_timer(delay: float, callback: Callable[[], None]) -> threading.Timer:
    timer = threading.Timer(delay, callback)
    timer.daemon = True  # a pending count never holds the process's exit
    timer.start()
    return timer


@dataclass
class _Window:
    until: float
    suppressed: int = 0
    last: logging.LogRecord | None = None


# Every filter made, so that a forked child (``--workers``) gets a fresh lock: one held
# by another thread at the fork would never be released there.
_FILTERS: weakref.WeakSet[RepeatFilter] = weakref.WeakSet()


def _after_fork() -> None:
    for limiter in list(_FILTERS):
        limiter._lock = threading.Lock()
        limiter._armed = False  # the timer thread was not forked


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


class RepeatFilter(logging.Filter):
    """Let the first warning of a kind through, count its repeats within ``window`` seconds,
    and write the count with ``emit`` (a handler's ``handle``). ``clock`` and ``schedule``
    (``schedule(delay, callback)``) are injectable for tests."""

    def __init__(
        self,
        emit: Callable[[logging.LogRecord], object],
        window: float = WINDOW_SECONDS,
        *,
        clock: Callable[[], float] = time.monotonic,
        schedule: Schedule = _start_timer,
        level: int = LIMITED_LEVEL,
        prefix: str = LIMITED_PREFIX,
    ) -> None:
        super().__init__()
        self._emit = emit
        self.window = window
        self._clock = clock
        self._schedule = schedule
        self._level = level
        self._prefix = prefix
        self._windows: dict[Key, _Window] = {}
        self._lock = threading.Lock()
        self._armed = False
        _FILTERS.add(self)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._limits(record):
            return True
        key = (record.name, str(record.msg))
        now = self._clock()
        summary = None
        with self._lock:
            current = self._windows.get(key)
            if current is not None and now < current.until:
                current.suppressed += 1
                current.last = record
                arm = not self._armed
                self._armed = True
            else:
                if current is not None:  # its window is over: its count first, then this
                    summary = self._summary(self._windows.pop(key))
                if len(self._windows) >= MAX_KINDS:
                    self._forget_ended(now)
                if len(self._windows) < MAX_KINDS:
                    self._windows[key] = _Window(now + self.window)
                arm = False
        if summary is not None:
            self._emit(summary)
        if arm:
            self._schedule(max(current.until - now, 0.0) if current else 0.0, self._on_timer)
        return current is None or now >= current.until

    def flush(self) -> None:
        """Write every count now, windows over or not (at exit)."""
        with self._lock:
            ended = list(self._windows.values())
            self._windows.clear()
        for window in ended:
            if (summary := self._summary(window)) is not None:
                self._emit(summary)

    def _limits(self, record: logging.LogRecord) -> bool:
        name = record.name
        return (
            record.levelno >= self._level
            and (name == self._prefix or name.startswith(self._prefix + "."))
            and not getattr(record, _SUMMARY, False)
        )

    def _on_timer(self) -> None:
        now = self._clock()
        with self._lock:
            self._armed = False
            ended = [key for key, window in self._windows.items() if now >= window.until]
            summaries = [self._summary(self._windows.pop(key)) for key in ended]
            waiting = [w.until for w in self._windows.values() if w.suppressed]
            if waiting:
                self._armed = True
        for summary in summaries:
            if summary is not None:
                self._emit(summary)
        if waiting:
            self._schedule(max(min(waiting) - now, 0.0), self._on_timer)

    def _forget_ended(self, now: float) -> None:
        """Drop the windows that are over and counted nothing (called under the lock)."""
        for key in [k for k, w in self._windows.items() if now >= w.until and not w.suppressed]:
            del self._windows[key]

    def _summary(self, window: _Window) -> logging.LogRecord | None:
        last = window.last
        if not window.suppressed or last is None:
            return None
        try:
            said = last.getMessage()
        except (TypeError, ValueError):  # arguments that do not fit the template
            said = str(last.msg)
        record = logging.LogRecord(
            last.name,
            last.levelno,
            last.pathname,
            last.lineno,
            "(%s similar lines suppressed in %g s; the last: %s)",
            (f"{window.suppressed:,}", self.window, said),
            None,
        )
        setattr(record, _SUMMARY, True)
        return record


def limit_repeats(handler: logging.Handler, window: float = WINDOW_SECONDS) -> RepeatFilter:
    """Install a ``RepeatFilter`` on ``handler``, its counts written through it."""
    limiter = RepeatFilter(handler.handle, window)
    handler.addFilter(limiter)
    return limiter
