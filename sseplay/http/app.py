"""The app of ``sseplay serve``: its stream routes, /healthz, the live viewer and its icon."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
from collections.abc import AsyncIterator, Callable, Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette import routing
from starlette.types import ASGIApp, Receive, Scope, Send

from sseplay.http.access import AccessGuard
from sseplay.http.direct_routes import DirectFastAPI
from sseplay.http.endpoint import StreamEndpoint
from sseplay.http.health import add_health_routes, sampling
from sseplay.http.hub import AppOptions, Hub, LiveRoute, Route
from sseplay.http.route_sources import FileSource, RedisSource
from sseplay.metrics import SAMPLE_SECONDS

if TYPE_CHECKING:
    from sseplay.http.canary import CanaryRoute
    from sseplay.http.recorded import RecordedEndpoint
    from sseplay.recordings import Recordings
    from sseplay.scenario import Scenario
    from sseplay.shaped import Turns

# The page's icon, so that a browser's request for /favicon.ico is not a 404 every time.
FAVICON = (
    b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
    b'<rect width="16" height="16" rx="3" fill="#4fb3ff"/>'
    b'<path d="M6 4l6 4-6 4z" fill="#0f1419"/></svg>'
)


def create_app(
    streams: Sequence[Route],
    options: AppOptions,
    on_complete: Callable[[], None] | None = None,
    on_over: Callable[[], None] | None = None,
    live: Sequence[LiveRoute] = (),
    recordings: Recordings | None = None,
    turns: Sequence[Turns] = (),
    scenario: Scenario | None = None,
    canaries: Sequence[CanaryRoute] = (),
) -> FastAPI:
    """The whole server. ``on_complete`` runs when a client has received a whole replay
    (or, in broadcast mode, when the shared timeline has played to its end); ``on_over``
    after a client was answered 204 because the replay is over. The app's ``state.hub``
    holds its open streams: ``StreamingServer`` ends them when it stops. ``recordings``
    answer every request that no route serves (``sseplay.http.recorded``); ``turns``
    answer POST at their shape's routes (``sseplay.http.shaped``); a ``scenario``
    answers its paths by its rules (``sseplay.http.scenario``)."""
    hub = Hub(streams, options, on_complete, on_over)
    recorded: RecordedEndpoint | None = None
    if options.config.journal:  # --control or --expect-client (sseplay.http.journal)
        from sseplay.http.journal import RequestJournal

        hub.journal = RequestJournal(options.config)
        hub.on_stop.append(hub.journal.stop)
    if options.config.control:
        from sseplay.http.control import Control

        hub.control = Control(hub)

    if options.config.metrics:  # prometheus-client is imported only then
        from sseplay.metrics import Metrics

        hub.metrics = Metrics()

    for live_route in live:
        from sseplay.sources.redis_feed import RedisFeed

        redis_feed = hub.redis_feeds[live_route.route] = RedisFeed(live_route.source)
        if hub.metrics is not None:
            redis_feed.on_resume = functools.partial(hub.metrics.resumed, live_route.route)
    canary_sources = []
    for canary_route in canaries:  # --canary (sseplay.canary)
        from sseplay.http.canary import CanarySource

        canary_sources.append(CanarySource(canary_route, hub))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if hub.control is not None:
            hub.control.loop = asyncio.get_running_loop()
        if hub.journal is not None:
            hub.journal.loop = asyncio.get_running_loop()
        hub.start()
        for redis_feed in hub.redis_feeds.values():
            redis_feed.start(hub.timer, options.config.ping)
        for canary_source in canary_sources:
            canary_source.start()
        try:
            async with sampling(hub, SAMPLE_SECONDS):
                yield
        finally:
            for redis_feed in hub.redis_feeds.values():
                await redis_feed.stop()
            await hub.stop_following()

    app = DirectFastAPI(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)
    app.state.hub = hub
    if options.access is not None:  # added first: inside CORS, so a 401 carries its headers
        app.add_middleware(AccessGuard, rules=options.access)
        app.guard = AccessGuard(app, options.access)  # for the routes reached directly
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(options.config.cors_origins),
        # Credentials (EventSource withCredentials) only for origins listed by name: with
        # "*" they are invalid (Fetch, CORS protocol), and Starlette would echo any origin.
        allow_credentials="*" not in options.config.cors_origins,
        # Recordings answer any method the upstream was asked with.
        allow_methods=["GET", "POST", "DELETE"] if recordings is None else ["*"],
        allow_headers=["*"],
    )

    # Plain ASGI endpoints: Starlette routes them without FastAPI's per-request wrapper.
    for stream in streams:
        endpoint = StreamEndpoint(FileSource(stream, hub), hub)
        app.router.routes.append(routing.Route(stream.route, endpoint, methods=["GET", "POST"]))
    for live_route in live:
        source = RedisSource(live_route, hub.redis_feeds[live_route.route], hub)
        redis_endpoint = StreamEndpoint(source, hub)
        app.router.routes.append(
            routing.Route(live_route.route, redis_endpoint, methods=["GET", "POST"])
        )

    if scenario is not None:
        from sseplay.http.scenario import scenario_routes

        if scenario.faulty and hub.fault_counters is None:  # a rule's own faults
            from sseplay.faults.spec import FaultCounters

            hub.faulty, hub.fault_counters = True, FaultCounters()
        app.router.routes.extend(scenario_routes(scenario, hub))
    for canary_source in canary_sources:
        canary_endpoint = StreamEndpoint(canary_source, hub)
        app.router.routes.append(routing.Route(canary_source.route, canary_endpoint))

    for shaped in turns:
        from sseplay.http.shaped import ShapedEndpoint

        for shaped_route in shaped.routes:
            shaped_endpoint = ShapedEndpoint(shaped, shaped_route, hub)
            app.router.routes.append(routing.Route(shaped_route, shaped_endpoint, methods=["POST"]))

    if hub.journal is not None:  # else /_sseplay/ is the 404 of any unknown path
        from sseplay.http.control import ControlEndpoint

        control_endpoint = ControlEndpoint(hub)
        app.router.routes.append(
            routing.Route(
                "/_sseplay/{rest:path}", control_endpoint, methods=["GET", "POST", "DELETE"]
            )
        )

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        return JSONResponse(
            {
                "status": "ok",
                "connections": len(hub.listeners),
                # Which process answered, of how many on this port (--workers).
                "worker": os.getpid(),
                "workers": options.config.workers or 1,
                "faults": dict(sorted(hub.fault_counters.by_kind.items()))
                if hub.fault_counters is not None
                else {},
                "streams": [_stream_health(s, hub) for s in streams]
                + [
                    {
                        "route": r.route,
                        "file": r.label,
                        # Published since the server started; a live stream has no end.
                        "events": hub.redis_feeds[r.route].published,
                        "types": [],
                        "live": True,
                        "connected": hub.redis_feeds[r.route].reader.connected,
                    }
                    for r in live
                ],
                **({"recordings": recordings.listing()} if recordings is not None else {}),
                **({"shapes": [shaped.listing() for shaped in turns]} if turns else {}),
                **({"scenario": scenario.listing()} if scenario is not None else {}),
                # For the viewer: whether it may pass its own ?fault= on, has a control API
                # to show, and the streams it can only ask for with a request of its own.
                "fault_header": options.config.fault_header,
                "control": options.config.control,
                "requests": requests,
            }
        )

    requests = _viewer_requests(recordings, turns)
    page = viewer_page()
    add_health_routes(app, hub)

    @app.get("/")
    async def viewer() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/favicon.ico")
    async def favicon() -> Response:
        headers = {"Cache-Control": "max-age=86400"}
        return Response(FAVICON, media_type="image/svg+xml", headers=headers)

    served = [stream.route for stream in streams] + [r.route for r in live]
    served += [canary_route.route for canary_route in canaries]
    served += [route for shaped in turns for route in shaped.routes]
    served += list(scenario.paths) if scenario is not None else []
    if recordings is not None:
        from sseplay.http.recorded import RecordedEndpoint

        recorded = RecordedEndpoint(recordings, hub, app.router.default)
        app.router.default = recorded
    else:
        app.router.default = _NotFound(served, app.router.default)
    return app


class _NotFound:
    """The answer for a path no route serves: sseplay's own 404, naming the routes it
    serves (in the order /healthz lists them), instead of FastAPI's bare ``Not Found``,
    so that a mistyped stream URL says what to write instead."""

    def __init__(self, routes: list[str], otherwise: ASGIApp) -> None:
        self.routes = routes
        self.otherwise = otherwise  # Starlette's, for a WebSocket

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.otherwise(scope, receive, send)
            return
        body = {"error": f"no stream at {scope['path']}", "routes": self.routes}
        await JSONResponse(body, status_code=404)(scope, receive, send)


def _stream_health(stream: Route, hub: Hub) -> dict[str, Any]:
    replay, feed = stream.replay, hub.feeds.get(stream.route)
    health: dict[str, Any] = {
        "route": stream.route,
        "file": stream.label,
        "events": replay.file.count if replay is not None else 0,
        "types": sorted(replay.file.event_types) if replay is not None else [],
    }
    if feed is not None:  # --follow: the events so far, and whether the input is over
        health.update(events=feed.position, live=not feed.ended)
    return health


# The largest recorded request body the viewer is given to start from (a larger one: none).
MAX_SHOWN_BODY = 64 * 1024
# ``<script src="viewer/NAME.js"></script>`` in viewer.html: put inline when served.
_SCRIPT = re.compile(r'<script src="viewer/([a-z]+\.js)"></script>')


def viewer_page() -> str:
    """viewer.html with its scripts inline: one self-contained page, nothing else to load."""
    files = resources.files("sseplay.http")

    def inline(match: re.Match[str]) -> str:
        script = files.joinpath("viewer", match.group(1)).read_text("utf-8")
        assert "</script" not in script.lower(), match.group(1)
        return f"<script>\n{script}</script>"

    return _SCRIPT.sub(inline, files.joinpath("viewer.html").read_text("utf-8"))


def _viewer_requests(recordings: Recordings | None, turns: Sequence[Turns]) -> list[dict[str, Any]]:
    """The streams the viewer plays with a request of its own: each shaped route (POST; the
    page writes a body in the provider's form) and each recorded event stream (its method,
    query and the start of its recorded body, to edit)."""
    listed: list[dict[str, Any]] = [
        {"method": "POST", "path": route, "query": "", "shape": shaped.shape.name, "body": None}
        for shaped in turns
        for route in shaped.routes
    ]
    for exchange in recordings.exchanges if recordings is not None else ():
        if not exchange.is_stream:
            continue
        request = exchange.request
        body: str | None = None
        if len(request.body) <= MAX_SHOWN_BODY:
            with contextlib.suppress(UnicodeDecodeError):
                body = request.body.decode("utf-8")
        listed.append(
            {
                "method": request.method,
                "path": request.path,
                "query": request.query,
                "shape": None,
                "body": body,
            }
        )
    return listed


def hub_of(app: FastAPI) -> Hub:
    """The open streams of an app made by ``create_app``."""
    hub: Hub = app.state.hub
    return hub
