"""Before/after comparison of a change to sseplay's code in one run (interleaved).

    python benchmarks/timer_ab.py BEFORE_DIR [--workers 1000,2000] [--fanout 1000,3000] \
        [--seconds 8] [--repeats 2] [--fanout-repeats 1] [--note TEXT]

BEFORE_DIR is a copy of the code before the change (``git archive``); the after code is
this checkout. Each server is started from its tree's root (``python -m sseplay`` puts
the working directory first on sys.path, so that tree's package is what runs). Runs
alternate before and after at every count, so a neighbour's load on this shared machine
falls on both alike. Measured: ``workers`` (issue 14 item 4: --workers 1 and 2, CPU per
delivered event, wake-ups) and the single-process fan-out (delivery, drift, CPU per
event, wake-ups). Writes benchmarks/results/<UTC time>-ab.json and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import run


def single_run(data: Path, clients: int, seconds: float) -> dict[str, Any]:
    """One single-process fan-out run (no --workers), with CPU and wake-ups as in workers_run."""
    cpu: dict[str, float] = {}
    switches: dict[str, tuple[int, int]] = {}
    with run.server("sseplay", data, run.INTERVAL) as (url, pid):
        pids = run.process_tree(pid)

        def mark(name: str) -> None:
            cpu[name] = run.cpu_seconds(pids)
            switches[name] = run.context_switches(pids)

        result: dict[str, Any] = dict(run.load(url, clients, seconds, run.INTERVAL, mark))
    used = cpu["measured"] - cpu["connected"]
    events = result["window_events"]
    window = result["window_seconds"]
    result["server_cpu_seconds"] = round(used, 3)
    result["cpu_us_per_event"] = round(used / events * 1e6, 2) if events else None
    result["wakeups_per_s"] = round((switches["measured"][0] - switches["connected"][0]) / window)
    result["preempted_per_s"] = round((switches["measured"][1] - switches["connected"][1]) / window)
    print(
        f"  fan-out {clients:5} clients: delivery {result['delivery']:.3f} drift p99"
        f" {result['drift_p99_ms']} ms (steady {result['steady_drift_p99_ms']}) p50"
        f" {result['drift_p50_ms']} ms; {result['cpu_us_per_event']} us/event,"
        f" {result['wakeups_per_s']} wake-ups/s; client cpu {result['client_cpu']}",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("before", type=Path)
    parser.add_argument("--workers", default="1000,2000")
    parser.add_argument("--fanout", default="1000,3000,5000,7000")
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--fanout-repeats", type=int, default=1)
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    run.cache_bytecode()
    run.WORK.mkdir(exist_ok=True)
    trees = {"before": args.before.resolve(), "after": run.ROOT}
    data = run.write_records(
        run.WORK / "fanout.jsonl", int((args.seconds + 30) / run.INTERVAL), 200
    )
    out: dict[str, Any] = {"note": args.note, "workers": {}, "fanout": {}}
    for name in trees:
        out["workers"][name] = []
        out["fanout"][name] = []

    def as_(name: str) -> None:
        run.ROOT = trees[name]
        print(f" [{name}]", flush=True)

    for clients in [int(c) for c in args.workers.split(",") if c]:
        for _ in range(args.repeats):
            for name in trees:
                for count in (1, 2):
                    as_(name)
                    out["workers"][name].append(run.workers_run(data, count, clients, args.seconds))
    for clients in [int(c) for c in args.fanout.split(",") if c]:
        for _ in range(args.fanout_repeats):
            for name in trees:
                as_(name)
                out["fanout"][name].append(single_run(data, clients, args.seconds))
    run.ROOT = trees["after"]
    for name in trees:
        if out["workers"][name]:
            out["workers"][name + "_summary"] = run.workers_summary(out["workers"][name])
            print(name, json.dumps(out["workers"][name + "_summary"]), flush=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%SZ")
    path = run.RESULTS / f"{stamp}-ab.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
