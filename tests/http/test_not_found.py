"""An unknown route is answered by sseplay's own 404, which names the routes served."""

from __future__ import annotations

import httpx

from sseplay.server import Server
from sseplay.stream import Stream
from tests.conftest import SAMPLES


def test_an_unknown_route_names_the_routes_served() -> None:
    streams = {
        "/scores": Stream.from_file(SAMPLES / "scores.json", interval=0),
        "/llm": Stream.from_file(SAMPLES / "llm.jsonl", interval=0),
    }
    with Server(streams) as server:
        base = server.urls[0].rsplit("/", 1)[0]
        answer = httpx.get(base + "/nothing/here", timeout=10)
        assert answer.status_code == 404
        assert answer.headers["content-type"] == "application/json"
        # The same routes, in the same order, as /healthz lists its streams.
        health = httpx.get(base + "/healthz", timeout=10).json()
        routes = [stream["route"] for stream in health["streams"]]
        assert routes == ["/scores", "/llm"]
        assert answer.json() == {"error": "no stream at /nothing/here", "routes": routes}
        # POST and HEAD too (a POST stream request to a wrong route).
        assert httpx.post(base + "/x", timeout=10).json()["routes"] == routes
        assert httpx.head(base + "/x", timeout=10).status_code == 404
        # sseplay's own routes are unchanged.
        assert httpx.get(base + "/", timeout=10).status_code == 200
        assert httpx.get(base + "/favicon.ico", timeout=10).status_code == 200
        assert httpx.get(base + "/healthz", timeout=10).json()["status"] == "ok"
