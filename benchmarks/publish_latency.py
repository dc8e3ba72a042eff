"""Publish to delivery with ``--control`` (issue 26): the server, the clients and the
interleaved before/after rounds of ``benchmarks/control_load.py`` (see its docstring)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import select
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

_ID = re.compile(rb"id: (\d+)\n")
RESULTS = Path(__file__).resolve().parent / "results"


def start_server(*args: str, code: str | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """``sseplay serve ARGS`` on core 0; ``code``: the checkout whose sseplay it runs."""
    command = [sys.executable, "-m", "sseplay", "serve", *args, "--port", "0", "--ping", "0"]
    command += ["--quiet"]
    if shutil.which("taskset"):
        command = ["taskset", "-c", "0", *command]
    # ``python -m`` puts the working directory first: it is the checkout's own.
    env = {**os.environ, "PYTHONPATH": code} if code else None
    server = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=code
    )
    assert server.stdout is not None
    ready, _, _ = select.select([server.stdout], [], [], 30)
    url = server.stdout.readline().decode().strip() if ready else ""
    if not url.startswith("http://"):
        server.kill()
        raise SystemExit(f"sseplay serve {' '.join(args)} did not start")
    return server, url


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# Linux: the kernel's receive time of each segment, in recvmsg's ancillary data.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


class Streams:
    """N SSE connections read by one epoll loop, each event id's arrival noted twice: when
    the kernel put it in the client's socket (``SO_TIMESTAMPNS``: delivery, not counting
    this client's own work to read 1,000 sockets in turn) and when this loop read it."""

    def __init__(self, url: str, clients: int) -> None:
        parts = urlsplit(url)
        self.address = (parts.hostname or "127.0.0.1", parts.port or 80)
        request = f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode()
        self.poller = select.epoll()
        self.streams: dict[int, tuple[socket.socket, int]] = {}
        self.tails: dict[int, bytes] = {}
        self.delivered: list[dict[int, float]] = [{} for _ in range(clients)]
        self.read: list[dict[int, float]] = [{} for _ in range(clients)]
        self.started: set[int] = set()
        for index in range(clients):
            sock = socket.create_connection(self.address)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            sock.sendall(request)
            sock.setblocking(False)
            self.streams[sock.fileno()] = (sock, index)
            self.tails[sock.fileno()] = b""
            self.poller.register(sock.fileno(), select.EPOLLIN)
        self.publisher = socket.create_connection(self.address)
        self.publisher.setblocking(False)
        self.poller.register(self.publisher.fileno(), select.EPOLLIN)
        self.answer = b""

    def pump(self, seconds: float, until: Any = None) -> None:
        """Read what comes for ``seconds``, or until ``until()`` is true."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0 and not (until and until()):
            for fd, _ in self.poller.poll(left):
                self._read(fd)

    def _read(self, fd: int) -> None:
        if fd == self.publisher.fileno():
            self.answer += self.publisher.recv(65536)
            return
        sock, index = self.streams[fd]
        try:
            data, ancillary, _, _ = sock.recvmsg(65536, socket.CMSG_SPACE(16))
        except BlockingIOError:
            return
        now = time.time()
        if not data:
            self.poller.unregister(fd)
            return
        stamp = now
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                seconds, nanoseconds = struct.unpack("qq", value[:16])
                stamp = seconds + nanoseconds / 1e9
        text = self.tails[fd] + data
        if b"\r\n\r\n" in text:
            self.started.add(index)
        for match in _ID.finditer(text):
            event_id = int(match.group(1))
            self.delivered[index].setdefault(event_id, stamp)
            self.read[index].setdefault(event_id, now)
        self.tails[fd] = text[-24:]

    def publish(self, body: bytes, host: str) -> tuple[int, float]:
        """POST it; the id of the event and the moment (wall clock) it was sent."""
        head = (
            f"POST /_sseplay/publish HTTP/1.1\r\nHost: {host}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.answer = b""
        moment = time.time()
        self.publisher.sendall(head + body)
        self.pump(30, lambda: self.answer.endswith(b"}"))
        return int(json.loads(self.answer.split(b"\r\n\r\n", 1)[1])["id"]), moment

    def close(self) -> None:
        for sock, _ in self.streams.values():
            sock.close()
        self.publisher.close()


def quantiles(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    cuts = statistics.quantiles(values, n=100)
    return {
        "p50_ms": round(cuts[49], 3),
        "p99_ms": round(cuts[98], 3),
        "max_ms": round(values[-1], 3),
    }


def publish_latency(url: str, clients: int, events: int, gap: float, pid: int) -> dict[str, Any]:
    streams = Streams(url, clients)
    streams.pump(60, lambda: len(streams.started) == clients)
    streams.pump(0.5)
    host = urlsplit(url).netloc
    own = resource.getrusage(resource.RUSAGE_SELF)
    server_cpu = cpu_seconds(pid)
    window = time.monotonic()
    sent: dict[int, float] = {}
    for k in range(events):
        body = json.dumps({"route": urlsplit(url).path, "data": {"k": k}}).encode()
        event_id, moment = streams.publish(body, host)
        sent[event_id] = moment
        streams.pump(gap)
    used = resource.getrusage(resource.RUSAGE_SELF)
    client_cpu = (used.ru_utime + used.ru_stime - own.ru_utime - own.ru_stime) / (
        time.monotonic() - window
    )
    server_cpu = cpu_seconds(pid) - server_cpu
    streams.pump(1.0)
    streams.close()
    delivered = [
        (got[event_id] - moment) * 1000
        for got in streams.delivered
        for event_id, moment in sent.items()
        if event_id in got
    ]
    read = [
        (got[event_id] - moment) * 1000
        for got in streams.read
        for event_id, moment in sent.items()
        if event_id in got
    ]
    # One publish's fan-out: from its first connection's delivery to its last one's.
    spans = []
    for event_id in sent:
        times = [got[event_id] for got in streams.delivered if event_id in got]
        spans.append((max(times) - min(times)) * 1000)
    return {
        "clients": clients,
        "events": events,
        "received": len(delivered),
        "missing": clients * events - len(delivered),
        **quantiles(delivered),
        "read_by_client": quantiles(read),
        "fan_out_span_ms_median": round(statistics.median(spans), 3),
        "first_delivery_ms_median": round(
            statistics.median(
                (min(got[i] for got in streams.delivered if i in got) - m) * 1000
                for i, m in sent.items()
            ),
            3,
        ),
        "client_cpu": round(client_cpu, 2),
        # The server's CPU (its process, POSTs included) per event delivered.
        "server_cpu_us_per_delivery": round(server_cpu / max(1, len(delivered)) * 1e6, 2),
    }


def publish_ab(args: argparse.Namespace) -> None:
    """Publish to delivery with the sseplay of ``--ab BEFORE_DIR`` and of this checkout,
    in interleaved rounds (before, after, before...), each a fresh server."""
    here = str(Path(__file__).resolve().parent.parent)
    load_before = os.getloadavg()
    runs: list[tuple[str, dict[str, Any]]] = []
    for index in range(args.pairs * 2):
        kind, code = ("before", args.ab) if index % 2 == 0 else ("after", here)
        server, url = start_server("live=", "--control", code=code)
        try:
            result = publish_latency(url, args.clients, args.events, args.gap, server.pid)
        finally:
            server.terminate()
            server.wait(10)
        runs.append((kind, result))
        print(kind, json.dumps(result), flush=True)
    load_after = os.getloadavg()
    stamp = time.strftime("%Y-%m-%dT%H-%M-%SZ", time.gmtime())
    lines = [
        f"# Publish to delivery, before and after, issue 26 ({stamp})",
        "",
        f"Machine: {os.cpu_count()} cores; {platform.platform()}; "
        f"Python {platform.python_version()}",
        "",
        f"Load average before {' '.join(f'{x:.2f}' for x in load_before)}, after "
        f"{' '.join(f'{x:.2f}' for x in load_after)} (server on core 0, clients on core 1)",
        "",
        f"Command: `python benchmarks/control_load.py {' '.join(sys.argv[1:])}`",
        "",
        "```",
        *(f"{kind}: {json.dumps(result)}" for kind, result in runs),
        *(
            f"median of {kind}: delivered p50 "
            f"{statistics.median(r['p50_ms'] for k, r in runs if k == kind)} ms, p99 "
            f"{statistics.median(r['p99_ms'] for k, r in runs if k == kind)} ms; fan-out "
            f"span {statistics.median(r['fan_out_span_ms_median'] for k, r in runs if k == kind)}"
            " ms"
            for kind in ("before", "after")
        ),
        "```",
        "",
    ]
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{stamp}-publish-ab.md"
    out.write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"written to {out}")
