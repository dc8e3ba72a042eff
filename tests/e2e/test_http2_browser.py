"""--http2 (uvicorn's, over TLS, by ALPN) and what browsers do with it: ten EventSources to one
origin, the viewer passing --token on, and credentialed CORS. Real servers, real Chromium."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from sseplay import Stream
from sseplay.config import ServerConfig
from sseplay.server import Server
from tests.conftest import IN_CI, SAMPLES, write_lines
from tests.e2e.test_browser import CHROMIUM, CHROMIUM_ARGS, PageServer

SCORES = str(SAMPLES / "scores.json")  # three events
pytest.importorskip("zttp", reason="--http2 needs zttp: pip install 'sseplay[http2]'")
pytest.importorskip("h2", reason="httpx speaks HTTP/2 with h2")


def h2_server(stream: Stream, **config: Any) -> Server:
    return Server(stream, config=ServerConfig(self_signed=True, http2=True, **config))


def trusting(server: Server) -> ssl.SSLContext:
    assert server.ca_file is not None
    return ssl.create_default_context(cafile=server.ca_file)


def alpn_of(server: Server, offered: list[str]) -> str | None:
    port = int(server.url.split(":")[2].split("/")[0])
    context = trusting(server)
    context.set_alpn_protocols(offered)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        return tls.selected_alpn_protocol()


def test_http2_is_negotiated_by_alpn_and_http1_still_works() -> None:
    with h2_server(Stream.from_file(SCORES, interval=0)) as server:
        assert alpn_of(server, ["h2", "http/1.1"]) == "h2"
        assert alpn_of(server, ["http/1.1"]) == "http/1.1"
        with httpx.Client(http2=True, verify=trusting(server), timeout=10) as client:
            over_h2 = client.get(server.url)
        over_h1 = httpx.get(server.url, verify=trusting(server), timeout=10)
        assert over_h2.http_version == "HTTP/2"
        assert over_h1.http_version == "HTTP/1.1"
        assert over_h2.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert over_h2.text == over_h1.text
        assert over_h2.text.count("data: ") == 3
    # Without --http2 a TLS server offers no HTTP/2.
    with Server(Stream.from_file(SCORES), config=ServerConfig(self_signed=True)) as server:
        assert alpn_of(server, ["h2", "http/1.1"]) is None
        with httpx.Client(http2=True, verify=trusting(server), timeout=10) as client:
            assert client.get(server.url + "?x").http_version == "HTTP/1.1"


def test_resume_204_and_pings_behave_the_same_over_http2() -> None:
    stream = Stream.from_file(SCORES, interval=0.25)
    with (
        h2_server(stream, ping=0.1) as server,
        httpx.Client(http2=True, verify=trusting(server), timeout=10) as client,
    ):
        resumed = client.get(server.url, headers={"Last-Event-ID": "1"})
        assert resumed.http_version == "HTTP/2"
        ids = [line for line in resumed.text.splitlines() if line.startswith("id: ")]
        assert ids == ["id: 2", "id: 3"]
        assert ": ping" in resumed.text
        over = client.get(server.url, headers={"Last-Event-ID": "3"})
        assert over.status_code == 204
        assert over.http_version == "HTTP/2"


def test_broadcast_shares_one_timeline_between_streams_of_one_http2_connection() -> None:
    stream = Stream.from_file(SCORES, interval=0.1)
    with (
        h2_server(stream, broadcast=True) as server,
        httpx.Client(http2=True, verify=trusting(server), timeout=10) as client,
        client.stream("GET", server.url) as first,
        client.stream("GET", server.url) as second,
    ):
        assert first.http_version == second.http_version == "HTTP/2"
        texts = ["".join(first.iter_text()), "".join(second.iter_text())]
        # Both joined live within the first event's 0.1 s, or one caught fewer: the events
        # each got are the ends of the same timeline.
        got = [[line for line in text.splitlines() if line.startswith("id: ")] for text in texts]
        assert got[0][-1] == got[1][-1] == "id: 3"


def test_faults_behave_the_same_over_http2() -> None:
    """The ASGI path carries HTTP/2 streams: a fault there is the same as over HTTP/1.1."""
    stream = Stream.from_file(SCORES, interval=0)
    faults = ["status:code=503,retry_after=5,conn=1", "drop:after=2,retry=50,conn=2"]
    with (
        h2_server(stream, faults=faults) as server,
        httpx.Client(http2=True, verify=trusting(server), timeout=10) as client,
    ):
        first = client.get(server.url)
        assert first.http_version == "HTTP/2"
        assert (first.status_code, first.headers["retry-after"]) == (503, "5")
        dropped = client.get(server.url)
        assert dropped.http_version == "HTTP/2"
        ids = [line for line in dropped.text.splitlines() if line.startswith("id: ")]
        assert ids == ["id: 1", "id: 2"]
        assert "retry: 50" in dropped.text
        resumed = client.get(server.url, headers={"Last-Event-ID": "2"})
        assert [line for line in resumed.text.splitlines() if line.startswith("id: ")] == ["id: 3"]
        health = client.get(server.url.replace("/events", "/healthz")).json()
        assert health["faults"] == {"drop": 1, "status": 1}


def test_token_and_host_checks_hold_over_http2() -> None:
    stream = Stream.from_file(SCORES, interval=0)
    with (
        h2_server(stream, token="tok-1") as server,
        httpx.Client(http2=True, verify=trusting(server), timeout=10) as client,
    ):
        refused = client.get(server.url)
        assert refused.http_version == "HTTP/2"
        assert refused.status_code == 401
        assert client.get(server.url, params={"token": "tok-1"}).text.count("data: ") == 3
        # HTTP/2 carries the host as :authority (RFC 9113 8.3.1); httpx takes it from Host.
        rebound = client.get(server.url, params={"token": "tok-1"}, headers={"Host": "evil.test"})
        assert rebound.status_code == 421


# The browser tests.


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        message = "Debian's chromium is not installed (.ci/run installs it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            # The throwaway certificate of --self-signed is not in Chromium's store.
            args=[*CHROMIUM_ARGS, "--ignore-certificate-errors"],
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(ignore_https_errors=True)
    opened = context.new_page()
    yield opened
    context.close()


# Ten EventSources to one origin; each counts the events it received and says when it opened.
TEN_STREAMS = """(count) => {
  window.received = Array(count).fill(0);
  window.opened = Array(count).fill(false);
  window.sources = [];
  for (let i = 0; i < count; i++) {
    const source = new EventSource("/events?n=" + i);
    source.onopen = () => { window.opened[i] = true; };
    source.onmessage = () => { window.received[i] += 1; };
    window.sources.push(source);
  }
}"""


def _wait(page: Any, expression: str, seconds: float) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = page.evaluate(expression)
        if value:
            return value
        time.sleep(0.05)
    return page.evaluate(expression)


@pytest.mark.browser
def test_over_http1_the_seventh_eventsource_cannot_open(page: Any, tmp_path: Path) -> None:
    # Streams that stay open: Chromium holds six connections per origin over HTTP/1.1.
    events = write_lines(tmp_path / "many.jsonl", [{"n": n} for n in range(100)])
    stream = Stream.from_file(events, interval=0.05, loop=True)
    with Server(stream, config=ServerConfig(self_signed=True)) as server:
        page.goto(server.url.rsplit("/", 1)[0] + "/healthz")
        page.evaluate(TEN_STREAMS, 10)
        assert _wait(page, "window.opened.filter(Boolean).length >= 6", 10)
        time.sleep(1.0)  # long enough for a seventh to open, were it able to
        opened = page.evaluate("window.opened")
        received = page.evaluate("window.received")
        page.evaluate("window.sources.forEach((s) => s.close())")
        assert opened == [True] * 6 + [False] * 4
        assert all(count > 0 for count in received[:6])
        assert received[6:] == [0] * 4
        assert server.connections <= 6


@pytest.mark.browser
def test_over_http2_all_ten_eventsources_receive_every_event(page: Any, tmp_path: Path) -> None:
    events = write_lines(tmp_path / "twenty.jsonl", [{"n": n} for n in range(20)])
    stream = Stream.from_file(events, interval=0.05)
    with h2_server(stream) as server:
        page.goto(server.url.rsplit("/", 1)[0] + "/healthz")
        assert page.evaluate("performance.getEntries()[0].nextHopProtocol") == "h2"
        page.evaluate(TEN_STREAMS, 10)
        assert _wait(page, "window.received.every((n) => n === 20)", 20), page.evaluate(
            "window.received"
        )
        assert page.evaluate("window.opened") == [True] * 10
        page.evaluate("window.sources.forEach((s) => s.close())")


@pytest.mark.browser
def test_the_viewer_loaded_with_a_token_passes_it_on(page: Any) -> None:
    token = "viewer-tok_9"
    stream = Stream.from_file(SCORES, interval=0.05)
    config = ServerConfig(self_signed=True, http2=True, token=token)
    with Server(stream, config=config) as server:
        root = server.url.rsplit("/", 1)[0] + "/"
        refused = page.goto(root)
        assert refused.status == 401
        page.goto(root + "?token=" + token)
        page.wait_for_function("document.querySelectorAll('#events .event').length === 3")
        options = page.evaluate(
            "[...document.querySelectorAll('#streams option')].map((o) => o.value)"
        )
        assert options == ["/events"]


# A page on another origin; the stream's URL comes in its query string.
CREDENTIALED = """<!doctype html><script>
window.got = [];
window.failed = false;
const url = new URLSearchParams(location.search).get("src");
const source = new EventSource(url, { withCredentials: true });
source.onmessage = (event) => window.got.push(event.data);
source.onerror = () => { if (source.readyState === EventSource.CLOSED) window.failed = true; };
</script>"""


@pytest.mark.browser
@pytest.mark.parametrize("listed", [True, False])
def test_a_credentialed_eventsource_connects_when_its_origin_is_listed(
    page: Any, listed: bool
) -> None:
    stream = Stream.from_file(SCORES, interval=0.05)
    page_server = PageServer(CREDENTIALED)
    try:
        origin = page_server.url.rstrip("/")
        config = ServerConfig(cors=(origin,) if listed else None)
        with Server(stream, config=config) as server:
            page.goto(page_server.url + "?" + urlencode({"src": server.url}))
            if listed:
                page.wait_for_function("window.got.length === 3")
            else:
                # "*" never goes with credentials: the browser refuses the response.
                page.wait_for_function("window.failed")
                assert page.evaluate("window.got") == []
    finally:
        page_server.close()
