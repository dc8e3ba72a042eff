"""The control API and the journal under load (issue 26).

1. Publish to delivery: ``sseplay serve live= --control`` (an empty live route) with N
   connections (default 1,000, raw sockets read by one epoll loop); events are published
   one at a time with ``POST /_sseplay/publish``; latency = arrival of the event's id at a
   client - the moment its POST was sent (wall clock). Arrival is the kernel's receive
   time of the segment (``SO_TIMESTAMPNS``): delivered to the client's socket, whatever
   this one client process then takes to read 1,000 sockets in turn (``read_by_client``
   is when it read it, the measure of earlier runs). p50, p99 and max over every (event,
   client) pair; ``fan_out_span`` is, per publish, the first delivery to the last.
   ``--ab BEFORE_DIR`` runs only this, for another checkout's sseplay and this one's, in
   interleaved rounds (``benchmarks/results/<UTC time>-publish-ab.md``).
2. The journal's CPU per event sent: ``sseplay serve FILE`` without a journal and with one
   (``--expect-client method=GET,backoff``: every request journaled and judged), in
   interleaved rounds (A B A B ...), each a fresh server; clients read a whole stream, the
   server ends it, they reconnect at once (so requests start and end all the time, the
   journal's work). Server CPU (utime + stime of its process) over the window / events the
   clients received.
3. The journal's own cost, in this process (no network noise): ``RequestJournal.started``
   and ``ended`` for a browser-like request (12 headers, a cookie, judged by two rules), in
   us per request; and 100,000 such requests into a 1 MiB journal: its size, its entries, how
   many were dropped, and the memory it holds (tracemalloc).

    python benchmarks/control_load.py                       # about 90 s
    python benchmarks/control_load.py --clients 200 --rounds 2 --seconds 4
    python benchmarks/control_load.py --ab BEFORE_DIR --pairs 3          # about 2 minutes

The publish part lives in ``benchmarks/publish_latency.py``. The server is pinned to core 0
and this client to core 1 when ``taskset`` exists (as
``benchmarks/run.py`` does). Results go to ``benchmarks/results/<UTC time>-control.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

RESULTS = Path(__file__).resolve().parent / "results"
JOURNAL_RULES = "method=GET,backoff"

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.publish_latency import (  # noqa: E402
    cpu_seconds,
    publish_ab,
    publish_latency,
    start_server,
)


class Reader(asyncio.Protocol):
    """One stream read to its end (``Connection: close``); counts its events."""

    def __init__(self, request: bytes, counts: list[int]) -> None:
        self.request = request
        self.counts = counts
        self.tail = b""
        self.done = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        cast(asyncio.WriteTransport, transport).write(self.request)

    def data_received(self, data: bytes) -> None:
        text = self.tail + data
        self.counts[0] += text.count(b"\nid: ") - self.tail.count(b"\nid: ")
        self.tail = text[-8:]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def churn(url: str, clients: int, seconds: float, pid: int) -> dict[str, float]:
    """Clients that read a whole stream and reconnect at once, for ``seconds``; the
    server's CPU and the events received over that window."""
    loop = asyncio.get_running_loop()
    parts = urlsplit(url)
    request = (
        f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n"
    ).encode()
    counts = [0]
    requests = [0]
    stop = loop.time() + seconds + 1.0

    async def client() -> None:
        while loop.time() < stop:
            _, protocol = await loop.create_connection(
                lambda: Reader(request, counts), parts.hostname, parts.port
            )
            requests[0] += 1
            await protocol.done

    tasks = [loop.create_task(client()) for _ in range(clients)]
    await asyncio.sleep(1.0)  # warm: every client is streaming
    cpu, events, started = cpu_seconds(pid), counts[0], time.monotonic()
    await asyncio.sleep(seconds)
    cpu, events = cpu_seconds(pid) - cpu, counts[0] - events
    elapsed = time.monotonic() - started
    await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "events": events,
        "cpu_s": round(cpu, 3),
        "us_per_event": round(cpu / events * 1e6, 3) if events else float("nan"),
        "events_per_s": round(events / elapsed),
        "requests": requests[0],
    }


