"""The browser is the judge: headless Chromium (Debian's) reads sseplay through EventSource."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from sseplay.config import ServerConfig
from sseplay.eventfile import FieldMapping
from sseplay.http.app import create_app, hub_of
from sseplay.http.hub import AppOptions
from sseplay.mapping import as_text
from sseplay.schedule import Timing
from tests.conftest import IN_CI, ROOT, SAMPLES, LiveServer, make_stream, write_lines

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        message = "Debian's chromium is not installed (.ci/run installs it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    opened = context.new_page()
    yield opened
    context.close()


class PageServer:
    """A plain page on another origin (another port), the way tutorials write a client."""

    def __init__(self, html: str) -> None:
        body = html.encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def page_server() -> Iterator[Callable[[str], PageServer]]:
    servers: list[PageServer] = []

    def start(html: str) -> PageServer:
        servers.append(PageServer(html))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def tutorial_page(stream_url: str, listen_for: tuple[str, ...] = ()) -> str:
    listeners = "".join(
        f"source.addEventListener({json.dumps(t)}, (e) => window.named.push("
        f"{{type: e.type, data: e.data, id: e.lastEventId}}));"
        for t in listen_for
    )
    return f"""<!doctype html><meta charset="utf-8"><body><script>
window.events = []; window.named = []; window.errors = 0; window.opens = 0;
const source = new EventSource({json.dumps(stream_url)});
source.onmessage = (e) => window.events.push({{data: e.data, id: e.lastEventId,
    at: performance.timeOrigin + performance.now()}});
