"""``sseplay serve --scenario FILE`` (issue 26): the command serves the sample scenario,
and a bad scenario is one line naming the rule and the field, exit 2."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest

from sseplay.errors import ExitCode
from tests.conftest import ROOT, ServeProcess, run_cli


def test_serve_scenario_answers_each_request_with_the_file_its_rules_pick() -> None:
    with ServeProcess("--scenario", "samples/scenario/scenario.json") as served:
        url = served.url + "/chat"
        answers = [httpx.post(url, json={}, timeout=10) for _ in range(3)]
        keyed = httpx.post(url, json={}, headers={"Sseplay-Scenario": "other"}, timeout=10)
    assert served.urls == [served.url]  # the base URL of the scenario's paths
    assert [answer.status_code for answer in answers] == [200, 200, 503]
    assert "first answer" in answers[0].text
    assert "second answer" in answers[1].text
    assert "first answer" in keyed.text


def one_line_error(*args: str) -> str:
    result = run_cli("serve", "--port", "0", *args, timeout=20)
    assert result.returncode == ExitCode.USAGE, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("sseplay: error: "), result.stderr
    return lines[0].removeprefix("sseplay: error: ")


def rule(**fields: Any) -> dict[str, Any]:
    return {"method": "POST", "path": "/chat", "play": ["a.jsonl"], **fields}


@pytest.mark.parametrize(
    ("rules", "said"),
    [
        ([rule(), rule(plya=["a.jsonl"])], "routes[1]: unknown key 'plya': did you mean 'play'?"),
        ([rule(when={"body.kind": "~[x"})], "routes[0] (POST /chat): when.body.kind: bad regular"),
        ([rule(play=["a.jsonl", "gone.jsonl"])], "routes[0] (POST /chat): play[1]: no file"),
        ([rule(intervall=0)], "routes[0]: unknown key 'intervall': did you mean 'interval'?"),
        ([rule(then="410")], "routes[0] (POST /chat): then: '410' is not one of"),
    ],
)
def test_a_bad_scenario_file_is_one_line_and_exit_2(
    tmp_path: Path, rules: list[dict[str, Any]], said: str
) -> None:
    (tmp_path / "a.jsonl").write_text('{"n": 1}\n', encoding="utf-8")
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps({"routes": rules}), encoding="utf-8")
    line = one_line_error("--scenario", str(scenario))
    assert line.startswith(f"{scenario}: {said}"), line


def test_a_bad_toml_file_and_a_missing_one_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "scenario.toml"
    bad.write_text('[[routes]]\npath = "/chat"\nplay = "a.jsonl\n', encoding="utf-8")
    assert one_line_error("--scenario", str(bad)).startswith(f"{bad}: not TOML: ")
    missing = tmp_path / "nope.json"
    assert one_line_error("--scenario", str(missing)) == (
        f"{missing}: cannot read the scenario (No such file or directory)"
    )


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("--interval", "0"), "--interval does not apply to --scenario: set interval in its rules"),
        (("--follow",), "--follow does not apply to --scenario: drop --follow"),
        (("samples/ticks.jsonl",), "--scenario serves the files its rules play: drop samples/"),
        (("--broadcast",), "a scenario counts requests in one process"),
    ],
)
def test_flags_and_files_that_would_do_nothing_are_refused(
    args: tuple[str, ...], said: str
) -> None:
    line = one_line_error("--scenario", "samples/scenario/scenario.json", *args)
    assert line.startswith(said), line


def test_serve_without_a_file_or_a_scenario_says_what_to_give() -> None:
    assert one_line_error() == (
        "give a FILE to serve, or --scenario FILE, or --canary; see 'sseplay serve --help'"
    )


def test_the_readme_s_scenario_is_the_sample_and_its_commands_do_what_they_say() -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    section = readme.split("## Scenarios: answer by request", 1)[1].split("\n## ", 1)[0]
    shown = re.search(r"```json\n(.*?)```", section, re.S)
    assert shown is not None
    sample = ROOT / "samples" / "scenario"
    assert json.loads(shown.group(1)) == json.loads((sample / "scenario.json").read_text())
    toml = tomllib.loads((sample / "scenario.toml").read_text("utf-8"))
    assert toml == json.loads(shown.group(1))  # the TOML sample says the same
    commands = re.search(r"```bash\n(.*?)```", section, re.S)
    assert commands is not None
    serve, plain, weather = commands.group(1).strip().splitlines()
    assert serve == "sseplay serve --scenario samples/scenario/scenario.json"
    assert plain.startswith("curl -N -X POST 127.0.0.1:8000/chat -d '{}'")
    with ServeProcess(*shlex.split(serve)[2:]) as served:
        url = served.url + "/chat"
        answers = [httpx.post(url, json={}, timeout=10).status_code for _ in range(3)]
        forecast = httpx.post(url, json={"kind": "weather"}, headers={"X-Mode": "fast"}, timeout=10)
    assert answers == [200, 200, 503]
    assert "Lyon" in forecast.text
    assert "X-Mode: fast" in weather
