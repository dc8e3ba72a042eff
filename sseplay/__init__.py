"""sseplay: replay JSON event files as Server-Sent Events, and tail any SSE stream.

The public API. Names are imported when first used (PEP 562), so that ``import sseplay``
and ``from sseplay import tail`` never load the server stack (FastAPI, uvicorn,
sse-starlette): a script that only tails a stream starts as fast as ``sseplay tail``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sseplay.errors import (
    AssertionFailed,
    CannotServe,
    ExitCode,
    GaveUp,
    IdleTimedOut,
    InputError,
    Invalid,
    Mismatch,
    OutputFailed,
    SseplayError,
    StreamError,
    TimedOut,
    UsageError,
)

__version__ = "0.1.0"

if TYPE_CHECKING:
    from sseplay.client.api import atail, tail
    from sseplay.client.options import TailOptions
    from sseplay.config import FieldMapping, ServerConfig, StreamOptions, Timing
    from sseplay.http.proxy_server import RecordingProxy
    from sseplay.model import Event
    from sseplay.recordings import Recordings
    from sseplay.server import Server
    from sseplay.shaped import Turns
    from sseplay.sources.redis_feed import RedisStream
    from sseplay.stream import Stream

_LAZY = {
    "Event": "sseplay.model",
    "FieldMapping": "sseplay.config",
    "Timing": "sseplay.config",
    "Turns": "sseplay.shaped",
    "StreamOptions": "sseplay.config",
    "ServerConfig": "sseplay.config",
    "Stream": "sseplay.stream",
    "Server": "sseplay.server",
    # Recorded exchanges served back (``Server(Recordings("rec/"))``, issue 24).
    "Recordings": "sseplay.recordings",
    # The recording proxy of ``sseplay record`` (``with RecordingProxy(url, "rec/")``).
    "RecordingProxy": "sseplay.http.proxy_server",
    # A Redis stream served live (``Server({"/feed": RedisStream(url)})``); redis-py is
    # imported only when it connects.
    "RedisStream": "sseplay.sources.redis_feed",
    "tail": "sseplay.client.api",
    "atail": "sseplay.client.api",
    "TailOptions": "sseplay.client.options",
}

__all__ = [
    "AssertionFailed",
    "CannotServe",
    "Event",
    "ExitCode",
    "FieldMapping",
    "GaveUp",
    "IdleTimedOut",
    "InputError",
    "Invalid",
    "Mismatch",
    "OutputFailed",
    "RecordingProxy",
    "Recordings",
    "RedisStream",
    "Server",
    "ServerConfig",
    "SseplayError",
    "Stream",
    "StreamError",
    "StreamOptions",
    "TailOptions",
    "TimedOut",
    "Timing",
    "Turns",
    "UsageError",
    "__version__",
    "atail",
    "tail",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sseplay' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # found once, then a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
