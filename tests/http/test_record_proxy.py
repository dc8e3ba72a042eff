"""The recording proxy (``sseplay.http.proxy``, issue 24) against upstreams nobody here
wrote (sse-starlette under uvicorn, Node's http server) and sseplay itself, all real
servers on 127.0.0.1 port 0."""

from __future__ import annotations

import asyncio
import gzip
import shutil
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sse_starlette import EventSourceResponse, ServerSentEvent

from sseplay import Server, Stream
from sseplay.exchange import load_exchanges, read_exchange
from sseplay.http.listen import bind
from sseplay.http.proxy_server import RecordingProxy
from tests.conftest import free_port
from tests.http.recordings_support import only_recording
from tests.support import wait_until

NODE_SCRIPT = Path(__file__).with_name("node_upstream.js")
needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")


@pytest.fixture
def node() -> Iterator[str]:
    """The Node upstream's base URL; stopped by its PID."""
    with subprocess.Popen(["node", str(NODE_SCRIPT)], stdout=subprocess.PIPE) as process:
        try:
            assert process.stdout is not None
            port = process.stdout.readline().decode().strip()
            assert port.isdigit(), f"node printed {port!r}"
            yield f"http://127.0.0.1:{port}"
        finally:
            process.kill()


@pytest.fixture
def recorded(tmp_path: Path) -> Path:
    return tmp_path / "rec"


def every_byte_under(directory: Path) -> bytes:
    return b"".join(path.read_bytes() for path in sorted(directory.rglob("*")) if path.is_file())


def pieces_of(url: str, **kwargs: Any) -> tuple[httpx.Response, list[bytes]]:
    """GET ``url`` to its end; the body as the reads the client got."""
    with httpx.Client(timeout=10) as client, client.stream("GET", url, **kwargs) as response:
        return response, list(response.iter_raw())


