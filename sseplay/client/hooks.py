"""What a caller of the reconnect loop sees besides the selected events."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sseplay.model import Event

logger = logging.getLogger("sseplay.client")


def _status_to_log(text: str) -> None:
    logger.info("%s", text)


def _ignore_event(event: Event, stream_retry: int | None) -> None:
    pass


def _ignore_raw(chunk: bytes) -> None:
    pass


@dataclass(frozen=True, slots=True)
class Hooks:
    """What a caller sees besides the selected events: each decoded chunk (``--format
    raw``), status lines, and every event before the type filter with the stream's
    reconnection time so far (``--record``)."""

    raw: Callable[[bytes], None] = _ignore_raw
    status: Callable[[str], None] = _status_to_log
    every_event: Callable[[Event, int | None], None] = _ignore_event
