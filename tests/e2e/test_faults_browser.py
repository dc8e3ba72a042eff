"""--fault against the client that matters most: Chromium's EventSource (WHATWG HTML 9.2)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sseplay.config import ServerConfig
from sseplay.faults.spec import parse_faults
from sseplay.http.app import create_app
from sseplay.http.hub import AppOptions
from sseplay.schedule import Timing
from tests.conftest import LiveServer, make_stream, write_json
from tests.e2e import test_browser
from tests.e2e.test_browser import PageServer, tutorial_page, wait_for_events

# The browser tests' fixtures: one Chromium per module, a fresh page per test.
browser = test_browser.browser
page = test_browser.page
page_server = test_browser.page_server

pytestmark = pytest.mark.browser

RECORDS = [{"n": n} for n in range(1, 6)]


def fault_server(tmp_path: Path, *faults: str, fault_header: bool = False) -> LiveServer:
    path = write_json(tmp_path / "five.json", RECORDS)
    # retry: 100 so that the browser's reconnection is quick (its default is 3 s).
    stream = make_stream(path, timing=Timing(interval=0.02), retry=100)
    options = AppOptions(
        ServerConfig(ping=0, faults=parse_faults(faults), fault_header=fault_header)
    )
    return LiveServer(create_app([stream], options))


def test_event_source_resumes_after_a_drop_and_gets_every_event_once(
    page: Any, page_server: Callable[[str], PageServer], tmp_path: Path
) -> None:
    with fault_server(tmp_path, "drop:after=2,conn=1") as server:
        site = page_server(tutorial_page(server.url + "/events"))
        page.goto(site.url)
        events = wait_for_events(page, 5)
        # After the last event the replay is over: the next reconnect gets 204 and stops.
        page.wait_for_function("window.source.readyState === 2", timeout=10000)
        opens = page.evaluate("window.opens")
    assert [json.loads(e["data"]) for e in events] == RECORDS
    assert [e["id"] for e in events] == ["1", "2", "3", "4", "5"]
    assert opens == 2  # the dropped connection and the resumed one


def test_event_source_stops_at_a_503(
    page: Any, page_server: Callable[[str], PageServer], tmp_path: Path
) -> None:
    with fault_server(tmp_path, "status:code=503") as server:
        site = page_server(tutorial_page(server.url + "/events"))
        page.goto(site.url)
        # A status other than 200 fails the connection for good (WHATWG 9.2.3).
        page.wait_for_function("window.source.readyState === 2", timeout=10000)
        seen = page.evaluate("[window.events.length, window.opens, window.errors]")
        connections = server.hub.fault_counters.connections["/events"]
    assert seen == [0, 0, 1]
    assert connections == 1  # it did not try again


def test_a_page_names_its_fault_in_the_url_with_fault_header(
    page: Any, page_server: Callable[[str], PageServer], tmp_path: Path
) -> None:
    with fault_server(tmp_path, fault_header=True) as server:
        # Every connection (the reconnects keep the URL) is dropped after 2 events.
        site = page_server(tutorial_page(server.url + "/events?fault=drop:after=2"))
        page.goto(site.url)
        events = wait_for_events(page, 5)
        page.wait_for_function("window.source.readyState === 2", timeout=10000)
        opens = page.evaluate("window.opens")
        stopped = page_server(tutorial_page(server.url + "/events?fault=status:code=503"))
        page.goto(stopped.url)
        page.wait_for_function("window.source.readyState === 2", timeout=10000)
        errors = page.evaluate("[window.events.length, window.errors]")
        fired = dict(server.hub.fault_counters.by_kind)
    assert [e["id"] for e in events] == ["1", "2", "3", "4", "5"]
    assert opens == 3  # events 1-2, 3-4, then 5 and the end
    assert errors == [0, 1]
    assert fired == {"drop": 2, "status": 1}
