"""How ``sseplay serve`` stops on a signal, and what it leaves behind (issue 23): SIGHUP (the
terminal closing) cleans up as SIGINT and SIGTERM do; a signal while it waits for a FIFO's
writer stops it at once."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import ROOT, sseplay

LINES = b'{"n": 1}\n{"n": 2}\n{"n": 3}\n'
# Every wait is for a condition, bounded by this (a busy 2-core machine).
WAIT = 20.0
CHECK_LINE = "sseplay: interrupted during the start-up check; nothing was served\n"


def wait_for(condition: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def left_behind(temporary: Path) -> list[str]:
    return sorted(str(p.relative_to(temporary)) for p in temporary.rglob("*"))


@contextmanager
def serve(
    tmp_path: Path, *args: str, stdin: int = subprocess.DEVNULL
) -> Iterator[subprocess.Popen[bytes]]:
    """``sseplay serve ARGS`` with a temporary directory of its own (``TMPDIR``)."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    process = subprocess.Popen(
        sseplay("serve", "--port", "0", "--ping", "0", *args),
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(temporary), "PYTHONPATH": str(ROOT)},
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(WAIT)
        for pipe in (process.stdin, process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()


def test_sighup_while_serving_removes_the_spool_the_key_and_the_url_file(tmp_path: Path) -> None:
    url_file = tmp_path / "urls.txt"
    temporary = tmp_path / "tmp"
    with serve(
        tmp_path, "-", "--url-file", str(url_file), "--self-signed", stdin=subprocess.PIPE
    ) as process:
        assert process.stdin is not None
        process.stdin.write(LINES)
        process.stdin.close()  # standard input is copied to its end, then served
        wait_for(url_file.exists, "the --url-file")
        there = left_behind(temporary)
        spools = [name for name in there if name.startswith("sseplay-") and "tls" not in name]
        keys = [name for name in there if name.endswith("key.pem")]
        assert spools, there  # what SIGHUP must not leave behind
        assert keys, there
        process.send_signal(signal.SIGHUP)
        code = process.wait(WAIT)
        err = process.stderr.read().decode() if process.stderr else ""
    # As SIGTERM while serving: a clean stop, exit 0 (README, "Exit codes").
    assert code == 0, err
    assert "Traceback" not in err
    assert not url_file.exists()
    assert left_behind(temporary) == []


def test_sighup_during_the_start_up_check_is_one_line_exit_130_and_no_spool(
    tmp_path: Path,
) -> None:
    temporary = tmp_path / "tmp"
    # Standard input that stays open keeps sseplay in its start-up check (copying it).
    with serve(tmp_path, "-", stdin=subprocess.PIPE) as process:
        assert process.stdin is not None
        process.stdin.write(LINES)
        process.stdin.flush()
        wait_for(lambda: any(p.is_file() for p in temporary.rglob("*")), "the spool file")
        process.send_signal(signal.SIGHUP)
        code = process.wait(WAIT)
        err = process.stderr.read().decode() if process.stderr else ""
    assert code == 130, err
    assert err == CHECK_LINE
    assert left_behind(temporary) == []


def blocked_on_a_fifo(pid: int) -> bool:
    """Whether the process sleeps in open() of a FIFO, waiting for a writer (Linux's
    fs/pipe.c ``wait_for_partner``)."""
    try:
        return Path(f"/proc/{pid}/wchan").read_text().strip() == "wait_for_partner"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/wchan").exists(), reason="needs Linux's /proc")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
@pytest.mark.parametrize("where", ["event-file", "certfile"])
def test_a_signal_while_a_fifo_waits_for_its_writer_stops_serve(
    tmp_path: Path, where: str, sig: int
) -> None:
    # Opening a FIFO for reading waits until a writer opens it: a signal then must stop
    # serve, not be swallowed while open() is resumed (the --certfile case hung for good).
    fifo = tmp_path / "nobody-writes.fifo"
    os.mkfifo(fifo)
    if where == "event-file":
        args = [str(fifo)]
    else:
        events = tmp_path / "events.jsonl"
        events.write_bytes(LINES)
        args = [str(events), "--certfile", str(fifo), "--keyfile", str(fifo)]
    with serve(tmp_path, *args) as process:
        wait_for(lambda: blocked_on_a_fifo(process.pid), "open() of the FIFO")
        process.send_signal(sig)
        code = process.wait(WAIT)
        out = process.stdout.read() if process.stdout else b""
        err = process.stderr.read().decode() if process.stderr else ""
    assert code == 130, err
    assert err == CHECK_LINE
    assert out == b""
