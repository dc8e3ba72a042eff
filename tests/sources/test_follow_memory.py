"""``--follow`` from a fast pipe to clients that read slowly: the server's memory stays
bounded. A real ``sseplay serve`` process, real sockets."""

from __future__ import annotations

import contextlib
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from tests.conftest import ROOT, sseplay
from tests.sources.test_follow import WAIT


def test_clients_reading_slowly_from_a_fast_pipe_keep_memory_bounded() -> None:
    # Each slow client was written the feed's whole history (up to 16 MiB) whenever it
    # drained: 16 trickling readers took the server from ~75 MB to ~350 MB.
    flood = (
        "import sys\n"
        "chunk = (b'{\"pad\": \"' + b'x' * 2000 + b'\"}\\n') * 500\n"
        "try:\n"
        "    while True:\n"
        "        sys.stdout.buffer.write(chunk)\n"
        "except OSError:\n"
        "    pass\n"
    )
    producer = subprocess.Popen([sys.executable, "-c", flood], stdout=subprocess.PIPE)
    assert producer.stdout is not None
    served = subprocess.Popen(
        sseplay("serve", "--port", "0", "-", "--follow", "-q", "--send-timeout", "30"),
        stdin=producer.stdout,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    producer.stdout.close()
    stop = threading.Event()
    sockets: list[socket.socket] = []

    def trickle(sock: socket.socket) -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                sock.recv(4096)
            time.sleep(0.02)

    readers = []
    try:
        assert served.stdout is not None
        assert select.select([served.stdout], [], [], WAIT)[0]
        parts = urlsplit(served.stdout.readline().decode().strip())
        baseline = _rss_kib(served.pid)
        for _ in range(16):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.settimeout(0.5)
            sock.connect((parts.hostname, parts.port))
            request = f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n"
            sock.sendall(request.encode())
            sockets.append(sock)
            readers.append(threading.Thread(target=trickle, args=(sock,), daemon=True))
        for reader in readers:
            reader.start()
        peak = baseline
        watch_until = time.monotonic() + 5
        while time.monotonic() < watch_until:
            time.sleep(0.1)
            peak = max(peak, _rss_kib(served.pid))
        assert peak - baseline < 100 << 10, f"{baseline} KiB -> {peak} KiB"
    finally:
        stop.set()
        for reader in readers:
            reader.join(WAIT)
        for sock in sockets:
            sock.close()
        for process in (served, producer):
            if process.poll() is None:
                process.kill()
            process.wait(WAIT)
        for pipe in (served.stdout, served.stderr):
            if pipe is not None:
                pipe.close()


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")
