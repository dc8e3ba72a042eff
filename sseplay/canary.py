"""``sseplay serve --canary``: a stream that says when each of its events was written, for
``tail --check-delivery`` to find a hop that holds the stream back.

Every ``interval`` the ``CanaryTimeline`` publishes into its ``CanaryFeed`` one event,
``{"seq": n, "sent_ns": time.time_ns(), "pad": "..."}``, stamped as it is written (not
when it was due: a late timer is not blamed on the network), and half an interval later a one-byte
comment line (``:``), so that a hop that holds bytes until it has a few KiB shows up as
soon as one that holds them for a time. Deadlines are absolute (``origin + k * interval
/ 2`` on the shared ``Timer``); steps missed while the loop was busy are skipped, not
written in a burst of their own. The feed keeps the last ``CANARY_HISTORY`` events, so a
client that resumes with Last-Event-ID gets what it missed (late, as its lag says).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from sseplay.errors import UsageError
from sseplay.feed import Feed
from sseplay.model import encode_body, with_id
from sseplay.timer import TIMER_SLACK, Timer

DEFAULT_CANARY_INTERVAL = 0.2  # seconds between two events
CANARY_HISTORY = 1000
COMMENT = b":\n"  # a comment line with no text: one byte and its line break
# Events differ in size by up to this many bytes of padding, so that the bytes a hop
# passes on at a time and the time between its bursts do not move together: a byte
# threshold gives bursts of one size at uneven times, a flush timer the reverse, and
# ``tail --check-delivery`` tells which.
MAX_PAD = 160


@dataclass(frozen=True)
class Canary:
    """What ``--canary`` serves: an event every ``interval`` seconds that carries the
    moment it was written, and a one-byte comment between two events."""

    interval: float = DEFAULT_CANARY_INTERVAL
    label: str = "canary"

    def __post_init__(self) -> None:
        interval = self.interval
        if isinstance(interval, bool) or not isinstance(interval, int | float):
            raise UsageError(f"--interval must be a number of seconds, not {interval!r}")
        if not math.isfinite(interval) or interval <= 0:
            raise UsageError(
                f"--canary needs an --interval of more than 0 seconds, not {interval:g}"
            )


def pad_length(seq: int) -> int:
    """The length of event ``seq``'s padding: 0 to ``MAX_PAD`` characters, drawn at random
    (the same on every run). Not a multiplicative hash: its lengths are spread so evenly
    that any run of events adds up to about the same size."""
    return random.Random(seq).randrange(MAX_PAD + 1)


def canary_event(seq: int, sent_ns: int) -> bytes:
    """The wire of canary event ``seq``, written at ``sent_ns``."""
    pad = "." * pad_length(seq)
    return with_id(seq, encode_body(f'{{"seq": {seq}, "sent_ns": {sent_ns}, "pad": "{pad}"}}'))


class CanaryFeed(Feed):
    """A ``Feed`` that also writes bytes that are no event (the comment between two events)
    to every subscriber at the live edge."""

    def comment(self, chunk: bytes) -> None:
        for subscriber in list(self._subscribers):
            outlet = subscriber.outlet
            if not subscriber.admitted or subscriber.closed or outlet.blocked:
                continue
            if subscriber.seen_until == self.position:
                outlet.write(chunk)


class CanaryTimeline:
    """The timed producer of a canary route (a ``Playable`` on the shared ``Timer``)."""

    def __init__(
        self, canary: Canary, timer: Timer, clock_ns: Callable[[], int] = time.time_ns
    ) -> None:
        self.canary = canary
        self.timer = timer
        self.feed = CanaryFeed(timer, 0, history=CANARY_HISTORY)
        self._clock_ns = clock_ns
        self._half = canary.interval / 2
        self._origin = 0.0
        self._step = 0  # even: an event; odd: the comment after it
        self.seq = 0

    @property
    def closed(self) -> bool:
        return self.feed.closed

    def begin(self) -> None:
        """The first event goes out one interval from now; then one every interval."""
        self._origin = self.timer.time()
        self.feed.start()
        self._step = 2
        self.timer.at(self._origin + 2 * self._half, self)

    def stop(self) -> None:
        self.feed.closed = True

    def play(self, now: float) -> float | None:
        if self._step % 2 == 0:
            self.seq += 1
            wire = canary_event(self.seq, self._clock_ns())
            self.feed.publish([(str(self.seq), wire)])
        else:
            self.feed.comment(COMMENT)
        due = math.floor((now + TIMER_SLACK - self._origin) / self._half)
        self._step = max(self._step + 1, due + 1)
        return self._origin + self._step * self._half
