"""The README stays true: its commands run, its exit-code table matches the code."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sseplay.errors import ExitCode
from tests.conftest import ROOT, ServeProcess, sseplay
from tests.support import recorded_events

README = (ROOT / "README.md").read_text()
BASH_BLOCKS = re.findall(r"```bash\n(.*?)```", README, re.S)
COMMANDS = [line for block in BASH_BLOCKS for line in block.splitlines() if line.strip()]
SERVE_EXAMPLES = [
    c.split("&& ", 1)[-1]
    for c in COMMANDS
    if "sseplay serve " in c and "--shape" not in c and "--scenario" not in c
]
SHAPE_EXAMPLES = [c for c in COMMANDS if c.startswith("sseplay serve --shape ")]
TAIL_EXAMPLES = [c for c in COMMANDS if c.startswith("sseplay tail ") and "--framing" not in c]
FRAMING_EXAMPLES = [c for c in COMMANDS if c.startswith("sseplay tail ") and "--framing" in c]
# What each shape's first route is POSTed, in the shape tests' words.
SHAPE_REQUESTS = {
    "openai-chat": ("/v1/chat/completions", {"model": "m", "stream": True}),
    "openai-responses": ("/v1/responses", {"model": "m", "stream": True}),
    "anthropic": ("/v1/messages", {"model": "m", "max_tokens": 9, "stream": True}),
    "gemini": ("/v1beta/models/m:streamGenerateContent", {}),
    "ollama": ("/api/chat", {"model": "m", "stream": True}),
}
DOCUMENTED_BASE = "http://127.0.0.1:8000"
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)


def test_the_two_commands_come_first_and_ci_runs_the_test_command() -> None:
    run_command, test_command = COMMANDS[:2]
    assert run_command.startswith("pip install . && sseplay serve samples/")
    assert test_command == "pip install -e '.[test]' && python -m pytest"
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci_lines


@pytest.mark.parametrize("command", SERVE_EXAMPLES)
def test_serve_examples_start_and_serve(command: str) -> None:
    args = shlex.split(command)[2:]
    with ServeProcess(*args) as serve:
        origin = "/".join(serve.url.split("/")[:3])
        health = httpx.get(origin + "/healthz", timeout=10)
        assert health.status_code == 200
        routes = [s["route"] for s in health.json()["streams"]]
        assert len(serve.urls) == len(routes)
        with httpx.stream("GET", serve.urls[0], timeout=10) as response:
            assert response.status_code == 200
            assert b"data: " in next(response.iter_raw())
        code, _, err = serve.stop()
    assert code == 0, err


@pytest.mark.parametrize("command", SHAPE_EXAMPLES)
def test_shape_examples_answer_their_provider_route(command: str) -> None:
    args = shlex.split(command)[2:]
    path, body = SHAPE_REQUESTS[args[1]]
    with ServeProcess(*args) as serve:
        origin = "/".join(serve.url.split("/")[:3])
        response = httpx.post(origin + path, json=body, timeout=10)
        code, _, err = serve.stop()
    assert response.status_code == 200, response.text
    assert response.content
    assert code == 0, err


def test_every_shape_has_its_readme_example() -> None:
    assert sorted(shlex.split(c)[3] for c in SHAPE_EXAMPLES) == sorted(SHAPE_REQUESTS)


@pytest.mark.parametrize("command", FRAMING_EXAMPLES)
def test_framing_examples_run_against_their_shape(command: str, tmp_path: Path) -> None:
    shape = "ollama" if "--framing ndjson" in command else "gemini"
    with ServeProcess("--shape", shape, "samples/turns/text.jsonl") as serve:
        base = "/".join(serve.url.split("/")[:3])
        result = subprocess.run(
            [*sseplay(*shlex.split(command.replace(DOCUMENTED_BASE, base))[1:]), "-q"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) >= 2


def test_the_sdk_snippets_compile() -> None:
    (snippets,) = [block for block in PYTHON_BLOCKS if "from openai import" in block]
    compile(snippets, "README.md", "exec")


@pytest.fixture(scope="module")
def example_server() -> Iterator[ServeProcess]:
    serve = ServeProcess(
        "events=samples/llm.jsonl",
        "v1/chat/completions=samples/llm.jsonl",
        "--interval",
        "0",
        "--retry",
        "10",
    )
    with serve:
        yield serve


@pytest.mark.parametrize("command", TAIL_EXAMPLES)
def test_tail_examples_run(command: str, example_server: ServeProcess, tmp_path: Path) -> None:
    base = "/".join(example_server.url.split("/")[:3])
    command = command.split(" | ")[0].replace(DOCUMENTED_BASE, base)
    # The example without a scheme, as curl takes it.
    command = command.replace(DOCUMENTED_BASE.removeprefix("http://"), base.split("//")[1])
    result = subprocess.run(
        [*sseplay(*shlex.split(command)[1:]), "--timeout", "20"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    if "--record" in command:
        # Every event, as the stream brought it (issue 24's recording format).
        recorded = recorded_events(tmp_path / shlex.split(command)[-1])
        assert len(recorded) == 11
    else:
        assert result.stdout


def test_exit_code_table_matches_the_code() -> None:
    rows = re.findall(r"^\| (\d+) \| (\w+) \|", README, re.M)
    assert {int(code): name for code, name in rows} == {int(e): e.name for e in ExitCode}


def test_the_python_api_example_runs() -> None:
    (example,) = [block for block in PYTHON_BLOCKS if "from sseplay import" in block]
    result = subprocess.run(
        [sys.executable, "-c", example], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        '1 message {"token":"Hel"}',
        '2 message {"token":"lo"}',
        "3 message [DONE]",
    ]


def test_the_pytest_plugin_example_passes_with_no_conftest(tmp_path: Path) -> None:
    (example,) = [block for block in PYTHON_BLOCKS if "def test_" in block]
    (tmp_path / "test_readme_example.py").write_text(example)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
