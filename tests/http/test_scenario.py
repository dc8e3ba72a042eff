"""Scenarios over HTTP (issue 26): a real server on 127.0.0.1 port 0 answers each request
with the file its rules pick: the nth match the nth file, then ``then``; a body picks its
own file; scenario keys count apart; ``POST /_sseplay/reset`` counts from zero; a rule
with ``shape`` plays turns; a rule's faults act on its stream."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from sseplay.errors import UsageError
from sseplay.http.scenario import MAX_BODY
from sseplay.server import Server
from sseplay.stream import Stream
from tests.conftest import ROOT
from tests.http.recordings_support import JSON, write_recording

SAMPLES = ROOT / "samples" / "scenario"


def lines(path: Path, *records: Any) -> str:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path.name


def data(response: httpx.Response) -> list[Any]:
    """The data of each event of an event-stream body."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    return [json.loads(line[6:]) for line in response.text.splitlines() if line[:6] == "data: "]


@pytest.fixture
def files(tmp_path: Path) -> Path:
    lines(tmp_path / "a.jsonl", {"file": "a", "n": 1}, {"file": "a", "n": 2})
    lines(tmp_path / "b.jsonl", {"file": "b"})
    lines(tmp_path / "x.jsonl", {"file": "x"})
    return tmp_path


def write_scenario(directory: Path, *rules: dict[str, Any]) -> Path:
    """A scenario file of ``rules``, each played as fast as the client reads."""
    path = directory / "scenario.json"
    played = [{"interval": 0, **rule} for rule in rules]
    path.write_text(json.dumps({"routes": played}), encoding="utf-8")
    return path


def test_three_requests_get_a_then_b_then_b(files: Path) -> None:
    scenario = write_scenario(files, {"path": "/chat", "play": ["a.jsonl", "b.jsonl"]})
    with Server(scenario=scenario) as server:
        url = server.url_for("/chat")
        answers = [data(httpx.post(url, json={}, timeout=10)) for _ in range(3)]
    assert answers == [
        [{"file": "a", "n": 1}, {"file": "a", "n": 2}],
        [{"file": "b"}],
        [{"file": "b"}],
    ]


def test_a_body_match_picks_its_own_file_and_a_miss_says_what_differed(files: Path) -> None:
    scenario = write_scenario(
        files,
        {"method": "POST", "path": "/chat", "when": {"body.kind": "x"}, "play": ["x.jsonl"]},
        {
            "method": "POST",
            "path": "/chat",
            "when": {"header.x-mode": "~^fast", "query.user": "7"},
            "play": ["a.jsonl"],
            "interval": 0,
        },
    )
    with Server(scenario=scenario) as server:
        url = server.url_for("/chat")
        picked = data(httpx.post(url, json={"kind": "x"}, timeout=10))
        other = httpx.post(
            url + "?user=7", json={"kind": "y"}, headers={"X-Mode": "faster"}, timeout=10
        )
        missed = httpx.post(url + "?user=8", json={"kind": "y"}, timeout=10)
        wrong_method = httpx.get(url, timeout=10)
    assert picked == [{"file": "x"}]
    assert data(other) == [{"file": "a", "n": 1}, {"file": "a", "n": 2}]
    assert missed.status_code == 404
    assert missed.json() == {
        "error": "no scenario rule matches POST /chat",
        "scenario": str(scenario),
        "rules": [
            {"rule": 0, "route": "POST /chat", "differs": "body.kind: 'y' != 'x'"},
            {"rule": 1, "route": "POST /chat", "differs": "header.x-mode: missing"},
        ],
    }
    assert wrong_method.status_code == 404
    assert wrong_method.json()["rules"][0]["differs"] == "method: 'GET' != 'POST'"


def test_scenario_keys_count_apart_and_reset_counts_from_zero(files: Path) -> None:
    played = [str(files / name) for name in ("a.jsonl", "b.jsonl")]
    scenario = {"routes": [{"path": "/chat", "play": played, "interval": 0}]}
    with Server(scenario=scenario, control=True) as server:
        url = server.url_for("/chat")

        def first_file(**options: Any) -> str:
            return str(data(httpx.get(url, timeout=10, **options))[0]["file"])

        one = {"headers": {"Sseplay-Scenario": "test-1"}}
        two = {"headers": {"Sseplay-Scenario": "test-2"}}
        assert [first_file(**one), first_file(**one)] == ["a", "b"]
        assert first_file(**two) == "a"  # test-2 has its own count
        assert first_file(params={"scenario": "test-3"}) == "a"
        assert first_file(params={"scenario": "test-3"}) == "b"
        assert first_file() == "a"  # no key: the keyless count
        assert first_file(**one) == "b"  # repeat-last
        reset = httpx.post(server.base_url + "/_sseplay/reset", timeout=10)
        assert reset.status_code == 200
        assert first_file(**one) == "a"
        assert first_file(params={"scenario": "test-3"}) == "a"


@pytest.mark.parametrize("then", ["404", "503"])
def test_then_answers_a_status_once_every_file_is_played(files: Path, then: str) -> None:
    scenario = write_scenario(files, {"path": "/chat", "play": ["b.jsonl"], "then": then})
    with Server(scenario=scenario) as server:
        url = server.url_for("/chat")
        first = httpx.get(url, timeout=10)
        after = [httpx.get(url, timeout=10) for _ in range(2)]
    assert data(first) == [{"file": "b"}]
    assert [response.status_code for response in after] == [int(then)] * 2
    assert after[0].json()["error"].endswith(f"has played its 1 files; then: {then}")


