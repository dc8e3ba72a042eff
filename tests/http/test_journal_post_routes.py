"""The journal, the verdicts and the metrics see the POST routes too: LLM shapes,
recordings and scenarios read the request's body themselves, and the journal keeps it
(the clients people test most are LLM clients)."""

from __future__ import annotations

from pathlib import Path

import httpx

from sseplay import Recordings, Server, Turns
from sseplay.shapes import Turn
from tests.http.recordings_support import write_recording
from tests.http.test_metrics import scrape, value
from tests.support import wait_until

CHAT = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


def entries_when_ended(server: Server, count: int) -> list[dict[str, object]]:
    wait_until(lambda: sum(e["ended"] is not None for e in server.journal()) >= count)
    return server.journal()


def test_a_shaped_request_is_journaled_with_its_body_counted_and_judged() -> None:
    turns = Turns([Turn(text="one two three")], shape="openai-chat")
    with Server(turns, control=True, metrics=True, expect_client=["header=x-team:a"]) as server:
        url = server.base_url + "/v1/chat/completions"
        headers = {"Authorization": "Bearer sk-secret", "X-Team": "b"}
        response = httpx.post(url, json=CHAT, headers=headers, timeout=10)
        assert response.status_code == 200
        assert "[DONE]" in response.text
        (entry,) = entries_when_ended(server, 1)
        samples = scrape(server.base_url)
        verdict = server.verdict()
    assert entry["route"] == "/v1/chat/completions"
    assert entry["method"] == "POST"
    assert '"content": "hi"' in str(entry["body"]) or '"content":"hi"' in str(entry["body"])
    assert entry["headers"]["authorization"] == "***"  # type: ignore[index]
    assert "sk-secret" not in str(entry)
    assert (entry["status"], entry["ended"]) == (200, "end")
    assert isinstance(entry["events"], int)
    assert entry["events"] >= 3
    route = "/v1/chat/completions"
    assert value(samples, "sseplay_events_sent_total", route=route) == entry["events"]
    assert value(samples, "sseplay_connections_ended_total", route=route, outcome="end") == 1
    assert not verdict["ok"]
    assert verdict["broken"][0]["rule"] == "header=x-team:a"


def test_a_recorded_request_is_journaled_and_a_miss_is_a_404_entry(tmp_path: Path) -> None:
    write_recording(
        tmp_path / "a.jsonl",
        method="POST",
        target="/v1/stream",
        body='{"q": 1}',
        blocks=[(0.0, "data: one\n\n"), (0.01, "data: two\n\n")],
    )
    with Server(Recordings(tmp_path), control=True) as server:
        hit = httpx.post(server.base_url + "/v1/stream", content=b'{"q": 1}', timeout=10)
        miss = httpx.post(server.base_url + "/v1/stream", content=b'{"q": 2}', timeout=10)
        first, second = entries_when_ended(server, 2)
    assert hit.text == "data: one\n\ndata: two\n\n"
    assert miss.status_code == 404
    assert (first["body"], first["status"], first["ended"], first["events"]) == (
        '{"q": 1}',
        200,
        "end",
        2,
    )
    assert (second["body"], second["status"], second["ended"]) == ('{"q": 2}', 404, "error")


def test_a_scenario_request_is_journaled_once_with_its_body(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text('{"n": 1}\n{"n": 2}\n')
    scenario = {
        "routes": [
            {
                "method": "POST",
                "path": "/chat",
                "when": {"body.kind": "x"},
                "play": [str(tmp_path / "a.jsonl")],
                "interval": 0,
            }
        ]
    }
    with Server(scenario=scenario, control=True) as server:
        hit = httpx.post(server.base_url + "/chat", content=b'{"kind":"x"}', timeout=10)
        miss = httpx.post(server.base_url + "/chat", content=b'{"kind":"y"}', timeout=10)
        entries = entries_when_ended(server, 2)
    assert hit.text.count("data: ") == 2
    assert miss.status_code == 404
    assert len(entries) == 2  # the rule's stream endpoint kept the scenario's entry
    assert entries[0]["body"] == '{"kind":"x"}'
    assert entries[0]["events"] == 2
    assert (entries[1]["status"], entries[1]["ended"]) == (404, "error")


def test_a_fault_armed_on_a_shaped_connection_ends_it_with_the_shape_s_error() -> None:
    turns = Turns([Turn(text=" ".join(["word"] * 200))], shape="anthropic", tps=50)
    with Server(turns, control=True) as server:
        url = server.base_url + "/v1/messages"
        body = {"model": "m", "max_tokens": 9, "stream": True, "messages": []}
        with httpx.stream("POST", url, json=body, timeout=10) as response:
            lines = response.iter_lines()
            assert next(line for line in lines if "content_block_delta" in line)
            (connection,) = server.connections()
            server.fault("error-event:after=1", conn=connection["id"])
            rest = list(lines)
    errors = [line for line in rest if line.startswith("data:") and "overloaded_error" in line]
    assert len(errors) == 1  # the provider's own mid-stream error, then the end
    assert sum("text_delta" in line for line in rest) < 20
    assert not any("message_stop" in line for line in rest)
