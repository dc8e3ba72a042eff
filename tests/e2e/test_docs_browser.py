"""The README's failure recipes for a browser, run in Chromium: a 503 stops `EventSource` for
good (WHATWG HTML 9.2.3), and the `drop` line it shows instead is followed by the stream."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import ROOT, ServeProcess
from tests.e2e import test_browser
from tests.e2e.test_browser import PageServer, tutorial_page, wait_for_events

browser = test_browser.browser
page = test_browser.page
page_server = test_browser.page_server

pytestmark = pytest.mark.browser

README = (ROOT / "README.md").read_text()
SH_LINES = [
    line for block in re.findall(r"```sh\n(.*?)```", README, re.S) for line in block.splitlines()
]
EVENTS = len((ROOT / "samples" / "llm.jsonl").read_text().splitlines())


def readme_fault_command(kind: str) -> list[str]:
    """The README's `sseplay serve ... --fault KIND...` line that speaks of EventSource."""
    (line,) = [
        line
        for line in SH_LINES
        if f"--fault {kind}" in line and "EventSource" in line.partition("#")[2]
    ]
    return shlex.split(line.partition("#")[0])[2:]


def test_event_source_gives_up_on_the_readme_s_503(
    page: Any, page_server: Callable[[str], PageServer]
) -> None:
    with ServeProcess(*readme_fault_command("status:code=503"), "--interval", "0.02") as server:
        page.goto(page_server(tutorial_page(server.url)).url)
        page.wait_for_function("window.source.readyState === 2", timeout=10000)
        seen = page.evaluate("[window.events.length, window.opens, window.errors]")
    assert seen == [0, 0, 1]


def test_event_source_gets_the_stream_after_the_readme_s_drop(
    page: Any, page_server: Callable[[str], PageServer]
) -> None:
    with ServeProcess(*readme_fault_command("drop:after=0"), "--interval", "0.02") as server:
        page.goto(page_server(tutorial_page(server.url)).url)
        events = wait_for_events(page, EVENTS)
        # After the last event the replay is over: the next reconnect gets 204 and stops.
        page.wait_for_function("window.source.readyState === 2", timeout=10000)
        opens = page.evaluate("window.opens")
    assert [event["id"] for event in events] == [str(n) for n in range(1, EVENTS + 1)]
    assert opens == 2  # the dropped connection and the one that got the stream
