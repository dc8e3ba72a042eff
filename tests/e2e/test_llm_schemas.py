"""A tail of every provider shape validates against a JSON Schema of that provider's streamed
chunk (tests/e2e/llm_schemas/, written from /work/shared/llm-wire.md), and a chunk with a
wrong field name or type fails it (issue 25)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest

from sseplay.errors import ExitCode
from sseplay.parser import EventStreamParser
from tests.conftest import ServeProcess, run_cli

SCHEMAS = Path(__file__).parent / "llm_schemas"
WIRE = Path(__file__).parent.parent / "core" / "llm_wire"
GEMINI = "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
# Parallel tool calls, a reasoning turn, a text turn with usage: every kind of chunk.
TURNS = [
    {
        "tool_calls": [
            {"name": "get_weather", "arguments": {"location": "San Francisco", "unit": "celsius"}},
            {"name": "get_time", "arguments": {"zone": "Europe/Paris"}},
        ]
    },
    {"thinking": "The user greets me.", "text": "Hello, café 東京!"},
    {"text": "It is 18 °C and sunny.", "usage": {"input_tokens": 12, "output_tokens": 7}},
]
# (shape, path, request body, framing, schema)
CASES = [
    (
        "openai-chat",
        "/v1/chat/completions",
        {"model": "gpt-4o-mini", "stream": True, "stream_options": {"include_usage": True}},
        "sse",
        "openai-chat-chunk",
    ),
    (
        "openai-chat",
        "/v1/chat/completions",
        {"model": "gpt-4o-mini", "stream": True},
        "sse",
        "openai-chat-chunk",
    ),
    (
        "openai-responses",
        "/v1/responses",
        {"model": "gpt-4o", "stream": True},
        "sse",
        "openai-responses-event",
    ),
    (
        "anthropic",
        "/v1/messages",
        {"model": "claude-sonnet-4-5", "max_tokens": 64, "stream": True},
        "sse",
        "anthropic-event",
    ),
    ("gemini", GEMINI + "?alt=sse", {"contents": []}, "sse", "gemini-response"),
    ("gemini", GEMINI, {"contents": []}, "json-array", "gemini-response"),
    ("ollama", "/api/chat", {"model": "llama3.2", "stream": True}, "ndjson", "ollama-chat-chunk"),
]


def schema_file(name: str) -> Path:
    return SCHEMAS / f"{name}.schema.json"


@pytest.mark.parametrize(("shape", "path", "body", "framing", "schema"), CASES)
def test_a_tail_of_every_shape_passes_its_provider_schema(
    shape: str, path: str, body: dict[str, Any], framing: str, schema: str, tmp_path: Path
) -> None:
    turns = tmp_path / "turns.jsonl"
    turns.write_text("".join(json.dumps(turn) + "\n" for turn in TURNS), encoding="utf-8")
    with ServeProcess("--shape", shape, str(turns)) as served:
        for number in range(len(TURNS)):  # the nth request gets the nth turn
            result = run_cli(
                "tail", served.url + path, "-X", "POST", "-d", json.dumps(body),
                "--framing", framing, "--schema", str(schema_file(schema)),
                "--no-reconnect", "-q", "--format", "json",
            )  # fmt: skip
            assert result.returncode == ExitCode.OK, (number, result.stderr)
            assert result.stdout.splitlines(), number  # (a Gemini function call is one chunk)


def _wire_data(name: str) -> list[Any]:
    text = (WIRE / name).read_bytes()
    if name.startswith("ollama"):
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    events = EventStreamParser().feed(text)
    return [event.data if event.data == "[DONE]" else json.loads(event.data) for event in events]


WIRE_SCHEMA = {
    "openai-chat": "openai-chat-chunk",
    "responses": "openai-responses-event",
    "anthropic": "anthropic-event",
    "gemini": "gemini-response",
    "ollama": "ollama-chat-chunk",
}


def _validator(name: str) -> Any:
    return jsonschema.Draft202012Validator(json.loads(schema_file(name).read_text()))


@pytest.mark.parametrize("wire", sorted(path.name for path in WIRE.glob("*.txt")))
def test_the_wire_reference_examples_pass_the_schemas(wire: str) -> None:
    schema = next(s for prefix, s in WIRE_SCHEMA.items() if wire.startswith(prefix))
    validator = _validator(schema)
    for data in _wire_data(wire):
        assert not list(validator.iter_errors(data)), data


def _rename(key: str, new: str) -> Callable[[dict[str, Any]], None]:
    def change(value: dict[str, Any]) -> None:
        value[new] = value.pop(key)

    return change


# (schema, a valid example from the wire reference, what breaks it)
WRONG: list[tuple[str, str, int, Callable[[Any], None]]] = [
    ("openai-chat-chunk", "openai-chat-text.txt", 1,
     lambda c: _rename("finish_reason", "finishReason")(c["choices"][0])),
    ("openai-chat-chunk", "openai-chat-tool.txt", 1,
     lambda c: c["choices"][0]["delta"]["tool_calls"][0]["function"].update(arguments={"a": 1})),
    ("openai-chat-chunk", "openai-chat-text.txt", 0, lambda c: c.update(object="chat.completion")),
    ("openai-responses-event", "responses-text.txt", 4, lambda e: e.update(sequence_number="4")),
    ("openai-responses-event", "responses-text.txt", 4, _rename("delta", "text")),
    ("anthropic-event", "anthropic-tool.txt", 2,
     lambda e: _rename("partial_json", "partialJson")(e["delta"])),
    ("anthropic-event", "anthropic-text.txt", 6,
     lambda e: e["delta"].update(stop_reason="stop")),
    ("gemini-response", "gemini-text.txt", 1,
     lambda r: _rename("finishReason", "finish_reason")(r["candidates"][0])),
    ("gemini-response", "gemini-function.txt", 0,
     lambda r: r["candidates"][0]["content"]["parts"][0]["functionCall"].update(args="{}")),
    ("ollama-chat-chunk", "ollama-text.txt", 0, lambda c: c.update(done="false")),
    ("ollama-chat-chunk", "ollama-text.txt", 2, lambda c: c.pop("done_reason")),
]  # fmt: skip


@pytest.mark.parametrize(("schema", "wire", "index", "change"), WRONG)
def test_a_deliberately_wrong_chunk_fails_the_schema(
    schema: str, wire: str, index: int, change: Callable[[Any], None]
) -> None:
    validator = _validator(schema)
    good = _wire_data(wire)[index]
    assert not list(validator.iter_errors(good))
    wrong = copy.deepcopy(good)
    change(wrong)
    assert list(validator.iter_errors(wrong)), wrong


def test_tail_schema_exits_invalid_on_a_wrong_chunk_from_a_real_server(tmp_path: Path) -> None:
    good = _wire_data("openai-chat-text.txt")
    wrong = copy.deepcopy(good[2])
    _rename("finish_reason", "finishReason")(wrong["choices"][0])
    stream = tmp_path / "chat.jsonl"
    records = [good[0], wrong, "[DONE]"]  # each record is an event's data
    stream.write_text("".join(json.dumps(r) + "\n" for r in records))
    with ServeProcess(f"chat={stream}") as served:
        result = run_cli(
            "tail", served.url, "--schema", str(schema_file("openai-chat-chunk")),
            "--no-reconnect", "-q",
        )  # fmt: skip
    assert result.returncode == ExitCode.INVALID, result.stderr
    assert "event 2" in result.stderr  # the first passed: only the wrong one breaks it
    assert "breaks --schema" in result.stderr
