"""openai-chat (llm-wire.md 1): byte for byte against the page's wire text, and parsed by
the official openai SDK (offline, through an httpx MockTransport)."""

from __future__ import annotations

import json
import re

import httpx
import openai
import pytest

from sseplay.shapes import Chunking, Pacing
from tests.core.shape_support import events, shaped, transport, wire

TEXT_WITH_USAGE = wire("openai-chat-text")  # llm-wire.md 1: a real capture's fields
TOOL_CALL = wire("openai-chat-tool")  # llmposter's: no service_tier, system_fingerprint
MODEL = "gpt-4o-mini-2024-07-18"
STREAM_USAGE = {"stream": True, "stream_options": {"include_usage": True}}


def first(body: bytes) -> dict[str, object]:
    return json.loads(events(body)[0].removeprefix(b"data: "))  # type: ignore[no-any-return]


def as_example(body: bytes, chat_id: str, fingerprint: str | None) -> bytes:
    """The generated ids replaced by the page's (ours are derived from the seed)."""
    head = first(body)
    body = body.replace(str(head["id"]).encode(), chat_id.encode())
    if fingerprint is None:
        body = re.sub(rb',"service_tier":"default","system_fingerprint":"fp_\w+"', b"", body)
    else:
        body = body.replace(str(head["system_fingerprint"]).encode(), fingerprint.encode())
    return body


def test_text_with_include_usage_is_the_page_byte_for_byte() -> None:
    turn = {"text": "Hello!", "model": MODEL, "usage": {"prompt_tokens": 9, "completion_tokens": 2}}
    answer = shaped("openai-chat", turn, STREAM_USAGE, chunking=Chunking("chars", 3))
    assert answer.status == 200
    assert answer.headers == ((b"content-type", b"text/event-stream; charset=utf-8"),)
    assert as_example(answer.body, "chatcmpl-7x1", "fp_51e1070cf2") == TEXT_WITH_USAGE
    assert answer.terminal == len(answer.frames) - 1
    assert answer.frames[answer.terminal][1] == b"data: [DONE]\n\n"


def test_tool_call_is_the_page_but_for_where_the_arguments_are_cut() -> None:
    turn = {
        "tool_calls": [{"name": "get_weather", "arguments": {"location": "SF"}}],
        "model": MODEL,
    }
    answer = shaped("openai-chat", turn, {"stream": True}, now=1735689601)
    body = as_example(answer.body, "chatcmpl-7x2", None)
    call = json.loads(events(answer.body)[0][6:])["choices"][0]["delta"]["tool_calls"][0]["id"]
    body = body.replace(call.encode(), b"call_Ab12")
    ours, page = events(body), events(TOOL_CALL)
    assert [ours[0], *ours[-2:]] == [page[0], *page[-2:]]
    fragment = rb'"arguments":"(.*)"}}\]}'
    fragments = [json.loads(b'"' + re.search(fragment, e)[1] + b'"') for e in ours[1:-2]]  # type: ignore[index]
    assert len(fragments) >= 2
    assert "".join(fragments) == '{"location":"SF"}'
    for event, piece in zip(ours[1:-2], fragments, strict=True):
        assert event == page[1].replace(b'{\\"loca', json.dumps(piece)[1:-1].encode())


def test_without_include_usage_no_chunk_has_a_usage_key() -> None:
    answer = shaped("openai-chat", {"text": "Hello there!"}, {"stream": True})
    for event in events(answer.body)[:-1]:
        assert "usage" not in json.loads(event[6:])
    assert events(answer.body)[-1] == b"data: [DONE]\n\n"


def test_include_usage_puts_null_on_every_chunk_and_a_last_usage_chunk() -> None:
    answer = shaped("openai-chat", {"text": "Hello there!"}, STREAM_USAGE)
    chunks = [json.loads(event[6:]) for event in events(answer.body)[:-1]]
    assert all(chunk["usage"] is None for chunk in chunks[:-1])
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}


def test_stream_false_is_one_json_object_sent_when_the_answer_is_whole() -> None:
    answer = shaped(
        "openai-chat", {"text": "a b c"}, {"model": "m"}, pacing=Pacing(ttft=0.5, tps=10)
    )
    assert answer.headers == ((b"content-type", b"application/json"),)
    ((at, body),) = answer.frames
    assert at == pytest.approx(0.7)
    completion = json.loads(body)
    assert completion["object"] == "chat.completion"
    assert completion["model"] == "m"
    assert completion["choices"][0]["message"]["content"] == "a b c"


