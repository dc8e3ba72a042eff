"""A load client that measures the server, not itself: uvloop, raw sockets, httptools.

Opens N connections to an SSE URL, counts events (blank-line terminated blocks) as they
arrive and records, per event, drift = arrival of event k - first arrival - k * interval.
Prints one JSON object (the last line): delivery, drift percentiles, and the client's own
CPU use; before it, "connected" once every client has connected and "measured" at the end
of the measured window, before the clients hang up, so that a harness can sample the
server over exactly that window.

    python benchmarks/loadclient.py URL --clients 1000 --seconds 10 --interval 0.1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from urllib.parse import urlsplit

import httptools
import uvloop


class SSEClient(asyncio.Protocol):
    def __init__(self, request: bytes, interval: float, keep_drift: bool) -> None:
        self.request = request
        self.interval = interval
        self.keep_drift = keep_drift
        self.events = 0
        self.first: float | None = None
        self.opened: float | None = None
        self.closed: float | None = None
        self.status = 0
        self.drifts: list[float] = []
        self.arrivals: list[float] = []
        self.bytes = 0
        self._tail = b""
        self._parser = httptools.HttpResponseParser(self)
        self.done = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.opened = time.monotonic()
        transport.write(self.request)  # type: ignore[attr-defined]

    def on_status(self, status: bytes) -> None:
        self.status = self._parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        now = time.monotonic()
        self.bytes += len(body)
        data = self._tail + body
        # An event ends with a blank line: LF LF, or CRLF CRLF (sse-starlette's default).
        count = data.count(b"\n\n") + data.count(b"\r\n\r\n")
        if count:
            self._tail = data[max(data.rfind(b"\n\n") + 2, data.rfind(b"\r\n\r\n") + 4) :]
            if self.first is None:
                self.first = now
            if self.keep_drift:
                base = self.first
                for k in range(self.events, self.events + count):
                    self.drifts.append(now - base - k * self.interval)
                    self.arrivals.append(now)
            self.events += count
        else:
            self._tail = data[-3:]

    def data_received(self, data: bytes) -> None:
        self._parser.feed_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = time.monotonic()
        if not self.done.done():
            self.done.set_result(None)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(
    url: str, clients: int, seconds: float, interval: float, ramp: float
) -> dict[str, object]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    loop = asyncio.get_running_loop()
    cpu_start = resource.getrusage(resource.RUSAGE_SELF)
    protocols: list[SSEClient] = []
    failed = 0
    started = time.monotonic()
    for index in range(clients):
        try:
            _, protocol = await loop.create_connection(
                lambda: SSEClient(request, interval, keep_drift=True), host, port
            )
            protocols.append(protocol)
        except OSError:
            failed += 1
        if ramp and index % 100 == 99:
            await asyncio.sleep(ramp * 100 / clients)
    connected = time.monotonic()
    # Marks for a harness that samples the server (its CPU time) over the steady window:
    # from every client connected to just before they hang up.
    print("connected", flush=True)
    events_at_connected = sum(p.events for p in protocols)
    await asyncio.sleep(seconds)
    end = time.monotonic()
    events_at_end = sum(p.events for p in protocols)
    print("measured", flush=True)
    for protocol in protocols:
        protocol.transport.close()
    cpu_end = resource.getrusage(resource.RUSAGE_SELF)
    received = due = 0
    drifts: list[float] = []
    steady: list[float] = []  # events that arrived once every client had connected
    for protocol in protocols:
        if protocol.first is None:
            due += int((end - (protocol.opened or end)) / interval) + 1 if interval else 0
            continue
        open_for = end - protocol.first
        expected = int(open_for / interval) + 1 if interval else protocol.events
        due += expected
        received += min(protocol.events, expected)
        drifts.extend(protocol.drifts)
        steady.extend(
            d for d, t in zip(protocol.drifts, protocol.arrivals, strict=True) if t >= connected
        )
    cpu = (cpu_end.ru_utime - cpu_start.ru_utime) + (cpu_end.ru_stime - cpu_start.ru_stime)
    wall = end - started
    return {
        "clients": clients,
        "connected": len(protocols),
        "failed": failed,
        "connect_seconds": round(connected - started, 3),
        "events": received,
        "delivery": round(received / due, 4) if due else 0.0,
        "drift_p50_ms": round(percentile(drifts, 0.50) * 1000, 2),
        "drift_p99_ms": round(percentile(drifts, 0.99) * 1000, 2),
        "drift_max_ms": round(max(drifts, default=float("nan")) * 1000, 2),
        "steady_drift_p99_ms": round(percentile(steady, 0.99) * 1000, 2),
        "client_cpu": round(cpu / wall, 3),
        "bytes": sum(p.bytes for p in protocols),
        # Every event that arrived, on time or not: what the server delivered.
        "events_received": sum(p.events for p in protocols),
        # Events that arrived between the two marks, and how long that window was.
        "window_events": events_at_end - events_at_connected,
        "window_seconds": round(end - connected, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--ramp", type=float, default=0.0, help="seconds to spread connects over")
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    uvloop.install()
    result = asyncio.run(run(args.url, args.clients, args.seconds, args.interval, args.ramp))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
