"""Latency of ``sseplay serve FILE --follow``: from a line end in the file to the clients.

Starts ``sseplay serve FILE --follow --from-end`` on a free 127.0.0.1 port, opens N
connections (raw sockets, one event loop), then appends records one at a time (each with
its wall-clock timestamp), flushing each, and notes when each record's id arrives at each
client. Latency = arrival at a client - the moment the write of its line end returned.
Prints p50, p99 and max over every (record, client) pair, and how many never arrived.

    python benchmarks/follow_latency.py                  # 1,000 clients, 100 records
    python benchmarks/follow_latency.py --clients 200 --records 50 --gap 0.05

The server is pinned to core 0 and this client to core 1 when ``taskset`` exists (as
``benchmarks/run.py`` does), so that the client's own work is not counted as the server's.
The figure includes the follower's look at the file (every 20 ms: about 10 ms on average).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

_ID = re.compile(rb"id: (\d+)\n")


class Client(asyncio.Protocol):
    """One SSE connection: the moment each event id first arrived."""

    def __init__(self, request: bytes, arrivals: dict[int, float]) -> None:
        self.request = request
        self.arrivals = arrivals
        self.tail = b""
        self.connected = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        cast(asyncio.WriteTransport, transport).write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        if not self.connected.done() and b"\r\n\r\n" in data:
            self.connected.set_result(None)
        text = self.tail + data
        for match in _ID.finditer(text):
            self.arrivals.setdefault(int(match.group(1)), now)
        self.tail = text[-24:]  # an id cut between two reads is found with the next

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.connected.done():
            self.connected.set_result(None)


def start_server(path: Path) -> tuple[subprocess.Popen[bytes], str]:
    command = [sys.executable, "-m", "sseplay", "serve", str(path), "--follow", "--from-end"]
    command += ["--port", "0", "--ping", "0", "--quiet"]
    if shutil.which("taskset"):
        command = ["taskset", "-c", "0", *command]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert server.stdout is not None
    ready, _, _ = select.select([server.stdout], [], [], 30)
    if not ready:
        server.kill()
        raise SystemExit("sseplay serve did not start")
    url = server.stdout.readline().decode().strip()
    if not url.startswith("http://"):
        server.kill()
        raise SystemExit(f"sseplay serve failed: {server.communicate()[1].decode()}")
    return server, url


async def measure(
    url: str, path: Path, clients: int, records: int, gap: float
) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    parts = urlsplit(url)
    request = f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode()
    arrivals: list[dict[int, float]] = [{} for _ in range(clients)]
    transports = []
    opened = []
    for index in range(clients):
        transport, protocol = await loop.create_connection(
            lambda index=index: Client(request, arrivals[index]),
            parts.hostname,
            parts.port,
        )
        transports.append(transport)
        opened.append(protocol.connected)
    await asyncio.wait_for(asyncio.gather(*opened), 30)
    await asyncio.sleep(0.5)  # every connection is subscribed to the feed
    written: dict[int, float] = {}
    with path.open("ab") as file:
        for k in range(records):
            line = json.dumps({"seq": k, "t": time.time()}).encode() + b"\n"
            file.write(line)
            file.flush()
            written[2 + k] = time.monotonic()  # the file starts with one record: ids 2...
            await asyncio.sleep(gap)
    await asyncio.sleep(1.0)  # the last records arrive
    for transport in transports:
        transport.close()
    latencies = sorted(
        (got[event_id] - moment) * 1000
        for got in arrivals
        for event_id, moment in written.items()
        if event_id in got
    )
    expected = clients * records
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    return {
        "clients": clients,
        "records": records,
        "gap_s": gap,
        "received": len(latencies),
        "missing": expected - len(latencies),
        "p50_ms": round(quantiles[49], 2),
        "p99_ms": round(quantiles[98], 2),
        "max_ms": round(latencies[-1], 2) if latencies else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000, help="connections (default 1000)")
    parser.add_argument("--records", type=int, default=100, help="records appended (100)")
    parser.add_argument("--gap", type=float, default=0.05, help="seconds between records")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.clients + 100)), hard))
    if shutil.which("taskset"):
        os.sched_setaffinity(0, {1 % (os.cpu_count() or 1)})
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    with tempfile.TemporaryDirectory(prefix="sseplay-follow-") as directory:
        path = Path(directory) / "live.jsonl"
        path.write_text('{"seq": -1}\n')
        server, url = start_server(path)
        try:
            result = runner(measure(url, path, args.clients, args.records, args.gap))
        finally:
            server.terminate()
            server.wait(10)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
