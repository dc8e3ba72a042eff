"""What a ``FaultyOutlet`` with no fault costs per write, against a plain ``Outlet``
(issue 26: under --control every stream connection gets one, so that a fault can be armed
on it while it streams).

    python benchmarks/outlet_write_cost.py [--number 200000] [--repeats 7] [--note TEXT]

Both write to a fake transport that takes every chunk at once (the fast path of
``sseplay.http.uvicorn.direct``, the default on uvicorn), and through a fake ASGI ``send``
that finishes at once (the other path). Repeats alternate between the two outlets; the best
of each is kept (the least disturbed by a neighbour on a shared machine). Also measured:
reading ``blocked``, which producers do per event (a property on ``FaultyOutlet``), and a
``FaultyOutlet`` with a fault armed that has not fired yet (each write split into its
blocks). Prints a table and writes it to benchmarks/results/<UTC time>-outlet-write.md.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import platform
import sys
import timeit
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sseplay.faults.outlet import FaultyOutlet
from sseplay.faults.spec import Chosen, parse_fault
from sseplay.model import PING
from sseplay.outlet import Outlet

EVENT = b'id: 41\nevent: message\ndata: {"n": 41, "text": "' + b"x" * 60 + b'"}\n\n'
# Each entry: the chunks written in turn. The same bytes object each time is what a fan-out
# (a feed, a broadcast) writes to its connections; two equal objects in turn, what each
# connection's own replay writes (a new bytes object for each write).
CHUNKS = {
    "one event (110 B), the same bytes": [EVENT],
    "one event (110 B), new bytes": [EVENT, bytes(bytearray(EVENT))],
    "a ping comment": [PING],
    "10 events in one chunk, new bytes": [EVENT * 10, EVENT * 10],
}


class FakeTransport:
    """``DirectWriter``: takes every chunk at once."""

    fast = True
    gone = False

    def write(self, chunk: bytes) -> bool:
        return True

    def abort(self) -> None:
        pass


async def fake_send(message: dict[str, Any]) -> None:
    return None


def _cut_off(outlet: Outlet) -> None:
    pass


def outlets(direct: bool) -> dict[str, Outlet]:
    transport = FakeTransport() if direct else None
    never = [Chosen(parse_fault("drop:after=1000000000"), "bench")]

    def faulty(chosen: list[Chosen]) -> FaultyOutlet:
        return FaultyOutlet(
            fake_send,
            10.0,
            _cut_off,
            transport,
            None,
            chosen=chosen,
            fire=lambda fault, where: True,
            transport=None,
            ping=15.0,
            jitter=lambda n: 0.0,
        )

    return {
        "Outlet": Outlet(fake_send, 10.0, _cut_off, transport, None),
        "FaultyOutlet, no fault": faulty([]),
        "FaultyOutlet, a fault armed (not fired)": faulty(never),
    }


def best_ns(call: Callable[[], object], number: int) -> float:
    return timeit.timeit(call, number=number) / number * 1e9


async def measure(number: int, repeats: int) -> list[tuple[str, str, str, float]]:
    rows: dict[tuple[str, str, str], float] = {}
    for _ in range(repeats):
        for path, direct in (("transport", True), ("ASGI send", False)):
            for chunk_name, chunks in CHUNKS.items():
                for name, outlet in outlets(direct).items():
                    write, turn = outlet.write, itertools.cycle(chunks).__next__
                    ns = best_ns(lambda write=write, turn=turn: write(turn()), number)
                    key = (path, chunk_name, name)
                    rows[key] = min(rows.get(key, ns), ns)
        for name, outlet in outlets(True).items():
            ns = best_ns(lambda outlet=outlet: outlet.blocked, number)
            key = ("-", "read .blocked", name)
            rows[key] = min(rows.get(key, ns), ns)
    return [(*key, ns) for key, ns in rows.items()]


def table(rows: list[tuple[str, str, str, float]]) -> str:
    base = {(path, what): ns for path, what, name, ns in rows if name == "Outlet"}
    lines = [
        "| path | what | outlet | ns per call | vs Outlet |",
        "| --- | --- | --- | ---: | ---: |",
    ]
    for path, what, name, ns in rows:
        extra = ns - base[(path, what)]
        lines.append(f"| {path} | {what} | {name} | {ns:.0f} | {extra:+.0f} ns |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    rows = asyncio.run(measure(args.number, args.repeats))
    text = table(rows)
    print(text)
    now = datetime.now(UTC)
    out = Path(__file__).parent / "results" / f"{now:%Y-%m-%dT%H-%M-%SZ}-outlet-write.md"
    header = [
        f"# FaultyOutlet with no fault vs Outlet, per write ({now:%Y-%m-%d %H:%M} UTC)",
        "",
        f"`python benchmarks/outlet_write_cost.py --number {args.number} "
        f"--repeats {args.repeats}`: best of {args.repeats} repeats of {args.number} calls, "
        "outlets alternated.",
        f"Python {platform.python_version()} on {platform.machine()}, "
        f"{platform.processor() or platform.platform()}.",
    ]
    if args.note:
        header.append(f"Note: {args.note}")
    out.write_text("\n".join([*header, "", text, ""]))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
