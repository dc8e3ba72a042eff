"""anthropic (llm-wire.md 3): byte for byte against the page's wire text, and parsed by the
official anthropic SDK (offline, through an httpx2 MockTransport: anthropic 2.x is built on it)."""

from __future__ import annotations

import json

import anthropic
import httpx2
import pytest

from sseplay.shapes import Chunking, Pacing
from tests.core.shape_support import events, shaped, transport, wire

MODEL = "claude-sonnet-4-5-20250929"
STREAM = {"stream": True}


def ids_as_page(body: bytes, message: str, tool: str | None = None) -> bytes:
    start = json.loads(events(body)[0].split(b"data: ", 1)[1])
    body = body.replace(start["message"]["id"].encode(), message.encode())
    if tool is not None:
        for event in events(body):
            data = json.loads(event.split(b"data: ", 1)[1])
            if (
                data["type"] == "content_block_start"
                and data["content_block"]["type"] == "tool_use"
            ):
                body = body.replace(data["content_block"]["id"].encode(), tool.encode())
    return body


def test_text_is_the_page_byte_for_byte() -> None:
    turn = {"text": "Hello!", "model": MODEL, "usage": {"input_tokens": 12, "output_tokens": 15}}
    answer = shaped("anthropic", turn, STREAM, chunking=Chunking("chars", 5))
    assert answer.status == 200
    assert answer.headers[0] == (b"content-type", b"text/event-stream; charset=utf-8")
    assert ids_as_page(answer.body, "msg_01QC4g3H") == wire("anthropic-text")
    assert (
        answer.frames[answer.terminal][1]
        == b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )
    assert answer.terminal == len(answer.frames) - 1


def test_tool_use_is_the_page_but_for_where_the_input_is_cut() -> None:
    arguments = {"location": "San Francisco"}
    turn = {"text": "", "tool_calls": [{"name": "get_weather", "arguments": arguments}]}
    answer = shaped("anthropic", {**turn, "usage": {"output_tokens": 48}}, STREAM)
    ours = events(ids_as_page(answer.body, "msg_x", "toolu_01T1x"))
    page = events(wire("anthropic-tool"))
    start = ours.index(page[0])
    ours = ours[start:]
    assert [*ours[:2], *ours[-3:]] == [*page[:2], *page[-3:]]
    fragments = [json.loads(e.split(b"data: ")[1])["delta"]["partial_json"] for e in ours[2:-3]]
    assert len(fragments) >= 2
    # Compact JSON, as the other shapes send it (the page's capture has ": ").
    assert json.loads("".join(fragments)) == arguments


def test_the_ping_follows_the_first_block_start_and_message_start_is_sent_at_once() -> None:
    answer = shaped("anthropic", {"text": "a b"}, STREAM, pacing=Pacing(ttft=2.0, tps=10))
    names = [chunk.split(b"\n")[0] for _, chunk in answer.frames]
    assert names[:3] == [b"event: message_start", b"event: content_block_start", b"event: ping"]
    assert [at for at, _ in answer.frames] == [0.0, 2.0, 2.0, 2.0, 2.1, 2.1, 2.1, 2.1]


def test_an_error_turn_is_anthropics_error_response_with_its_status() -> None:
    turn = {"error": {"type": "overloaded_error", "message": "Overloaded"}}
    answer = shaped("anthropic", turn, STREAM)
    assert answer.status == 529
    assert (
        answer.body
        == b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
    )
    assert answer.headers[0] == (b"content-type", b"application/json")


def test_the_error_frame_is_the_overloaded_event() -> None:
    assert shaped("anthropic", {"text": "x"}, STREAM).error_frame == wire("anthropic-error")


TEXT = "Héllo, wörld! 🎉  «quoted» — done.\n"


def client(*turns: dict[str, object]) -> anthropic.Anthropic:
    http = httpx2.Client(transport=transport("anthropic", list(turns), http=httpx2))
    return anthropic.Anthropic(api_key="k", base_url="http://test", http_client=http, max_retries=0)


def test_the_sdk_accumulates_thinking_text_and_the_stop_reason() -> None:
    sdk = client({"thinking": "Let me see…", "text": TEXT})
    with sdk.messages.stream(model="m", max_tokens=9, messages=[]) as stream:
        message = stream.get_final_message()
    thinking, text = message.content
    assert thinking.type == "thinking"
    assert thinking.thinking == "Let me see…"
    assert text.type == "text"
    assert text.text == TEXT
    assert message.stop_reason == "end_turn"


def test_the_sdk_accumulates_parallel_tool_use_inputs() -> None:
    calls = [
        {"name": "get_weather", "arguments": {"location": "San Francisco", "unit": "°C"}},
        {"name": "noop", "arguments": {}},
    ]
    sdk = client({"tool_calls": calls})
    with sdk.messages.stream(model="m", max_tokens=9, messages=[]) as stream:
        message = stream.get_final_message()
    assert [(b.name, b.input) for b in message.content if b.type == "tool_use"] == [
        (call["name"], call["arguments"]) for call in calls
    ]
    assert message.stop_reason == "tool_use"


def test_stream_false_is_the_whole_message() -> None:
    message = client({"text": TEXT}).messages.create(model="m", max_tokens=9, messages=[])
    assert message.content[0].type == "text"
    assert message.content[0].text == TEXT


def test_the_sdk_raises_its_own_errors() -> None:
    turn = {"error": {"type": "overloaded_error", "message": "Overloaded"}}
    with pytest.raises(anthropic.APIStatusError, match="Overloaded") as caught:
        client(turn).messages.create(model="m", max_tokens=9, messages=[], stream=True)
    assert caught.value.status_code == 529
    answer = shaped("anthropic", {"text": "a b c"}, STREAM)
    cut = b"".join(chunk for _, chunk in answer.frames[:4]) + answer.error_frame

    def handle(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=cut)

    http = httpx2.Client(transport=httpx2.MockTransport(handle))
    sdk = anthropic.Anthropic(api_key="k", base_url="http://t", http_client=http, max_retries=0)
    with (
        pytest.raises(anthropic.APIStatusError, match="overloaded_error"),
        sdk.messages.stream(model="m", max_tokens=9, messages=[]) as stream,
    ):
        stream.get_final_message()