def journal_cost(requests: int, max_bytes: int) -> dict[str, Any]:
    """``RequestJournal`` alone: us per request (started + ended), and bounded in bytes."""
    import tracemalloc

    from sseplay.config import ServerConfig
    from sseplay.http.journal import RequestJournal
    from sseplay.verdict import parse_rules

    headers = [
        (b"host", b"127.0.0.1:8000"),
        (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64) Chrome/130.0 Safari/537.36"),
        (b"accept", b"text/event-stream"),
        (b"accept-language", b"en-GB,en;q=0.9"),
        (b"accept-encoding", b"gzip, deflate, br"),
        (b"cache-control", b"no-cache"),
        (b"origin", b"http://127.0.0.1:5173"),
        (b"referer", b"http://127.0.0.1:5173/"),
        (b"cookie", b"session=0123456789abcdef0123456789abcdef"),
        (b"last-event-id", b"41"),
        (b"sec-fetch-mode", b"cors"),
        (b"connection", b"keep-alive"),
    ]
    config = ServerConfig(expect_client=parse_rules(["resumes,honours-retry"]))
    journal = RequestJournal(config)
    journal.journal.max_bytes = max_bytes

    async def nothing() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def run(count: int) -> float:
        started = time.perf_counter()
        for n in range(count):
            scope: dict[str, Any] = {
                "method": "GET",
                "path": "/events",
                "query_string": b"client=tab-%d" % (n % 50),
                "headers": headers,
                "client": ("127.0.0.1", 40000 + n % 20000),
            }
            await journal.started(scope, nothing, "/events")
            journal.ended(scope, "fault:drop", 200, None, 500)
        return time.perf_counter() - started

    asyncio.run(run(2000))  # warm
    tracemalloc.start()
    seconds = asyncio.run(run(requests))
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    kept = journal.journal
    return {
        "requests": requests,
        "us_per_request_traced": round(seconds / requests * 1e6, 2),
        "us_per_request": round(asyncio.run(run(20000)) / 20000 * 1e6, 2),
        "max_bytes": max_bytes,
        "size": kept.size,
        "entries": len(kept.entries),
        "dropped": kept.dropped,
        "memory_held_mib": round(held / 2**20, 2),
    }


def journal_state(url: str) -> dict[str, Any]:
    import httpx

    base = url.rsplit("/", 1)[0]
    text = httpx.get(f"{base}/_sseplay/journal", timeout=30).text
    lines = text.splitlines()
    first = json.loads(lines[0])["seq"] if lines else 1
    last = json.loads(lines[-1])["seq"] if lines else 0
    return {
        "entries": len(lines),
        "json_bytes": len(text.encode()),
        "first_seq": first,
        "last_seq": last,
        "dropped": first - 1,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000, help="publish: connections")
    parser.add_argument("--events", type=int, default=200, help="publish: events published")
    parser.add_argument("--gap", type=float, default=0.05, help="publish: seconds between")
    parser.add_argument("--readers", type=int, default=200, help="journal: clients")
    parser.add_argument("--rounds", type=int, default=4, help="journal: rounds of each")
    parser.add_argument("--seconds", type=float, default=8.0, help="journal: window")
    parser.add_argument("--interval", type=float, default=0.02, help="journal: event gap")
    parser.add_argument("--length", type=int, default=50, help="journal: events a stream")
    parser.add_argument(
        "--ab",
        metavar="BEFORE_DIR",
        help="publish only: the sseplay of BEFORE_DIR and of this checkout, interleaved",
    )
    parser.add_argument("--pairs", type=int, default=3, help="--ab: rounds of each")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.clients + 200)), hard))
    if shutil.which("taskset"):
        os.sched_setaffinity(0, {1 % (os.cpu_count() or 1)})
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    if args.ab:
        publish_ab(args)
        return
    load_before = os.getloadavg()
    server, url = start_server("live=", "--control")
    try:
        publish = publish_latency(url, args.clients, args.events, args.gap, server.pid)
    finally:
        server.terminate()
        server.wait(10)
    print("publish", json.dumps(publish), flush=True)
    rounds: dict[str, list[dict[str, float]]] = {"without": [], "with": []}
    bounded: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="sseplay-control-") as directory:
        path = Path(directory) / "events.jsonl"
        path.write_text(
            "".join(json.dumps({"n": n, "pad": "x" * 150}) + "\n" for n in range(args.length))
        )
        stream = [str(path), "--interval", str(args.interval)]
        for index in range(args.rounds * 2):
            kind = "without" if index % 2 == 0 else "with"
            extra = ["--expect-client", JOURNAL_RULES] if kind == "with" else []
            server, url = start_server(*stream, *extra)
            try:
                result = runner(churn(url, args.readers, args.seconds, server.pid))
                if kind == "with":
                    bounded = {**journal_state(url), "rss_mib": round(rss_mib(server.pid), 1)}
            finally:
                server.terminate()
                server.wait(10)
            rounds[kind].append(result)
            print(kind, json.dumps(result), flush=True)
    cost = journal_cost(100_000, 1 << 20)
    print("journal", json.dumps(cost), flush=True)
    per_event = {
        kind: statistics.median(r["us_per_event"] for r in rs) for kind, rs in rounds.items()
    }
    overhead = (per_event["with"] / per_event["without"] - 1) * 100
    load_after = os.getloadavg()
    report(args, publish, rounds, per_event, overhead, bounded, cost, load_before, load_after)


