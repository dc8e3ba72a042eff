"""A stream's own path is reached without the middleware stack when the stack has nothing
to do (no Origin, the access rules admit it), and through it otherwise: real servers."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import httpx
from starlette import routing
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from sseplay import Server, Stream, Turns
from sseplay.config import ServerConfig
from sseplay.http.app import create_app
from sseplay.http.direct_routes import direct_routes
from sseplay.http.hub import AppOptions
from sseplay.shapes import Turn
from tests.conftest import LiveServer, make_stream, write_lines

FIVE = [{"n": n} for n in range(5)]


class Counting:
    """A middleware that counts the requests that go through the stack."""

    seen: ClassVar[list[str]] = []

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            Counting.seen.append(scope["path"])
        await self.app(scope, receive, send)


def test_a_request_without_origin_skips_the_stack_and_a_browser_s_goes_through_it(
    tmp_path: Path,
) -> None:
    app = create_app([make_stream(write_lines(tmp_path / "five.jsonl", FIVE))], AppOptions())
    app.add_middleware(Counting)
    Counting.seen = []
    with LiveServer(app) as server:
        plain = httpx.get(server.url + "/events", timeout=10)
        page = "http://page.example"
        browser = httpx.get(server.url + "/events", headers={"Origin": page}, timeout=10)
        health = httpx.get(server.url + "/healthz", timeout=10)
    assert plain.text.count("data:") == browser.text.count("data:") == 5
    assert plain.headers["content-type"] == browser.headers["content-type"]
    assert browser.headers["access-control-allow-origin"] == "*"  # CORS did its part
    assert health.status_code == 200
    assert Counting.seen == ["/events", "/healthz"]  # the browser's, and any other path


def test_the_token_and_the_host_check_still_guard_a_direct_route() -> None:
    stream = Stream.from_records(FIVE, interval=0)
    with Server(stream, config=ServerConfig(token="t0ken")) as server:
        refused = httpx.get(server.url, timeout=10)
        admitted = httpx.get(server.url, headers={"Authorization": "Bearer t0ken"}, timeout=10)
    assert refused.status_code == 401
    assert "data:" not in refused.text
    assert admitted.text.count("data:") == 5
    with Server(stream) as server:  # loopback: loopback names only (DNS rebinding)
        rebound = httpx.get(server.url, headers={"Host": "evil.example"}, timeout=10)
    assert rebound.status_code == 421


def test_a_shaped_route_is_reached_directly_and_still_refuses_a_get() -> None:
    with Server(Turns([Turn(text="hello there")], shape="openai-chat")) as server:
        url = server.base_url + "/v1/chat/completions"
        answer = httpx.post(url, json={"model": "m", "stream": True, "messages": []}, timeout=10)
        wrong_method = httpx.get(url, timeout=10)
    assert answer.status_code == 200
    assert answer.text.rstrip().endswith("data: [DONE]")
    assert wrong_method.status_code == 405  # not a direct route: Starlette's answer


class Plain:
    """An ASGI endpoint of its own (an instance: Starlette wraps a function)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await PlainTextResponse("x")(scope, receive, send)


_plain = Plain()


def _function(request: object) -> PlainTextResponse:
    return PlainTextResponse("x")


def test_only_fixed_paths_of_plain_endpoints_that_no_earlier_route_takes_are_direct() -> None:
    routes: list[routing.BaseRoute] = [
        routing.Route("/items/{name}", _plain),
        routing.Route("/items/special", _plain),  # /items/{name} takes it first
        routing.Route("/events", _plain, methods=["GET", "POST"]),
        routing.Route("/page", _function),  # wrapped in request/response: not plain
        routing.Route("/events", _function),  # the first /events wins, as in Starlette
    ]
    direct = direct_routes(routes)
    assert sorted(direct) == [("GET", "/events"), ("HEAD", "/events"), ("POST", "/events")]
    assert all(endpoint is _plain for endpoint in direct.values())
