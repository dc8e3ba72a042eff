"""The buffering probe end to end: ``sseplay serve --canary`` behind real hops, judged by
``sseplay tail --check-delivery`` (real processes on 127.0.0.1, stopped by PID).

- nginx (docs/deploy/nginx.conf as it is, both upstreams pointed at the canary) passes,
  and so does nginx compressing the stream (it flushes each read);
- a TCP hop that holds bytes until it has 4 KiB, and one that passes on what it holds once
  a second, are caught and named as buffering;
- Starlette's GZipMiddleware in front of a pass-through app: the installed release
  (1.x) leaves text/event-stream alone, and flushes each chunk when told to compress
  it, so both pass; a compressor that does not flush (as Starlette's did before) is
  caught and named as compression.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import subprocess
import threading
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import gzip as starlette_gzip
from starlette.middleware.gzip import GZipMiddleware, GZipResponder
from starlette.responses import StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from sseplay.errors import ExitCode
from sseplay.http.listen import bind
from tests.conftest import ROOT, ServeProcess, free_port, run_cli
from tests.support import wait_until

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
NGINX_CONFIG = ROOT / "docs" / "deploy" / "nginx.conf"


@pytest.fixture(scope="module")
def canary() -> Iterator[str]:
    """The canary's URL: an event every 20 ms."""
    with ServeProcess("--canary", "--interval", "0.02", "-q") as server:
        yield server.url
        server.stop()


def check(url: str, *flags: str) -> subprocess.CompletedProcess[str]:
    return run_cli("tail", url, "--check-delivery", *flags, timeout=30)


def assert_passes(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == ExitCode.OK, result.stderr
    assert "sseplay: delivered as sent: " in result.stderr, result.stderr


def assert_buffered(result: subprocess.CompletedProcess[str], *named: str) -> str:
    assert result.returncode == ExitCode.BUFFERED, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("sseplay: error:")]
    assert len(errors) == 1, result.stderr
    for word in named:
        assert word in errors[0], errors[0]
    assert "Traceback" not in result.stderr
    return errors[0]


def test_the_canary_straight_passes_and_stats_have_lag_percentiles(canary: str) -> None:
    result = check(canary, "--timeout", "1", "--stats")
    assert_passes(result)
    import json

    report = json.loads(result.stderr.splitlines()[1])
    assert report["lag_ms"]["count"] >= 10
    assert set(report["lag_ms"]) == {"count", "p50", "p90", "p99", "max", "offset_min"}
    assert report["result"] == "ok"


# ---------------------------------------------------------------------------
# nginx


