"""What the tests share besides servers (those are in conftest.py): one fake clock, one fake
outlet, and one way to wait for a condition with a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_until(
    condition: Callable[[], object],
    timeout: float = 5,
    message: str | Callable[[], str] = "timed out waiting",
    interval: float = 0.01,
) -> None:
    """Poll ``condition`` until it is true; fail with ``message`` after ``timeout`` seconds.
    (No test sleeps for a fixed time: it waits for what it needs, with a deadline.)"""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, message() if callable(message) else message
        time.sleep(interval)


class FakeHandle:
    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """The one fake clock. As a loop (``time``, ``call_at``) time moves only in ``advance``,
    and ``lag`` makes every timer fire late. As a plain clock (called, like
    ``time.monotonic``) it reads ``now``, after moving it on by ``step``."""

    def __init__(self, lag: float = 0.0, now: float = 100.0, step: float = 0.0) -> None:
        self.now = now
        self.lag = lag
        self.step = step
        self.timers: list[FakeHandle] = []
        self.fired = 0

    def __call__(self) -> float:
        self.now += self.step
        return self.now

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], object]) -> Any:
        handle = FakeHandle(when, callback)
        self.timers.append(handle)
        return handle

    def armed(self) -> list[FakeHandle]:
        return [h for h in self.timers if not h.cancelled]

    def advance(self, seconds: float) -> None:
        until = self.now + seconds
        while due := sorted((h for h in self.armed() if h.when <= until), key=lambda h: h.when):
            handle = due[0]
            self.timers.remove(handle)
            self.now = max(self.now, handle.when + self.lag)
            self.fired += 1
            handle.callback()
        self.now = max(self.now, until)


class FakeOutlet:
    """Records what would go on the wire, and when."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.writes: list[tuple[float, bytes, bool]] = []
        self.blocked = self.closed = self.completed = False
        self.on_drained: Callable[[], None] = lambda: None

    def write(self, chunk: bytes, more_body: bool = True) -> bool:
        assert not self.completed, "written after the end of the response"
        self.completed = not more_body
        self.writes.append((round(self.clock.now - 100.0, 9), chunk, more_body))
        return True

    def ids(self) -> list[list[int]]:
        """The ids in each write: which events went out together."""
        return [
            [int(line[4:]) for line in chunk.decode().split("\n") if line.startswith("id: ")]
            for _, chunk, _ in self.writes
        ]

    def times(self) -> list[float]:
        return [when for when, _, _ in self.writes]


def recorded_events(path: Any) -> list[tuple[float, Any]]:
    """The events of a version 2 recording (``tail --record``, ``sseplay record``), each
    with the offset of the block that completed it, parsed as a client parses them."""
    from sseplay.exchange import read_exchange
    from sseplay.parser import EventStreamParser

    parser = EventStreamParser()
    return [
        (block.offset, event)
        for block in read_exchange(path).blocks
        for event in parser.feed(block.raw)
    ]
