"""The viewer at GET / as a debugging page (issue 27), in Debian's Chromium: the answer of
an LLM stream, the history of each connection, flags, stalls, the timeline, faults named
in the page's address. Every test takes a screenshot of the state it proves under its
tmp_path, for a person to look at; every request the page makes stays on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from sseplay.config import ServerConfig
from sseplay.faults.spec import parse_faults
from sseplay.http.app import create_app
from sseplay.http.hub import AppOptions
from sseplay.schedule import Timing
from tests.conftest import SAMPLES, LiveServer, ServeProcess, make_stream, write_lines
from tests.e2e import test_browser

# The browser tests' fixtures: one Chromium per module, a fresh context per test.
browser = test_browser.browser

pytestmark = pytest.mark.browser

TEN = [{"n": n} for n in range(1, 11)]


def joined_text(path: Path) -> str:
    """What the OpenAI chunks of ``path`` say, joined."""
    chunks = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    return "".join(
        chunk["choices"][0]["delta"].get("content") or ""
        for chunk in chunks
        if isinstance(chunk, dict) and chunk["choices"]
    )


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A page whose every request is checked to go to 127.0.0.1 (the viewer loads nothing
    from anywhere else), and whose script errors fail the test."""
    context = browser.new_context(viewport={"width": 1200, "height": 760})
    opened = context.new_page()
    elsewhere: list[str] = []
    errors: list[str] = []

    def local_only(route: Any) -> None:
        url = route.request.url
        if urlsplit(url).hostname == "127.0.0.1":
            route.continue_()
        else:
            elsewhere.append(url)
            route.abort()

    opened.route("**/*", local_only)
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    context.close()
    assert elsewhere == []
    assert errors == []


def serve(tmp_path: Path, records: list[Any], *faults: str, **config: Any) -> LiveServer:
    path = write_lines(tmp_path / "ten.jsonl", records)
    # retry: 100 so that a reconnection is quick (a browser's default is 3 s).
    stream = make_stream(path, timing=Timing(interval=0.03), retry=100)
    options = AppOptions(ServerConfig(ping=0, faults=parse_faults(faults), **config))
    return LiveServer(create_app([stream], options))


def markers(page: Any) -> list[str]:
    """The connection history, oldest first."""
    rows = page.locator(".marker .what").all_text_contents()
    return list(reversed(rows))


def event_ids(page: Any) -> list[str]:
    return list(reversed(page.locator(".event .id").all_text_contents()))


def wait_state(page: Any, state: str, timeout: float = 10) -> None:
    page.wait_for_function(
        f"document.querySelector('#state').textContent === {json.dumps(state)}",
        timeout=timeout * 1000,
    )


def test_the_answer_of_an_llm_stream_is_shown_as_text(page: Any, tmp_path: Path) -> None:
    stream = make_stream(SAMPLES / "llm.jsonl", timing=Timing(interval=0.02), retry=100)
    with LiveServer(create_app([stream], AppOptions(ServerConfig(ping=0)))) as server:
        page.goto(server.url + "/")
        wait_state(page, "ended")
        page.screenshot(path=str(tmp_path / "llm-answer.png"))
        text = page.locator("#answer-text").text_content()
        facts = page.locator(".facts").text_content()
        provider = page.locator("#answer-provider").text_content()
        shown = page.locator(".event:visible").count()
        page.click("#raw")  # the raw events, one click away
        raw = page.locator(".event:visible").count()
        page.screenshot(path=str(tmp_path / "llm-raw.png"))
    assert (
        text == joined_text(SAMPLES / "llm.jsonl") == "Server-Sent Events are just text over HTTP."
    )
    assert provider == "OpenAI Chat \u00b7 complete"
    assert "finish: stop" in facts
    assert "first token after" in facts
    assert "tokens/s" in facts
    assert (shown, raw) == (0, 11)


