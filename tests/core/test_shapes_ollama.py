"""ollama (llm-wire.md 5): NDJSON lines as on the page, ``done`` last, and parsed by the
official ollama client offline (through an httpx MockTransport)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import httpx
import ollama
import pytest

from sseplay.shapes import SHAPES, Chunking, Pacing
from tests.core.shape_support import shaped, transport, wire

START = datetime(2026, 10, 26, 17, 15, 24, 97767, UTC).timestamp()


def test_text_is_the_page_but_for_the_clock() -> None:
    turn = {
        "text": "Hello!",
        "model": "llama3.2",
        "usage": {"prompt_eval_count": 9, "eval_count": 2},
    }
    answer = shaped(
        "ollama",
        turn,
        {"stream": True},
        chunking=Chunking("chars", 3),
        pacing=Pacing(tps=100),
        now=START,
    )
    assert answer.headers == ((b"content-type", b"application/x-ndjson"),)
    lines = answer.body.decode().splitlines()
    page = wire("ollama-text").decode().splitlines()
    assert [json.loads(line)["created_at"] for line in lines] == [
        "2026-10-26T17:15:24.097767Z",
        "2026-10-26T17:15:24.107767Z",
        "2026-10-26T17:15:24.107767Z",
    ]
    clock = re.compile(r'"created_at":"[^"]+"|"total_duration":\d+')
    assert [clock.sub("", line) for line in lines] == [clock.sub("", line) for line in page]
    assert answer.body.endswith(b"}\n")
    assert json.loads(lines[-1])["total_duration"] == 10_000_000


def test_done_is_last_and_only_last() -> None:
    answer = shaped(
        "ollama",
        {"thinking": "Hm.", "text": "a b", "tool_calls": [{"name": "f", "arguments": {"x": 1}}]},
    )
    lines = [json.loads(line) for line in answer.body.splitlines()]
    assert [line["done"] for line in lines] == [False] * (len(lines) - 1) + [True]
    assert lines[-2]["message"]["tool_calls"] == [
        {"function": {"name": "f", "arguments": {"x": 1}}}
    ]
    assert answer.terminal == len(answer.frames) - 1


def test_ollama_streams_unless_the_body_says_not_to() -> None:
    shape = SHAPES["ollama"]
    assert shape.request("/api/chat", "", b'{"model": "qwen3"}').stream is True
    assert shape.request("/api/chat", "", b'{"stream": false}').stream is False
    whole = shaped("ollama", {"text": "a b"}, {"stream": False})
    assert json.loads(whole.body)["message"] == {"role": "assistant", "content": "a b"}


def test_an_error_turn_and_the_error_frame() -> None:
    answer = shaped(
        "ollama", {"error": {"type": "not_found_error", "message": "model 'x' not found"}}
    )
    assert answer.status == 404
    assert answer.body == b'{"error":"model \'x\' not found"}'
    assert json.loads(answer.error_frame) == {
        "error": "an error was encountered while running the model"
    }


TEXT = "Héllo, wörld! 🎉  «quoted» — done.\n"


def client(*turns: dict[str, object]) -> ollama.Client:
    return ollama.Client(host="http://test", transport=transport("ollama", list(turns)))


def test_the_client_joins_the_text_with_done_last() -> None:
    parts = list(
        client({"thinking": "Let me see…", "text": TEXT}).chat(model="m", messages=[], stream=True)
    )
    assert "".join(part.message.content or "" for part in parts) == TEXT
    assert "".join(part.message.thinking or "" for part in parts) == "Let me see…"
    assert [part.done for part in parts] == [False] * (len(parts) - 1) + [True]


def test_the_client_gets_tool_calls_whole() -> None:
    answer = client(
        {"tool_calls": [{"name": "get_weather", "arguments": {"location": "SF"}}]}
    ).chat(model="m", messages=[])
    (call,) = answer.message.tool_calls or []
    assert (call.function.name, call.function.arguments) == ("get_weather", {"location": "SF"})


def test_the_client_raises_its_own_errors() -> None:
    with pytest.raises(ollama.ResponseError, match="not found"):
        client({"error": {"type": "x", "message": "not found", "status": 404}}).chat(
            model="m", messages=[]
        )
    answer = shaped("ollama", {"text": "a b c"})
    cut = answer.frames[0][1] + answer.error_frame

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "application/x-ndjson"}, content=cut)

    with pytest.raises(ollama.ResponseError, match="running the model"):
        list(
            ollama.Client(host="http://t", transport=httpx.MockTransport(handle)).chat(
                model="m", messages=[], stream=True
            )
        )