class StarletteUpstream:
    """An sse-starlette EventSourceResponse under uvicorn in a thread: event 1, then a
    pause until ``release`` is set, then event 2."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.sock = bind("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(
            self.app, log_config=None, access_log=False, lifespan="off", interface="asgi3"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, daemon=True)

    async def app(self, scope: Any, receive: Any, send: Any) -> None:
        async def events() -> AsyncIterator[ServerSentEvent]:
            yield ServerSentEvent(data="one\ntwo lines", id="1", event="first")
            await asyncio.to_thread(self.release.wait, 10)
            yield ServerSentEvent(data="second", retry=2500)

        await EventSourceResponse(events(), ping=600)(scope, receive, send)

    def _run(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.sock]))

    def __enter__(self) -> StarletteUpstream:
        self.thread.start()
        wait_until(lambda: self.server.started, timeout=10, message="upstream did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


def test_sse_starlette_through_the_proxy_event_one_arrives_while_upstream_pauses(
    recorded: Path,
) -> None:
    with StarletteUpstream() as upstream, RecordingProxy(upstream.url, recorded) as proxy:
        got: list[bytes] = []
        arrived: list[float] = []

        def read() -> None:
            with (
                httpx.Client(timeout=10) as client,
                client.stream("GET", proxy.url + "/sse") as response,
            ):
                for piece in response.iter_raw():
                    got.append(piece)
                    arrived.append(time.monotonic())

        reader = threading.Thread(target=read)
        reader.start()
        # Nothing held: event 1 reaches the client while the upstream still waits to
        # send event 2 (it waits for us, so a proxy that held it back fails here).
        wait_until(lambda: b"data: one\r\ndata: two lines\r\n\r\n" in b"".join(got), timeout=5)
        assert not upstream.release.is_set()
        released = time.monotonic()
        upstream.release.set()
        reader.join(10)
        assert arrived[0] < released
        through_proxy = b"".join(got)
        direct = b"".join(pieces_of(upstream.url + "/sse")[1])
    # sse-starlette's own bytes (CRLF line ends, its field order), unchanged.
    assert through_proxy == direct
    exchange = only_recording(recorded)
    assert exchange.complete
    assert exchange.is_stream
    assert b"".join(block.raw for block in exchange.blocks) == direct
    assert next(block.raw for block in exchange.blocks).startswith(b"id: 1\r\nevent: first\r\n")


@needs_node
def test_node_upstream_held_stream_bytes_and_first_event_before_the_pause_ends(
    node: str, recorded: Path
) -> None:
    with RecordingProxy(node, recorded) as proxy:
        got: list[bytes] = []

        def read() -> None:
            with (
                httpx.Client(timeout=10) as client,
                client.stream("GET", proxy.url + "/hold") as response,
            ):
                got.extend(response.iter_raw())

        reader = threading.Thread(target=read)
        reader.start()
        wait_until(lambda: b"data: one\n\n" in b"".join(got), timeout=5)
        httpx.get(node + "/release", timeout=10)
        reader.join(10)
    expected = b": hello\n\nid: 1\nevent: first\ndata: one\n\ndata:two\nretry: 3000\n\n"
    assert b"".join(got) == expected
    exchange = only_recording(recorded)
    assert [block.raw for block in exchange.blocks] == [
        b": hello\n\n",
        b"id: 1\nevent: first\ndata: one\n\n",
        b"data:two\nretry: 3000\n\n",
    ]
    assert sum(read.size for read in exchange.reads) == len(expected)
    assert exchange.blocks[-1].offset >= exchange.blocks[1].offset


@needs_node
def test_an_event_split_across_two_upstream_writes_reaches_the_client_as_two_reads(
    node: str, recorded: Path
) -> None:
    with RecordingProxy(node, recorded) as proxy:
        _, pieces = pieces_of(proxy.url + "/split")
    assert pieces == [b"data: hel", b"lo\n\n"]
    exchange = only_recording(recorded)
    assert [read.size for read in exchange.reads] == [9, 4]
    assert [block.raw for block in exchange.blocks] == [b"data: hello\n\n"]
    # The pause between the reads is in the recording, for --chunks to replay.
    assert exchange.reads[1].offset - exchange.reads[0].offset > 0.2


@needs_node
def test_a_gzip_body_passes_unchanged_and_the_recording_holds_it_decoded(
    node: str, recorded: Path
) -> None:
    with RecordingProxy(node, recorded) as proxy:
        response, pieces = pieces_of(proxy.url + "/gzip", headers={"accept-encoding": "gzip"})
    assert response.headers["content-encoding"] == "gzip"
    assert gzip.decompress(b"".join(pieces)) == b"data: a\n\ndata: b\r\n\r\n"
    exchange = only_recording(recorded)
    assert [block.raw for block in exchange.blocks] == [b"data: a\n\n", b"data: b\r\n\r\n"]
    assert sum(read.size for read in exchange.reads) == len(b"data: a\n\ndata: b\r\n\r\n")


@needs_node
def test_secrets_reach_the_upstream_and_never_the_recording(node: str, recorded: Path) -> None:
    with RecordingProxy(node, recorded, redact=["X-Custom-Secret"]) as proxy:
        response = httpx.get(
            proxy.url + "/secret?key=SECRET-KEY&model=m1",
            headers={
                "Authorization": "Bearer sk-SECRET-AUTH",
                "X-Custom-Secret": "SECRET-CUSTOM",
                "Cookie": "id=SECRET-COOKIE-IN",
            },
            timeout=10,
        )
    assert response.status_code == 200, response.text
    assert response.json() == {"ok": True}
    assert response.headers["set-cookie"] == "session=SECRET-COOKIE"
    on_disk = every_byte_under(recorded)
    assert b"SECRET" not in on_disk
    exchange = only_recording(recorded)
    assert exchange.request.query == "key=***&model=m1"
    headers = dict(exchange.request.headers)
    assert headers["authorization"] == "***"
    assert headers["x-custom-secret"] == "***"
    assert exchange.response is not None
    assert dict(exchange.response.headers)["set-cookie"] == "***"


@needs_node
def test_a_post_body_is_forwarded_and_recorded(node: str, recorded: Path) -> None:
    with RecordingProxy(node, recorded) as proxy:
        # The bytes given, not json=: httpx before 0.28 encodes JSON with spaces.
        response = httpx.post(
            proxy.url + "/echo",
            content=b'{"model":"m","n":1}',
            headers={"content-type": "application/json"},
            timeout=10,
        )
    assert response.text == 'got {"model":"m","n":1}'
    assert response.headers["x-method"] == "POST"
    exchange = only_recording(recorded)
    assert exchange.request.method == "POST"
    assert exchange.request.body == b'{"model":"m","n":1}'
    assert b"".join(piece.raw for piece in exchange.body) == b'got {"model":"m","n":1}'
    assert exchange.complete
    assert Path(str(exchange.path)).name.startswith("POST-echo-")


@needs_node
def test_an_upstream_that_fails_mid_body_is_recorded_as_such(node: str, recorded: Path) -> None:
    with RecordingProxy(node, recorded) as proxy:
        got: list[bytes] = []
        with (
            pytest.raises(httpx.RemoteProtocolError),  # cut short, as upstream cut it
            httpx.Client(timeout=10) as client,
            client.stream("GET", proxy.url + "/cut") as response,
        ):
            got.extend(response.iter_raw())
        assert b"".join(got) == b"data: before the cut\n\n"
        assert httpx.get(proxy.url + "/echo", timeout=10).status_code == 200  # it goes on
    failed = [read_exchange(path) for path in sorted(recorded.glob("GET-cut-*.jsonl"))]
    assert failed[0].end is not None
    assert failed[0].end.startswith("upstream failed")


def test_upstream_down_is_a_502_json_line_and_the_proxy_goes_on(recorded: Path) -> None:
    port = free_port()
    with RecordingProxy(f"http://127.0.0.1:{port}", recorded) as proxy:
        down = httpx.get(proxy.url + "/events", timeout=10)
        assert down.status_code == 502
        assert down.text.count("\n") == 1
        assert down.text.endswith("\n")
        assert f"upstream http://127.0.0.1:{port}" in down.json()["error"]
        with Server(Stream.from_records([{"n": 1}], interval=0), port=port) as upstream:
            up = httpx.get(proxy.url + "/events", timeout=10)
            assert up.status_code == 200
            assert up.content == httpx.get(upstream.url, timeout=10).content
    ends = sorted(str(exchange.end) for exchange in load_exchanges(recorded))
    assert ends[0] == "complete"
    assert ends[1].startswith("upstream failed")


def test_sseplay_upstream_bytes_equal_and_the_stop_ends_streams_in_flight(
    recorded: Path,
) -> None:
    stream = Stream.from_records([{"n": n} for n in range(3)], interval=0, retry=1500)
    endless = Stream.from_records([{"tick": 1}], interval=0.05, loop=True)
    with Server({"/events": stream, "/ticks": endless}, ping=0) as upstream:
        base = upstream.url.removesuffix("/events")
        proxy = RecordingProxy(base, recorded).start()
        try:
            direct = httpx.get(upstream.url, timeout=10)
            through = httpx.get(proxy.url + "/events", timeout=10)
            assert through.content == direct.content
            assert through.headers["content-type"] == direct.headers["content-type"]
            got: list[bytes] = []

            def read() -> None:
                with (
                    httpx.Client(timeout=10) as client,
                    client.stream("GET", proxy.url + "/ticks") as response,
                ):
                    got.extend(response.iter_raw())

            reader = threading.Thread(target=read)
            reader.start()
            wait_until(lambda: b"".join(got).count(b"\n\n") >= 2, timeout=5)
        finally:
            proxy.stop()
        reader.join(10)
        assert not reader.is_alive()
    ticks = [read_exchange(path) for path in recorded.glob("GET-ticks-*.jsonl")]
    assert ticks[0].end == "proxy stopped"
    events = [read_exchange(path) for path in recorded.glob("GET-events-*.jsonl")]
    assert b"".join(block.raw for block in events[0].blocks) == direct.content


def test_a_client_that_leaves_ends_its_recording(recorded: Path) -> None:
    endless = Stream.from_records([{"tick": 1}], interval=0.05, loop=True)
    with (
        Server(endless, ping=0) as upstream,
        RecordingProxy(upstream.url.removesuffix("/events"), recorded) as proxy,
    ):
        with httpx.Client(timeout=10) as client, client.stream("GET", proxy.url + "/events") as r:
            for piece in r.iter_raw():
                if b"\n\n" in piece:
                    break

        def ended() -> bool:
            files = list(recorded.glob("*.jsonl"))
            return bool(files) and read_exchange(files[0]).end is not None

        wait_until(ended, timeout=5, message="the recording got no end line")
        wait_until(lambda: upstream.connections == 0, timeout=5)
    assert only_recording(recorded).end == "client left"
