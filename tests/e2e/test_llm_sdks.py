"""The official SDKs are the referee of ``serve --shape`` (issue 25): each parses the bytes
of a real server on 127.0.0.1 port 0, as it would its provider's. No SDK object is faked;
retries are off so that a provider error is seen once, as it was sent."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import httpx
import pytest

from sseplay.server import Server
from sseplay.shaped import Turns

TEXT = "Hello, world! Tokens keep spaces, punctuation and non-ASCII: café, 東京."
WEATHER = {"location": "San Francisco", "unit": "celsius"}
TOOL_TURN = {"tool_calls": [{"name": "get_weather", "arguments": WEATHER}]}
ANSWER = "It is 18 °C and sunny in San Francisco."
TOOLS_OPENAI: Any = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
        },
    }
]
MESSAGES: Any = [{"role": "user", "content": "Hi"}]


# Every SDK client a test opened, closed after it (an unclosed one leaves its socket to
# the collector, whose ResourceWarning would land in some later test).
_CLIENTS: list[Any] = []


def opened(client: Any) -> Any:
    _CLIENTS.append(client)
    return client


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _CLIENTS:
        _CLIENTS.pop().close()


@pytest.fixture
def shaped() -> Iterator[Any]:
    """``shaped(turns, shape, **server_settings)``: the base URL of a running server."""
    servers: list[Server] = []

    def start(turns: Sequence[Mapping[str, Any]], shape: str, **settings: Any) -> str:
        from sseplay.shapes import SHAPES

        try:  # while sseplay.shapes is being built, provider by provider
            SHAPES[shape].request("/", "", b"{}")
        except NotImplementedError:
            pytest.skip(f"the {shape} shape is not built yet")
        server = Server(Turns(list(turns), shape=shape), **settings).start()
        servers.append(server)
        return server.base_url

    yield start
    for server in servers:
        server.stop()


def data_lines(response: httpx.Response) -> list[Any]:
    return [
        json.loads(line[6:])
        for line in response.text.splitlines()
        if line.startswith("data: ") and line != "data: [DONE]"
    ]


# OpenAI Chat Completions


def openai_client(base: str) -> Any:
    import openai

    return opened(openai.OpenAI(base_url=base + "/v1", api_key="sk-test", max_retries=0))


def test_openai_chat_stream_joins_to_the_text_and_has_no_usage_unless_asked(shaped: Any) -> None:
    client = openai_client(shaped([{"text": TEXT}], "openai-chat"))
    chunks = list(
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == TEXT
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(chunk.usage is None for chunk in chunks)
    assert {chunk.model for chunk in chunks} == {"gpt-4o-mini"}  # the model echoed
    assert len({chunk.id for chunk in chunks}) == 1


def test_openai_chat_include_usage_adds_the_usage_chunk(shaped: Any) -> None:
    base = shaped([{"text": TEXT}], "openai-chat")
    client = openai_client(base)
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens > 0
    assert "".join(c.choices[0].delta.content or "" for c in chunks[:-1]) == TEXT
    # On the wire: "usage": null on every other chunk with it, no usage key without it.
    body = {"model": "m", "messages": MESSAGES, "stream": True}
    with_usage = httpx.post(
        base + "/v1/chat/completions", json={**body, "stream_options": {"include_usage": True}}
    )
    assert all("usage" in chunk for chunk in data_lines(with_usage))
    without = httpx.post(base + "/v1/chat/completions", json=body)
    assert all("usage" not in chunk for chunk in data_lines(without))
    assert without.text.endswith("data: [DONE]\n\n")
    assert "\nid:" not in without.text
    assert not without.text.startswith("id:")


def test_openai_chat_tool_calls_are_accumulated_by_the_sdk(shaped: Any) -> None:
    base = shaped([TOOL_TURN], "openai-chat")
    client = openai_client(base)
    with client.chat.completions.stream(
        model="gpt-4o-mini", messages=MESSAGES, tools=TOOLS_OPENAI
    ) as stream:
        completion = stream.get_final_completion()
    (call,) = completion.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == WEATHER
    assert completion.choices[0].finish_reason == "tool_calls"
    # The arguments came in two fragments at least (the case hand-written fakes miss).
    raw = httpx.post(base + "/v1/chat/completions", json={"model": "m", "stream": True})
    fragments = [
        tool["function"]["arguments"]
        for chunk in data_lines(raw)
        for choice in chunk["choices"]
        for tool in choice["delta"].get("tool_calls", [])
        if tool["function"].get("arguments")
    ]
    assert len(fragments) >= 2
    assert json.loads("".join(fragments)) == WEATHER


def test_openai_chat_without_stream_is_one_json_object(shaped: Any) -> None:
    client = openai_client(shaped([{"text": TEXT}], "openai-chat"))
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert completion.choices[0].message.content == TEXT
    assert completion.model == "gpt-4o-mini"


def test_openai_responses_stream_gives_the_final_response(shaped: Any) -> None:
    client = openai_client(shaped([{"text": TEXT}], "openai-responses"))
    with client.responses.stream(model="gpt-4o", input="Hi") as stream:
        response = stream.get_final_response()
    assert response.output_text == TEXT


# Anthropic


def anthropic_client(base: str) -> Any:
    import anthropic

    return opened(anthropic.Anthropic(base_url=base, api_key="sk-ant-test", max_retries=0))


def test_anthropic_stream_gives_the_final_message(shaped: Any) -> None:
    client = anthropic_client(shaped([{"text": TEXT}, TOOL_TURN], "anthropic"))
    with client.messages.stream(
        model="claude-sonnet-4-5", max_tokens=100, messages=MESSAGES
    ) as stream:
        message = stream.get_final_message()
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == TEXT
    assert message.stop_reason == "end_turn"
    with client.messages.stream(
        model="claude-sonnet-4-5", max_tokens=100, messages=MESSAGES
    ) as stream:
        message = stream.get_final_message()
    (tool_use,) = [block for block in message.content if block.type == "tool_use"]
    assert tool_use.name == "get_weather"
    assert tool_use.input == WEATHER
    assert message.stop_reason == "tool_use"


# Gemini


def test_gemini_stream_joins_to_the_text(shaped: Any) -> None:
    from google import genai
    from google.genai import types

    base = shaped([{"text": TEXT}], "gemini")
    client = opened(genai.Client(api_key="test", http_options=types.HttpOptions(base_url=base)))
    chunks = list(client.models.generate_content_stream(model="gemini-2.5-flash", contents="Hi"))
    assert "".join(chunk.text or "" for chunk in chunks) == TEXT
    whole = client.models.generate_content(model="gemini-2.5-flash", contents="Hi")
    assert whole.text == TEXT


# Ollama


def test_ollama_chat_stream_ends_with_done(shaped: Any) -> None:
    import ollama

    client = opened(ollama.Client(host=shaped([{"text": TEXT}], "ollama")))
    parts = list(client.chat(model="llama3.2", messages=MESSAGES, stream=True))
    assert [part.done for part in parts] == [False] * (len(parts) - 1) + [True]
    assert "".join(part.message.content or "" for part in parts) == TEXT


# An agent loop: a tool-call turn, then a text turn.


def run_agent(client: Any, question: str) -> tuple[str, list[str]]:
    """A minimal tool-using agent, as an application would write it."""
    messages: list[Any] = [{"role": "user", "content": question}]
    calls: list[str] = []
    for _ in range(5):
        with client.chat.completions.stream(
            model="gpt-4o-mini", messages=messages, tools=TOOLS_OPENAI
        ) as stream:
            message = stream.get_final_completion().choices[0].message
        if not message.tool_calls:
            return message.content or "", calls
        messages.append(message.model_dump(exclude_none=True))
        for call in message.tool_calls:
            calls.append(call.function.name)
            arguments = json.loads(call.function.arguments)
            result = {"temperature": 18, "location": arguments["location"]}
            messages.append(
                {"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)}
            )
    raise AssertionError("the agent never answered")


def test_an_agent_makes_exactly_one_tool_call_then_answers(shaped: Any) -> None:
    client = openai_client(shaped([TOOL_TURN, {"text": ANSWER}], "openai-chat"))
    answer, calls = run_agent(client, "Weather in SF?")
    assert calls == ["get_weather"]
    assert answer == ANSWER


# Faults: the provider's own errors, and streams that end without their terminal event.


def test_openai_error_turn_and_error_event_raise_the_sdk_s_errors(shaped: Any) -> None:
    import openai

    client = openai_client(
        shaped([{"error": {"type": "server_error", "message": "boom"}}], "openai-chat")
    )
    with pytest.raises(openai.APIStatusError, match="boom"):
        client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    client = openai_client(shaped([{"text": TEXT}], "openai-chat", faults=["error-event:after=2"]))
    stream = client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    got = []
    with pytest.raises(openai.APIError):
        got.extend(stream)
    assert len(got) == 2  # the two chunks before the error, then the error


def test_openai_chat_cut_and_drop_lose_the_usage_chunk(shaped: Any) -> None:
    import openai

    usage: Any = {"include_usage": True}
    client = openai_client(shaped([{"text": TEXT}], "openai-chat", faults=["cut:after=4"]))
    with pytest.raises(openai.APIConnectionError):
        list(
            client.chat.completions.create(
                model="m", messages=MESSAGES, stream=True, stream_options=usage
            )
        )
    # Ended cleanly after 4 chunks: the SDK has no terminal event to miss (no [DONE]
    # check), so the client sees a stream without finish_reason and without usage.
    client = openai_client(shaped([{"text": TEXT}], "openai-chat", faults=["drop:after=4"]))
    chunks = list(
        client.chat.completions.create(
            model="m", messages=MESSAGES, stream=True, stream_options=usage
        )
    )
    assert len(chunks) == 4
    assert all(chunk.usage is None for chunk in chunks)
    assert all(choice.finish_reason is None for chunk in chunks for choice in chunk.choices)


def test_anthropic_overloaded_error_turn_and_error_event_and_a_cut(shaped: Any) -> None:
    import anthropic

    overloaded = {"error": {"type": "overloaded_error", "message": "Overloaded"}}
    client = anthropic_client(shaped([overloaded], "anthropic"))
    with (
        pytest.raises(anthropic.OverloadedError),
        client.messages.stream(model="m", max_tokens=10, messages=MESSAGES) as stream,
    ):
        stream.get_final_message()
    # After a 200 the error is an `event: error` (anthropic-sdk-python#1258).
    client = anthropic_client(shaped([{"text": TEXT}], "anthropic", faults=["error-event:after=3"]))
    with (
        pytest.raises(anthropic.APIStatusError, match="overloaded_error"),
        client.messages.stream(model="m", max_tokens=10, messages=MESSAGES) as stream,
    ):
        stream.get_final_message()
    client = anthropic_client(shaped([{"text": TEXT}], "anthropic", faults=["cut:after=4"]))
    with (
        pytest.raises(anthropic.APIConnectionError),
        client.messages.stream(model="m", max_tokens=10, messages=MESSAGES) as stream,
    ):
        stream.get_final_message()
    # Ended cleanly before message_delta: the SDK's message has no stop_reason.
    client = anthropic_client(shaped([{"text": TEXT}], "anthropic", faults=["drop:after=4"]))
    with client.messages.stream(model="m", max_tokens=10, messages=MESSAGES) as stream:
        assert stream.get_final_message().stop_reason is None


@pytest.mark.parametrize("fault", ["error-event:after=3", "drop:after=3"])
def test_openai_responses_without_response_completed_is_the_sdk_s_error(
    shaped: Any, fault: str
) -> None:
    # response.failed (error-event), or a stream that just ends: the SDK's own "ended
    # without its terminal event".
    client = openai_client(shaped([{"text": TEXT}], "openai-responses", faults=[fault]))
    with (
        pytest.raises(RuntimeError, match=r"response\.completed"),
        client.responses.stream(model="gpt-4o", input="Hi") as stream,
    ):
        stream.get_final_response()


def test_gemini_and_ollama_error_event_raise_the_sdk_s_errors(shaped: Any) -> None:
    import ollama
    from google import genai
    from google.genai import errors, types

    base = shaped([{"text": TEXT}], "gemini", faults=["error-event:after=2"])
    client = opened(genai.Client(api_key="test", http_options=types.HttpOptions(base_url=base)))
    with pytest.raises(errors.APIError):
        list(client.models.generate_content_stream(model="gemini-2.5-flash", contents="Hi"))
    # NDJSON: the frames are the events a fault counts.
    base = shaped([{"text": TEXT}], "ollama", faults=["error-event:after=2"])
    got: list[Any] = []
    with pytest.raises(ollama.ResponseError):
        got.extend(opened(ollama.Client(host=base)).chat(model="m", messages=MESSAGES, stream=True))
    assert len(got) == 2
