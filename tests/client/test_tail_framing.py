"""``sseplay tail --framing ndjson|json-array`` against real ``serve --shape`` servers:
Ollama's NDJSON and Gemini's streamed JSON array (no ``?alt=sse``), each JSON value an
event, with --expect, --schema and --stats working on them as on SSE (issue 25)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from sseplay.client.api import tail as tail_events
from sseplay.errors import ExitCode
from tests.conftest import ServeProcess, run_cli

TEXT = (
    "Hello! Streaming works: every token arrives, spaces, punctuation and non-ASCII "
    "(café, 東京) intact."
)
OLLAMA_BODY = json.dumps({"model": "llama3.2", "messages": [], "stream": True})
GEMINI_PATH = "/v1beta/models/gemini-2.0-flash:streamGenerateContent"


def _post(*args: str) -> list[str]:
    return ["-X", "POST", "-d", "{}", "--no-reconnect", "-q", "--format", "json", *args]


def test_ndjson_reads_ollama_one_event_a_line(tmp_path: Path) -> None:
    with ServeProcess("--shape", "ollama", "samples/turns/text.jsonl") as served:
        url = served.url + "/api/chat"
        body = httpx.post(url, content=OLLAMA_BODY).text
        stats = tmp_path / "stats.json"
        result = run_cli(
            "tail",
            url,
            *_post("-d", OLLAMA_BODY, "--framing", "ndjson", "--stats-file", str(stats)),
        )
    assert result.returncode == ExitCode.OK, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    lines = [line for line in body.split("\n") if line]
    assert [e["data"] for e in events] == lines  # Ollama's lines are compact JSON already
    assert {e.get("event", "message") for e in events} == {"message"}
    assert all(e.get("id") is None for e in events)
    chunks = [json.loads(e["data"]) for e in events]
    assert "".join(c["message"]["content"] for c in chunks) == TEXT
    assert chunks[-1]["done"] is True
    assert json.loads(stats.read_text())["events"] == len(lines)


def test_json_array_reads_gemini_without_alt_sse_and_expect_holds(tmp_path: Path) -> None:
    with ServeProcess("--shape", "gemini", "samples/turns/text.jsonl") as served:
        url = served.url + GEMINI_PATH
        body = httpx.post(url, json={}).text
        assert body.startswith("[{")
        assert ",\r\n{" in body
        result = run_cli("tail", url, *_post("--framing", "json-array"))
        assert result.returncode == ExitCode.OK, result.stderr
        elements = json.loads(body)
        compact = [json.dumps(e, separators=(",", ":"), ensure_ascii=False) for e in elements]
        events = [json.loads(line) for line in result.stdout.splitlines()]
        assert [e["data"] for e in events] == compact
        text = "".join(e["candidates"][0]["content"]["parts"][0].get("text", "") for e in elements)
        assert text == TEXT
        # --expect: what this tail printed is what the next one must see.
        expected = tmp_path / "expected.jsonl"
        expected.write_text(result.stdout)
        again = run_cli("tail", url, *_post("--framing", "json-array", "--expect", str(expected)))
        assert again.returncode == ExitCode.OK, again.stderr
        wrong = tmp_path / "wrong.jsonl"
        wrong.write_text(result.stdout.replace("Streaming", "Streamed", 1))
        differs = run_cli("tail", url, *_post("--framing", "json-array", "--expect", str(wrong)))
        assert differs.returncode == ExitCode.MISMATCH, differs.stderr


def test_the_library_tail_reads_a_json_array_too() -> None:
    with ServeProcess("--shape", "gemini", "samples/turns/text.jsonl") as served:
        events = list(
            tail_events(
                served.url + GEMINI_PATH,
                method="POST",
                body="{}",
                framing="json-array",
                reconnect=False,
            )
        )
    assert events
    assert all(e.type == "message" and e.id is None for e in events)
    assert json.loads(events[-1].data)["candidates"][0]["finishReason"] == "STOP"


def test_sse_framing_on_a_json_stream_says_which_framing_reads_it() -> None:
    with ServeProcess("--shape", "ollama", "samples/turns/text.jsonl") as served:
        result = run_cli("tail", served.url + "/api/chat", *_post())
    assert result.returncode == ExitCode.ERROR, result.stderr
    assert "--framing ndjson or json-array reads a JSON stream" in result.stderr


def test_an_unknown_framing_is_a_usage_error() -> None:
    result = run_cli("tail", "http://127.0.0.1:9/x", "--framing", "jsonl")
    assert result.returncode == ExitCode.USAGE
    assert "--framing must be sse, ndjson or json-array, not 'jsonl'" in result.stderr