def report(
    args: argparse.Namespace,
    publish: dict[str, Any],
    rounds: dict[str, list[dict[str, float]]],
    per_event: dict[str, float],
    overhead: float,
    bounded: dict[str, Any],
    cost: dict[str, Any],
    load_before: tuple[float, float, float],
    load_after: tuple[float, float, float],
) -> None:
    stamp = time.strftime("%Y-%m-%dT%H-%M-%SZ", time.gmtime())
    command = "python benchmarks/control_load.py " + " ".join(sys.argv[1:])
    # The journal's own cost spread over the events of one request (--length of them), as a
    # share of the server's CPU per event without a journal.
    spread = cost["us_per_request"] / args.length / per_event["without"] * 100
    targets = [
        ("publish to delivery p99 ms", publish["p99_ms"], 5.0, publish["p99_ms"] <= 5.0),
        ("journal CPU per event %, measured", round(overhead, 2), 5.0, overhead <= 5.0),
        ("journal CPU per event %, its own cost", round(spread, 2), 5.0, spread <= 5.0),
        (
            "journal bytes after 100,000 requests",
            cost["size"],
            cost["max_bytes"],
            cost["size"] <= cost["max_bytes"],
        ),
    ]
    lines = [
        f"# The control API and the journal under load, issue 26 ({stamp})",
        "",
        f"Machine: {os.cpu_count()} cores; {platform.platform()}; "
        f"Python {platform.python_version()}",
        "",
        f"Load average before {' '.join(f'{x:.2f}' for x in load_before)}, after "
        f"{' '.join(f'{x:.2f}' for x in load_after)} (server on core 0, clients on core 1)",
        "",
        f"Command: `{command}`",
        "",
        "```",
        f"publish: {json.dumps(publish)}",
        *(
            f"{kind} journal, round {i + 1}: {json.dumps(r)}"
            for kind, rs in rounds.items()
            for i, r in enumerate(rs)
        ),
        f"median server CPU per event sent: without {per_event['without']} us, with "
        f"{per_event['with']} us: {overhead:+.2f} %",
        f"journal after the last round with it: {json.dumps(bounded)}",
        f"journal alone, in process: {json.dumps(cost)}",
        f"its own cost per event sent ({args.length} events a request): {spread:.2f} % of the "
        "server's CPU per event without it",
        *(
            f"target {name}: {value} (goal {goal}): {'met' if ok else 'MISSED'}"
            for name, value, goal, ok in targets
        ),
        "```",
        "",
    ]
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{stamp}-control.md"
    out.write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
