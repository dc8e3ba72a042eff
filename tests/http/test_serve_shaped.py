"""Shaped routes (issue 25, ``serve --shape``), served whatever the shape: each route
answers POST, the nth request with the nth turn then the last one, counted per route on
the hub; a turn is encoded once per request shape; routes may hold ``:``. A stand-in
shape keeps these tests about serving, not about any provider's bytes."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass

import httpx
import pytest

from sseplay.errors import UsageError
from sseplay.server import Server
from sseplay.shaped import Turns
from sseplay.shapes import SHAPES, Chunking, Pacing, Shaped, ShapeRequest, Turn


@dataclass
class Echo:
    """A shape that says which turn, model and number it was asked for, one SSE event
    per word of the text, the last one a terminal ``[DONE]``."""

    name: str = "echo-test"
    routes: tuple[str, ...] = ("/v1/echo", "/v1/models/{model}:echoContent")
    encoded: int = 0

    def request(self, path: str, query: str, body: bytes) -> ShapeRequest:
        try:
            value = json.loads(body)
        except ValueError:
            value = {}
        model = value.get("model", path.rpartition("/")[2].partition(":")[0])
        return ShapeRequest(model=model, stream=value.get("stream", True))

    def answer(
        self,
        turn: Turn,
        request: ShapeRequest,
        chunking: Chunking,
        pacing: Pacing,
        seed: int,
        *,
        now: float = 0.0,
        number: int = 0,
    ) -> Shaped:
        self.encoded += 1
        words = (turn.text or "").split()
        frames = tuple(
            (pacing.ttft, f"data: {json.dumps([request.model, number, word])}\n\n".encode())
            for word in words
        )
        if not request.stream:
            body = json.dumps({"model": request.model, "text": turn.text}).encode()
            return Shaped(200, ((b"content-type", b"application/json"),), ((0.0, body),), b"", 0)
        frames += ((pacing.ttft, b"data: [DONE]\n\n"),)
        headers = ((b"content-type", b"text/event-stream"),)
        error = b'data: {"error": "overloaded"}\n\n'
        return Shaped(200, headers, frames, error, len(frames) - 1)


@pytest.fixture
def echo(monkeypatch: pytest.MonkeyPatch) -> Echo:
    shape = Echo()
    monkeypatch.setitem(SHAPES, shape.name, shape)  # type: ignore[arg-type]
    return shape


def events(response: httpx.Response) -> list[object]:
    return [
        json.loads(line[6:]) if line != "data: [DONE]" else "[DONE]"
        for line in response.text.splitlines()
        if line.startswith("data: ")
    ]


TURNS = [Turn(text="one two"), Turn(text="three"), Turn(text="last turn")]


def test_the_nth_request_gets_the_nth_turn_then_the_last(echo: Echo) -> None:
    with Server(Turns(TURNS, shape="echo-test")) as server:
        url = server.base_url + "/v1/echo"
        got = [events(httpx.post(url, json={"model": "m1"})) for _ in range(5)]
    assert got[0] == [["m1", 0, "one"], ["m1", 0, "two"], "[DONE]"]
    assert got[1] == [["m1", 1, "three"], "[DONE]"]
    assert got[2] == got[3] == got[4] == [["m1", 2, "last"], ["m1", 2, "turn"], "[DONE]"]


def test_each_route_counts_its_own_requests_and_may_hold_a_colon(echo: Echo) -> None:
    with Server(Turns(TURNS, shape="echo-test")) as server:
        base = server.base_url
        first = httpx.post(base + "/v1/models/gem-1:echoContent", content=b"{}")
        second = httpx.post(base + "/v1/echo", json={"model": "x"})
        third = httpx.post(base + "/v1/models/gem-1:echoContent", content=b"{}")
        health = httpx.get(base + "/healthz").json()
    assert events(first)[0] == ["gem-1", 0, "one"]  # the model from the path
    assert events(second)[0] == ["x", 0, "one"]  # its own count
    assert events(third)[0] == ["gem-1", 1, "three"]
    assert health["shapes"] == [
        {
            "shape": "echo-test",
            "routes": ["/v1/echo", "/v1/models/{model}:echoContent"],
            "file": "<turns>",
            "turns": 3,
        }
    ]


def test_a_turn_is_encoded_once_per_request_shape(echo: Echo) -> None:
    turns = Turns([Turn(text="same for all")], shape="echo-test")
    with Server(turns) as server:
        url = server.base_url + "/v1/echo"
        bodies: list[bytes] = []

        def ask() -> None:
            bodies.append(httpx.post(url, json={"model": "m"}).content)

        threads = [threading.Thread(target=ask) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        whole = httpx.post(url, json={"model": "m", "stream": False})
    assert len(bodies) == 8
    assert len(set(bodies)) == 1
    assert echo.encoded == 2  # the stream once, the whole JSON once
    assert whole.headers["content-type"] == "application/json"
    assert whole.headers["content-length"] == str(len(whole.content))
    assert whole.json() == {"model": "m", "text": "same for all"}


def test_only_post_is_answered_and_the_stream_has_no_ids_or_pings(echo: Echo) -> None:
    with Server(Turns(TURNS, shape="echo-test")) as server:
        url = server.base_url + "/v1/echo"
        assert httpx.get(url).status_code == 405
        response = httpx.post(url, json={"model": "m"})
    assert response.headers["content-type"] == "text/event-stream"
    assert "id:" not in response.text
    assert ": ping" not in response.text


def test_a_route_of_ones_own_and_bad_arguments(echo: Echo) -> None:
    with Server(Turns(TURNS, shape="echo-test", route="mock/llm")) as server:
        assert server.url == server.base_url
        response = httpx.post(server.base_url + "/mock/llm", json={"model": "m"})
        assert events(response)[0] == ["m", 0, "one"]
        assert httpx.post(server.base_url + "/v1/echo", json={}).status_code == 404
    with pytest.raises(UsageError, match="is not a shape: use one of"):
        Turns(TURNS, shape="openai-chatt")
    with pytest.raises(UsageError, match="--broadcast"):
        Server(Turns(TURNS, shape="echo-test"), broadcast=True)
    with pytest.raises(UsageError, match="--tps must be a number"):
        Turns(TURNS, shape="echo-test", tps=-1)


def test_url_for_names_a_shaped_route() -> None:
    # It raised ValueError (the base URL made the URL list one longer than the routes).
    from sseplay.server import Server
    from sseplay.shaped import Turns

    with Server(Turns([{"text": "hi"}], shape="openai-chat")) as server:
        assert server.url_for("/v1/chat/completions") == server.base_url + "/v1/chat/completions"
        with pytest.raises(KeyError, match="/v1/chat/completions"):
            server.url_for("/nope")


def test_time_to_first_token_counts_from_the_whole_request(echo: Echo) -> None:
    # A provider cannot answer before it has the request: --ttft counts from its last
    # byte (a body sent slowly does not eat into it) and from when it arrived, not from
    # when the handler got to run.
    import socket
    import time

    body = b'{"model": "m"}'
    server = Server(Turns([Turn(text="hi")], shape="echo-test", ttft=0.4))
    with server, socket.create_connection(("127.0.0.1", httpx.URL(server.base_url).port)) as raw:
        raw.sendall(
            b"POST /v1/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body[:5])
        )
        time.sleep(0.3)  # the rest of the body comes later
        raw.sendall(body[5:])
        whole = time.monotonic()
        raw.settimeout(5)
        received = b""
        while b"data: " not in received:
            received += raw.recv(65536)
        first_token = time.monotonic() - whole
    assert b'["m", 0, "hi"]' in received
    assert first_token >= 0.39  # it was 0.1 s when the clock started at the head
