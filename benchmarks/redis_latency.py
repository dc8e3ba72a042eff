"""Added latency from XADD to a client of ``sseplay serve redis://``, at N clients.

Starts its own redis-server (Debian's, on a free 127.0.0.1 port, no persistence) and one
``sseplay serve redis://...`` process, opens N SSE connections to it (raw uvloop sockets
and httptools, as ``loadclient.py`` does), then XADDs events, each carrying the moment it
was added (``time.perf_counter()``, the producer and the clients share this process and
its clock). Per event and client: latency = arrival - moment of the XADD call. Prints one
JSON object: p50/p99/max latency in ms, delivery, and the rates used.

The clients run in one process with the producer: at 1,000 clients their own reading
is part of what is measured (an upper bound on the server's share), on a machine whose
cores the server and Redis share too.

    python benchmarks/redis_latency.py --clients 1000 --events 200 --rate 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import httptools
import redis.asyncio
import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.redis_server import RedisServer  # noqa: E402


class LatencyClient(asyncio.Protocol):
    """One SSE connection: the latency of every event whose data is a perf_counter time."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.latencies: list[float] = []
        self.status = 0
        self._tail = b""
        self._parser = httptools.HttpResponseParser(self)
        self.ready = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        transport.write(self.request)  # type: ignore[attr-defined]

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        if not self.ready.done():
            self.ready.set_result(None)

    def on_body(self, body: bytes) -> None:
        now = time.perf_counter()
        data = self._tail + body
        blocks = data.split(b"\n\n")
        self._tail = blocks.pop()
        for block in blocks:
            at = block.find(b"data: ")
            if at >= 0:
                self.latencies.append(now - float(block[at + 6 :]))

    def data_received(self, data: bytes) -> None:
        self._parser.feed_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_result(None)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def start_server(redis_url: str) -> tuple[subprocess.Popen[bytes], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "sseplay", "serve", redis_url, "--port", "0", "--ping", "0", "-q"],
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], 30)
    if not ready:
        process.kill()
        raise SystemExit("sseplay serve printed no URL")
    return process, process.stdout.readline().decode().strip()


async def measure(
    url: str, redis_port: int, clients: int, events: int, rate: float
) -> dict[str, object]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = (
        f"GET {parts.path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n"
    ).encode()
    loop = asyncio.get_running_loop()
    protocols: list[LatencyClient] = []
    started = time.perf_counter()
    for _ in range(clients):
        _, protocol = await loop.create_connection(lambda: LatencyClient(request), host, port)
        protocols.append(protocol)
    await asyncio.gather(*(p.ready for p in protocols))
    connected = time.perf_counter() - started
    await asyncio.sleep(0.5)  # every connection has joined the feed
    producer = redis.asyncio.Redis(port=redis_port)
    cpu_start = resource.getrusage(resource.RUSAGE_SELF)
    origin = loop.time()
    for n in range(events):
        delay = origin + n / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await producer.xadd("bench", {"data": repr(time.perf_counter())})
    deadline = loop.time() + 10
    while loop.time() < deadline and any(len(p.latencies) < events for p in protocols):
        await asyncio.sleep(0.05)
    cpu_end = resource.getrusage(resource.RUSAGE_SELF)
    await producer.aclose()
    for protocol in protocols:
        protocol.transport.close()
    latencies = [value for p in protocols for value in p.latencies]
    cpu = (cpu_end.ru_utime - cpu_start.ru_utime) + (cpu_end.ru_stime - cpu_start.ru_stime)
    return {
        "clients": clients,
        "ok_status": sum(p.status == 200 for p in protocols),
        "connect_seconds": round(connected, 3),
        "events": events,
        "rate_per_second": rate,
        "delivery": round(len(latencies) / (events * clients), 4),
        "latency_p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "latency_p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "latency_max_ms": round(max(latencies, default=float("nan")) * 1000, 2),
        "client_and_producer_cpu": round(cpu / (events / rate), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--rate", type=float, default=50.0, help="XADDs per second")
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with tempfile.TemporaryDirectory() as directory, RedisServer(Path(directory)) as redis_server:
        process, url = start_server(redis_server.url("bench"))
        try:
            result = uvloop.run(
                measure(url, redis_server.port, args.clients, args.events, args.rate)
            )
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(10)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
