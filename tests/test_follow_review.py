"""Adversarial review of ``--follow``: hostile writers, pipes and life cycles against real
``sseplay serve`` processes and real sockets."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from sseplay.config import StreamOptions, Timing
from sseplay.follow import prepare_file, prepare_stdin
from sseplay.server import Server
from sseplay.stream import Stream
from tests.conftest import ROOT, ServeProcess, run_cli, sseplay, write_lines
from tests.test_follow import WAIT, Reader

# A producer that writes small JSON Lines records as fast as the pipe takes them, forever.
_FLOOD = (
    "import sys\n"
    "chunk = b'{\"n\": 1}\\n' * 20000\n"
    "try:\n"
    "    while True:\n"
    "        sys.stdout.buffer.write(chunk)\n"
    "except (BrokenPipeError, OSError):\n"
    "    pass\n"
)


def _health_latency(base: str) -> tuple[float, dict[str, object]]:
    started = time.monotonic()
    answer = httpx.get(base + "/healthz", timeout=WAIT).json()
    return time.monotonic() - started, answer


def test_stdin_faster_than_the_server_never_starves_its_event_loop() -> None:
    # ``producer | sseplay serve - --follow``: with input always there to read, the reader
    # never gave the event loop a turn: no URL printed, /healthz unanswered, SIGTERM ignored.
    producer = subprocess.Popen([sys.executable, "-c", _FLOOD], stdout=subprocess.PIPE)
    assert producer.stdout is not None
    served = subprocess.Popen(
        sseplay("serve", "--port", "0", "-", "--follow", "-q"),
        stdin=producer.stdout,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    producer.stdout.close()
    try:
        assert served.stdout is not None
        ready, _, _ = select.select([served.stdout], [], [], WAIT)
        assert ready, "the server never printed its URL: its event loop is starved"
        url = served.stdout.readline().decode().strip()
        base = url.rsplit("/", 1)[0]
        latencies = []
        for _ in range(10):
            latency, health = _health_latency(base)
            latencies.append(latency)
            time.sleep(0.02)
        assert max(latencies) < 0.5, latencies
        streams = health["streams"]
        assert isinstance(streams, list)
        assert streams[0]["events"] > 0
        stopping = time.monotonic()
        served.send_signal(signal.SIGTERM)
        _, err = served.communicate(timeout=WAIT)
        assert time.monotonic() - stopping < 1.5
        assert served.returncode == 0, err.decode()
        assert b"Traceback" not in err
    finally:
        for process in (served, producer):
            if process.poll() is None:
                process.kill()
            process.wait(WAIT)
        for pipe in (served.stdout, served.stderr):
            if pipe is not None:
                pipe.close()


def test_a_big_append_is_read_without_stalling_other_requests(tmp_path: Path) -> None:
    # Checking an append's records ran on the event loop, a whole 1 MiB read at a time:
    # every other request waited for it (seconds for small records).
    path = write_lines(tmp_path / "log.jsonl", [{"n": 0}])
    with ServeProcess(str(path), "--follow", "--interval", "0", "-q") as server:
        base = server.url.rsplit("/", 1)[0]
        client = Reader(server.url)
        try:
            deadline = time.monotonic() + WAIT
            while not client.events and time.monotonic() < deadline:
                time.sleep(0.005)
            with path.open("ab") as file:
                file.write(b'{"n": 1}\n' * 400_000)  # 3.6 MB of small records
            latencies = []
            watch_until = time.monotonic() + 1.5
            while time.monotonic() < watch_until:
                latency, _ = _health_latency(base)
                latencies.append(latency)
                time.sleep(0.01)
            client_events = len(client.events)
            # Generous for a shared 2-core machine; before the fix each look took seconds.
            assert max(latencies) < 0.3, f"max {max(latencies):.3f} s"
            assert client_events > 1  # the records were being read meanwhile
            stopping = time.monotonic()
            code, _, err = server.stop()
            assert time.monotonic() - stopping < 1.5
            assert code == 0, err
        finally:
            client.close()


@pytest.mark.parametrize("how", ["replaced", "rewritten"])
def test_a_file_changed_between_the_check_and_the_first_look_is_read_from_its_start(
    tmp_path: Path, how: str
) -> None:
    # The follower opened the path at its first look and read on from the offset the
    # start-up check found in the old file: the new file's first records were lost and a
    # torn line logged as invalid (log rotation during a long start-up check, or a Server
    # started again later from the same Stream).
    path = write_lines(tmp_path / "log.jsonl", [{"old": n} for n in range(1, 4)])
    options = StreamOptions(timing=Timing(interval=0), follow=True)
    event_file, source = prepare_file(path.name, path, options.mapping)
    new = [{"new": n, "pad": "x" * 20} for n in range(1, 6)]
    if how == "replaced":
        os.replace(write_lines(tmp_path / "log.jsonl.new", new), path)
    else:
        write_lines(path, new)  # truncated and written again, longer than before
    with Server(Stream(event_file, options, follow=source)) as server:
        client = Reader(server.url, last_event_id="3")
        try:
            assert client.wait_for(5) == [4, 5, 6, 7, 8]
            assert [record["new"] for record in client.data()] == [1, 2, 3, 4, 5]
        finally:
            client.close()


@pytest.mark.parametrize("how", ["the input closes", "the server stops"])
def test_followed_standard_input_is_left_blocking_as_it_was_found(how: str) -> None:
    # O_NONBLOCK is a flag of the open file, shared with the shell's terminal or the
    # program that embeds the Server: it stayed set, and their next read failed (EAGAIN).
    read_end, write_end = os.pipe()
    try:
        options = StreamOptions(follow=True)
        stream = Stream(None, options, follow=prepare_stdin(options.mapping, fd=read_end))
        with Server(stream) as server:
            client = Reader(server.url)
            try:
                os.write(write_end, b'{"n": 1}\n')
                assert client.wait_for(1) == [1]
                if how == "the input closes":
                    os.close(write_end)
                    write_end = -1
                    assert client.ended.wait(WAIT)
            finally:
                client.close()
        assert os.get_blocking(read_end)
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)


def test_once_with_a_followed_file_is_refused_in_one_line(tmp_path: Path) -> None:
    # A followed file never ends, so --once never stopped the server (a CI job hung);
    # standard input ends when it closes, and --once stops after it as it should.
    path = write_lines(tmp_path / "log.jsonl", [{"n": 1}])
    result = run_cli("serve", str(path), "--follow", "--once", "--port", "0", timeout=WAIT)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("sseplay: error: --once waits for the end of the stream")
    assert "log.jsonl" in result.stderr


@pytest.mark.parametrize("stand_in", ["directory", "fifo"])
def test_something_other_than_a_file_at_the_path_is_waited_out(
    tmp_path: Path, stand_in: str
) -> None:
    # A directory at the followed path ended every stream for good (IsADirectoryError:
    # clients then got 204 and stopped reconnecting); a FIFO there blocked the follower's
    # worker thread in open() forever, and SIGTERM no longer stopped the server.
    path = write_lines(tmp_path / "log.jsonl", [{"n": 1}])
    with ServeProcess(str(path), "--follow", "--interval", "0") as server:
        client = Reader(server.url)
        try:
            assert client.wait_for(1) == [1]
            path.rename(tmp_path / "log.jsonl.1")
            if stand_in == "directory":
                path.mkdir()
            else:
                os.mkfifo(path)
            time.sleep(0.2)  # several looks at the path
            assert not client.ended.is_set()
            if stand_in == "directory":
                path.rmdir()
            else:
                path.unlink()
            write_lines(path, [{"n": 2}])
            assert client.wait_for(2) == [1, 2]
            assert not client.ended.is_set()
            stopping = time.monotonic()
            code, _, err = server.stop()
        finally:
            client.close()
    assert time.monotonic() - stopping < 1.5
    assert code == 0
    assert "is not a regular file: waiting for a file to read" in err
