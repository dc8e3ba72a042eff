"""--log-format json: every line on stderr is one JSON object, start-up errors included."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from sseplay.errors import ExitCode
from tests.conftest import ServeProcess, run_cli, write_json

FIVE = [{"n": n} for n in range(5)]


def parsed(stderr: str) -> list[dict[str, Any]]:
    """Every line of ``stderr`` as JSON (a line that is not fails the test)."""
    lines = stderr.splitlines()
    assert lines, "nothing on stderr"
    entries = []
    for line in lines:
        entry = json.loads(line)
        assert isinstance(entry, dict), line
        assert {"time", "level", "message"} <= entry.keys(), line
        assert entry["time"].endswith("Z"), line
        entries.append(entry)
    return entries


def test_a_served_stream_logs_json_lines_with_the_fields_of_each_event(tmp_path: Path) -> None:
    events = write_json(tmp_path / "five.json", FIVE)
    with ServeProcess(str(events), "--interval", "0", "--log-format", "json") as server:
        assert httpx.get(server.url, timeout=10).text.count("data:") == 5
        assert httpx.get(server.url, headers={"Last-Event-ID": "5"}).status_code == 204
        assert httpx.get(server.url.replace("/events", "/nothing")).status_code == 404
        code, _, err = server.stop()
    assert code == 0, err
    entries = parsed(err)
    left = next(e for e in entries if e["message"].startswith(f"{e.get('client')} left"))
    assert left["level"] == "info"
    assert left["logger"] == "sseplay.server"
    assert left["route"] == "/events"
    assert left["events"] == 5
    assert left["reason"] == "got the whole replay"
    connected = [e for e in entries if " connected to " in e["message"]]
    assert connected
    assert all(e["route"] == "/events" and e["client"] for e in connected)
    assert any(e.get("reason") == "over" for e in entries)


@pytest.mark.parametrize(
    ("arguments", "code", "said"),
    [
        (("serve", "no-such-file.json"), ExitCode.BAD_INPUT, "no-such-file.json: no such file"),
        (("serve", "samples/scores.json", "--bogus"), ExitCode.USAGE, "No such option: --bogus"),
        (("serve", "samples/scores.json", "--ping", "x"), ExitCode.USAGE, "'x' is not a"),
        (("publish", "no-such-file.json", "--to", "redis://127.0.0.1:1/0?stream=s"), 3, "no such"),
    ],
)
def test_a_start_up_error_is_one_json_line(
    arguments: tuple[str, ...], code: int, said: str
) -> None:
    for form in (("--log-format", "json"), ("--log-format=json",)):
        result = run_cli(*arguments, *form)
        assert result.returncode == code, result.stderr
        (entry,) = parsed(result.stderr)
        assert entry["level"] == "error"
        assert said in entry["message"]
        assert entry["exit_code"] == code


def test_a_taken_port_is_one_json_line_and_text_stays_the_default() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = run_cli("serve", "samples/scores.json", "--port", port, "--log-format", "json")
        assert result.returncode == ExitCode.CANNOT_SERVE
        (entry,) = parsed(result.stderr)
        assert port in entry["message"]
        plain = run_cli("serve", "samples/scores.json", "--port", port)
    assert plain.stderr.startswith("sseplay: error: ")
    wrong = run_cli("serve", "samples/scores.json", "--log-format", "xml")
    assert wrong.returncode == ExitCode.USAGE
    assert wrong.stderr == "sseplay: error: --log-format must be text or json, not 'xml'\n"


@pytest.mark.skipif(sys.platform == "win32", reason="workers are forked")
def test_workers_log_json_with_their_number_in_a_field(tmp_path: Path) -> None:
    events = write_json(tmp_path / "five.json", FIVE)
    args = (str(events), "--interval", "0", "--workers", "2", "--log-format", "json")
    with ServeProcess(*args) as server:
        for _ in range(4):
            assert httpx.get(server.url, timeout=10).text.count("data:") == 5
        code, _, err = server.stop()
    assert code == 0, err
    entries = parsed(err)
    served = [e for e in entries if " left /events " in e["message"]]
    assert len(served) == 4
    assert all(e["worker"] in (1, 2) and "[worker" not in e["message"] for e in served)
