"""What a caller of the reconnect loop sees besides the selected events."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sseplay.model import Event

if TYPE_CHECKING:
    import httpx

logger = logging.getLogger("sseplay.client")


def _status_to_log(text: str) -> None:
    logger.info("%s", text)


def _ignore_event(event: Event, stream_retry: int | None) -> None:
    pass


def _ignore_raw(chunk: bytes) -> None:
    pass


def _ignore_response(response: httpx.Response) -> None:
    pass


@dataclass(frozen=True, slots=True)
class Hooks:
    """What a caller sees besides the selected events: each decoded chunk (``--format
    raw``, ``--record``), status lines, every event before the type filter with the
    stream's reconnection time so far, and each response that opened the stream (its
    request, status and headers: ``--record``), before its first chunk."""

    raw: Callable[[bytes], None] = _ignore_raw
    status: Callable[[str], None] = _status_to_log
    every_event: Callable[[Event, int | None], None] = _ignore_event
    connected: Callable[[httpx.Response], None] = _ignore_response