def test_docs_picture_an_llm_answer_read_through_a_drop(page: Any, tmp_path: Path) -> None:
    """The README's picture (docs/viewer.png is a copy of the viewer.png written here): the
    answer of samples/llm.jsonl, a drop and the resume after it, the timeline."""
    stream = make_stream(SAMPLES / "llm.jsonl", timing=Timing(interval=0.06), retry=250)
    options = AppOptions(ServerConfig(ping=0, faults=parse_faults(["drop:after=5,conn=1"])))
    with LiveServer(create_app([stream], options)) as server:
        page.set_viewport_size({"width": 1100, "height": 560})
        page.goto(server.url + "/")
        wait_state(page, "ended")
        page.screenshot(path=str(tmp_path / "viewer.png"))
        text = page.locator("#answer-text").text_content()
        history = markers(page)
    assert text == joined_text(SAMPLES / "llm.jsonl")
    assert "resumed after id 5 (Last-Event-ID)" in history


def test_a_drop_leaves_its_mark_and_the_resume_after_it(page: Any, tmp_path: Path) -> None:
    with serve(tmp_path, TEN, "drop:after=3,conn=1") as server:
        page.goto(server.url + "/")
        wait_state(page, "ended")
        page.screenshot(path=str(tmp_path / "drop.png"))
        history = markers(page)
        ids = event_ids(page)
        drawn = page.evaluate(
            """[document.querySelectorAll('#timeline line.arrival').length,
                document.querySelectorAll('#timeline line.mark.reconnect').length,
                document.querySelectorAll('#timeline rect.gap-bin').length]"""
        )
    assert ids == [f"id {n}" for n in range(1, 11)]
    assert history[0].startswith("opened: 200")
    # The server closed it cleanly, but before the file's last event: a drop, as seen.
    assert (
        history[1]
        == "dropped: the server closed the stream after 3 events, before the end (3 of 10)"
    )
    assert history[2] == "reconnecting in 100 ms, after id 3"
    assert history[3].startswith("opened: 200")
    assert history[4] == "resumed after id 3 (Last-Event-ID)"
    assert history[5] == "ended: the server closed the stream after 7 events"
    assert history[6].startswith("finished: 10 events; reconnecting in 100 ms")
    assert history[-1].startswith("answered 204")
    arrivals, reconnects, bins = drawn
    assert arrivals > 0
    assert reconnects >= 1
    assert bins > 0


def test_a_skip_says_which_ids_are_missing_and_a_duplicate_is_flagged(
    page: Any, tmp_path: Path
) -> None:
    faults = ("duplicate:at=2", "skip:at=6", "skip:at=7", "skip:at=8")
    with serve(tmp_path, TEN, *faults) as server:
        page.goto(server.url + "/")
        page.wait_for_function("document.querySelectorAll('.event').length >= 8")
        history = markers(page)
        flags = page.locator(".event .flag").all_text_contents()
    assert "ids 6-8 missing" in history
    assert history[2] == "ended: the server closed the stream after 8 events"
    assert flags == ["id 2 again"]


def test_malformed_json_and_invisible_characters_are_flagged(page: Any, tmp_path: Path) -> None:
    records = [{"n": 1}, {"n": 2}, "zero\u200bwidth", "\ufeffbom first", {"n": 5}]
    with serve(tmp_path, records, "malformed:kind=json,at=2", "malformed:kind=utf8,at=5") as server:
        page.goto(server.url + "/")
        page.wait_for_function("document.querySelectorAll('.event').length >= 5")
        page.screenshot(path=str(tmp_path / "flags.png"))
        flags = list(
            reversed(
                page.locator(".event").evaluate_all(
                    "(rows) => rows.map((row) => [...row.querySelectorAll('.flag')]"
                    ".map((f) => f.textContent))"
                )
            )
        )
        data = list(reversed(page.locator(".event .data").all_text_contents()))
        labels = page.locator(".event .invisible").evaluate_all(
            "(marks) => marks.map((m) => getComputedStyle(m, '::after').content)"
        )
    assert flags[0] == []
    assert len(flags[1]) == 1
    assert flags[1][0].startswith("invalid JSON: ")
    assert flags[2] == ["invisible: U+200B"]
    assert flags[3] == ["BOM (U+FEFF) in the data"]
    assert flags[4][-1] == "1 U+FFFD (bytes that were not UTF-8)"
    assert data[2] == "zero\u200bwidth"  # shown, not changed: the label is drawn by CSS
    assert data[3] == "\ufeffbom first"
    assert sorted(labels) == ['"\u27e8BOM\u27e9"', '"\u27e8U+FFFD\u27e9"', '"\u27e8ZWSP\u27e9"']


