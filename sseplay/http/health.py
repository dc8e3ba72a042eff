"""/livez, /readyz and /metrics (``--metrics``): what a load balancer and a scraper ask.

/livez is 200 while the process answers. /readyz is 200 only while the server can do its
job: not while a Redis stream it serves is unreachable, a followed file is missing, or a
``--epoch`` timeline has not begun; then it is 503 with the reasons. /healthz (``app``)
stays what it was: the process's status and its streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

if TYPE_CHECKING:
    from sseplay.http.hub import Hub
    from sseplay.metrics import Metrics

LIVE_ROUTE = "/livez"
READY_ROUTE = "/readyz"
METRICS_ROUTE = "/metrics"


def not_ready(hub: Hub) -> list[str]:
    """Why the server cannot do its job now; empty when it can."""
    reasons = []
    for route, redis_feed in hub.redis_feeds.items():
        if not redis_feed.reader.connected:
            reasons.append(f"{route}: Redis at {redis_feed.target.shown} is unreachable")
    for route, follower in hub.followers.items():
        if not follower.live:
            reasons.append(f"{route}: the followed file {follower.source.label} is missing")
    epoch = hub.options.config.epoch
    if epoch is not None and hub.options.config.broadcast and (wait := epoch - time.time()) > 0:
        reasons.append(f"the --epoch timeline begins in {wait:.1f} s")
    return reasons


def sample(hub: Hub, metrics: Metrics) -> None:
    """Bring the counters up to date with the server's state: each open connection's
    events so far, whether each Redis stream is read and each followed file there."""
    metrics.count_sent(hub.listeners)
    for redis_feed in hub.redis_feeds.values():
        metrics.set_redis(redis_feed.target.shown, redis_feed.reader.connected)
    for route, follower in hub.followers.items():
        metrics.set_follow(route, follower.live)


async def sample_every(hub: Hub, metrics: Metrics, seconds: float) -> None:
    """Sample until cancelled, at absolute deadlines: a --workers worker's counts reach
    the shared files without waiting for a scrape of its own."""
    loop = asyncio.get_running_loop()
    deadline = loop.time()
    while True:
        sample(hub, metrics)
        deadline += seconds
        await asyncio.sleep(max(0.0, deadline - loop.time()))


def add_health_routes(app: object, hub: Hub) -> None:
    """/livez and /readyz, and /metrics when the hub counts (``--metrics``)."""
    from fastapi import FastAPI

    assert isinstance(app, FastAPI)

    async def livez(request: Request) -> Response:
        return JSONResponse({"status": "live"})

    async def readyz(request: Request) -> Response:
        reasons = not_ready(hub)
        if reasons:
            return JSONResponse({"status": "not ready", "reasons": reasons}, status_code=503)
        return JSONResponse({"status": "ready"})

    app.add_route(LIVE_ROUTE, livez, methods=["GET"])
    app.add_route(READY_ROUTE, readyz, methods=["GET"])
    metrics = hub.metrics
    if metrics is None:
        return

    async def scrape(request: Request) -> Response:
        assert metrics is not None
        sample(hub, metrics)
        # Off the loop: it reads /proc, or every worker's files (--workers).
        accept = request.headers.get("accept")
        body, content_type = await asyncio.to_thread(metrics.exposition, accept)
        return Response(body, headers={"Content-Type": content_type})

    app.add_route(METRICS_ROUTE, scrape, methods=["GET"])


@contextlib.asynccontextmanager
async def sampling(hub: Hub, seconds: float) -> AsyncIterator[None]:
    """The sampling task of a --workers worker, for as long as the app runs."""
    if hub.metrics is None or not hub.options.config.workers:
        yield
        return
    task = asyncio.get_running_loop().create_task(sample_every(hub, hub.metrics, seconds))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