source.onopen = () => window.opens++;
source.onerror = () => window.errors++;
{listeners}
window.source = source;
</script></body>"""


def events_in(page: Any) -> list[dict[str, Any]]:
    return list(page.evaluate("window.events"))


def wait_for_events(page: Any, count: int, timeout: float = 15) -> list[dict[str, Any]]:
    page.wait_for_function(f"window.events.length >= {count}", timeout=timeout * 1000)
    return events_in(page)


def test_tutorial_event_source_on_another_origin_gets_every_score(
    page: Any, page_server: Callable[[str], PageServer]
) -> None:
    app = create_app(
        [make_stream(SAMPLES / "scores.json", retry=100)], AppOptions(ServerConfig(ping=0))
    )
    with LiveServer(app) as server:
        site = page_server(tutorial_page(server.url + "/events"))
        page.goto(site.url)
        events = wait_for_events(page, 3)
        page.wait_for_function("window.source.readyState === 2", timeout=5000)
    records = json.loads((SAMPLES / "scores.json").read_text())
    assert [e["data"] for e in events] == [as_text(r) for r in records]
    assert [e["id"] for e in events] == ["1", "2", "3"]


AWKWARD = [
    "line one\nline two\nline three",
    "carriage\rreturn",
    "windows\r\nline end",
    "separator\u2028inside\u2029both",
    "emoji 🎉 and ünïcödé — 日本語",
    "x" * 100_000,
    "<script>window.pwned = 1</script>",
    "",
    {"nested": {"list": [1, 2, {"deep": "a\nb"}], "empty": ""}},
    "\n",
    " leading space",
    "data: looks like a field",
]


def test_awkward_records_arrive_exactly(
    page: Any, page_server: Callable[[str], PageServer], tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "awkward.jsonl", AWKWARD)
    app = create_app([make_stream(path, retry=100)], AppOptions(ServerConfig(ping=0)))
    with LiveServer(app) as server:
        site = page_server(tutorial_page(server.url + "/events"))
        page.goto(site.url)
        events = wait_for_events(page, len(AWKWARD))
    # SSE has no escape for CR: CR and CRLF arrive as LF in every browser (WHATWG 9.2.6).
    expected = [as_text(r).replace("\r\n", "\n").replace("\r", "\n") for r in AWKWARD]
    assert [e["data"] for e in events] == expected
    assert [e["id"] for e in events] == [str(n) for n in range(1, len(AWKWARD) + 1)]
    assert page.evaluate("window.pwned") is None


def test_browser_reconnects_after_a_restart_with_no_duplicate_and_no_gap(
    page: Any, page_server: Callable[[str], PageServer], tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "thirty.jsonl", [f"event {n}" for n in range(30)])

    def app() -> Any:
        stream = make_stream(path, timing=Timing(interval=0.04), retry=150)
        return create_app([stream], AppOptions(ServerConfig(ping=0)))

    first = LiveServer(app())
    port = first.port
    with first:
        site = page_server(tutorial_page(first.url + "/events"))
        page.goto(site.url)
        wait_for_events(page, 8)
    stopped_at = len(events_in(page))
    assert stopped_at < 30
    time.sleep(0.3)  # the browser is now waiting to reconnect
    with LiveServer(app(), port=port):
        events = wait_for_events(page, 30)
        page.wait_for_function("window.source.readyState === 2", timeout=5000)
    assert [e["data"] for e in events] == [f"event {n}" for n in range(30)]
    assert page.evaluate("window.opens") == 2


def test_after_the_last_event_the_browser_stops_for_good(
    page: Any, page_server: Callable[[str], PageServer], tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "three.jsonl", ["a", "b", "c"])
    requests: list[str] = []
    app = create_app([make_stream(path, retry=50)], AppOptions(ServerConfig(ping=0)))

    async def counting(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/events":
            requests.append(dict(scope["headers"]).get(b"last-event-id", b"").decode())
        await app(scope, receive, send)

    with LiveServer(counting, hub=hub_of(app)) as server:
        site = page_server(tutorial_page(server.url + "/events"))
        page.goto(site.url)
        wait_for_events(page, 3)
        page.wait_for_function("window.source.readyState === 2", timeout=5000)
        time.sleep(0.5)  # ten times the retry time: no second replay may come
        events = events_in(page)
    assert [e["data"] for e in events] == ["a", "b", "c"]
    assert requests == ["", "3"]  # the replay, then one reconnect that got 204


def test_named_types_reach_their_listeners_not_onmessage(
    page: Any, page_server: Callable[[str], PageServer]
) -> None:
    mapping = FieldMapping(data_field="payload", event_field="type", id_field="id")
    stream = make_stream(SAMPLES / "notifications.json", mapping=mapping, retry=100)
    with LiveServer(create_app([stream], AppOptions(ServerConfig(ping=0)))) as server:
        site = page_server(tutorial_page(server.url + "/events", ("presence", "notification")))
        page.goto(site.url)
        page.wait_for_function("window.source.readyState === 2", timeout=10000)
        events = events_in(page)
        named = page.evaluate("window.named")
    assert [e["id"] for e in events] == ["n-102"]
    assert [(e["type"], e["id"]) for e in named] == [
        ("notification", "n-101"),
        ("presence", "n-103"),
        ("notification", "n-104"),
        ("presence", "n-105"),
    ]


def test_broadcast_two_pages_see_the_same_events_at_the_same_moments(
    browser: Any, page_server: Callable[[str], PageServer], tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "live.jsonl", [f"tick {n}" for n in range(200)])
    stream = make_stream(path, timing=Timing(interval=0.05), retry=100)
    with LiveServer(
        create_app([stream], AppOptions(ServerConfig(ping=0, broadcast=True)))
    ) as server:
        site = page_server(tutorial_page(server.url + "/events"))
        # Separate contexts, so that one page's loading does not hold up the other's events.
        contexts = [browser.new_context(), browser.new_context()]
        pages = [context.new_page() for context in contexts]
        for opened in pages:
            opened.goto(site.url)
        for opened in pages:
            wait_for_events(opened, 4)
        settled = max(int(events_in(opened)[-1]["id"]) for opened in pages)
        for opened in pages:
            wait_for_events(opened, len(events_in(opened)) + 10)
        seen = [{e["id"]: e for e in events_in(opened)} for opened in pages]
        for context in contexts:
            context.close()
    # Compare the events both pages received once both were up and running.
    common = sorted((set(seen[0]) & set(seen[1])) - {str(n) for n in range(settled + 1)}, key=int)
    assert len(common) >= 8
    gaps = sorted(abs(seen[0][i]["at"] - seen[1][i]["at"]) for i in common)
    for ident in common:
        assert seen[0][ident]["data"] == seen[1][ident]["data"]
    # Milliseconds: the same moment, give or take the scheduler (a timeline per page would
    # put them as far apart as the pages were opened). The median, not the largest: a busy
    # machine may stall one page for a moment, and the test must not fail for that.
    assert gaps[len(gaps) // 2] < 20


def test_viewer_lists_streams_shows_pauses_filters_and_never_runs_data(
    page: Any, tmp_path: Path
) -> None:
    hostile = [
        {"kind": "alert", "html": '<img src=x onerror="window.pwned=1">'},
        {"kind": "info", "html": "<b>bold?</b>"},
    ] * 30
    path = write_lines(tmp_path / "hostile.jsonl", hostile)
    streams = [
        make_stream(
            path,
            "/hostile",
            mapping=FieldMapping(data_field="html", event_field="kind"),
            timing=Timing(interval=0.05),
        ),
        make_stream(SAMPLES / "scores.json", "/scores"),
    ]
    with LiveServer(create_app(streams, AppOptions(ServerConfig(ping=0)))) as server:
        page.goto(server.url + "/")
        options = page.locator("#streams option").all_text_contents()
        assert options == ["/hostile (hostile.jsonl, 60 events)", "/scores (scores.json, 3 events)"]
        page.wait_for_function("document.querySelectorAll('.event').length >= 4")
        assert page.locator("#state").text_content() == "open"
        first = page.locator(".event .data").last.text_content()
        assert first == '<img src=x onerror="window.pwned=1">'
        assert page.locator(".event img").count() == 0

        page.click("#pause")
        shown = page.locator(".event").count()
        page.wait_for_function(
            f"parseInt(document.querySelector('#count').textContent) >= {shown + 3}"
        )
        assert page.locator(".event").count() == shown  # paused: counted, not shown
        page.click("#pause")
        assert page.locator(".event").count() > shown

        page.fill("#filter", "info")
        visible = page.locator(".event:not([hidden]) .type").all_text_contents()
        assert visible
        assert set(visible) == {"info"}
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "viewer.png"))
        page.fill("#filter", "")
        page.select_option("#streams", "/scores")
        page.wait_for_function("document.querySelectorAll('.event').length === 3")
        page.wait_for_function("document.querySelector('#state').textContent !== 'open'")
        page.screenshot(path=str(ARTIFACTS / "viewer-scores.png"))
        assert page.evaluate("window.pwned") is None


def _viewer_rows(page: Any) -> list[dict[str, str]]:
    """The viewer's rows, oldest first: time, type, id and data as shown."""
    rows = page.evaluate(
        """[...document.querySelectorAll('.event')].map((row) => ({
            time: row.querySelector('.time').textContent,
            type: row.querySelector('.type').textContent,
            id: row.querySelector('.id').textContent,
            data: row.querySelector('.data').textContent}))"""
    )
    return list(reversed(rows))


