"""Issue 22: start-up and fan-out CPU of the code before and after a restructure, one run.

    python benchmarks/restructure_ab.py BEFORE_DIR [--after DIR] [--rounds 30] \
        [--fanout 1000] [--seconds 8] [--repeats 2] [--note TEXT]

BEFORE_DIR is a copy of the code before (``git archive``); ``--after`` the code after
(default: this checkout). Every command is started from its tree's root as
``python -m sseplay`` with the working directory and PYTHONPATH set to that tree (``-m``
puts the working directory first on sys.path, so that tree's package is what runs; each
tree's ``sseplay.__file__`` is checked first), bytecode cached as run.py does. Measured,
before and after interleaved, the order flipping every round (after one discarded round
that fills the bytecode cache), so that a neighbour's load on this shared machine falls
on both alike:

1. ``sseplay --help``: wall time to exit, and the child's CPU time (getrusage);
2. ``sseplay tail URL --count 1``: wall time to exit and CPU, both trees against one
   server (this checkout's code, a 1-event file at interval 0: an event at once);
3. launch of ``sseplay serve samples/scores.json --port 0`` to the first body byte of
   /events (run.launch_once, the URL read from the server's output);
4. fan-out server CPU per delivered event at ``--fanout`` clients (timer_ab.single_run:
   10 events/s per client, 200-byte events), ``--repeats`` times per tree, alternating.

Commands 1 and 2 run pinned to the client core, servers to the server core (server CPU
comes from /proc in clock ticks, 10 ms: keep ``--fanout`` x ``--seconds`` large enough, the
default about 1.5 s of CPU per run). Prints the
median, mean and quartiles per measure and tree, the after/before ratio of the medians
(flagged past 1.05, issue 22's bound) and the paired rounds; writes the same with the
machine, load average, versions, command and raw numbers to
benchmarks/results/<UTC time>-restructure-ab.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import run, timer_ab

TREES = ("before", "after")
BOUND = 1.05  # issue 22: within 5 % of before
# measure: (unit, part of issue 22's "done when")
MEASURES = {
    "--help wall": ("ms", True),
    "--help CPU": ("ms", False),
    "tail --count 1 wall": ("ms", True),
    "tail --count 1 CPU": ("ms", False),
    "launch to first body byte": ("ms", True),
    "fan-out CPU per event": ("us", True),
}


def tree_env(tree: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(tree)}


@contextlib.contextmanager
def in_tree(tree: Path) -> Iterator[None]:
    """run.server and run.launch_once start their commands with cwd run.ROOT and the
    environment of this process: point both at ``tree``."""
    saved_root, saved_path = run.ROOT, os.environ.get("PYTHONPATH")
    run.ROOT = tree
    os.environ["PYTHONPATH"] = str(tree)
    try:
        yield
    finally:
        run.ROOT = saved_root
        if saved_path is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved_path


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def command_once(tree: Path, args: list[str]) -> tuple[float, float]:
    """``python -m sseplay ARGS`` from ``tree``, pinned to the client core: (wall, CPU) in
    seconds, CPU from the growth of this process's reaped children's usage."""
    cpu_before = children_cpu()
    started = time.perf_counter()
    subprocess.run(
        run.pinned(run.CLIENT_CORE, [run.PYTHON, "-m", "sseplay", *args]),
        cwd=tree,
        env=tree_env(tree),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
        timeout=60,
    )
    wall = time.perf_counter() - started
    return wall, children_cpu() - cpu_before


def launch_once(tree: Path) -> float:
    """Launch of `sseplay serve samples/scores.json --port 0` from ``tree`` to the first body
    byte of /events (seconds); the same file for both trees."""
    variant = run.Launch(
        lambda _: [run.PYTHON, "-m", "sseplay", "serve", str(run.SCORES), "--port", "0"],
        announced="stdout",
    )
    with in_tree(tree):
        return run.launch_once(variant)[1]


def versions(trees: dict[str, Path]) -> dict[str, str]:
    """Per tree: which sseplay.__file__ runs from it (must be inside it), --version, git commit."""
    out = {}
    for name, tree in trees.items():
        found = subprocess.run(
            [run.PYTHON, "-c", "import sseplay; print(sseplay.__file__)"],
            cwd=tree,
            env=tree_env(tree),
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if not Path(found).resolve().is_relative_to(tree):
            raise SystemExit(f"{name}: sseplay runs from {found}, not from {tree}")
        version = subprocess.run(
            [run.PYTHON, "-m", "sseplay", "--version"],
            cwd=tree,
            env=tree_env(tree),
            capture_output=True,
            text=True,
        ).stdout.strip()
        git = subprocess.run(
            ["git", "-C", str(tree), "log", "-1", "--format=%h %s"], capture_output=True, text=True
        )
        subject = git.stdout.strip()
        subject = subject[:80] + "..." if len(subject) > 80 else subject
        commit = subject if git.returncode == 0 else "no git metadata"
        if git.returncode == 0:
            dirty = subprocess.run(
                ["git", "-C", str(tree), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
            ).stdout.strip()
            commit += " (uncommitted changes)" if dirty else ""
        out[name] = f"{tree}: {version or 'no --version'}; {commit}; runs {found}"
    return out


def summary(xs: list[float]) -> dict[str, float]:
    q1, _, q3 = statistics.quantiles(xs, n=4) if len(xs) > 1 else (xs[0], 0, xs[0])
    return {
        "median": statistics.median(xs),
        "mean": statistics.mean(xs),
        "p25": q1,
        "p75": q3,
        "min": min(xs),
        "max": max(xs),
        "n": len(xs),
    }


def report_lines(raw: dict[str, dict[str, list[float]]]) -> tuple[list[str], list[str]]:
    """The printed summary, and the measures of issue 22 whose median ratio is past BOUND."""
    lines, over = [], []
    for measure, (unit, counted) in MEASURES.items():
        for name in TREES:
            s = summary(raw[measure][name])
            lines.append(
                f"{measure:26} {name:6} median {s['median']:7.2f} {unit}, mean {s['mean']:7.2f},"
                f" p25 {s['p25']:7.2f}, p75 {s['p75']:7.2f}, min {s['min']:7.2f},"
                f" max {s['max']:7.2f} ({s['n']} runs)"
            )
        before, after = raw[measure]["before"], raw[measure]["after"]
        ratio = statistics.median(after) / statistics.median(before)
        paired = [a / b for a, b in zip(after, before, strict=True)]
        flag = f"  ** > {BOUND} **" if ratio > BOUND else ""
        if ratio > BOUND and counted:
            over.append(measure)
        lines.append(
            f"{measure:26} after/before {ratio:.3f}{flag}; after <= before in"
            f" {sum(p <= 1 for p in paired)} of {len(paired)} rounds, median per-round ratio"
            f" {statistics.median(paired):.3f}{'' if counted else ' (information)'}"
        )
    return lines, over


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path, help="the code before (a git archive)")
    parser.add_argument("--after", type=Path, default=run.ROOT, help="default: this checkout")
    parser.add_argument("--rounds", type=int, default=30, help="start-up rounds (default 30)")
    parser.add_argument("--fanout", type=int, default=1000, help="fan-out clients (default 1000)")
    parser.add_argument("--seconds", type=float, default=8, help="fan-out window (default 8)")
    parser.add_argument("--repeats", type=int, default=2, help="fan-out runs per tree (default 2)")
    parser.add_argument("--note", default="", help="a line for the results file")
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    for name, tree in trees.items():
        if not (tree / "sseplay" / "__init__.py").exists():
            parser.error(f"{name}: no sseplay package in {tree}")
    command = "python benchmarks/restructure_ab.py " + shlex.join(sys.argv[1:])
    run.cache_bytecode()
    run.WORK.mkdir(exist_ok=True)
    began, load_before = time.monotonic(), os.getloadavg()
    tree_versions = versions(trees)
    for name in TREES:
        print(f"{name}: {tree_versions[name]}", flush=True)
    raw: dict[str, dict[str, list[float]]] = {m: {n: [] for n in TREES} for m in MEASURES}

    one = run.write_records(run.WORK / "one.jsonl", 1, 100)
    with run.server("sseplay", one, 0) as (url, _):
        for round_ in range(args.rounds + 1):
            order = TREES if round_ % 2 else TREES[::-1]
            got: dict[str, dict[str, float]] = {m: {} for m in MEASURES}
            for name in order:
                wall, cpu = command_once(trees[name], ["--help"])
                got["--help wall"][name], got["--help CPU"][name] = wall * 1e3, cpu * 1e3
            for name in order:
                wall, cpu = command_once(trees[name], ["tail", url, "--count", "1"])
                got["tail --count 1 wall"][name] = wall * 1e3
                got["tail --count 1 CPU"][name] = cpu * 1e3
            for name in order:
                got["launch to first body byte"][name] = launch_once(trees[name]) * 1e3
            if not round_:
                continue  # the first round only fills the bytecode cache
            for measure, by_tree in got.items():
                for name, value in by_tree.items():
                    raw[measure][name].append(value)
            print(
                f"  round {round_:2}/{args.rounds} ({'-'.join(order)}): "
                + "; ".join(
                    f"{m} {v['before']:.0f}/{v['after']:.0f}"
                    for m, v in got.items()
                    if m != "fan-out CPU per event"
                ),
                flush=True,
            )
    start_up_seconds = time.monotonic() - began

    fanout_began = time.monotonic()
    data = run.write_records(
        run.WORK / "fanout.jsonl", int((args.seconds + 30) / run.INTERVAL), 200
    )
    fanout_runs: dict[str, list[dict[str, Any]]] = {n: [] for n in TREES}
    for repeat in range(args.repeats):
        for name in TREES if repeat % 2 == 0 else TREES[::-1]:
            print(f" [{name}]", end="", flush=True)
            with in_tree(trees[name]):
                result = timer_ab.single_run(data, args.fanout, args.seconds)
            fanout_runs[name].append(result)
            raw["fan-out CPU per event"][name].append(result["cpu_us_per_event"])
    fanout_seconds = time.monotonic() - fanout_began

    lines, over = report_lines(raw)
    behind = [
        f"{name} delivery {r['delivery']:.3f}"
        for name in TREES
        for r in fanout_runs[name]
        if r["delivery"] < 0.99
    ]
    if behind:
        lines.append(
            "fan-out: a server fell behind (" + ", ".join(behind) + "): CPU per event of an"
            " overloaded server is not comparable"
        )
    lines.append(
        "issue 22 (within 5 %): "
        + (f"PAST THE BOUND: {', '.join(over)}" if over else "every measure within 5 %")
    )
    lines.append(
        f"took {start_up_seconds:.0f} s for {args.rounds} + 1 start-up rounds"
        f" ({start_up_seconds / (args.rounds + 1):.1f} s a round) and {fanout_seconds:.0f} s for"
        f" {2 * args.repeats} fan-out runs at {args.fanout} clients"
        f" ({fanout_seconds / (2 * args.repeats):.1f} s a run)"
    )
    print("\n".join(lines))

    load_after = os.getloadavg()
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%SZ")
    raw_out = {
        "start_up": {m: raw[m] for m in MEASURES if m != "fan-out CPU per event"},
        "fanout": fanout_runs,
    }
    report = "\n".join(
        [
            f"# Issue 22: before/after the restructure, interleaved ({stamp})",
            "",
            f"Machine: {run.machine()}",
            "",
            f"Load average at the start {' '.join(f'{x:.2f}' for x in load_before)}, at the"
            f" end {' '.join(f'{x:.2f}' for x in load_after)}; niceness {os.nice(0)}",
            "",
            *[f"- {name}: {tree_versions[name]}" for name in TREES],
            "",
            f"Command: `{command}`",
            "",
            *([f"Note: {args.note}", ""] if args.note else []),
            "```",
            *lines,
            "```",
            "",
            "## Raw results",
            "",
            "Start-up in ms per round (first round discarded), in round order; fan-out: each"
            " run of timer_ab.single_run, in run order.",
            "",
            "```json",
            json.dumps(raw_out, indent=1),
            "```",
            "",
        ]
    )
    run.RESULTS.mkdir(exist_ok=True)
    path = run.RESULTS / f"{stamp}-restructure-ab.md"
    path.write_text(report)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
