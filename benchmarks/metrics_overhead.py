"""Issue 28: what ``serve --metrics`` costs per event sent, with and without, one run.

    python benchmarks/metrics_overhead.py [--clients 2000] [--seconds 8] [--rounds 3] \
        [--scrape 1.0] [--note TEXT]

Each round serves the same file twice, ``sseplay serve`` with ``--metrics`` and without,
the order flipping every round, so that a neighbour's load on this shared machine falls
on both alike. Each run: ``--clients`` clients (``benchmarks/loadclient.py``, pinned to
the client core; the server to the server core), each its own replay at 10 events/s of
200 bytes (``run.INTERVAL``): the per-connection write path, where counting would cost
the most. The server's CPU comes from /proc between "connected" and "measured"
(``run.cpu_seconds``, clock ticks of 10 ms), divided by the events the clients got in
that window. With ``--metrics``, /metrics is scraped every ``--scrape`` seconds meanwhile
(a Prometheus scrapes every 15 s by default: this is harsher).

Prints the CPU per event of each run, the medians and their ratio (flagged past 1.05,
the issue's bound), and the median of each round's own with/without ratio; writes the
same with the machine and the command to benchmarks/results/<UTC time>-metrics-overhead.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import run

BOUND = 1.05  # issue 28: within 5 % of without
VARIANTS = {"without": (), "with --metrics": ("--metrics",)}


def scraping(url: str, every: float, stop: threading.Event, counts: list[int]) -> None:
    """Scrape /metrics every ``every`` seconds (absolute deadlines) until ``stop``."""
    base = url.rsplit("/", 1)[0]
    deadline = time.monotonic()
    with httpx.Client(timeout=10) as client:
        while not stop.is_set():
            if client.get(base + "/metrics").status_code == 200:
                counts[0] += 1
            deadline += every
            stop.wait(max(0.0, deadline - time.monotonic()))


def one_run(
    data: Path, extra: tuple[str, ...], clients: int, seconds: float, every: float
) -> dict[str, Any]:
    cpu: dict[str, float] = {}
    stop, scrapes = threading.Event(), [0]
    with run.server("sseplay", data, run.INTERVAL, extra) as (url, pid):
        pids = run.process_tree(pid)
        scraper = threading.Thread(target=scraping, args=(url, every, stop, scrapes))

        def mark(name: str) -> None:
            cpu[name] = run.cpu_seconds(pids)
            if name == "connected" and extra:
                scraper.start()

        result: dict[str, Any] = dict(run.load(url, clients, seconds, run.INTERVAL, mark))
        stop.set()
        if scraper.is_alive():
            scraper.join(15)
    used = cpu["measured"] - cpu["connected"]
    events = result["window_events"]
    result["server_cpu_seconds"] = round(used, 3)
    result["cpu_us_per_event"] = round(used / events * 1e6, 3) if events else None
    result["scrapes"] = scrapes[0]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scrape", type=float, default=1.0)
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    run.cache_bytecode()
    run.WORK.mkdir(exist_ok=True)
    data = run.write_records(
        run.WORK / "metrics.jsonl", int((args.seconds + 30) / run.INTERVAL), 200
    )
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in VARIANTS}
    order = list(VARIANTS)
    for number in range(1, args.rounds + 1):
        for name in order:
            result = one_run(data, VARIANTS[name], args.clients, args.seconds, args.scrape)
            runs[name].append(result)
            print(
                f"round {number} {name:15} {result['cpu_us_per_event']} us/event "
                f"({result['window_events']} events, delivery {result['delivery']:.3f}, "
                f"{result['scrapes']} scrapes)",
                flush=True,
            )
        order.reverse()
    medians = {
        name: statistics.median(r["cpu_us_per_event"] for r in results)
        for name, results in runs.items()
    }
    ratio = medians["with --metrics"] / medians["without"]
    # Each round's own pair, run back to back: the machine's drift between rounds cancels.
    paired = statistics.median(
        counted["cpu_us_per_event"] / plain["cpu_us_per_event"]
        for plain, counted in zip(runs["without"], runs["with --metrics"], strict=True)
    )
    verdict = "within" if ratio <= BOUND else "PAST"
    summary = (
        f"with/without = {ratio:.3f} (ratio of the medians, {verdict} the {BOUND:.2f} bound); "
        f"median of the rounds' own ratios {paired:.3f}"
    )
    print(summary)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%SZ")
    path = run.RESULTS / f"{stamp}-metrics-overhead.md"
    lines = [
        f"# serve --metrics overhead, {stamp}",
        "",
        f"`{shlex.join(['python', 'benchmarks/metrics_overhead.py', *sys.argv[1:]])}`",
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.2f}; Python {platform.python_version()}. {args.note}",
        "",
        f"{args.clients} clients, each its own replay at 10 events/s of 200 bytes; "
        f"{args.seconds:g} s windows; with --metrics, /metrics scraped every {args.scrape:g} s.",
        "",
        "| round | without (us/event) | with --metrics (us/event) | delivery without | "
        "delivery with |",
        "|---|---|---|---|---|",
    ]
    for number, (plain, counted) in enumerate(
        zip(runs["without"], runs["with --metrics"], strict=True), 1
    ):
        lines.append(
            f"| {number} | {plain['cpu_us_per_event']} | {counted['cpu_us_per_event']} | "
            f"{plain['delivery']:.3f} | {counted['delivery']:.3f} |"
        )
    lines += [
        "",
        f"Medians: without {medians['without']:.3f} us/event, with --metrics "
        f"{medians['with --metrics']:.3f} us/event; {summary}.",
        "",
    ]
    path.write_text("\n".join(lines))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