def test_viewer_shows_every_event_type_even_open_and_error(page: Any, tmp_path: Path) -> None:
    """250 types, more than /healthz lists (200); types named like the connection's own
    notices are events like any other and leave the connection state alone."""
    records = [{"kind": f"type-{n}", "n": n} for n in range(250)]
    records += [{"kind": "open", "n": 250}, {"kind": "error", "n": 251}]
    records += [{"kind": "message", "n": 252}]
    path = write_lines(tmp_path / "types.jsonl", records)
    mapping = FieldMapping(data_field="n", event_field="kind")
    stream = make_stream(path, mapping=mapping, timing=Timing(interval=0.001), retry=60_000)
    with LiveServer(create_app([stream], AppOptions(ServerConfig(ping=0)))) as server:
        page.goto(server.url + "/")
        page.wait_for_function("document.querySelectorAll('.event').length >= 253", timeout=15000)
        rows = _viewer_rows(page)
        # Served to its end (all 253 of the file's events), the stream reads as finished
        # while it waits for the 204: an "error" event did not make it fail.
        assert page.locator("#state").text_content() in ("open", "finished")
    assert [row["data"] for row in rows] == [str(n) for n in range(253)]
    assert [row["type"] for row in rows[-3:]] == ["open", "error", "message"]
    assert rows[0]["type"] == "type-0"