def test_a_finished_stream_reads_finished_while_the_204_is_a_minute_away(
    page: Any, tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "three.jsonl", TEN[:3])
    stream = make_stream(path, retry=60_000)
    with LiveServer(create_app([stream], AppOptions(ServerConfig(ping=0)))) as server:
        page.goto(server.url + "/")
        wait_state(page, "finished")
        history = markers(page)
        page.goto("about:blank")
    assert history[-1] == "finished: 3 events; reconnecting in 60000 ms only to be told 204"


def test_a_503_shows_its_status_and_body(page: Any, tmp_path: Path) -> None:
    with serve(tmp_path, TEN, "status:code=503,body=the pool is drained") as server:
        page.goto(server.url + "/")
        wait_state(page, "failed")
        page.screenshot(path=str(tmp_path / "status-503.png"))
        history = markers(page)
        empty = page.locator(".empty").count()
    assert history == ["answered 503 Service Unavailable:\nthe pool is drained"]
    assert empty == 0  # no "Pick a stream" left over


def test_a_stall_shows_the_silence_growing(page: Any, tmp_path: Path) -> None:
    with serve(tmp_path, TEN, "stall:after=4,for=0") as server:
        page.goto(server.url + "/")
        page.wait_for_function(
            "document.querySelector('.marker[data-kind=stall] .what')?.textContent"
            ".startsWith('no event for 1 s')"
        )
        assert page.locator("#state").text_content() == "stalled"
        page.wait_for_function(
            "document.querySelector('.marker[data-kind=stall] .what')"
            ".textContent.startsWith('no event for 2 s')"
        )
        page.screenshot(path=str(tmp_path / "stall.png"))
        assert event_ids(page) == [f"id {n}" for n in range(1, 5)]


def test_a_request_with_no_answer_is_a_stall_too(page: Any, tmp_path: Path) -> None:
    with serve(tmp_path, TEN, "hang:conn=1", "hang:headers=yes,conn=2") as server:
        page.goto(server.url + "/")
        page.wait_for_function(
            "document.querySelector('.marker[data-kind=stall] .what')?.textContent"
            " === 'no answer for 2 s to the request'"
        )
        assert page.locator("#state").text_content() == "stalled"
        page.goto("about:blank")  # the server waits for its client to leave
        page.goto(server.url + "/")  # connection 2: headers, then nothing
        page.wait_for_function(
            "document.querySelector('.marker[data-kind=stall] .what')?.textContent"
            " === 'no event for 2 s since the stream opened'"
        )
        page.screenshot(path=str(tmp_path / "hang.png"))
        page.goto("about:blank")


def test_the_page_s_own_fault_reaches_the_stream_with_fault_header(
    page: Any, tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "ten.jsonl", TEN)
    with ServeProcess(
        str(path), "--fault-header", "--interval", "0.02", "--retry", "100"
    ) as served:
        page.goto(served.url.rsplit("/", 1)[0] + "/?fault=drop:after=4")
        wait_state(page, "ended")
        page.screenshot(path=str(tmp_path / "page-fault.png"))
        history = markers(page)
        notice = page.locator("#notice").text_content()
        ids = event_ids(page)
    assert notice == "fault from the address: drop:after=4"
    # Every connection is dropped after 4 events: 1-4, 5-8, then 9-10 and the end.
    assert [h for h in history if h.startswith("reconnecting")] == [
        "reconnecting in 100 ms, after id 4",
        "reconnecting in 100 ms, after id 8",
    ]
    assert [h for h in history if h.startswith("opened")] == [
        "opened: 200 OK GET /events?fault=drop%3Aafter%3D4"
    ] * 3
    assert ids == [f"id {n}" for n in range(1, 11)]


def test_without_fault_header_the_page_says_its_fault_is_not_passed_on(
    page: Any, tmp_path: Path
) -> None:
    with serve(tmp_path, TEN[:2]) as server:
        page.goto(server.url + "/?fault=status:code=503&lastEventId=1")
        wait_state(page, "ended")
        notice = page.locator("#notice").text_content()
        history = markers(page)
        ids = event_ids(page)
    assert notice == "?fault= is not passed on: the server was started without --fault-header"
    assert history[:2] == [
        "opened: 200 OK GET /events?lastEventId=1",
        "resumed after id 1 (?lastEventId= of the address)",
    ]
    assert ids == ["id 2"]
