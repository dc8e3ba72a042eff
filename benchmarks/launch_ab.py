"""Issue 12 item 7, many rounds: launch of `sseplay serve samples/scores.json --port 0` to the
first body byte of /events, beside the plain FastAPI + uvicorn app (plain_app.py), started in
interleaved pairs (the order flips every round) so that a noisy neighbour hits both alike.

    python benchmarks/launch_ab.py [--rounds 40]

The `launch` target of run.py does 10 rounds; at this machine's noise (about ±50 ms between
runs) a difference of a few per cent needs more: this prints medians, means, quartiles and in
how many rounds sseplay came first.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import run

NAMES = ("sseplay --port 0", "plain --port 0")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40, help="measured pairs (default 40)")
    args = parser.parse_args()
    run.cache_bytecode()
    work = run.WORK
    work.mkdir(parents=True, exist_ok=True)
    variants = run.launch_variants(work)
    times: dict[str, list[float]] = {name: [] for name in NAMES}
    for round_ in range(args.rounds + 1):
        for name in NAMES if round_ % 2 else NAMES[::-1]:
            body_ms = run.launch_once(variants[name])[1] * 1000
            if round_:  # the first pair only fills the bytecode cache
                times[name].append(body_ms)
    lines = []
    for name in NAMES:
        xs = times[name]
        q1, _, q3 = statistics.quantiles(xs, n=4)
        lines.append(
            f"{name:18} median {statistics.median(xs):.0f} ms, mean {statistics.mean(xs):.0f},"
            f" p25 {q1:.0f}, p75 {q3:.0f}, min {min(xs):.0f} ({len(xs)} rounds)"
        )
    first = sum(a <= b for a, b in zip(times[NAMES[0]], times[NAMES[1]], strict=True))
    lines.append(f"sseplay first in {first} of {args.rounds} rounds")
    print("\n".join(lines))
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%SZ")
    report = (
        f"# launch to first body byte, sseplay against the plain app ({stamp})\n\n"
        f"Machine: {run.machine()}; load average {os.getloadavg()[0]:.2f} at the end\n\n"
        f"Command: `python benchmarks/launch_ab.py --rounds {args.rounds}`\n\n"
        "```\n" + "\n".join(lines) + "\n```\n"
    )
    run.RESULTS.mkdir(exist_ok=True)
    (run.RESULTS / f"{stamp}-launch-ab.md").write_text(report)
    print(f"written to {run.RESULTS / f'{stamp}-launch-ab.md'}")


if __name__ == "__main__":
    main()
