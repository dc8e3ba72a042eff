"""What ``sseplay record`` (the recording proxy, issue 24) costs per stream and per event.

Three phases, each bounded in time, on 127.0.0.1:

1. ``sseplay serve FILE --loop --interval 0.02`` with N clients: the CPU ``serve`` spends
   per event it sends (the yardstick of issue 24), each client on a timeline of its own,
   begun when it connected, so that events fall due at moments independent of each
   other, as the proxy's upstream events do; and the same with ``--broadcast``, one
   timeline whose every event goes to all N clients in one timer round (the cheapest
   event ``serve`` sends: one wake-up for N writes, which the proxy cannot share).
2. A small uvicorn upstream (this file, ``--upstream``): N streams of 50 events/s, each
   event stamped with ``time.monotonic()`` just before it is written; N clients read it
   directly: the latency without the proxy.
3. The same upstream through ``sseplay record UPSTREAM --out TMP``, N clients: client
   read time - upstream stamp (one host, one clock), the proxy's CPU per relayed event
   (utime + stime from /proc), and its memory per proxied stream (RSS with the N streams
   open - RSS before, / N).

    python benchmarks/proxy_latency.py                     # 200 streams, 10 s through the proxy
    python benchmarks/proxy_latency.py --streams 50 --seconds 5
    python benchmarks/proxy_latency.py --rounds 3 --before /tmp/old   # an older checkout too,
                                                                      # interleaved per round

The proxy phase also reads a tenth as many streams directly at the same time, so that the
"added" latency can be taken against the same moment's load (``added_p99_ms_vs_control``),
which on a shared machine moves more between phases than the proxy adds. Results go to
``benchmarks/results/<UTC time>-proxy.md``.

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
    transports: list[asyncio.BaseTransport] = []
    clients: list[Client] = []
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


def start(command: list[str], pythonpath: Path = ROOT) -> tuple[subprocess.Popen[bytes], str]:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    process = subprocess.Popen(
        # In the checkout: ``python -m`` looks in the working directory first.
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=pythonpath,
        bufsize=0,
        env=env,
    )
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], 20)
    assert ready, f"{command} printed nothing"
    return process, process.stdout.readline().decode().strip()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(
    url: str, pid: int, streams: int, seconds: float, control: str | None = None
) -> dict[str, float]:
    """Open the clients, let them settle, then measure for ``seconds``. ``control``: the
    upstream's URL, read by a tenth as many clients at the same time, directly: the
    latency without the proxy under the very same load (``control_*``)."""
    rss_before = rss_kib(pid)
    transports, clients, latencies, counts = await open_clients(url, streams)
    direct: list[Client] = []
    direct_latencies: list[float] = []
    if control is not None:
        more, direct, direct_latencies, _ = await open_clients(control, max(1, streams // 10))
        transports += more
    await asyncio.sleep(1.0)  # every stream open and flowing
    for client in clients + direct:
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
    result = {
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
    if direct_latencies:
        control_ms = [value * 1000 for value in direct_latencies]
        result["control_p50_ms"] = statistics.median(control_ms)
        result["control_p99_ms"] = percentile(control_ms, 0.99)
    return result


def serve_phase(scratch: Path, streams: int, seconds: float, broadcast: bool) -> dict[str, float]:
    """``serve``'s CPU per sent event: ``broadcast``, one timeline whose every event goes to
    all clients in one timer round; else one timeline per client, each begun when its
    client connected, so events fall due at independent moments, as the proxy's do."""
    events = scratch / "events.jsonl"
    events.write_text('{"n": 1, "t": 0.0}\n')
    mode = ["--broadcast"] if broadcast else []
    serve, serve_url = start(
        [sys.executable, "-m", "sseplay", "serve", str(events), *mode, "--loop",
         "--interval", str(1 / RATE), "--ping", "0", "--port", "0", "-q"]
    )  # fmt: skip
    try:
        return asyncio.run(measure(serve_url, serve.pid, streams, seconds))
    finally:
        serve.kill()
        serve.wait()


def proxy_phase(root: Path, base: str, out: Path, streams: int, seconds: float) -> dict[str, float]:
    """``sseplay record`` of the checkout at ``root``, with the concurrent direct control."""
    proxy, proxy_url = start(
        [sys.executable, "-m", "sseplay", "record", base, "--out", str(out), "--port", "0", "-q"],
        pythonpath=root,
    )
    try:
        import httpx

        httpx.get(proxy_url + "/warm-up", timeout=5)  # imports done, first exchange
        return asyncio.run(measure(proxy_url + "/s", proxy.pid, streams, seconds, base + "/s"))
    finally:
        proxy.kill()
        proxy.wait()