def test_the_sample_toml_file_serves_as_the_json_one_does() -> None:
    for name in ("scenario.toml", "scenario.json"):
        with Server(scenario=SAMPLES / name) as server:
            url = server.url_for("/chat")
            weather = httpx.post(
                url, json={"kind": "weather"}, headers={"X-Mode": "fast"}, timeout=10
            )
            first, second, third = (httpx.post(url, json={}, timeout=10) for _ in range(3))
        assert data(weather) == [{"event": "forecast", "city": "Lyon", "sky": "sunny"}], name
        assert [event["text"] for event in data(first)] == ["first answer", "first answer, done"]
        assert [event["text"] for event in data(second)] == ["second answer"]
        assert third.status_code == 503, name


def test_a_rule_with_shape_serves_turns_as_the_provider_streams_them() -> None:
    with Server(scenario=SAMPLES / "scenario.json") as server:
        url = server.url_for("/v1/chat/completions")
        body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "Hello"}]}
        first, second, third = (httpx.post(url, json=body, timeout=10) for _ in range(3))
        missed = httpx.post(url, json={**body, "messages": [{"role": "user", "content": "Hi"}]})

    def text(response: httpx.Response) -> str:
        assert response.text.endswith("data: [DONE]\n\n"), response.text
        chunks = [c for c in data_chunks(response) if c["choices"]]
        return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)

    # The last file, repeated, plays its turns in order, then its last one again.
    assert [text(first), text(second), text(third)] == [
        "Hello! How can I help?",
        "Hello again.",
        "Hello again.",
    ]
    assert missed.status_code == 404
    assert missed.json()["rules"][0]["differs"].startswith("body.messages.-1.content: 'Hi'")


def data_chunks(response: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in response.text.splitlines() if line[6:7] == "{"]


def test_a_rule_s_faults_act_on_the_stream_it_plays(files: Path) -> None:
    scenario = write_scenario(
        files,
        {"path": "/cut", "play": ["a.jsonl"], "faults": ["status:code=429,conn=1"]},
        {"path": "/whole", "play": ["a.jsonl"]},
    )
    with Server(scenario=scenario) as server:
        refused = httpx.get(server.url_for("/cut"), timeout=10)
        then = httpx.get(server.url_for("/cut"), timeout=10)
        whole = httpx.get(server.url_for("/whole"), timeout=10)
    assert refused.status_code == 429
    assert len(data(then)) == 2  # conn=1 only
    assert len(data(whole)) == 2  # the other rule has no faults


def test_a_body_beyond_the_limit_is_413_not_held(files: Path) -> None:
    scenario = write_scenario(files, {"path": "/chat", "play": ["b.jsonl"]})
    with Server(scenario=scenario) as server:
        response = httpx.post(server.url_for("/chat"), content=b"x" * (MAX_BODY + 1), timeout=30)
        after = httpx.post(server.url_for("/chat"), content=b"{}", timeout=10)
    assert response.status_code == 413
    assert data(after) == [{"file": "b"}]  # the big one was not counted


def test_a_scenario_beside_streams_and_its_server_rules(files: Path) -> None:
    stream = Stream.from_records([{"n": 1}], interval=0)
    scenario = {"routes": [{"path": "/chat", "play": [str(files / "b.jsonl")], "interval": 0}]}
    with Server({"/events": stream}, scenario=scenario) as server:
        assert server.urls[-1] == server.base_url
        assert data(httpx.get(server.url_for("/events"), timeout=10)) == [{"n": 1}]
        assert data(httpx.get(server.url_for("/chat"), timeout=10)) == [{"file": "b"}]
        health = httpx.get(server.base_url + "/healthz", timeout=10).json()
        unknown = httpx.get(server.base_url + "/nope", timeout=10).json()
    assert health["scenario"]["rules"][0]["play"] == ["b.jsonl"]
    assert "/chat" in unknown["routes"]
    taken = {"routes": [{"path": "/events", "play": [str(files / "b.jsonl")]}]}
    with pytest.raises(UsageError, match=r"routes\[0\] \(\* /events\): path: /events is served"):
        Server({"/events": stream}, scenario=taken)
    with pytest.raises(UsageError, match="drop --broadcast and --workers"):
        Server(scenario=scenario, broadcast=True)


def test_the_sse_server_fixture_takes_a_scenario(
    files: Path, sse_server: Callable[..., Server]
) -> None:
    rule = {"path": "/chat", "play": [str(files / "x.jsonl")], "interval": 0}
    server = sse_server(scenario={"routes": [rule]})
    assert data(httpx.get(server.url + "/chat", timeout=10)) == [{"file": "x"}]


def test_a_recording_of_an_exchange_is_played_as_it_was_recorded(files: Path) -> None:
    blocks = [(0.002, 'data: {"rec": 1}\n\n'), (0.003, 'data: {"rec": 2}\n\n')]
    write_recording(files / "rec.jsonl", method="POST", target="/upstream", blocks=blocks)
    write_recording(
        files / "limited.jsonl", status=429, headers=JSON, pieces=[(0.002, '{"error": "slow"}')]
    )
    scenario = write_scenario(
        files,
        {"path": "/chat", "play": ["limited.jsonl", "rec.jsonl", "b.jsonl"], "speed": 10},
    )
    with Server(scenario=scenario) as server:
        url = server.url_for("/chat")
        limited, recorded, replayed = (httpx.post(url, json={}, timeout=10) for _ in range(3))
    assert limited.status_code == 429
    assert limited.json() == {"error": "slow"}
    assert data(recorded) == [{"rec": 1}, {"rec": 2}]  # whatever path it was recorded at
    assert data(replayed) == [{"file": "b"}]
    bad = write_scenario(files, {"path": "/chat", "play": ["rec.jsonl"], "data_field": "x"})
    with pytest.raises(UsageError, match=r"play\[0\]: .*rec.jsonl is a recording .*drop data"):
        Server(scenario=bad)
