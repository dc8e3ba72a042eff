"""openai-responses (llm-wire.md 2): byte for byte against the page's wire text, and parsed
by the official openai SDK's ``responses.stream`` (offline, through an httpx MockTransport)."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from sseplay.shapes import Chunking
from tests.core.shape_support import events, shaped, transport, wire

MODEL = "gpt-4o-2024-08-06"
STREAM = {"stream": True}


def data(event: bytes) -> dict[str, object]:
    return json.loads(event.split(b"data: ", 1)[1])  # type: ignore[no-any-return]


def test_text_is_the_page_byte_for_byte() -> None:
    usage = {"input_tokens": 9, "output_tokens": 2}
    turn = {"text": "Hello!", "model": MODEL, "usage": usage}
    answer = shaped("openai-responses", turn, STREAM, chunking=Chunking("chars", 3), now=1741487325)
    body = answer.body
    body = body.replace(data(events(body)[0])["response"]["id"].encode(), b"resp_67cc")  # type: ignore[index]
    body = body.replace(data(events(body)[2])["item"]["id"].encode(), b"msg_67cc")  # type: ignore[index]
    assert body == wire("responses-text")
    assert answer.terminal == len(answer.frames) - 1
    assert answer.frames[answer.terminal][1].startswith(b"event: response.completed\n")


def test_a_function_call_is_the_page_but_for_where_the_arguments_are_cut() -> None:
    turn = {"tool_calls": [{"name": "get_weather", "arguments": {"location": "SF"}}]}
    answer = shaped("openai-responses", turn, STREAM)
    ours = events(answer.body)
    item = data(ours[2])["item"]
    body = answer.body.replace(item["id"].encode(), b"fc_12").replace(
        item["call_id"].encode(), b"call_Ab12"
    )  # type: ignore[index]
    ours, page = events(body)[2:], events(wire("responses-function"))
    assert ours[0] == page[0]
    deltas = [data(event) for event in ours[1:-3]]
    assert len(deltas) >= 2
    assert "".join(d["delta"] for d in deltas) == '{"location":"SF"}'  # type: ignore[misc]
    # The page's numbers follow from its two fragments; ours shift with the fragment count.
    shift = len(deltas) - 2
    for ours_event, page_event in zip(ours[-3:-1], page[-2:], strict=True):
        expected = data(page_event)
        expected["sequence_number"] += shift  # type: ignore[operator]
        assert data(ours_event) == expected
        assert ours_event.split(b"\n")[0] == page_event.split(b"\n")[0]
    assert ours[-1].startswith(b"event: response.completed\n")


def test_sequence_numbers_count_from_zero_without_gaps() -> None:
    turn = {"thinking": "Hm.", "text": "a b", "tool_calls": [{"name": "f", "arguments": {"x": 1}}]}
    numbers = [
        data(e)["sequence_number"] for e in events(shaped("openai-responses", turn, STREAM).body)
    ]
    assert numbers == list(range(len(numbers)))


def test_the_error_frame_is_response_failed_with_the_same_response_id() -> None:
    answer = shaped("openai-responses", {"text": "a b"}, STREAM)
    failed = data(answer.error_frame)
    assert answer.error_frame.startswith(b"event: response.failed\n")
    assert failed["response"]["status"] == "failed"  # type: ignore[index]
    assert failed["response"]["error"]["code"] == "server_error"  # type: ignore[index]
    assert failed["response"]["id"] == data(events(answer.body)[0])["response"]["id"]  # type: ignore[index]


def test_an_error_turn_is_openais_error_response() -> None:
    answer = shaped(
        "openai-responses", {"error": {"type": "server_error", "message": "Boom"}}, STREAM
    )
    assert answer.status == 500
    assert json.loads(answer.body)["error"]["message"] == "Boom"


TEXT = "Héllo, wörld! 🎉  «quoted» — done.\n"


def client(*turns: dict[str, object]) -> openai.OpenAI:
    http = httpx.Client(transport=transport("openai-responses", list(turns)))
    return openai.OpenAI(api_key="k", base_url="http://test/v1", http_client=http, max_retries=0)


def test_the_sdk_gets_the_final_response_text() -> None:
    with client({"thinking": "Let me see…", "text": TEXT}).responses.stream(
        model="m", input="q"
    ) as stream:
        response = stream.get_final_response()
    assert response.output_text == TEXT
    assert [item.type for item in response.output] == ["reasoning", "message"]


def test_the_sdk_gets_function_calls_then_text_and_the_whole_response() -> None:
    calls = [
        {"name": "get_weather", "arguments": {"location": "SF"}},
        {"name": "f", "arguments": {}},
    ]
    sdk = client({"tool_calls": calls}, {"text": TEXT})
    with sdk.responses.stream(model="m", input="q") as stream:
        response = stream.get_final_response()
    assert [
        (o.name, json.loads(o.arguments)) for o in response.output if o.type == "function_call"
    ] == [(call["name"], call["arguments"]) for call in calls]
    assert sdk.responses.create(model="m", input="q").output_text == TEXT


def test_a_failed_response_leaves_the_sdk_without_a_final_response() -> None:
    answer = shaped("openai-responses", {"text": "a b c"}, STREAM)
    cut = b"".join(chunk for _, chunk in answer.frames[:5]) + answer.error_frame

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=cut)

    http = httpx.Client(transport=httpx.MockTransport(handle))
    sdk = openai.OpenAI(api_key="k", base_url="http://t/v1", http_client=http, max_retries=0)
    with sdk.responses.stream(model="m", input="q") as stream:
        kinds = [event.type for event in stream]
        with pytest.raises(RuntimeError, match=r"response\.completed"):
            stream.get_final_response()
    assert kinds[-1] == "response.failed"
