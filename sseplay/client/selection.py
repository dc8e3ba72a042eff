"""--event, --count and --until: which events are shown, and when the tail is done;
--expect and --schema check each shown event."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sseplay.client.hooks import Hooks
from sseplay.client.options import CheckOptions, SelectOptions
from sseplay.errors import AssertionFailed, SseplayError
from sseplay.model import Event

if TYPE_CHECKING:  # sseplay.client.assertions is imported only when its options are used
    from sseplay.client.assertions import Expectation


class Selection:
    """One run's selection: the events shown so far, checked as they come."""

    def __init__(self, selecting: SelectOptions, checks: CheckOptions, hooks: Hooks) -> None:
        self.types = selecting.types
        self.count = selecting.count
        self.pattern = selecting.pattern
        self.until = selecting.until
        self.hooks = hooks
        self.shown = 0
        self.schemas = checks.schemas
        self.expectation: Expectation | None = None
        if checks.expected is not None:
            from sseplay.client.assertions import Expectation

            self.expectation = Expectation(checks.expected)
        # A failed check, raised once the events before it (and the one that failed) have
        # been shown, so that a CI log shows the event the error names.
        self.failure: SseplayError | None = None

    def take(self, events: list[Event], stream_retry: int | None) -> tuple[list[Event], bool]:
        """The events to show, and whether the tail is done after them (then ``failure``
        may say why it failed)."""
        batch: list[Event] = []
        for event in events:
            self.hooks.every_event(event, stream_retry)
            if self.types and event.event not in self.types:
                continue
            batch.append(event)
            self.shown += 1
            try:
                if self.schemas is not None:
                    self.schemas.check(self.shown, event)
                if self.expectation is not None and self.expectation.check(event):
                    return batch, True
                if self.pattern is not None and self.pattern.search(event.data):
                    self._stopping(f"--until {self.until!r} matched")
                    return batch, True
                if self.count is not None and self.shown >= self.count:
                    self._stopping(f"--count {self.count} was reached")
                    return batch, True
            except SseplayError as error:
                self.failure = error
                return batch, True
        return batch, False

    def _stopping(self, why: str) -> None:
        if self.expectation is not None:
            self.expectation.finish(f"the tail stopped ({why})")

    @property
    def silence_is_success(self) -> bool:
        """--exact after every expected event: an --idle-timeout means no extra event came."""
        return self.expectation is not None and self.expectation.complete

    def ended(self, reason: str) -> None:
        """The stream is over: fine, unless --expect, --count or --until still wait."""
        self.hooks.status(reason)
        if self.expectation is not None:
            self.expectation.finish("the stream ended")
        if self.count is None and self.pattern is None:
            return
        wanted = (
            f"{self.count} events" if self.count is not None else f"data matching {self.until!r}"
        )
        raise AssertionFailed(f"the stream ended after {self.shown} events without {wanted}")
