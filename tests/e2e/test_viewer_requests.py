"""The viewer at GET / (issue 27), continued: the requests it makes of its own (shaped
routes, recordings), the Connections panel of --control, and its parser on the shared
vectors. Fixtures and helpers: tests/e2e/test_viewer.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from sseplay.config import ServerConfig
from sseplay.http.app import create_app
from sseplay.http.hub import AppOptions
from tests.conftest import CONFORMANCE, LiveServer, ServeProcess, make_stream, write_lines
from tests.e2e import test_browser, test_viewer
from tests.e2e.test_viewer import TEN, serve, wait_state
from tests.support import wait_until

# One Chromium per module; pages whose requests must stay on 127.0.0.1.
browser = test_browser.browser
page = test_viewer.page

pytestmark = pytest.mark.browser


def base_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


ANSWER = "It is 18 \u00b0C and sunny in San Francisco."
ARGUMENTS = '{"location":"San Francisco","unit":"celsius"}'


@pytest.mark.parametrize("shape", ["openai-chat", "openai-responses", "anthropic", "gemini"])
def test_a_shaped_route_is_played_with_a_body_of_its_provider(
    page: Any, tmp_path: Path, shape: str
) -> None:
    with ServeProcess("--shape", shape, "samples/turns/tool-then-text.jsonl") as served:
        page.goto(base_of(served.url) + "/")
        page.wait_for_function("!document.querySelector('#request').hidden")
        body = json.loads(page.locator("#request-body").input_value())
        page.click("#send")  # turn 1: a tool call
        page.wait_for_function("document.querySelector('#state').textContent === 'finished'")
        tool = page.locator(".tool .name").all_text_contents()
        arguments = page.locator(".tool pre").all_text_contents()
        page.click("#send")  # turn 2: the text
        page.wait_for_function(f"document.querySelector('#answer-text').textContent === {ANSWER!r}")
        wait_state(page, "finished")
        page.screenshot(path=str(tmp_path / f"{shape}.png"))
        facts = page.locator(".facts").text_content()
        path = page.locator("#request-path").input_value()
    assert body.get("stream", True) is True
    assert tool[0].startswith("\u2192 get_weather")
    assert arguments == [ARGUMENTS]
    assert "finish: " in facts
    assert "usage: " in facts
    if shape == "gemini":
        assert path == "/v1/models/gemini-2.0-flash:streamGenerateContent?alt=sse"


def test_a_recorded_request_is_played_with_its_recorded_body(page: Any, tmp_path: Path) -> None:
    from tests.http.recordings_support import write_recording

    deltas = ["Recorded", " answers", " replay"]
    blocks = [(0.01, 'event: message_start\ndata: {"type":"message_start","message":{}}\n\n')]
    blocks += [
        (
            0.02 + 0.01 * n,
            "event: content_block_delta\ndata: "
            + json.dumps(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": text},
                }
            )
            + "\n\n",
        )
        for n, text in enumerate(deltas)
    ]
    blocks.append((0.1, 'event: message_stop\ndata: {"type":"message_stop"}\n\n'))
    body = '{"model":"claude-x","stream":true,"messages":[{"role":"user","content":"hi"}]}'
    recording = write_recording(
        tmp_path / "messages.jsonl", method="POST", target="/v1/messages", body=body, blocks=blocks
    )
    with ServeProcess(str(recording)) as served:
        page.goto(base_of(served.url) + "/")
        page.wait_for_function("!document.querySelector('#request').hidden")
        shown = page.locator("#request-body").input_value()
        page.click("#send")
        wait_state(page, "finished")
        text = page.locator("#answer-text").text_content()
    assert shown == body
    assert text == "".join(deltas)


# The viewer's parser (viewer/parser.js behind a streaming TextDecoder, as the page reads)
# on every shared vector: whole, byte by byte, and cut in two at every byte (a long one:
# at 64 places).
PARSE_EVERY_WAY = """(cases) => {
  const run = (pieces) => {
    const events = [];
    const parser = new EventStreamParser((e) => events.push(e), "");
    const decoder = new TextDecoder();
    for (const piece of pieces) parser.feed(decoder.decode(piece, { stream: true }));
    parser.feed(decoder.decode());
    return JSON.stringify([events, parser.retry, parser.lastEventId]);
  };
  const failures = [];
  for (const c of cases) {
    const whole = c.stream !== undefined ? new TextEncoder().encode(c.stream)
      : Uint8Array.from(c.chunks_hex.join("").match(/../g) || [], (h) => parseInt(h, 16));
    const expected = JSON.stringify([c.events, c.retry, c.last_event_id]);
    const ways = [[whole], Array.from(whole, (b) => Uint8Array.of(b))];
    // Every cut of a short stream; of a long one (70 kB), 64 cuts spread over it.
    const step = whole.length > 512 ? Math.floor(whole.length / 64) : 1;
    for (let cut = 1; cut < whole.length; cut += step) {
      ways.push([whole.slice(0, cut), whole.slice(cut)]);
    }
    for (const pieces of ways) {
      const got = run(pieces);
      if (got !== expected) { failures.push([c.name, pieces.length, got]); break; }
    }
  }
  return failures;
}"""


def test_the_viewer_s_parser_passes_the_shared_vectors(page: Any, tmp_path: Path) -> None:
    cases = [
        *json.loads((CONFORMANCE / "sse_vectors.json").read_text("utf-8")),
        *json.loads((CONFORMANCE / "sse_vectors_bytes.json").read_text("utf-8")),
    ]
    with serve(tmp_path, TEN[:1]) as server:
        page.goto(server.url + "/")
        failures = page.evaluate(PARSE_EVERY_WAY, cases)
    assert len(cases) >= 45
    assert failures == []


def journal_entry(seq: int, ended: str | None, **fields: Any) -> dict[str, Any]:
    entry = {
        "seq": seq,
        "time": 1_796_000_000.25,
        "route": "/events",
        "client": "127.0.0.1:5555",
        "connection": seq,
        "method": "GET",
        "path": "/events",
        "query": "",
        "headers": [],
        "body": "",
        "last_event_id": None,
        "status": 200,
        "events": 3,
        "last_id": "3",
        "ended": ended,
        "gap_ms": None,
        "retry_ms": 100,
    }
    return {**entry, **fields}


def with_fake_control(app: Any, kicked: list[str]) -> Any:
    """The control API's connections and journal (issue 26), faked (ahead of the real
    control routes): the panel is built against the API as specified, and the journal is
    not in this tree."""
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    connection = {"id": 7, "route": "/events", "client": "127.0.0.1:5555", "age": 1.5}
    connection.update(events=3, last_id="3", faults=["drop:after=3"])

    async def connections(request: Request) -> Response:
        return JSONResponse({"connections": [connection]})

    async def kick(request: Request) -> Response:
        kicked.append(request.path_params["id"])
        return JSONResponse({})

    def sse(event: str | None, value: Any) -> str:
        return (f"event: {event}\n" if event else "") + f"data: {json.dumps(value)}\n\n"

    async def journal(request: Request) -> Response:
        assert request.headers["accept"] == "text/event-stream"
        body = [
            sse(None, journal_entry(1, "cut off")),
            sse("open", journal_entry(2, None, last_event_id="3", status=None, events=0)),
            sse("end", journal_entry(2, "204", last_event_id="3", status=204, events=0)),
            sse(
                "verdict",
                {
                    "ok": False,
                    "rules": ["resumes"],
                    "broken": [
                        {
                            "rule": "resumes",
                            "client": "127.0.0.1:5555",
                            "connection": 2,
                            "message": "sent Last-Event-ID '3', expected '4'",
                        }
                    ],
                },
            ),
        ]
        return StreamingResponse(iter(body), media_type="text/event-stream")

    app.router.routes[:0] = [
        Route("/_sseplay/connections", connections),
        Route("/_sseplay/connections/{id}", kick, methods=["DELETE"]),
        Route("/_sseplay/journal", journal),
    ]
    return app


def test_the_connections_panel_shows_the_journal_and_the_verdict(page: Any, tmp_path: Path) -> None:
    path = write_lines(tmp_path / "two.jsonl", TEN[:2])
    config = ServerConfig(ping=0, control=True)
    app = create_app([make_stream(path, retry=100)], AppOptions(config))
    kicked: list[str] = []
    with LiveServer(with_fake_control(app, kicked)) as server:
        page.goto(server.url + "/")
        page.wait_for_function(
            "document.querySelector('#journal-state').textContent.includes('ended')"
        )
        page.screenshot(path=str(tmp_path / "connections.png"))
        journal = page.locator("#journal tr").evaluate_all(
            "(rows) => rows.map((r) => [...r.cells].map((c) => c.textContent))"
        )
        live = page.locator("#connections-live td").all_text_contents()
        verdict = page.locator("#verdict").text_content()
        page.click("#connections-live button")  # end connection 7
        wait_until(lambda: kicked == ["7"], timeout=5, message="no DELETE came")
    assert [row[0] for row in journal] == ["2", "1"]  # newest first, one row per seq
    assert journal[0][3:] == ["GET /events", "3", "204", "0", "3", "204", ""]
    assert journal[1][8] == "cut off"
    assert live[:7] == ["7", "/events", "127.0.0.1:5555", "1.5 s", "3", "3", "drop:after=3"]
    assert verdict == (
        "verdict: 1 broken (resumes)\n"
        "resumes: client 127.0.0.1:5555, connection 2: sent Last-Event-ID '3', expected '4'"
    )


def test_without_a_control_api_there_is_no_connections_panel(page: Any, tmp_path: Path) -> None:
    with serve(tmp_path, TEN[:2]) as server:
        page.goto(server.url + "/")
        wait_state(page, "ended")
        hidden = page.locator("#connections").evaluate("(panel) => panel.hidden")
    assert hidden is True
