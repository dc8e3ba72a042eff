"""Shared test helpers: real servers on 127.0.0.1 port 0, the CLI as a subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import signal
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sseplay.config import ServerConfig
from sseplay.eventfile import FieldMapping, load_event_file
from sseplay.http.app import create_app, hub_of
from sseplay.http.hub import AppOptions, Hub, Route
from sseplay.http.listen import bind
from sseplay.http.uvicorn.server import streaming_server
from sseplay.replay import Replay
from sseplay.schedule import Plan, Timing
from tests.support import wait_until

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
# The WHATWG-derived parsing vectors, copied into the repository so that a clone tests alone.
CONFORMANCE = ROOT / "tests" / "conformance"
IN_CI = os.environ.get("CI", "").lower() == "true"


def write_json(path: Path, records: list[Any]) -> Path:
    path.write_text(json.dumps(records))
    return path


def free_port() -> int:
    """A 127.0.0.1 port nothing listens on now (for a server started elsewhere, or for
    a connection that must be refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def write_lines(path: Path, records: list[Any]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def make_stream(
    path: Path,
    route: str = "/events",
    mapping: FieldMapping | None = None,
    timing: Timing | None = None,
    retry: int | None = None,
) -> Route:
    event_file = load_event_file(path.name, path, mapping or FieldMapping())
    plan = Plan(event_file.count, event_file.times, timing or Timing(interval=0))
    return Route(route, path.name, Replay(event_file, plan, retry))


class LiveServer:
    """create_app under a real uvicorn in a thread, on a port of its own."""

    def __init__(self, app: Any, port: int = 0, hub: Hub | None = None) -> None:
        self.sock = bind("127.0.0.1", port)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.hub = hub or hub_of(app)
        self.server = streaming_server(app, self.hub)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        # The event loop ``sseplay serve`` runs on: uvicorn's choice, uvloop when installed.
        with asyncio.Runner(loop_factory=self.server.config.get_loop_factory()) as runner:
            runner.run(self.server.serve(sockets=[self.sock]))

    def __enter__(self) -> LiveServer:
        self.thread.start()
        wait_until(
            lambda: self.server.started,
            timeout=10,
            message="the test server did not start",
            interval=0.005,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@pytest.fixture
def live() -> Callable[..., LiveServer]:
    """live(streams, options=None, on_complete=None) -> a started LiveServer."""
    stack = contextlib.ExitStack()

    def start(
        streams: list[Route],
        options: AppOptions | None = None,
        on_complete: Callable[[], None] | None = None,
    ) -> LiveServer:
        app = create_app(streams, options or AppOptions(ServerConfig(ping=0)), on_complete)
        return stack.enter_context(LiveServer(app))

    with stack:
        yield start


def read_stream(url: str, headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
    """GET a finite stream to its end with a real client."""
    return httpx.get(url, headers=headers, timeout=10, **kwargs)


def sseplay(*args: str) -> list[str]:
    return [sys.executable, "-m", "sseplay", *args]


def run_cli(
    *args: str, timeout: float = 20, input: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        sseplay(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input.decode() if input is not None else None,
        cwd=ROOT,
    )


class ServeProcess:
    """``sseplay serve ... --port 0`` as a subprocess; ``urls`` are what it printed."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            sseplay("serve", "--port", "0", *args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,  # unbuffered, so select() sees every line that is not read yet
            cwd=ROOT,
        )
        self.urls: list[str] = []
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], 15)
        assert ready, "sseplay serve printed no URL"
        first = self.process.stdout.readline().decode().strip()
        assert first.startswith("http://"), self.stderr_now(first)
        self.urls.append(first)
        # Further URLs (one per route) are already written: they come in one flush each.
        while select.select([self.process.stdout], [], [], 0.2)[0]:
            line = self.process.stdout.readline().decode().strip()
            if not line:
                break
            self.urls.append(line)
        self.url = self.urls[0]

    def stderr_now(self, first: str) -> str:
        self.process.kill()
        _, err = self.process.communicate()
        return f"stdout {first!r}, stderr {err.decode()!r}"

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str, str]:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        out, err = self.process.communicate(timeout=10)
        return self.process.returncode, out.decode(), err.decode()

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


class RawServer:
    """A hand-written HTTP server that misbehaves on purpose: ``handler(conn, request_bytes,
    connection_number)`` writes whatever it likes to the socket."""

    def __init__(
        self,
        handler: Callable[[socket.socket, bytes, int], None],
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.handler = handler
        self.tls = tls
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}/events"
        self.requests: list[bytes] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        self.listener.settimeout(0.05)
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.tls is not None:
                try:
                    conn.settimeout(5)
                    conn = self.tls.wrap_socket(conn, server_side=True)
                except OSError:  # the client refused our certificate
                    conn.close()
                    continue
            with conn:
                conn.settimeout(5)
                request = b""
                while b"\r\n\r\n" not in request:
                    part = conn.recv(65536)
                    if not part:
                        break
                    request += part
                head, _, rest = request.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                while len(rest) < length:
                    rest += conn.recv(65536)
                self.requests.append(head + b"\r\n\r\n" + rest)
                with contextlib.suppress(OSError):
                    self.handler(conn, request, len(self.requests))

    def header(self, number: int, name: str) -> str | None:
        head = self.requests[number].split(b"\r\n\r\n")[0].decode()
        for line in head.split("\r\n")[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return None

    def __enter__(self) -> RawServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.thread.join(5)
        self.listener.close()


SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
    b"Cache-Control: no-store\r\nConnection: close\r\n\r\n"
)


@pytest.fixture
def tmp_events(tmp_path: Path) -> Iterator[Path]:
    return tmp_path


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """In CI (``CI=true``) a test that cannot run is a failure, not a skip: a missing
    browser, HAProxy or nginx must turn the run red, not quietly shrink it."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where every test must run: {report.longrepr}"
