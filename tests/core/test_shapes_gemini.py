"""gemini (llm-wire.md 4): byte for byte against the page's wire text (camelCase, Gemini's
spacing), the JSON array stream without ``?alt=sse``, and parsed by google-genai offline."""

from __future__ import annotations

import json

import httpx
import pytest
from google import genai
from google.genai import errors, types

from sseplay.shapes import SHAPES, Chunking
from tests.core.shape_support import events, shaped, transport, wire

ROUTE = "/v1beta/models/gemini-2.5-flash:streamGenerateContent"


def response_id(body: bytes) -> bytes:
    return json.loads(events(body)[0][6:])["responseId"].encode()  # type: ignore[no-any-return]


def test_the_request_is_read_from_the_path_and_query() -> None:
    shape = SHAPES["gemini"]
    streamed = shape.request("/v1/models/gemini-2.5-pro:streamGenerateContent", "alt=sse", b"{}")
    assert (streamed.model, streamed.stream, streamed.sse) == ("gemini-2.5-pro", True, True)
    whole = shape.request("/v1beta/models/gemini-2.5-pro:generateContent", "", b"")
    assert (whole.model, whole.stream, whole.sse) == ("gemini-2.5-pro", False, False)


def test_text_is_the_page_byte_for_byte() -> None:
    turn = {"text": "Hello!", "usage": {"promptTokenCount": 9, "candidatesTokenCount": 2}}
    answer = shaped("gemini", turn, path=ROUTE, query="alt=sse", chunking=Chunking("chars", 3))
    assert answer.headers == ((b"content-type", b"text/event-stream"),)
    assert answer.body.replace(response_id(answer.body), b"x3pXaK2mBbWs") == wire("gemini-text")
    assert answer.terminal == len(answer.frames) - 1


def test_a_function_call_comes_whole_as_on_the_page() -> None:
    turn = {
        "tool_calls": [{"name": "get_weather", "arguments": {"location": "SF"}}],
        "usage": {"promptTokenCount": 20, "candidatesTokenCount": 5},
    }
    answer = shaped("gemini", turn, path=ROUTE, query="alt=sse")
    assert answer.body.replace(response_id(answer.body), b"y8...") == wire("gemini-function")


def test_without_alt_sse_the_same_objects_are_one_json_array_sent_incrementally() -> None:
    sse = shaped("gemini", {"text": "a b c"}, path=ROUTE, query="alt=sse")
    array = shaped("gemini", {"text": "a b c"}, path=ROUTE)
    objects = [event[6:-2] for event in events(sse.body)]
    assert array.body == b"[" + b",\r\n".join(objects) + b"]"
    assert next(chunk for _, chunk in array.frames) == b"[" + objects[0]
    assert json.loads(array.body) == [json.loads(o) for o in objects]
    assert array.headers == ((b"content-type", b"application/json; charset=UTF-8"),)
    assert array.error_frame.startswith(b",\r\n{")
    assert array.error_frame.endswith(b"}]")


def test_only_the_last_chunk_has_a_finish_reason() -> None:
    chunks = [
        json.loads(e[6:])
        for e in events(shaped("gemini", {"text": "a b c"}, path=ROUTE, query="alt=sse").body)
    ]
    assert ["finishReason" in c["candidates"][0] for c in chunks] == [False, False, True]


@pytest.mark.parametrize(
    ("error", "status", "name"),
    [
        ({"type": "RESOURCE_EXHAUSTED", "message": "Quota"}, 429, "RESOURCE_EXHAUSTED"),
        ({"type": "overloaded_error", "message": "Busy"}, 529, "UNAVAILABLE"),
        ({"type": "x", "message": "Gone", "status": 404}, 404, "NOT_FOUND"),
    ],
)
def test_an_error_turn_is_an_http_status_before_the_body(
    error: dict[str, object], status: int, name: str
) -> None:
    answer = shaped("gemini", {"error": error}, path=ROUTE, query="alt=sse")
    assert answer.status == status
    assert json.loads(answer.body) == {
        "error": {"code": status, "message": error["message"], "status": name}
    }


TEXT = "Héllo, wörld! 🎉  «quoted» — done.\n"


def client(*turns: dict[str, object]) -> genai.Client:
    http = httpx.Client(transport=transport("gemini", list(turns)))
    options = types.HttpOptions(base_url="http://test", httpx_client=http)
    return genai.Client(api_key="k", http_options=options)


def test_the_sdk_joins_the_streamed_text_exactly() -> None:
    chunks = list(
        client({"text": TEXT}).models.generate_content_stream(
            model="gemini-2.5-flash", contents="q"
        )
    )
    assert "".join(chunk.text or "" for chunk in chunks) == TEXT
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP  # type: ignore[index]


def test_the_sdk_gets_function_calls_and_the_whole_response() -> None:
    calls = [
        {"name": "get_weather", "arguments": {"location": "SF"}},
        {"name": "f", "arguments": {}},
    ]
    sdk = client({"tool_calls": calls}, {"text": TEXT})
    chunks = list(sdk.models.generate_content_stream(model="gemini-2.5-flash", contents="q"))
    assert [(c.name, c.args) for c in chunks[-1].function_calls or []] == [
        (call["name"], call["arguments"]) for call in calls
    ]
    assert sdk.models.generate_content(model="gemini-2.5-flash", contents="q").text == TEXT


def test_the_sdk_raises_its_own_errors() -> None:
    with pytest.raises(errors.ClientError, match="RESOURCE_EXHAUSTED"):
        client(
            {"error": {"type": "RESOURCE_EXHAUSTED", "message": "Quota"}}
        ).models.generate_content(model="gemini-2.5-flash", contents="q")
    answer = shaped("gemini", {"text": "a b c"}, path=ROUTE, query="alt=sse")
    cut = answer.frames[0][1] + answer.error_frame

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=cut)

    options = types.HttpOptions(
        base_url="http://t", httpx_client=httpx.Client(transport=httpx.MockTransport(handle))
    )
    sdk = genai.Client(api_key="k", http_options=options)
    with pytest.raises(errors.ServerError, match="INTERNAL"):
        list(sdk.models.generate_content_stream(model="gemini-2.5-flash", contents="q"))