def test_tokens_are_paced_and_the_opening_chunk_goes_with_the_first() -> None:
    answer = shaped(
        "openai-chat", {"text": "one two three"}, {"stream": True}, pacing=Pacing(1.0, 4.0)
    )
    assert [at for at, _ in answer.frames] == [1.0, 1.0, 1.25, 1.5, 1.5, 1.5]


def test_an_error_turn_is_openais_error_response() -> None:
    turn = {"error": {"type": "rate_limit_exceeded", "message": "Slow down"}}
    answer = shaped("openai-chat", turn, {"stream": True})
    assert answer.status == 429
    assert json.loads(answer.body) == {
        "error": {
            "message": "Slow down",
            "type": "rate_limit_exceeded",
            "param": None,
            "code": None,
        }
    }


def test_the_error_frame_is_the_mid_stream_error_of_a_real_capture() -> None:
    answer = shaped("openai-chat", {"text": "x"}, {"stream": True})
    assert answer.error_frame == wire("openai-chat-error")


def test_ids_are_stable_for_a_seed_and_differ_per_request() -> None:
    one = shaped("openai-chat", {"text": "x"}, {"stream": True}, seed=3, number=1)
    assert one == shaped("openai-chat", {"text": "x"}, {"stream": True}, seed=3, number=1)
    assert (
        first(one.body)["id"]
        != first(shaped("openai-chat", {"text": "x"}, {"stream": True}, seed=3, number=2).body)[
            "id"
        ]
    )


def test_a_bad_body_gets_the_defaults() -> None:
    from sseplay.shapes import SHAPES

    request = SHAPES["openai-chat"].request("/v1/chat/completions", "", b"\xff not json")
    assert (request.model, request.stream, request.include_usage) == ("gpt-4o-mini", False, False)


TEXT = "Héllo, wörld! 🎉  «quoted» — done.\n"
CALLS = [
    {"name": "get_weather", "arguments": {"location": "San Francisco, CA", "unit": "°C"}},
    {"name": "get_time", "arguments": {"zone": "PST"}},
]


def client(*turns: dict[str, object]) -> openai.OpenAI:
    http = httpx.Client(transport=transport("openai-chat", list(turns)))
    return openai.OpenAI(api_key="k", base_url="http://test/v1", http_client=http, max_retries=0)


@pytest.mark.parametrize("include_usage", [True, False])
def test_the_sdk_joins_the_text_exactly(include_usage: bool) -> None:
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    chunks = list(
        client({"text": TEXT}).chat.completions.create(
            model="m", messages=[], stream=True, **options
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == TEXT
    assert (chunks[-1].usage is not None) is include_usage


def test_the_sdk_accumulates_parallel_tool_calls_then_the_text() -> None:
    sdk = client({"tool_calls": CALLS}, {"text": "Sunny."})
    with sdk.chat.completions.stream(model="m", messages=[]) as stream:
        final = stream.get_final_completion()
    calls = final.choices[0].message.tool_calls or []
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        (call["name"], call["arguments"]) for call in CALLS
    ]
    assert final.choices[0].finish_reason == "tool_calls"
    answer = sdk.chat.completions.create(model="m", messages=[])
    assert answer.choices[0].message.content == "Sunny."


def test_the_sdk_raises_its_own_errors() -> None:
    turn = {"error": {"type": "server_error", "message": "Boom"}}
    with pytest.raises(openai.InternalServerError, match="Boom"):
        client(turn).chat.completions.create(model="m", messages=[], stream=True)
    answer = shaped("openai-chat", {"text": "a b c"}, {"stream": True})
    cut = answer.frames[0][1] + answer.error_frame

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=cut)

    http = httpx.Client(transport=httpx.MockTransport(handle))
    sdk = openai.OpenAI(api_key="k", base_url="http://t/v1", http_client=http, max_retries=0)
    with pytest.raises(openai.APIError, match="Sorry about that"):
        list(sdk.chat.completions.create(model="m", messages=[], stream=True))
