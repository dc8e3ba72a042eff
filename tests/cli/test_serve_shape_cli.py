"""``sseplay serve --shape SHAPE TURNS.jsonl`` (issue 25): the command serves a samples/turns
file at the provider's routes; flags that would do nothing with turns are refused."""

from __future__ import annotations

import json

import httpx
import pytest

from sseplay.errors import ExitCode
from sseplay.shapes import SHAPES
from tests.cli.test_flag_defaults import option
from tests.conftest import ServeProcess, run_cli


def test_serve_shape_answers_the_provider_route_turn_after_turn() -> None:
    with ServeProcess("--shape", "openai-chat", "samples/turns/tool-then-text.jsonl") as served:
        base = served.url
        url = base + "/v1/chat/completions"
        body = {"model": "gpt-4o-mini", "stream": True}
        first = httpx.post(url, json=body)
        second = httpx.post(url, json=body)
        third = httpx.post(url, json={**body, "stream": False})
    assert first.headers["content-type"].startswith("text/event-stream")
    assert '"tool_calls"' in first.text
    assert first.text.endswith("data: [DONE]\n\n")
    chunks = [json.loads(line[6:]) for line in second.text.splitlines() if line[6:7] == "{"]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "It is 18 °C and sunny in San Francisco."
    assert third.json()["choices"][0]["message"]["content"] == text  # the last turn again


def test_a_route_of_ones_own_with_route_equals_file() -> None:
    with ServeProcess("--shape", "openai-chat", "mock/llm=samples/turns/text.jsonl") as served:
        response = httpx.post(served.url + "/mock/llm", json={"model": "m", "stream": True})
    assert response.status_code == 200
    assert response.text.endswith("data: [DONE]\n\n")


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--shape", "openai-chatt", "samples/turns/text.jsonl"], "is not a shape: use one of"),
        (["--tps", "5", "samples/scores.json"], "--tps applies to --shape"),
        (["--shape", "ollama", "--loop", "samples/turns/text.jsonl"], "--loop does not apply"),
        (["--shape", "ollama", "samples/turns/text.jsonl", "samples/turns/error.jsonl"], "one"),
        (["--shape", "ollama", "--broadcast", "samples/turns/text.jsonl"], "--broadcast"),
    ],
)
def test_flags_that_do_nothing_with_turns_are_refused(args: list[str], said: str) -> None:
    result = run_cli("serve", "--port", "0", *args)
    assert result.returncode == ExitCode.USAGE, result.stderr
    assert said in result.stderr


def test_the_shape_help_names_every_shape() -> None:
    from sseplay.cli import serve

    info, _ = option(serve.serve, "shape")
    assert info.help.rstrip(".").endswith(": " + ", ".join(SHAPES))
