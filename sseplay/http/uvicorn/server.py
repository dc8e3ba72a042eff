"""uvicorn's ``Server``, configured and run the way sseplay runs it: open streams are
ended first when it stops, and a library server leaves the process's signals alone."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import uvicorn
from starlette.types import ASGIApp

from sseplay.config import DEFAULT_HEADER_TIMEOUT
from sseplay.http.uvicorn.heads import HeadWatch
from sseplay.http.uvicorn.protocol import (
    MAX_REQUEST_HEAD_BYTES,
    UNFINISHED,
    HeadLimitedHttpToolsProtocol,
)

if TYPE_CHECKING:
    from sseplay.http.hub import Hub

# Ctrl-C and SIGTERM stop the server within a second even with streams open.
GRACEFUL_SHUTDOWN_SECONDS = 0.5
# How long a stopping HTTPS server waits for the TLS close of its idle connections.
TLS_CLOSE_SECONDS = 0.2


class StreamingServer(uvicorn.Server):
    """uvicorn's server, ending the open streams first when it stops; uvicorn alone would
    wait out its graceful timeout for them and then cancel them."""

    def __init__(
        self, config: uvicorn.Config, hub: Hub, header_timeout: float = DEFAULT_HEADER_TIMEOUT
    ) -> None:
        super().__init__(config)
        self.hub = hub
        # The state uvicorn shares between the connections, watching their request heads.
        self.server_state = HeadWatch(header_timeout)
        # Only the command handles Ctrl-C and SIGTERM: a library server leaves the
        # process's signal handlers to the program that embeds it.
        self.handle_signals = False

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if self.handle_signals:
            with super().capture_signals():
                yield
        else:
            yield

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        quiet_cut_offs = _CutOffFilter(self.hub)
        uvicorn_log = logging.getLogger("uvicorn.error")
        uvicorn_log.addFilter(quiet_cut_offs)
        if isinstance(self.server_state, HeadWatch):
            # Now, not earlier: ``sseplay serve`` raises the limit before it serves.
            self.server_state.measure_room()
        try:
            await super().serve(sockets)
        finally:
            uvicorn_log.removeFilter(quiet_cut_offs)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.hub.close_all()
        if self.config.is_ssl:
            asyncio.get_running_loop().call_later(TLS_CLOSE_SECONDS, self._abort_closing)
        try:
            await super().shutdown(sockets)
        finally:
            await self._abort_the_rest()

    async def _abort_the_rest(self) -> None:
        """Drop every connection still open once the graceful shutdown is over (on a busy
        machine a TLS close can start after ``_abort_closing`` looked), while the loop still
        runs to close their transports: left to a closed loop, they are only reported as
        unclosed resources."""
        left = False
        for connection in list(self.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.abort()
                left = True
        if left:
            await asyncio.sleep(0)  # their connection_lost callbacks run now

    def _abort_closing(self) -> None:
        """Drop the TLS connections that are still closing: a TLS close waits for the
        client's close_notify (RFC 8446 section 6.1), which a browser holding an idle
        connection may never send; the server would wait out its graceful timeout for
        them, log an error, and leave their transports to a closed loop."""
        for connection in list(self.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None and transport.is_closing():
                transport.abort()


class _CutOffFilter(logging.Filter):
    """Drop uvicorn's error line for a response we ended on purpose (a client cut off
    for not reading); our own log line says what happened."""

    def __init__(self, hub: Hub) -> None:
        super().__init__()
        self.hub = hub

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage() == UNFINISHED and self.hub.cut_off:
            self.hub.cut_off -= 1
            return False
        return True


def streaming_server(
    app: ASGIApp, hub: Hub, header_timeout: float = DEFAULT_HEADER_TIMEOUT, **config: Any
) -> StreamingServer:
    """A server for ``app`` (made by ``create_app``, or wrapping one), configured the way
    sseplay runs it; ``header_timeout``: see ``sseplay.http.uvicorn.heads``."""
    settings: dict[str, Any] = {
        "log_config": None,
        "access_log": False,
        # Typed int, but uvicorn only passes it to a timeout, where half a second works.
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS,
        "lifespan": "on",
        # A local mock server has no proxy in front to trust X-Forwarded-For from.
        "proxy_headers": False,
        "http": HeadLimitedHttpToolsProtocol,
        # The same limit should uvicorn be told to use h11 instead (h11 then answers 400).
        "h11_max_incomplete_event_size": MAX_REQUEST_HEAD_BYTES,
    }
    settings.update(config)
    return StreamingServer(uvicorn.Config(app, **settings), hub, header_timeout)