def summary_of(
    broadcast: dict[str, float],
    serve: dict[str, float],
    direct: dict[str, float],
    proxied: dict[str, float],
) -> dict[str, float]:
    return {
        "added_p50_ms": proxied["p50_ms"] - direct["p50_ms"],
        "added_p99_ms": proxied["p99_ms"] - direct["p99_ms"],
        "added_p99_ms_vs_control": proxied["p99_ms"] - proxied["control_p99_ms"],
        "proxy_cpu_vs_serve": proxied["cpu_us_per_event"] / serve["cpu_us_per_event"],
        "proxy_cpu_vs_broadcast": proxied["cpu_us_per_event"] / broadcast["cpu_us_per_event"],
        "proxy_kib_per_stream": proxied["rss_per_stream_kib"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=1, help="repeat every phase, interleaved")
    parser.add_argument(
        "--before", type=Path, metavar="DIR", help="also the proxy of this checkout, interleaved"
    )
    parser.add_argument("--note", default="", help="a line for the results file")
    parser.add_argument("--no-write", action="store_true", help="print only, no results file")
    parser.add_argument("--upstream", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.upstream:
        run_upstream()
        return
    load_before = os.getloadavg()
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        for number in range(args.rounds):
            phases: dict[str, dict[str, float]] = {
                "load": dict(zip(("1", "5", "15"), os.getloadavg(), strict=True))
            }
            phases["serve --broadcast"] = serve_phase(scratch, args.streams, args.seconds / 2, True)
            phases["serve"] = serve_phase(scratch, args.streams, args.seconds / 2, False)
            upstream, port = start([sys.executable, __file__, "--upstream"])
            base = f"http://127.0.0.1:{port}"
            try:
                phases["upstream direct"] = asyncio.run(
                    measure(base + "/s", upstream.pid, args.streams, args.seconds / 2)
                )
                checkouts = [("through sseplay record", ROOT)]
                if args.before is not None:
                    checkouts.append(("through sseplay record (before)", args.before))
                for name, root in checkouts if number % 2 == 0 else checkouts[::-1]:
                    out = scratch / f"rec-{number}-{len(phases)}"
                    phases[name] = proxy_phase(root, base, out, args.streams, args.seconds)
            finally:
                upstream.kill()
                upstream.wait()
            summaries = {
                name: summary_of(
                    phases["serve --broadcast"], phases["serve"], phases["upstream direct"], phase
                )
                for name, phase in phases.items()
                if name.startswith("through")
            }
            rounds.append({"phases": phases, "summary": summaries})
            print(json.dumps(rounds[-1]["summary"], indent=1), flush=True)
    load_after = os.getloadavg()
    report = {
        "streams": args.streams,
        "events_per_second_per_stream": RATE,
        "load_before": load_before,
        "load_after": load_after,
        "rounds": rounds,
    }
    print(json.dumps(report, indent=1))
    if not args.no_write:
        write_results(args, report)


def raw_results(report: dict[str, Any]) -> list[str]:
    """The end of a results file: the whole report, as JSON."""
    return ["## Raw results", "", "```json", json.dumps(report, indent=1), "```", ""]


def write_results(args: argparse.Namespace, report: dict[str, Any]) -> None:
    import platform

    stamp = time.strftime("%Y-%m-%dT%H-%M-%SZ", time.gmtime())
    command = "python benchmarks/proxy_latency.py " + " ".join(sys.argv[1:])
    rows = [
        "| round | load (1 min) | proxy | added p50 ms | added p99 ms | p99 vs concurrent"
        " direct ms | CPU us/event (user + sys) | serve us/event | x serve"
        " | serve --broadcast us/event | x serve --broadcast | KiB/stream |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for number, one in enumerate(report["rounds"], 1):
        phases = one["phases"]
        for name, summary in one["summary"].items():
            phase = phases[name]
            rows.append(
                f"| {number} | {phases['load']['1']:.2f} | {name.removeprefix('through ')} "
                f"| {summary['added_p50_ms']:.2f} | {summary['added_p99_ms']:.2f} "
                f"| {summary['added_p99_ms_vs_control']:.2f} "
                f"| {phase['cpu_us_per_event']:.1f} ({phase['user_us_per_event']:.1f} + "
                f"{phase['system_us_per_event']:.1f}) "
                f"| {phases['serve']['cpu_us_per_event']:.1f} "
                f"| {summary['proxy_cpu_vs_serve']:.2f} "
                f"| {phases['serve --broadcast']['cpu_us_per_event']:.1f} "
                f"| {summary['proxy_cpu_vs_broadcast']:.2f} "
                f"| {summary['proxy_kib_per_stream']:.1f} |"
            )
    load = " ".join(f"{x:.2f}" for x in report["load_before"])
    text = "\n".join(
        [
            f"# Proxy latency (issue 24), {stamp}",
            "",
            f"Machine: {platform.node()}, {os.cpu_count()} CPUs, Python "
            f"{platform.python_version()}; load average before {load}, after "
            + " ".join(f"{x:.2f}" for x in report["load_after"]),
            "",
            f"Command: `{command}`",
            *(["", f"Note: {args.note}"] if args.note else []),
            "",
            f"{report['streams']} streams of {RATE:g} events/s. Targets: added p99 <= 2 ms, CPU"
            " per relayed event <= 3x serve's per sent event, <= 64 KiB per stream.",
            "",
            *rows,
            "",
            *raw_results(report),
        ]
    )
    results = ROOT / "benchmarks" / "results"
    results.mkdir(exist_ok=True)
    path = results / f"{stamp}-proxy.md"
    path.write_text(text)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
