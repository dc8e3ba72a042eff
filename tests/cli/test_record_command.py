"""``sseplay record UPSTREAM --out DIR`` as a subprocess (issue 24): it prints its base URL
when ready, SIGTERM and Ctrl-C exit 0 with the recordings in flight ended, and ``kill -9``
leaves whole JSON lines only, a partial recording that still reads."""

from __future__ import annotations

import json
import select
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sseplay import Server, Stream
from sseplay.exchange import read_exchange
from tests.conftest import ROOT, run_cli, sseplay
from tests.support import wait_until


class RecordProcess:
    def __init__(self, upstream: str, out: Path) -> None:
        self.process = subprocess.Popen(
            sseplay("record", upstream, "--out", str(out), "--port", "0"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
            cwd=ROOT,
        )
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], 15)
        assert ready, "sseplay record printed no URL"
        self.url = self.process.stdout.readline().decode().strip()
        assert self.url.startswith("http://127.0.0.1:"), self.url

    def stop(self, sig: int) -> tuple[int, str]:
        self.process.send_signal(sig)
        _, err = self.process.communicate(timeout=10)
        return self.process.returncode, err.decode()

    def close(self) -> tuple[int, str]:
        if self.process.poll() is None:
            self.process.kill()
        _, err = self.process.communicate(timeout=10)
        return self.process.returncode, err.decode()


@pytest.fixture
def ticking() -> Iterator[str]:
    """An endless upstream: sseplay itself, an event every 50 ms."""
    endless = Stream.from_records([{"tick": 1}], interval=0.05, loop=True)
    with Server({"/ticks": endless}, ping=0) as upstream:
        yield upstream.url.removesuffix("/ticks")


def read_in_background(url: str) -> tuple[threading.Thread, list[bytes]]:
    got: list[bytes] = []

    def read() -> None:
        try:
            with httpx.Client(timeout=10) as client, client.stream("GET", url) as response:
                got.extend(response.iter_raw())
        except httpx.HTTPError:
            pass  # the proxy was killed: what matters is what it left on disk

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return reader, got


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_exits_0_and_the_recording_in_flight_has_its_end_line(
    ticking: str, tmp_path: Path, sig: signal.Signals
) -> None:
    out = tmp_path / "rec"
    proxy = RecordProcess(ticking, out)
    try:
        reader, got = read_in_background(proxy.url + "/ticks")
        wait_until(lambda: b"".join(got).count(b"\n\n") >= 3, timeout=10)
        code, err = proxy.stop(sig)
        reader.join(10)
    finally:
        proxy.close()
    assert code == 0, err
    exchange = read_exchange(next(out.glob("GET-ticks-*.jsonl")))
    assert exchange.end == "proxy stopped"
    assert len(exchange.blocks) >= 3
    assert "Traceback" not in err


def test_kill_9_mid_stream_leaves_whole_json_lines_a_partial_recording(
    ticking: str, tmp_path: Path
) -> None:
    out = tmp_path / "rec"
    proxy = RecordProcess(ticking, out)
    try:
        reader, got = read_in_background(proxy.url + "/ticks")
        wait_until(lambda: b"".join(got).count(b"\n\n") >= 5, timeout=10)

        # Written as the stream goes: a read's lines reach the file within FLUSH_SECONDS.
        def blocks_recorded() -> int:
            return sum(p.read_bytes().count(b'"block"') for p in out.glob("GET-ticks-*.jsonl"))

        wait_until(lambda: blocks_recorded() >= 5, timeout=5)
        proxy.process.send_signal(signal.SIGKILL)
        proxy.close()
        reader.join(10)
    finally:
        proxy.close()
    path = next(out.glob("GET-ticks-*.jsonl"))
    text = path.read_bytes()
    assert text.endswith(b"\n")
    for line in text.splitlines():
        json.loads(line)  # every line whole
    exchange = read_exchange(path)
    assert exchange.end is None  # partial
    assert len(exchange.blocks) >= 5


def test_an_upstream_that_is_not_an_http_url_is_one_usage_line(tmp_path: Path) -> None:
    result = run_cli("record", "ftp://example.com", "--out", str(tmp_path / "rec"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "http:// or https://" in result.stderr
    assert not (tmp_path / "rec").exists()


def test_record_is_listed_in_the_help() -> None:
    result = run_cli("--help")
    assert "record" in result.stdout
