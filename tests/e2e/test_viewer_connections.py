"""The viewer's Connections panel (issue 26) against the real control API and journal, in
Debian's Chromium: a client's requests show as they happen, the panel ends one, the
verdict shows, and the journal's feed is followed through drops and a server's stop.
Every test writes a screenshot under its tmp_path; the page's requests stay on 127.0.0.1
and it raises no script error (``test_viewer.page``)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sseplay.config import ServerConfig
from sseplay.http.app import create_app
from sseplay.http.hub import AppOptions
from sseplay.schedule import Timing
from tests.conftest import LiveServer, ServeProcess, make_stream, sseplay, write_lines
from tests.e2e import test_browser, test_viewer
from tests.support import wait_until

# The browser tests' fixtures: one Chromium per module, a fresh checked page per test.
browser = test_browser.browser
page = test_viewer.page

pytestmark = pytest.mark.browser

TEN = [{"n": n} for n in range(1, 11)]
SECRET = "Bearer s3cret-t0ken"
# The journal's columns (viewer.html), by name.
COLUMNS = ("seq", "time", "client", "request", "lei", "status", "events", "last", "ended", "gap")


def journal_rows(page: Any) -> list[dict[str, str]]:
    """The panel's journal, newest first, each row by column name."""
    rows = page.locator("#journal tr").evaluate_all(
        "(rows) => rows.map((r) => [...r.cells].map((c) => c.textContent))"
    )
    return [dict(zip(COLUMNS, row, strict=True)) for row in rows]


def wait_row(page: Any, client: str, ended: str, timeout: float = 10) -> dict[str, str]:
    """The newest journal row of ``client`` once it reads ``ended``."""
    script = """([client, ended]) => [...document.querySelectorAll('#journal tr')].some(
        (r) => r.cells[2].textContent === client && r.cells[8].textContent.startsWith(ended))"""
    page.wait_for_function(script, arg=[client, ended], timeout=timeout * 1000)
    return next(row for row in journal_rows(page) if row["client"] == client)


def wait_text(page: Any, selector: str, text: str, timeout: float = 10) -> str:
    page.wait_for_function(
        "([s, t]) => document.querySelector(s).textContent.includes(t)",
        arg=[selector, text],
        timeout=timeout * 1000,
    )
    content: str = page.locator(selector).text_content()
    return content


def read_events(lines: Iterator[str], count: int) -> list[str]:
    """The ids of the next ``count`` events of a response's ``iter_lines()`` (all of them
    when it ends first). The same iterator is read on: breaking out of one closes the
    connection."""
    ids: list[str] = []
    for line in lines:
        if line.startswith("id: "):
            ids.append(line[4:])
            if len(ids) == count:
                break
    return ids


def served(tmp_path: Path, *args: str) -> ServeProcess:
    path = write_lines(tmp_path / "ten.jsonl", TEN)
    return ServeProcess(str(path), "--control", "--interval", "0.05", "--retry", "100", *args)


def test_a_client_s_request_shows_while_open_then_its_ending(page: Any, tmp_path: Path) -> None:
    with served(tmp_path) as server:
        page.goto(server.url.removesuffix("/events") + "/")
        wait_text(page, "#journal-state", "journal: live")
        page.evaluate("window.sameLoad = true")
        headers = {"Sseplay-Client": "test-1", "Authorization": SECRET, "Last-Event-ID": "2"}
        with httpx.stream("GET", server.url, headers=headers, timeout=10) as response:
            lines = response.iter_lines()
            assert read_events(lines, 2) == ["3", "4"]
            row = wait_row(page, "test-1", "open")
            page.wait_for_function(
                "[...document.querySelectorAll('#connections-live tr')]"
                ".some((r) => r.cells[2].textContent.startsWith('test-1'))"
            )
            page.screenshot(path=str(tmp_path / "connections-open.png"))
        ended = wait_row(page, "test-1", "client left")
        page.screenshot(path=str(tmp_path / "connections-left.png"))
        shown = page.content()
        same_load = page.evaluate("window.sameLoad")
    assert (row["request"], row["lei"], row["status"]) == ("GET /events", "2", "200")
    assert (ended["lei"], ended["status"], ended["ended"]) == ("2", "200", "client left")
    assert int(ended["events"]) >= 2
    assert "s3cret" not in shown
    assert same_load is True  # never reloaded


def test_the_end_button_ends_the_client_s_connection(page: Any, tmp_path: Path) -> None:
    with served(tmp_path) as server:
        page.goto(server.url.removesuffix("/events") + "/")
        wait_text(page, "#journal-state", "journal: live")
        headers = {"Sseplay-Client": "test-1"}
        with httpx.stream("GET", server.url, headers=headers, timeout=10) as response:
            lines = response.iter_lines()
            assert read_events(lines, 1) == ["1"]
            mine = page.locator("#connections-live tr", has_text="test-1")
            mine.locator("button").click()
            rest = read_events(lines, 100)  # the stream ends
        ended = wait_row(page, "test-1", "end")
        page.screenshot(path=str(tmp_path / "connections-ended.png"))
    assert len(rest) < 9
    assert ended["ended"] == "end (ended from this page)"