def test_viewer_shows_local_times_labelled_and_big_integers_exactly(
    browser: Any, tmp_path: Path
) -> None:
    context = browser.new_context(timezone_id="Asia/Kolkata")  # UTC+05:30: never UTC
    page = context.new_page()
    not_found: list[str] = []
    page.on("response", lambda r: not_found.append(r.url) if r.status == 404 else None)
    records = [{"big": 12345678901234567890123, "small": 1.5e-7, "text": 'a "quoted" {x}'}]
    path = write_lines(tmp_path / "big.jsonl", records)
    try:
        with LiveServer(
            create_app([make_stream(path)], AppOptions(ServerConfig(ping=0)))
        ) as server:
            page.goto(server.url + "/")
            page.wait_for_function("document.querySelectorAll('.event').length === 1")
            (row,) = _viewer_rows(page)
            zone = page.locator("#zone").text_content()
            expected_hour = page.evaluate("String(new Date().getHours()).padStart(2, '0')")
            utc_hour = page.evaluate("String(new Date().getUTCHours()).padStart(2, '0')")
            favicon = page.evaluate("fetch('/favicon.ico').then((r) => r.status)")
    finally:
        context.close()
    assert '"big": 12345678901234567890123' in row["data"]
    assert '"text": "a \\"quoted\\" {x}"' in row["data"]
    assert row["data"].startswith("{\n  ")
    assert row["time"][:2] == expected_hour != utc_hour
    assert zone in ("times in Asia/Calcutta (UTC+05:30)", "times in Asia/Kolkata (UTC+05:30)")
    assert favicon == 200
    assert not_found == []


def test_viewer_resumes_with_the_last_id_as_utf8_and_stops_at_204(
    page: Any, tmp_path: Path
) -> None:
    records = [{"id": ident, "n": n} for n, ident in enumerate(["a", "é", "日本"])]
    path = write_lines(tmp_path / "ids.jsonl", records)
    stream = make_stream(path, mapping=FieldMapping(id_field="id"), retry=50)
    app = create_app([stream], AppOptions(ServerConfig(ping=0)))
    requests: list[bytes] = []

    async def counting(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/events":
            requests.append(dict(scope["headers"]).get(b"last-event-id", b""))
        await app(scope, receive, send)

    with LiveServer(counting, hub=hub_of(app)) as server:
        page.goto(server.url + "/")
        page.wait_for_function("document.querySelector('#state').textContent === 'ended'")
        rows = _viewer_rows(page)
    assert [row["id"] for row in rows] == ["id a", "id é", "id 日本"]
    assert requests == [b"", "日本".encode()]  # one reconnect, answered 204


def test_docs_screenshot_shows_an_open_stream(page: Any) -> None:
    """The README's picture: taken while the stream is open, never while it reconnects.
    It goes to tests/artifacts/viewer-docs.png (docs/viewer.png is now the picture of
    tests/e2e/test_viewer.py's test_docs_picture_an_llm_answer_read_through_a_drop)."""
    mapping = FieldMapping(data_field="payload", event_field="type", id_field="id", time_field="at")
    streams = [
        make_stream(
            SAMPLES / "notifications.json",
            "/notifications",
            mapping=mapping,
            timing=Timing(speed=4, loop=True),
        ),
        make_stream(SAMPLES / "scores.json", "/scores"),
    ]
    with LiveServer(create_app(streams, AppOptions(ServerConfig(ping=0)))) as server:
        page.set_viewport_size({"width": 1280, "height": 600})
        page.goto(server.url + "/")
        page.wait_for_function("document.querySelectorAll('.event').length >= 4")
        assert page.locator("#state").text_content() == "open"
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "viewer-docs.png"))
        assert page.locator("#state").text_content() == "open"
