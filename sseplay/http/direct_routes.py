"""Requests to a stream's own path, straight to its endpoint.

Every request used to go through FastAPI's whole middleware stack (error handler,
telemetry, body limit, CORS, the access guard, exception handler, exit stack) and then
Starlette's route-by-route matching: a quarter of the CPU a short shaped POST costs (3,000
of them, 20 at a time: about 215 us of server CPU each through the stack, 160 us without),
and so of the queue a burst of new connections waits in. For the plain ASGI endpoints at
fixed paths (stream routes, shaped routes, the canary) that stack has nothing to do when
the request carries no ``Origin`` header (Starlette's CORS middleware passes such a request
on untouched; a browser sends one on every cross-origin request, Fetch standard, "Origin
header") and the access rules admit it, so such a request skips it. Anything else (a
browser's cross-origin request, a path with parameters, an unknown path) takes the stack.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from starlette import routing
from starlette.types import ASGIApp, Receive, Scope, Send

from sseplay.http.access import AccessGuard


class DirectFastAPI(FastAPI):
    """A FastAPI app whose fixed-path plain ASGI routes are reached without its stack
    (see the module's docstring); ``guard``: the access rules, which still apply."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.guard: AccessGuard | None = None
        # (method, path) -> endpoint; built at the first request, once every route is in.
        self._direct: dict[tuple[str, str], ASGIApp] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            direct = self._direct
            if direct is None:
                direct = self._direct = direct_routes(self.router.routes)
            endpoint = direct.get((scope["method"], scope["path"]))
            if endpoint is not None and not _has_origin(scope):
                # What Starlette's app and route would have set.
                scope.update(app=self, endpoint=endpoint, path_params={})
                guard = self.guard
                if guard is None or await guard.admits(scope, send):
                    await endpoint(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def direct_routes(routes: list[routing.BaseRoute]) -> dict[tuple[str, str], ASGIApp]:
    """The routes a request may reach directly: a plain ASGI endpoint (no request/response
    wrapper of Starlette's) at a path without parameters, that no route before it would
    take first (Starlette tries routes in order)."""
    direct: dict[tuple[str, str], ASGIApp] = {}
    for index, route in enumerate(routes):
        if not isinstance(route, routing.Route) or route.app is not route.endpoint:
            continue
        if route.param_convertors or not route.methods:
            continue
        path = route.path
        if any(_may_take(earlier, path) for earlier in routes[:index]):
            continue
        for method in route.methods:
            direct.setdefault((method, path), route.app)
    return direct


def _may_take(route: routing.BaseRoute, path: str) -> bool:
    pattern = getattr(route, "path_regex", None)
    # A route of another kind (a mount without a pattern, a host route): assume it may.
    return pattern is None or pattern.match(path) is not None


def _has_origin(scope: Scope) -> bool:
    return any(name == b"origin" for name, _ in scope["headers"])
