"""The referee (issue 26) against real clients: ``sseplay tail`` and Chromium's EventSource
keep the rules of ``--scenario-preset`` through drops, cuts and a 204; a client that forgets
Last-Event-ID, or ignores retry:, makes ``sseplay serve`` exit 9 naming what it did."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from sseplay.server import Server
from sseplay.stream import Stream
from tests.conftest import ROOT, ServeProcess, run_cli, sseplay, write_lines
from tests.e2e import test_browser
from tests.e2e.test_browser import PageServer, tutorial_page, wait_for_events
from tests.support import wait_until

# The browser tests' fixtures: one Chromium per module, a fresh page per test.
browser = test_browser.browser
page = test_browser.page
page_server = test_browser.page_server

RECORDS = [{"n": n} for n in range(1, 11)]
# Short, so that every reconnect is quick; the rules scale with it.
RETRY_MS = 100


def verdict_of(url: str) -> dict[str, Any]:
    base = url.removesuffix("/events")
    answer: dict[str, Any] = httpx.get(f"{base}/_sseplay/verdict", timeout=10).json()
    return answer


def journal_of(url: str) -> list[dict[str, Any]]:
    base = url.removesuffix("/events")
    text = httpx.get(f"{base}/_sseplay/journal", timeout=10).text
    return [json.loads(line) for line in text.splitlines()]


def after_the_204(url: str) -> None:
    """Wait for the 204, then for twice the retry time, in which a good client stays away."""
    wait_until(lambda: any(e["ended"] == "204" for e in journal_of(url)), timeout=15)
    time.sleep(2 * RETRY_MS / 1000 + 0.05)


@pytest.mark.parametrize("preset", ["sse-retry", "resume-before-id", "stop-on-204"])
def test_tail_keeps_the_rules_of_every_preset(tmp_path: Path, preset: str) -> None:
    path = write_lines(tmp_path / "ten.jsonl", RECORDS)
    with ServeProcess(
        str(path),
        "--interval",
        "0",
        "--scenario-preset",
        f"{preset}:retry={RETRY_MS}",
        "--expect-client",
        "stops-on-204",
    ) as served:
        tail = subprocess.run(
            sseplay("tail", served.url, "--quiet"),
            capture_output=True,
            text=True,
            timeout=30,
            cwd=ROOT,
        )
        assert tail.returncode == 0, tail.stderr
        got = [json.loads(line) for line in tail.stdout.splitlines()]  # piped: JSON Lines
        assert [json.loads(event["data"]) for event in got] == RECORDS
        after_the_204(served.url)
        verdict = verdict_of(served.url)
        journal = journal_of(served.url)
        code, _, err = served.stop()
    assert verdict["broken"] == [], err
    assert verdict["ok"]
    assert verdict["rules"] == ["resumes", "honours-retry", "stops-on-204"]
    assert code == 0, err
    assert len(journal) >= 3  # at least a fault, a resumed stream and the 204
    assert journal[-1]["ended"] == "204"
    if preset == "resume-before-id":  # cut mid-event 3: it resumes after 2
        assert [e["last_event_id"] for e in journal[1:3]] == [None, "2"]


@pytest.mark.browser
@pytest.mark.parametrize("preset", ["resume-before-id", "stop-on-204"])
def test_event_source_keeps_the_rules_of_the_other_presets(
    page: Any, page_server: Callable[[str], PageServer], tmp_path: Path, preset: str
) -> None:
    path = write_lines(tmp_path / "ten.jsonl", RECORDS)
    with ServeProcess(
        str(path), "--interval", "0", "--scenario-preset", f"{preset}:retry={RETRY_MS}"
    ) as served:
        site = page_server(tutorial_page(served.url))
        page.goto(site.url)
        events = wait_for_events(page, len(RECORDS))
        page.wait_for_function("window.source.readyState === 2", timeout=10000)
        after_the_204(served.url)
        verdict = verdict_of(served.url)
        journal = journal_of(served.url)
        code, _, err = served.stop()
    assert [json.loads(e["data"]) for e in events] == RECORDS  # each once
    assert verdict["broken"] == [], err
    assert code == 0
    if preset == "resume-before-id":  # cut mid-event 3: it resumes after 2
        assert [e["last_event_id"] for e in journal[1:3]] == [None, "2"]


@pytest.mark.browser
def test_event_source_keeps_resumes_honours_retry_and_stops_on_204(
    page: Any, page_server: Callable[[str], PageServer], tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "ten.jsonl", RECORDS)
    with ServeProcess(
        str(path),
        "--interval",
        "0",
        "--scenario-preset",
        f"sse-retry:retry={RETRY_MS}",
        "--expect-client",
        "stops-on-204",
    ) as served:
        site = page_server(tutorial_page(served.url))
        page.goto(site.url)
        events = wait_for_events(page, len(RECORDS))
        page.wait_for_function("window.source.readyState === 2", timeout=10000)
        after_the_204(served.url)
        verdict = verdict_of(served.url)
        journal = journal_of(served.url)
        code, _, err = served.stop()
    assert [json.loads(e["data"]) for e in events] == RECORDS
    assert verdict == {
        "ok": True,
        "rules": ["resumes", "honours-retry", "stops-on-204"],
        "broken": [],
    }, err
    assert code == 0
    # Dropped after every 3 events: 4 streams, then the 204.
    assert [e["last_event_id"] for e in journal] == [None, "3", "6", "9", "10"]
    assert [e["ended"] for e in journal] == ["fault:drop"] * 3 + ["end", "204"]
    assert all(e["gap_ms"] >= RETRY_MS - 10 for e in journal[1:])


def reconnect_without_last_event_id(url: str, times: int, wait: float) -> None:
    """A client with the bug: it reconnects, but never says where it was."""
    for _ in range(times):
        with httpx.stream("GET", url, timeout=10) as response:
            for _line in response.iter_lines():
                pass
        time.sleep(wait)  # its own reconnection delay


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_client_that_forgets_last_event_id_makes_serve_exit_9(
    tmp_path: Path, stop: signal.Signals
) -> None:
    path = write_lines(tmp_path / "ten.jsonl", RECORDS)
    with ServeProcess(
        str(path), "--interval", "0", "--scenario-preset", f"sse-retry:retry={RETRY_MS}"
    ) as served:
        reconnect_without_last_event_id(served.url, 2, RETRY_MS / 1000 + 0.02)
        wait_until(lambda: len(journal_of(served.url)) == 2 and journal_of(served.url)[1]["ended"])
        code, _, err = served.stop(stop)
    assert code == 9, err
    assert "client 127.0.0.1, connection 2: sent no Last-Event-ID, expected '3'" in err
    lines = err.splitlines()
    assert lines[-1] == (
        "sseplay: error: 1 time(s) a client broke --expect-client resumes (each one is said above)"
    )


def test_serve_once_stops_and_exits_9_for_a_wrong_last_event_id(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "ten.jsonl", RECORDS)
    with ServeProcess(
        str(path),
        "--interval",
        "0",
        "--once",
        "--fault",
        "drop:after=3,retry=100,conn=1",
        "--expect-client",
        "resumes",
    ) as served:
        for last_event_id in (None, "2", "10"):
            headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
            httpx.get(served.url, headers=headers, timeout=10)
        served.process.wait(timeout=15)  # --once: the 204 stops it
        code, _, err = served.stop()
    assert code == 9, err
    assert "client 127.0.0.1, connection 2: sent Last-Event-ID '2', expected '3'" in err


def test_a_reconnect_50_ms_after_retry_300_fails_honours_retry() -> None:
    stream = Stream.from_records(RECORDS, interval=0)
    with Server(stream, scenario_preset="sse-retry:retry=300") as server:
        for last_event_id in (None, "3"):
            headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
            httpx.get(server.url, headers=headers, timeout=10)
            time.sleep(0.05)
        wait_until(lambda: len(server.journal()) == 2 and server.journal()[1]["ended"])
    verdict = server.verdict()
    assert not verdict["ok"]
    [broken] = verdict["broken"]
    assert broken["rule"] == "honours-retry"
    assert broken["connection"] == 2
    # About 50 ms (more on a busy machine; never a tight bound).
    waited = re.fullmatch(
        r"reconnected (\d+) ms after connection 1 ended, expected at least 300 ms \(retry: 300\)",
        broken["message"],
    )
    assert waited is not None, broken["message"]
    assert 50 <= int(waited.group(1)) < 290


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (
            ["--expect-client", "resumes,resume"],
            "sseplay: error: --expect-client 'resume': no such rule; the rules are resumes, "
            "honours-retry, stops-on-204, backoff, max-reconnects=N, method=METHOD, "
            "header=NAME:VALUE",
        ),
        (
            ["--scenario-preset", "sse-retry:retry=fast"],
            "sseplay: error: --scenario-preset 'sse-retry:retry=fast': no such preset; the "
            "presets are sse-retry, resume-before-id, stop-on-204 (each may end in :retry=MS)",
        ),
    ],
)
def test_a_bad_rule_or_preset_is_one_line_and_exit_2(
    tmp_path: Path, flags: list[str], said: str
) -> None:
    path = write_lines(tmp_path / "ten.jsonl", RECORDS)
    result = run_cli("serve", str(path), "--port", "0", *flags)
    assert result.returncode == 2
    assert result.stderr == said + "\n"


FIXTURE_TEST = """
import httpx

def test_client(sse_server):
    server = sse_server([{"n": 1}, {"n": 2}], interval=0, expect_client=["method=POST"])
    httpx.get(server.url, timeout=10)
"""


def test_the_fixture_fails_a_test_whose_client_broke_a_rule(tmp_path: Path) -> None:
    (tmp_path / "test_client.py").write_text(FIXTURE_TEST)
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_client.py"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": path},
    )
    assert result.returncode == 1, result.stdout
    assert "1 passed, 1 error" in result.stdout
    assert "the client broke --expect-client:" in result.stdout
    assert "client 127.0.0.1, connection 1: sent GET, expected POST" in result.stdout
