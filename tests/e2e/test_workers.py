"""sseplay serve --workers N: one port, N processes, one parent that watches them."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from sseplay.config import ServerConfig
from sseplay.errors import ExitCode, UsageError
from tests.conftest import ROOT, ServeProcess, run_cli, write_json

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="workers are forked")

FLAGS = ("--broadcast", "--interval", "0.05")


def long_file(tmp_path: Path) -> Path:
    return write_json(tmp_path / "ticks.json", [{"n": n} for n in range(2000)])


def health_by_worker(base: str, workers: int, deadline: float = 10) -> dict[int, dict[str, Any]]:
    """The /healthz of every worker: new connections land on them until all have answered."""
    seen: dict[int, dict[str, Any]] = {}
    until = time.monotonic() + deadline
    while len(seen) < workers:
        assert time.monotonic() < until, f"only workers {sorted(seen)} answered"
        health = httpx.get(base + "/healthz", timeout=5).json()
        assert health["workers"] == workers
        seen[health["worker"]] = health
    return seen


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def open_streams(url: str, count: int) -> list[socket.socket]:
    address = httpx.URL(url)
    request = f"GET {address.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    streams = []
    for _ in range(count):
        sock = socket.create_connection((address.host, address.port or 80), timeout=5)
        sock.sendall(request)
        streams.append(sock)
    return streams


def test_workers_share_one_port_print_it_once_and_stop_together_on_ctrl_c(
    tmp_path: Path,
) -> None:
    """Each worker listens on the port with a socket of its own (SO_REUSEPORT): the kernel
    spreads connections evenly, and each /healthz counts its own worker's streams."""
    held = 200
    with ServeProcess(str(long_file(tmp_path)), "--workers", "2", *FLAGS) as server:
        assert len(server.urls) == 1  # printed once, by the parent
        base = server.url.removesuffix("/events")
        streams = open_streams(server.url, held)
        try:
            deadline = time.monotonic() + 15
            while True:
                health = health_by_worker(base, 2)
                counts = {pid: h["connections"] for pid, h in health.items()}
                if sum(counts.values()) == held:
                    break
                assert time.monotonic() < deadline, counts
                time.sleep(0.1)
            print(f"{held} connections over 2 workers: {sorted(counts.values())}")
            if sys.platform.startswith("linux"):
                # An even share is 100; the kernel's hash gives each 100 +- 7 (one sigma).
                assert min(counts.values()) >= held * 0.3, counts
            started = time.monotonic()
            # Ctrl-C reaches the parent alone here (a terminal would signal them all).
            code, out, err = server.stop(signal.SIGINT)
            took = time.monotonic() - started
        finally:
            for sock in streams:
                sock.close()
    print(f"stopped in {took * 1000:.0f} ms")
    assert code == 0, err
    # About a second on an idle machine (the workers end their streams themselves);
    # waiting for the streams instead would never end. A busy machine may add seconds.
    assert took < 10.0, took
    assert "Traceback" not in err
    assert out == ""  # nothing after the URL
    assert not any(alive(pid) for pid in health), "a worker outlived its parent"


def test_a_worker_that_dies_is_restarted_and_logged_and_0_means_one_per_cpu(
    tmp_path: Path,
) -> None:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    with ServeProcess(str(long_file(tmp_path)), "--workers", "0", *FLAGS) as server:
        base = server.url.removesuffix("/events")
        before = set(health_by_worker(base, cpus or 1))
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while True:
            now = set(health_by_worker(base, cpus or 1))
            if victim not in now and len(now) == len(before):
                break
            assert time.monotonic() < deadline, (before, now)
            time.sleep(0.1)
        assert len(now - before) == 1  # one new worker, the others untouched
        code, _, err = server.stop(signal.SIGTERM)
    assert code == 0, err
    assert f"(pid {victim}) died (killed by SIGKILL): starting another" in err
    assert "Traceback" not in err
    assert not any(alive(pid) for pid in now)


def test_a_bad_file_or_a_taken_port_is_one_line_from_the_parent(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('[{"a": 1}, {"a": ')
    result = run_cli("serve", str(bad), "--workers", "2", "--port", "0")
    assert result.returncode == ExitCode.BAD_INPUT, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        good = long_file(tmp_path)
        result = run_cli("serve", str(good), "--workers", "2", "--port", str(port))
    assert result.returncode == ExitCode.CANNOT_SERVE, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"sseplay: error: cannot listen on 127.0.0.1:{port}: Address already in use "
        "(pick another --port, or 0 for any free one)"
    ]
    result = run_cli("serve", str(good), "--workers", "-1", "--port", "0")
    assert result.returncode == ExitCode.USAGE
    assert "--workers must be 0 to 1024, not -1" in result.stderr


def test_the_systemd_unit_of_docs_deploy_is_valid(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    sseplay_script = shutil.which("sseplay")
    if analyze is None or sseplay_script is None:
        pytest.skip("systemd-analyze is not installed")
    unit = (ROOT / "docs" / "deploy" / "sseplay.service").read_text()
    assert "/usr/local/bin/sseplay serve" in unit
    # The same unit, with this machine's sseplay (verify checks that it can be run).
    (tmp_path / "sseplay.service").write_text(
        unit.replace("/usr/local/bin/sseplay", sseplay_script)
    )
    result = subprocess.run(
        [analyze, "verify", str(tmp_path / "sseplay.service")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr


def test_faults_with_workers_are_refused_in_one_line() -> None:
    # Before: each worker numbered its own connections, so times=1 (documented as "at
    # most K times in all") fired once per worker, and conn=1 too.
    with pytest.raises(UsageError, match="--workers"):
        ServerConfig(workers=2, faults="status:code=503,times=1")
    with pytest.raises(UsageError, match="--workers"):
        ServerConfig(workers=2, fault_header=True)
    result = run_cli(
        "serve",
        "samples/llm.jsonl",
        "--port",
        "0",
        "--workers",
        "2",
        "--fault",
        "status:code=503,times=1",
        timeout=15,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("sseplay: error: --fault"), result.stderr
