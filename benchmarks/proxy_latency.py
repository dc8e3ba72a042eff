"""What ``sseplay record`` (the recording proxy, issue 24) costs per stream and per event.

Three phases, each bounded in time, on 127.0.0.1:

1. ``sseplay serve FILE --broadcast --loop --interval 0.02`` with N clients: the CPU
   ``serve`` spends per event it sends (the yardstick of issue 24).
2. A small uvicorn upstream (this file, ``--upstream``): N streams of 50 events/s, each
   event stamped with ``time.monotonic()`` just before it is written; N clients read it
   directly: the latency without the proxy.
3. The same upstream through ``sseplay record UPSTREAM --out TMP``, N clients: client
   read time - upstream stamp (one host, one clock), the proxy's CPU per relayed event
   (utime + stime from /proc), and its memory per proxied stream (RSS with the N streams
   open - RSS before, / N).

    python benchmarks/proxy_latency.py                     # 200 streams, 10 s through the proxy
    python benchmarks/proxy_latency.py --streams 50 --seconds 5

The issue's targets: the latency the proxy adds p99 <= 2 ms, CPU per relayed event <= 3x
serve's per sent event, <= 64 KiB per proxied stream.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parent.parent
_STAMP = re.compile(rb'"t":([0-9.]+)')
RATE = 50.0


# The upstream: plain ASGI under uvicorn (uvloop, httptools), in a process of its own.


async def upstream_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] != "/s":  # the warm-up
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")],
        }
    )
    loop = asyncio.get_running_loop()
    due = loop.time()
    n = 0
    while True:
        due += 1 / RATE
        await asyncio.sleep(max(0.0, due - loop.time()))
        n += 1
        body = b'data: {"n":%d,"t":%.6f}\n\n' % (n, time.monotonic())
        await send({"type": "http.response.body", "body": body, "more_body": True})


def run_upstream() -> None:
    import socket

    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    print(sock.getsockname()[1], flush=True)
    config = uvicorn.Config(
        upstream_app, log_config=None, access_log=False, lifespan="off", interface="asgi3"
    )
    uvicorn.Server(config).run(sockets=[sock])


# The clients: raw sockets on one loop in this process.


class Client(asyncio.Protocol):
    def __init__(self, request: bytes, latencies: list[float], counts: list[int]) -> None:
        self.request = request
        self.latencies = latencies
        self.counts = counts
        self.tail = b""
        self.record = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        cast(asyncio.WriteTransport, transport).write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        text = self.tail + data
        stamps = _STAMP.findall(text)
        if self.tail and _STAMP.search(self.tail):
            stamps = stamps[1:]  # seen already with the previous read
        if self.record:
            # serve's file has no stamps ("t":0.0): its phase measures CPU only.
            self.latencies.extend(now - float(stamp) for stamp in stamps if float(stamp))
        self.counts[0] += len(stamps)
        self.tail = text[-40:]


async def open_clients(
    url: str, streams: int
) -> tuple[list[asyncio.BaseTransport], list[Client], list[float], list[int]]:
    host, port = url.removeprefix("http://").split("/")[0].split(":")
    path = "/" + url.removeprefix("http://").partition("/")[2]
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n"
    latencies: list[float] = []
    counts = [0]
    loop = asyncio.get_running_loop()
    transports, clients = [], []
    for _ in range(streams):
        transport, client = await loop.create_connection(
            lambda: Client(request.encode(), latencies, counts), host, int(port)
        )
        transports.append(transport)
        clients.append(client)
    return transports, clients, latencies, counts


def cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of the process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def start(command: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT, bufsize=0
    )
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], 20)
    assert ready, f"{command} printed nothing"
    return process, process.stdout.readline().decode().strip()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(url: str, pid: int, streams: int, seconds: float) -> dict[str, float]:
    """Open the clients, let them settle, then measure for ``seconds``."""
    rss_before = rss_kib(pid)
    transports, clients, latencies, counts = await open_clients(url, streams)
    await asyncio.sleep(1.0)  # every stream open and flowing
    for client in clients:
        client.record = True
    counts[0] = 0
    user_before, system_before = cpu_times(pid)
    await asyncio.sleep(seconds)
    user_after, system_after = cpu_times(pid)
    user, system = user_after - user_before, system_after - system_before
    cpu = user + system
    events = counts[0]
    rss_after = rss_kib(pid)
    for transport in transports:
        transport.close()
    ms = [value * 1000 for value in latencies]
    return {
        "events": events,
        "cpu_us_per_event": cpu / max(events, 1) * 1e6,
        "user_us_per_event": user / max(events, 1) * 1e6,
        "system_us_per_event": system / max(events, 1) * 1e6,
        "cpu_share": cpu / seconds,
        "p50_ms": statistics.median(ms) if ms else float("nan"),
        "p99_ms": percentile(ms, 0.99) if ms else float("nan"),
        "max_ms": max(ms) if ms else float("nan"),
        "rss_per_stream_kib": (rss_after - rss_before) / streams,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--upstream", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.upstream:
        run_upstream()
        return
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    os.environ.update(env)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        events = Path(scratch) / "events.jsonl"
        events.write_text('{"n": 1, "t": 0.0}\n')
        serve, serve_url = start(
            [sys.executable, "-m", "sseplay", "serve", str(events), "--broadcast", "--loop",
             "--interval", str(1 / RATE), "--ping", "0", "--port", "0", "-q"]
        )  # fmt: skip
        try:
            results["serve --broadcast"] = asyncio.run(
                measure(serve_url, serve.pid, args.streams, args.seconds / 2)
            )
        finally:
            serve.kill()
            serve.wait()
        upstream, port = start([sys.executable, __file__, "--upstream"])
        base = f"http://127.0.0.1:{port}"
        try:
            results["upstream direct"] = asyncio.run(
                measure(base + "/s", upstream.pid, args.streams, args.seconds / 2)
            )
            out = Path(scratch) / "rec"
            proxy, proxy_url = start(
                [sys.executable, "-m", "sseplay", "record", base, "--out", str(out),
                 "--port", "0", "-q"]
            )  # fmt: skip
            try:
                import httpx

                httpx.get(proxy_url + "/warm-up", timeout=5)  # imports done, first exchange
                results["through sseplay record"] = asyncio.run(
                    measure(proxy_url + "/s", proxy.pid, args.streams, args.seconds)
                )
            finally:
                proxy.kill()
                proxy.wait()
        finally:
            upstream.kill()
            upstream.wait()
    serve_cpu = results["serve --broadcast"]["cpu_us_per_event"]
    direct, proxied = results["upstream direct"], results["through sseplay record"]
    summary = {
        "streams": args.streams,
        "events_per_second_per_stream": RATE,
        "added_p50_ms": proxied["p50_ms"] - direct["p50_ms"],
        "added_p99_ms": proxied["p99_ms"] - direct["p99_ms"],
        "proxy_cpu_vs_serve": proxied["cpu_us_per_event"] / serve_cpu,
        "proxy_kib_per_stream": proxied["rss_per_stream_kib"],
    }
    print(json.dumps({"phases": results, "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
