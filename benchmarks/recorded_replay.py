"""Issue 24: "Replay of a recording runs at the same speed as any file".

The same events served two ways, in interleaved rounds (file, recording, file, ...), each
a fresh server on 127.0.0.1:

- ``sseplay serve events.jsonl`` (a JSON Lines file);
- ``sseplay serve DIR``, DIR holding the recording of that very stream made by
  ``sseplay record`` in front of ``sseplay serve events.jsonl`` (so the blocks are the
  bytes the file's replay sends, ids included).

Two measures per way:

1. Paced: ``--interval 0.02`` (50 events/s) to N clients (default 200) for ``--seconds``:
   the server's CPU per event delivered (utime + stime from /proc over the window / the
   events the clients counted).
2. Unpaced: ``--interval 0`` to one client, the whole stream of ``--events`` events: the
   wall time from the request to the last byte, and events per second.

    python benchmarks/recorded_replay.py                      # about 2 minutes
    python benchmarks/recorded_replay.py --rounds 1 --seconds 3 --events 20000

Results go to ``benchmarks/results/<UTC time>-recorded-replay.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.proxy_latency import cpu_times, open_clients, raw_results, start

ROOT = Path(__file__).resolve().parent.parent
PATH = "/events"


def write_events(path: Path, count: int) -> Path:
    # "t": 0.0 so that the clients of proxy_latency count them (they look for "t":).
    path.write_text("".join(f'{{"n":{n},"t":0.0}}\n' for n in range(count)))
    return path


def record(events: Path, out: Path) -> None:
    """The recording of ``serve events --interval 0``, made through ``sseplay record``."""
    serve, serve_url = start(
        [sys.executable, "-m", "sseplay", "serve", str(events), "--interval", "0",
         "--ping", "0", "--port", "0", "-q"]
    )  # fmt: skip
    base = base_of(serve_url)
    proxy, proxy_url = start(
        [sys.executable, "-m", "sseplay", "record", base, "--out", str(out), "--port", "0", "-q"]
    )
    try:
        received = read_whole(base_of(proxy_url) + PATH)[1]
        deadline = time.monotonic() + 30
        while not any(
            f.read_text().rstrip().endswith('"end":"complete"}') for f in recordings(out)
        ):
            assert time.monotonic() < deadline, "the recording never ended"
            time.sleep(0.05)
        print(f"recorded {received} bytes into {out}", flush=True)
    finally:
        for process in (proxy, serve):
            process.kill()
            process.wait()


def recordings(out: Path) -> list[Path]:
    return sorted(out.glob("*.jsonl"))


def read_whole(url: str) -> tuple[float, int]:
    """GET ``url`` on a raw socket to the end of the response: (seconds, bytes)."""
    host, _, rest = url.removeprefix("http://").partition("/")
    name, port = host.split(":")
    started = time.monotonic()
    size = 0
    with socket.create_connection((name, int(port)), timeout=60) as sock:
        sock.sendall(f"GET /{rest} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        while chunk := sock.recv(1 << 20):
            size += len(chunk)
    return time.monotonic() - started, size


def serve(source: Path, interval: float) -> tuple[Any, str]:
    process, url = start(
        [sys.executable, "-m", "sseplay", "serve", str(source), "--interval", str(interval),
         "--ping", "0", "--port", "0", "-q"]
    )  # fmt: skip
    return process, base_of(url) + PATH


def base_of(url: str) -> str:
    """``http://host:port`` of a URL ``serve`` printed (a route's, or the server root)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


async def paced(url: str, pid: int, clients: int, seconds: float) -> float:
    transports, _, _, counts = await open_clients(url, clients)
    await asyncio.sleep(1.0)  # every stream open and flowing
    counts[0] = 0
    user, system = cpu_times(pid)
    await asyncio.sleep(seconds)
    user_after, system_after = cpu_times(pid)
    events = counts[0]
    for transport in transports:
        transport.close()
    return (user_after - user + system_after - system) / max(events, 1) * 1e6


def measure(source: Path, clients: int, seconds: float, events: int) -> dict[str, float]:
    process, url = serve(source, 1 / 50)
    try:
        cpu_us = asyncio.run(paced(url, process.pid, clients, seconds))
    finally:
        process.kill()
        process.wait()
    process, url = serve(source, 0)
    try:
        wall, _ = read_whole(url)
    finally:
        process.kill()
        process.wait()
    return {
        "paced_cpu_us_per_event": cpu_us,
        "unpaced_seconds": wall,
        "events_per_s": events / wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        events = write_events(scratch / "events.jsonl", args.events)
        out = scratch / "recorded"
        record(events, out)
        ways = {"file": events, "recording": out}
        rounds: list[dict[str, dict[str, float]]] = []
        for number in range(args.rounds):
            order = list(ways) if number % 2 == 0 else list(ways)[::-1]
            one = {
                way: measure(ways[way], args.clients, args.seconds, args.events) for way in order
            }
            rounds.append(one)
            print(json.dumps(one), flush=True)
    summary = {
        way: {
            key: statistics.median(one[way][key] for one in rounds)
            for key in ("paced_cpu_us_per_event", "unpaced_seconds", "events_per_s")
        }
        for way in ways
    }
    ratio = {
        "paced_cpu": summary["recording"]["paced_cpu_us_per_event"]
        / summary["file"]["paced_cpu_us_per_event"],
        "unpaced_time": summary["recording"]["unpaced_seconds"]
        / summary["file"]["unpaced_seconds"],
    }
    lines = [
        f"paced ({args.clients} clients, 50 events/s each), server CPU per event: file "
        f"{summary['file']['paced_cpu_us_per_event']:.1f} us, recording "
        f"{summary['recording']['paced_cpu_us_per_event']:.1f} us (x{ratio['paced_cpu']:.2f})",
        f"unpaced ({args.events:,} events to one client): file "
        f"{summary['file']['unpaced_seconds']:.2f} s ({summary['file']['events_per_s']:,.0f}"
        f" events/s), recording {summary['recording']['unpaced_seconds']:.2f} s "
        f"({summary['recording']['events_per_s']:,.0f} events/s) (x{ratio['unpaced_time']:.2f})",
    ]
    print("\n".join(lines))
    if args.no_write:
        return
    stamp = time.strftime("%Y-%m-%dT%H-%M-%SZ", time.gmtime())
    command = "python benchmarks/recorded_replay.py " + " ".join(sys.argv[1:])
    report = {"rounds": rounds, "median": summary, "ratio": ratio, "load_before": load_before}
    text = "\n".join(
        [
            f"# Replay of a recording against the same file (issue 24), {stamp}",
            "",
            f"Machine: {platform.node()}, {os.cpu_count()} CPUs, Python "
            f"{platform.python_version()}; load average before "
            + " ".join(f"{x:.2f}" for x in load_before)
            + ", after "
            + " ".join(f"{x:.2f}" for x in os.getloadavg()),
            "",
            f"Command: `{command.strip()}`",
            "",
            "Medians over the rounds:",
            "",
            *(f"- {line}" for line in lines),
            "",
            *raw_results(report),
        ]
    )
    path = ROOT / "benchmarks" / "results" / f"{stamp}-recorded-replay.md"
    path.write_text(text)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
