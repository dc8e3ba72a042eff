"""The HTTP side of ``sseplay serve``: ``create_app`` and running it under uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sse_starlette import EventSourceResponse
from starlette.datastructures import QueryParams
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from sseplay.direct import DirectBody
from sseplay.errors import CannotServe
from sseplay.fanout import Broadcast, Listener, Outlet, Player, Subscriber, Timer
from sseplay.replay import Replay, Start

logger = logging.getLogger("sseplay.server")

DEFAULT_PING = 15.0
# A client that has not taken a chunk for this long is cut off, so that one
# frozen reader never holds memory or slows anyone else down.
DEFAULT_SEND_TIMEOUT = 10.0
# Ctrl-C and SIGTERM stop the server within a second even with streams open.
GRACEFUL_SHUTDOWN_SECONDS = 0.5
# Python's cyclic collector stalls every stream while it walks the objects of the
# connections it looks at: a held connection is ~80 of them. Nothing a request leaves
# behind is a cycle (tests/test_serve.py checks every kind of request), so reference
# counting frees it all at once and the collector has little to find. Its young
# generation runs when 50,000 objects more are alive than before, that is as clients
# join; the middle one, which would walk every client that joined since its last pass
# (50-60 ms at 7,000 clients), only after 100 young passes, and the full one after 10
# of those. Measured with gc.callbacks at 7,000 clients joining in 2 s: the longest
# stall went from 61 ms to 8 ms, drift p99 from 36-41 ms to 6-8 ms.
GC_THRESHOLDS = (50_000, 100, 10)
# What uvicorn logs when an application returns with its response unfinished: that
# is how a client cut off for not reading is dropped (ASGI has no other way).
_UNFINISHED = "ASGI callable returned without completing response."


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
    # Body chunks straight to uvicorn's transport when it allows (see ``direct``).
    direct_writes: bool = True


@dataclass(frozen=True, slots=True)
class ServerOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    once: bool = False
    app: AppOptions = field(default_factory=AppOptions)


class Hub:
    """The streams of one app: the shared timer, the broadcasts, every open connection."""

    def __init__(
        self,
        streams: Sequence[Stream],
        options: AppOptions,
        on_complete: Callable[[], None] | None,
    ) -> None:
        self.options = options
        self.on_complete = on_complete
        self.listeners: set[Listener] = set()
        self.headers = event_stream_headers()
        self.cut_off = 0
        self.stopping = False
        self._timer: Timer | None = None
        self._streams = streams
        self.broadcasts: dict[str, Broadcast] = {}

    @property
    def timer(self) -> Timer:
        if self._timer is None:
            self._timer = Timer(asyncio.get_running_loop())
        return self._timer

    def start(self) -> None:
        """Start the broadcasts' timelines: they run from the moment the server is up."""
        if self.options.broadcast:
            for stream in self._streams:
                broadcast = Broadcast(
                    stream.replay, self.timer, self.options.ping, self._broadcast_ended
                )
                self.broadcasts[stream.route] = broadcast
                broadcast.begin()

    def _broadcast_ended(self) -> None:
        if self.on_complete is not None:
            self.on_complete()

    def open(self, stream: Stream, outlet: Outlet, start: Start, preamble: bytes) -> Listener:
        """Start a connection's stream; it is listed before its first write, so that a
        shutdown at any moment ends it."""
        broadcast = self.broadcasts.get(stream.route)
        if broadcast is not None:
            # A first connection joins live; a resuming one catches up from the history.
            resume = start if start.n or not start.known else None
            subscriber = broadcast.subscribe(outlet, resume)
            self.listeners.add(subscriber)
            broadcast.admit(subscriber, preamble)
            return subscriber
        ping = self.options.ping
        player = Player(outlet, stream.replay, self.timer, start, ping, self.on_complete)
        self.listeners.add(player)
        player.begin(preamble)
        return player

    def close(self, stream: Stream, listener: Listener) -> None:
        listener.outlet.close()
        self.listeners.discard(listener)
        broadcast = self.broadcasts.get(stream.route)
        if broadcast is not None and isinstance(listener, Subscriber):
            broadcast.unsubscribe(listener)

    def cut_off_stream(self, outlet: Outlet) -> None:
        """A client took nothing for the send timeout: end its request (ASGI has no other
        way to drop a connection); uvicorn's complaint about that is filtered out."""
        self.cut_off += 1
        if outlet.task is not None:
            outlet.task.cancel()

    def close_all(self) -> None:
        """End every open stream: the server is stopping."""
        self.stopping = True
        for broadcast in self.broadcasts.values():
            broadcast.closed = True
        for listener in list(self.listeners):
            outlet = listener.outlet
            if outlet.blocked:
                outlet.cut()
            elif not outlet.closed and not outlet.completed:
                outlet.write(b"", more_body=False)