def test_a_client_that_forgets_last_event_id_is_judged_broken(page: Any, tmp_path: Path) -> None:
    with served(tmp_path, "--scenario-preset", "sse-retry:retry=100") as server:
        page.goto(server.url.removesuffix("/events") + "/")
        wait_text(page, "#verdict", "verdict: ok")
        headers = {"Sseplay-Client": "test-1"}
        for _ in range(2):  # dropped after 3 events; back without Last-Event-ID
            with httpx.stream("GET", server.url, headers=headers, timeout=10) as response:
                assert read_events(response.iter_lines(), 100) == ["1", "2", "3"]
            wait_row(page, "test-1", "fault:drop")
            time.sleep(0.15)  # it waits the retry: time, as it should
        verdict = wait_text(page, "#verdict", "broken")
        page.screenshot(path=str(tmp_path / "verdict-broken.png"))
        second = wait_row(page, "test-1", "fault:drop")
        connection = page.locator("#journal tr", has_text="test-1").first.get_attribute("title")
    assert second["lei"] == ""
    assert connection is not None
    number = connection.split(",")[0].removeprefix("connection ")
    assert verdict.splitlines() == [
        "verdict: 1 broken (resumes, honours-retry)",
        f"resumes: client test-1, connection {number}: sent no Last-Event-ID, expected '3'",
    ]


def test_sseplay_tail_is_judged_ok(page: Any, tmp_path: Path) -> None:
    with served(tmp_path, "--scenario-preset", "sse-retry:retry=100") as server:
        page.goto(server.url.removesuffix("/events") + "/")
        wait_text(page, "#verdict", "verdict: ok")
        tail = subprocess.run(
            sseplay("tail", server.url, "--count", "10", "--quiet"),
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert tail.returncode == 0, tail.stderr
        wait_until(lambda: len(journal_rows(page)) >= 4 + 4, timeout=10)
        page.screenshot(path=str(tmp_path / "verdict-ok.png"))
        verdict = page.locator("#verdict").text_content()
        rows = journal_rows(page)
    assert verdict == "verdict: ok (resumes, honours-retry)"
    tails = [row for row in rows if row["client"] == "127.0.0.1"]
    assert [row["lei"] for row in reversed(tails)] == ["", "3", "6", "9"]


def big_request(url: str, client: str) -> None:
    """A request of about 1 KiB in the journal, that leaves after its first event."""
    headers = {"Sseplay-Client": client, "X-Padding": "x" * 700}
    with httpx.stream("GET", url, headers=headers, timeout=10) as response:
        read_events(response.iter_lines(), 1)


def dropped_of(note: str) -> int:
    return int(note.removesuffix(" so far").rsplit(" ", 1)[-1])


def test_entries_from_before_the_page_and_dropped_ones_are_shown(page: Any, tmp_path: Path) -> None:
    path = write_lines(tmp_path / "ten.jsonl", TEN)
    stream = make_stream(path, timing=Timing(interval=0.02), retry=100)
    config = ServerConfig(ping=0, control=True, journal_bytes=4096)
    with LiveServer(create_app([stream], AppOptions(config))) as server:
        for n in range(6):  # before the page: the journal keeps about four
            big_request(server.url + "/events", f"early-{n}")
        page.goto(server.url + "/")
        before = wait_row(page, "early-5", "client left")
        note = wait_text(page, "#journal-note", "dropped")
        big_request(server.url + "/events", "late")  # with the page open
        wait_row(page, "late", "client left")
        page.wait_for_function(
            "(n) => document.querySelector('#journal-note').textContent !== n", arg=note
        )
        page.screenshot(path=str(tmp_path / "journal-dropped.png"))
        later = page.locator("#journal-note").text_content()
        shown = [row["client"] for row in journal_rows(page)]
    assert before["request"] == "GET /events"
    assert note.startswith("the server dropped its oldest entries")
    assert dropped_of(later) > dropped_of(note) > 0
    assert "early-0" not in shown


def test_the_panel_says_when_the_feed_ends_and_follows_the_server_back(
    page: Any, tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "ten.jsonl", TEN)
    app = create_app([make_stream(path, retry=100)], AppOptions(ServerConfig(control=True)))
    with LiveServer(app) as server:
        port = server.port
        page.goto(server.url + "/")
        wait_text(page, "#journal-state", "journal: live")
    state = wait_text(page, "#journal-state", "ended")
    page.screenshot(path=str(tmp_path / "journal-ended.png"))
    stale = [row["ended"] for row in journal_rows(page)]
    again = create_app([make_stream(path, retry=100)], AppOptions(ServerConfig(control=True)))
    with LiveServer(again, port=port) as server:
        wait_text(page, "#journal-state", "journal: live", timeout=20)
        with httpx.stream(
            "GET", server.url + "/events", headers={"Sseplay-Client": "after"}
        ) as response:
            read_events(response.iter_lines(), 1)
        row = wait_row(page, "after", "client left")
        page.screenshot(path=str(tmp_path / "journal-back.png"))
    assert state.startswith("journal: the server ended the feed; trying again in")
    assert row["ended"] == "client left"
    assert "open" not in stale  # what became of them is not known
