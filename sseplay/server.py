"""The HTTP side of ``sseplay serve``: ``create_app`` and running it under uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sse_starlette import EventSourceResponse, ServerSentEvent

from sseplay.errors import CannotServe
from sseplay.replay import Broadcast, Replay, Start, play

logger = logging.getLogger("sseplay.server")

DEFAULT_PING = 15.0
# A client that has not taken a chunk for this long is cut off, so that one
# frozen reader never holds memory or slows anyone else down.
DEFAULT_SEND_TIMEOUT = 10.0
# Ctrl-C and SIGTERM stop the server within a second even with streams open.
GRACEFUL_SHUTDOWN_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class Stream:
    route: str
    label: str
    replay: Replay


@dataclass(frozen=True, slots=True)
class AppOptions:
    broadcast: bool = False
    ping: float = DEFAULT_PING
    cors_origins: tuple[str, ...] = ("*",)
    send_timeout: float = DEFAULT_SEND_TIMEOUT


@dataclass(frozen=True, slots=True)
class ServerOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    once: bool = False
    app: AppOptions = field(default_factory=AppOptions)


def _ping_comment() -> ServerSentEvent:
    # A comment, never an event (WHATWG 9.2.6: lines starting with ":" are ignored).
    return ServerSentEvent(comment="ping", sep="\n")


class _Connection:
    """One client's stream: logs its coming and going with how many events it got."""

    def __init__(self, client: str, route: str, start: Start) -> None:
        self.client = client
        self.route = route
        self.start = start
        self.sent = 0

    def count(self, events: int) -> None:
        self.sent += events

    async def stream(
        self, preamble: bytes, body: AsyncIterator[bytes], on_complete: Callable[[], None] | None
    ) -> AsyncIterator[bytes]:
        logger.info(
            "%s connected to %s%s",
            self.client,
            self.route,
            f" (resuming at event {self.start.n + 1})" if self.start.n else "",
        )
        how = "disconnected"
        try:
            if preamble:
                yield preamble
            async for chunk in body:
                yield chunk
            how = "got the whole replay"
            if on_complete is not None:
                on_complete()
        finally:
            logger.info("%s left %s after %d events (%s)", self.client, self.route, self.sent, how)


def create_app(
    streams: Sequence[Stream],
    options: AppOptions,
    on_complete: Callable[[], None] | None = None,
) -> FastAPI:
    """The whole server. ``on_complete`` runs when a client has received a whole replay
    (or, in broadcast mode, when the shared timeline has played to its end)."""
    broadcasts = {s.route: Broadcast(s.replay) for s in streams} if options.broadcast else {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(_run_broadcast(b, on_complete)) for b in broadcasts.values()]
        yield
        for task in tasks:
            task.cancel()

    app = FastAPI(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(options.cors_origins),
        # A wildcard origin with credentials is invalid (Fetch, CORS protocol).
        allow_credentials=False,
        allow_methods=["GET", "POST"],
        allow_headers=["*"],
    )

    for stream in streams:
        app.add_api_route(
            stream.route,
            _stream_endpoint(stream, options, broadcasts.get(stream.route), on_complete),
            methods=["GET", "POST"],
        )

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        return JSONResponse(
            {
                "status": "ok",
                "streams": [
                    {
                        "route": s.route,
                        "file": s.label,
                        "events": s.replay.file.count,
                        "types": sorted(s.replay.file.event_types),
                    }
                    for s in streams
                ],
            }
        )

    @app.get("/")
    async def viewer() -> HTMLResponse:
        page = resources.files("sseplay").joinpath("viewer.html").read_text("utf-8")
        return HTMLResponse(page)

    return app


async def _run_broadcast(broadcast: Broadcast, on_complete: Callable[[], None] | None) -> None:
    await broadcast.run()
    logger.info("the broadcast has played to its end")
    if on_complete is not None:
        on_complete()


def _stream_endpoint(
    stream: Stream,
    options: AppOptions,
    broadcast: Broadcast | None,
    on_complete: Callable[[], None] | None,
) -> Callable[[Request], Any]:
    replay = stream.replay

    async def endpoint(request: Request) -> Response:
        # A browser reconnecting sends the header (WHATWG 9.2.4); a first connection
        # cannot set headers, so the query parameter stands in for it.
        last_event_id = request.headers.get("last-event-id")
        if last_event_id is None:
            last_event_id = request.query_params.get("lastEventId")
        start = replay.start_after(last_event_id)
        # 204 tells a browser to stop reconnecting (WHATWG 9.2.3): the replay is over.
        if replay.is_over(start.n) or (broadcast is not None and broadcast.ended):
            return Response(status_code=204)
        client = f"{request.client.host}:{request.client.port}" if request.client else "?"
        connection = _Connection(client, stream.route, start)
        if broadcast is not None:
            body = broadcast.follow(start if last_event_id else None, connection.count)
            done = None
        else:
            body = play(replay, start, connection.count)
            done = on_complete
        return EventSourceResponse(
            connection.stream(replay.preamble(start, last_event_id), body, done),
            ping=options.ping,
            ping_message_factory=_ping_comment,
            sep="\n",
            send_timeout=options.send_timeout,
        )

    return endpoint


def bind(host: str, port: int) -> socket.socket:
    """Bind before serving, so a port in use is our own one-line error, and port 0 is known."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise CannotServe(f"cannot listen on {host!r}: {error.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as error:
        sock.close()
        hint = " (pick another --port, or 0 for any free one)" if port else ""
        raise CannotServe(f"cannot listen on {host}:{port}: {error.strerror}{hint}") from None
    sock.setblocking(False)
    return sock


def stream_urls(sock: socket.socket, streams: Sequence[Stream]) -> list[str]:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return [f"http://{shown}:{port}{s.route}" for s in streams]


def serve(
    streams: Sequence[Stream],
    options: ServerOptions,
    sock: socket.socket,
    on_ready: Callable[[], None],
) -> None:
    """Serve until Ctrl-C, SIGTERM or (with ``once``) the first complete replay."""
    server: uvicorn.Server | None = None

    def complete() -> None:
        if options.once and server is not None:
            logger.info("--once: a client got the whole replay, stopping")
            server.should_exit = True

    app = create_app(streams, options.app, complete)
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        # Typed int, but uvicorn only passes it to a timeout, where half a second works.
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,  # type: ignore[arg-type]
        lifespan="on",
    )
    server = uvicorn.Server(config)

    async def main() -> None:
        assert server is not None
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.005)
        if server.started:
            on_ready()
        await task

    # uvicorn re-raises the signal that stopped it once it is done; with these
    # handlers in place that is a no-op instead of a KeyboardInterrupt traceback.
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        asyncio.run(main())
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