class _NoBody:
    """An empty body for sse-starlette's constructor: ours is written by the timer."""

    def __aiter__(self) -> _NoBody:
        return self

    async def __anext__(self) -> bytes:
        raise StopAsyncIteration


def event_stream_headers() -> list[tuple[bytes, bytes]]:
    """The headers sse-starlette gives an event stream (``text/event-stream``, ``no-store``
    so no cache keeps it, ``X-Accel-Buffering: no`` so nginx does not buffer it)."""
    return EventSourceResponse(_NoBody(), ping=0, sep="\n").raw_headers


def create_app(
    streams: Sequence[Stream],
    options: AppOptions,
    on_complete: Callable[[], None] | None = None,
) -> FastAPI:
    """The whole server. ``on_complete`` runs when a client has received a whole replay
    (or, in broadcast mode, when the shared timeline has played to its end). The app's
    ``state.hub`` holds its open streams: ``StreamingServer`` ends them when it stops."""
    hub = Hub(streams, options, on_complete)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        hub.start()
        yield

    app = FastAPI(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)
    app.state.hub = hub
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(options.cors_origins),
        # A wildcard origin with credentials is invalid (Fetch, CORS protocol).
        allow_credentials=False,
        allow_methods=["GET", "POST"],
        allow_headers=["*"],
    )

    for stream in streams:
        endpoint = _StreamEndpoint(stream, hub)
        app.router.routes.append(Route(stream.route, endpoint, methods=["GET", "POST"]))

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        return JSONResponse(
            {
                "status": "ok",
                "connections": len(hub.listeners),
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


class _StreamEndpoint:
    """A stream route as a plain ASGI endpoint: sse-starlette's headers, worked out once
    per app, and a body written by the hub's shared timer instead of a task group of
    four tasks and a cancel scope per send. Starlette routes it without FastAPI's
    per-request wrapper, and it is one frame: every frame and object here is held for
    as long as the stream is open, thousands of times over."""

    def __init__(self, stream: Stream, hub: Hub) -> None:
        self.stream = stream
        self.hub = hub
        self._cut_off = hub.cut_off_stream  # one bound method, not one per connection

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hub, replay = self.hub, self.stream.replay
        # A browser reconnecting sends the header (WHATWG 9.2.4); a first connection
        # cannot set headers, so the query parameter stands in for it.
        last_event_id = _header(scope, b"last-event-id")
        if last_event_id is None:
            last_event_id = QueryParams(scope["query_string"]).get("lastEventId")
        start = replay.start_after(last_event_id)
        broadcast = hub.broadcasts.get(self.stream.route)
        # 204 tells a browser to stop reconnecting (WHATWG 9.2.3): the replay is over.
        if replay.is_over(start.n) or (broadcast is not None and broadcast.ended):
            await Response(status_code=204)(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 200, "headers": hub.headers})
        if scope["method"] == "HEAD":  # the headers a GET would get, and no stream
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        task = asyncio.current_task()
        assert task is not None
        direct = DirectBody.of(scope, receive) if hub.options.direct_writes else None
        outlet = Outlet(send, hub.options.send_timeout, self._cut_off, direct, task)
        if start.n:
            logger.info(
                "%s connected to %s (resuming at event %d)",
                _client(scope),
                self.stream.route,
                start.n + 1,
            )
        else:
            logger.info("%s connected to %s", _client(scope), self.stream.route)
        listener = hub.open(self.stream, outlet, start, replay.preamble(start, last_event_id))
        try:
            # The request's own task waits here: a disconnect, or the end of the
            # response written by the timer, wakes it (uvicorn answers http.disconnect).
            while (await receive())["type"] != "http.disconnect":
                pass
        except asyncio.CancelledError:
            if not outlet.cut_off:
                raise
            task.uncancel()
        finally:
            hub.close(self.stream, listener)
            if listener.complete:
                how = "got the whole replay"
            elif hub.stopping:
                how = "the server stopped"
            elif outlet.cut_off:
                how = f"cut off: it read nothing for {hub.options.send_timeout:g} s"
            else:
                how = "disconnected"
            logger.info(
                "%s left %s after %d events (%s)",
                _client(scope),
                self.stream.route,
                listener.sent,
                how,
            )


def _header(scope: Scope, name: bytes) -> str | None:
    """A request header's first value; read in place, because Starlette's ``Headers``
    copies the whole list into the scope, where it stays for the life of a stream.
    ASGI header names are lower-cased by the server."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _client(scope: Scope) -> str:
    host, port = scope.get("client") or ("?", 0)
    return f"{host}:{port}"


class StreamingServer(uvicorn.Server):
    """uvicorn's server, ending the open streams first when it stops; uvicorn alone would
    wait out its graceful timeout for them and then cancel them."""

    def __init__(self, config: uvicorn.Config, hub: Hub) -> None:
        super().__init__(config)
        self.hub = hub

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        quiet_cut_offs = _CutOffFilter(self.hub)
        uvicorn_log = logging.getLogger("uvicorn.error")
        uvicorn_log.addFilter(quiet_cut_offs)
        try:
            await super().serve(sockets)
        finally:
            uvicorn_log.removeFilter(quiet_cut_offs)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.hub.close_all()
        await super().shutdown(sockets)


class _CutOffFilter(logging.Filter):
    """Drop uvicorn's error line for a response we ended on purpose (a client cut off
    for not reading); our own log line says what happened."""

    def __init__(self, hub: Hub) -> None:
        super().__init__()
        self.hub = hub

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage() == _UNFINISHED and self.hub.cut_off:
            self.hub.cut_off -= 1
            return False
        return True


def hub_of(app: FastAPI) -> Hub:
    """The open streams of an app made by ``create_app``."""
    hub: Hub = app.state.hub
    return hub


def streaming_server(app: ASGIApp, hub: Hub, **config: Any) -> StreamingServer:
    """A server for ``app`` (made by ``create_app``, or wrapping one), configured the way
    sseplay runs it."""
    settings: dict[str, Any] = {
        "log_config": None,
        "access_log": False,
        # Typed int, but uvicorn only passes it to a timeout, where half a second works.
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS,
        "lifespan": "on",
        # A local mock server has no proxy in front to trust X-Forwarded-For from.
        "proxy_headers": False,
    }
    settings.update(config)
    return StreamingServer(uvicorn.Config(app, **settings), hub)


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


def raise_open_file_limit() -> None:
    """Every client is an open file, and many systems start a process with a soft limit of
    1,024: lift it to the hard limit (as Go's runtime does for every program), so that
    thousands of clients can connect without anyone raising ``ulimit -n`` first."""
    try:
        import resource
    except ImportError:  # Windows: no such limit
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # An unlimited hard limit cannot be the soft one everywhere (macOS caps it lower).
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (ValueError, OSError) as error:
        logger.debug("the open-file limit stays at %d: %s", soft, error)
        return
    logger.debug("open-file limit raised from %d to %d", soft, wanted)


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
    server = streaming_server(app, hub_of(app))
    raise_open_file_limit()
    # Everything built so far (modules, the app, the encoded events) lives as long as
    # the process: keep it out of every later collection.
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)

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
        # uvicorn's own loop choice (uvloop when installed), which asyncio.run would skip.
        with asyncio.Runner(loop_factory=server.config.get_loop_factory()) as runner:
            runner.run(main())
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