@contextlib.contextmanager
def nginx(tmp: Path, upstream: str, *extra: str) -> Iterator[str]:
    """docs/deploy/nginx.conf on a free port, both upstreams being ``upstream``;
    ``extra`` directives go into its location. The base URL."""
    front = free_port()
    config = NGINX_CONFIG.read_text().replace("127.0.0.1:8081", f"127.0.0.1:{front}")
    config = config.replace("127.0.0.1:8001", upstream).replace("127.0.0.1:8002", upstream)
    if extra:
        config = config.replace("proxy_buffering off;", " ".join(extra))
    (tmp / "tmp").mkdir(exist_ok=True)
    (tmp / "nginx.conf").write_text(config)
    process = subprocess.Popen(
        [NGINX, "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{front}"
    try:

        def answers() -> bool:
            assert process.poll() is None, process.communicate()[1].decode()
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(base + "/healthz", timeout=2).status_code == 200
            return False

        wait_until(answers, timeout=10, message="nginx did not answer")
        yield base
    finally:
        process.send_signal(signal.SIGTERM)  # by its PID
        process.communicate(timeout=10)


def test_the_canary_behind_nginx_with_buffering_off_passes(canary: str, tmp_path: Path) -> None:
    upstream = canary.removeprefix("http://").removesuffix("/events")
    with nginx(tmp_path, upstream) as base:
        result = check(base + "/events", "--timeout", "1.5")
    assert_passes(result)


def test_nginx_compressing_event_streams_flushes_each_write_and_passes_with_a_note(
    canary: str, tmp_path: Path
) -> None:
    # nginx 1.2x with proxy_buffering off compresses each upstream read and flushes it
    # (and with proxy_buffering on it still passes each read on to a client that keeps
    # up): neither holds the canary here, so neither is a way to catch buffering.
    upstream = canary.removeprefix("http://").removesuffix("/events")
    gzip = ("proxy_buffering off;", "gzip on;", "gzip_types text/event-stream;")
    with nginx(tmp_path, upstream, *gzip, "gzip_min_length 1;") as base:
        result = check(base + "/events", "--timeout", "2", "-H", "Accept-Encoding: gzip")
    assert_passes(result)
    assert "sseplay: note: Content-Encoding: gzip on an event stream" in result.stderr


# ---------------------------------------------------------------------------
# TCP hops that hold the stream


class HoldingHop:
    """A TCP proxy in a thread of its own: the request goes through as it comes; the
    answer is passed on ``block`` bytes at a time (a byte threshold), or all that is held
    every ``every`` seconds (a flush timer)."""

    def __init__(self, upstream: str, *, block: int = 0, every: float = 0.0) -> None:
        host, port = upstream.removeprefix("http://").split("/")[0].split(":")
        self.upstream = (host, int(port))
        self.block, self.every = block, every
        self.loop = asyncio.new_event_loop()
        self.sock = bind("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/events"
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []
        self.relays: set[asyncio.Task[None]] = set()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        self.writers += [writer, up_writer]
        relay_task = asyncio.current_task()
        assert relay_task is not None
        self.relays.add(relay_task)

        async def requests() -> None:
            while data := await reader.read(65536):
                up_writer.write(data)

        async def flushing(held: bytearray) -> None:
            while True:
                await asyncio.sleep(self.every)
                if held:
                    writer.write(bytes(held))
                    held.clear()

        held = bytearray()
        tasks = [asyncio.create_task(requests())]
        if self.every:
            tasks.append(asyncio.create_task(flushing(held)))
        try:
            while data := await up_reader.read(65536):
                held += data
                while self.block and len(held) >= self.block:
                    writer.write(bytes(held[: self.block]))
                    del held[: self.block]
        except OSError:
            pass
        finally:
            for task in tasks:
                task.cancel()
            writer.close()
            up_writer.close()

    def __enter__(self) -> HoldingHop:
        self.thread.start()

        async def start() -> None:
            self.server = await asyncio.start_server(self._relay, sock=self.sock)

        asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            assert self.server is not None
            self.server.close()
            for writer in self.writers:  # each relay sees its end and returns
                writer.close()
            if self.relays:
                await asyncio.wait(self.relays, timeout=5)

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def test_a_hop_that_holds_4_kib_is_caught(canary: str) -> None:
    with HoldingHop(canary, block=4096) as hop:
        result = check(hop.url, "--timeout", "3")
    assert_buffered(result, "buffer", "silence", "a hop ")
    # Which hop it is (here usually "a hop holds about 3.7 KiB": 4 KiB on the wire, less
    # the chunk framing) is told from a few bursts: tests/client/test_delivery.py proves it.


def test_a_hop_that_flushes_once_a_second_is_caught(canary: str) -> None:
    with HoldingHop(canary, every=1.0) as hop:
        result = check(hop.url, "--timeout", "3.5")
    assert_buffered(result, "buffer", "silence", "a hop ")  # usually "... every 1.0 s"


# ---------------------------------------------------------------------------
# Compression middleware in front of a pass-through app


def relay(upstream: str) -> Starlette:
    """A pass-through app: GET /events streams the upstream's body as it comes."""

    async def events(request: Any) -> StreamingResponse:
        client = httpx.AsyncClient(timeout=httpx.Timeout(10, read=None))
        response = await client.send(client.build_request("GET", upstream), stream=True)

        async def body() -> AsyncIterator[bytes]:
            try:
                async for chunk in response.aiter_raw():
                    yield chunk
            finally:
                await response.aclose()
                await client.aclose()

        return StreamingResponse(body(), media_type="text/event-stream")

    return Starlette(routes=[Route("/events", events)])


class _Holding(GZipResponder):
    """A gzip responder that compresses without flushing each chunk: zlib holds the
    output until it has a block's worth (or the end), as Starlette's did before it
    flushed each chunk and left text/event-stream out."""

    def _compress_body(self, body: bytes, more_body: bool) -> bytes:
        if more_body:
            return self.compressor.compress(body)
        return self.compressor.compress(body) + self.compressor.flush(zlib.Z_FINISH)


# Starlette's GZipMiddleware compressed event streams too, and held them in its buffer,
# until the release that leaves text/event-stream alone and flushes what it compresses
# (DEFAULT_EXCLUDED_CONTENT_TYPES came with it); the dependency floors run the older one.
STARLETTE_GZIP_LEAVES_STREAMS = hasattr(starlette_gzip, "DEFAULT_EXCLUDED_CONTENT_TYPES")


class HoldingGZip(GZipMiddleware):
    """A compressor that holds the stream: Starlette's own before that release, else one
    that does not flush each chunk, as it did."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not STARLETTE_GZIP_LEAVES_STREAMS:
            await super().__call__(scope, receive, send)
            return
        responder = _Holding(self.app, self.minimum_size, exclude_content_types=())
        await responder(scope, receive, send)


@contextlib.contextmanager
def served(app: Any) -> Iterator[str]:
    """``app`` under uvicorn in a thread; its /events URL."""
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1, lifespan="off")
    )
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])))
    thread.start()
    try:
        wait_until(lambda: server.started, timeout=10, message="uvicorn did not start")
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/events"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def test_starlette_gzip_leaves_event_streams_alone_and_flushes_when_told_not_to(
    canary: str,
) -> None:
    default = GZipMiddleware(relay(canary), minimum_size=10)
    with served(default) as url:
        left_alone = check(url, "--timeout", "2", "-H", "Accept-Encoding: gzip")
    if not STARLETTE_GZIP_LEAVES_STREAMS:  # the installed release still holds the stream
        assert_buffered(left_alone, "Content-Encoding: gzip: compression middleware holds")
        return
    assert_passes(left_alone)
    assert "Content-Encoding" not in left_alone.stderr
    told = GZipMiddleware(relay(canary), minimum_size=10, exclude_content_types=())
    with served(told) as url:
        compressed = check(url, "--timeout", "1.2", "-H", "Accept-Encoding: gzip")
    assert_passes(compressed)
    assert "sseplay: note: Content-Encoding: gzip on an event stream" in compressed.stderr


def test_a_compressor_that_holds_the_stream_is_named_as_compression(canary: str) -> None:
    with served(HoldingGZip(relay(canary))) as url:
        result = check(url, "--timeout", "2", "-H", "Accept-Encoding: gzip")
    line = assert_buffered(
        result, "Content-Encoding: gzip: compression middleware holds the stream"
    )
    assert line.endswith("exclude text/event-stream"), line


def test_a_plain_stream_is_judged_against_expected_interval_behind_the_same_hop(
    tmp_path: Path,
) -> None:
    events = tmp_path / "ticks.jsonl"
    events.write_text("".join(f'{{"n": {n}}}\n' for n in range(500)))
    with ServeProcess(str(events), "--interval", "0.02", "-q") as server:
        straight = check(server.url, "--timeout", "1", "--expected-interval", "0.02")
        with HoldingHop(server.url, every=1.0) as hop:
            held = check(hop.url, "--timeout", "2.5", "--expected-interval", "0.02")
        unjudged = check(server.url, "--count", "5")
        server.stop()
    assert_passes(straight)
    assert "no burst after a silence (--expected-interval 0.02 s)" in straight.stderr
    assert_buffered(held, "(--expected-interval 0.02 s)", "buffer")
    assert_passes(unjudged)
    assert "only the headers were judged" in unjudged.stderr


def test_check_delivery_flags_are_checked() -> None:
    url = f"http://127.0.0.1:{free_port()}/events"
    for args, said in (
        (("--check-delivery",), "--check-delivery reads for --timeout SECONDS or --count N"),
        (("--max-lag", "1s", "--count", "1"), "--max-lag works with --check-delivery"),
        (("--expected-interval", "1"), "--expected-interval works with --check-delivery"),
        (("--check-delivery", "--count", "1", "--max-lag", "soon"), "--max-lag must be"),
    ):
        result = run_cli("tail", url, *args)
        assert result.returncode == ExitCode.USAGE, result.stderr
        assert said in result.stderr
        assert len(result.stderr.splitlines()) == 1
