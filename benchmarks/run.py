"""Run the sseplay benchmarks against the naive and Node baselines; print and save a table.

    pip install -e '.[bench]' && python benchmarks/run.py            # the full run
    python benchmarks/run.py --quick                                 # a smaller ladder

Every figure is also given as a ratio against the baselines measured in the same run,
because shared 2-core machines move by up to +-40 % between runs. The server is pinned to
core 0 and the load client to core 1 (taskset); everything listens on 127.0.0.1 only and
every run is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import codecs
import contextlib
import json
import os
import platform
import re
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "benchmarks"
RESULTS = HERE / "results"
WORK = HERE / "work"
PYTHON = sys.executable
SERVER_CORE, CLIENT_CORE = "0", "1"
INTERVAL = 0.1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def pinned(core: str, command: list[str]) -> list[str]:
    return ["taskset", "-c", core, *command] if shutil.which("taskset") else command


def wait_port(port: int, deadline: float = 20) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {port}")


@contextmanager
def server(
    kind: str, data: Path, interval: float, extra: tuple[str, ...] = (), wait: bool = True
) -> Iterator[tuple[str, int]]:
    """Start one server pinned to its core; yield (stream URL, pid)."""
    port = free_port()
    env = dict(os.environ)
    if kind == "sseplay":
        command = [
            PYTHON,
            "-m",
            "sseplay",
            "serve",
            f"events={data}",
            "--interval",
            str(interval),
            "--port",
            str(port),
            "--ping",
            "0",
            "-q",
            *extra,
        ]
    elif kind == "naive":
        env.update(NAIVE_FILE=str(data), NAIVE_INTERVAL=str(interval))
        command = [
            PYTHON,
            "-m",
            "uvicorn",
            "benchmarks.naive_app:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ]
    elif kind == "node":
        command = ["node", str(HERE / "node_server.js"), str(data), str(interval), str(port)]
    else:
        raise ValueError(kind)
    process = subprocess.Popen(
        pinned(SERVER_CORE, command),
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        if wait:
            wait_port(port)
        yield f"http://127.0.0.1:{port}/events", process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def load(
    url: str,
    clients: int,
    seconds: float,
    interval: float,
    on_mark: Callable[[str], None] | None = None,
) -> dict[str, float]:
    """Run the load client; ``on_mark`` is called with "connected" once every client has
    connected and with "measured" at the end of the window, before they hang up."""
    command = [
        PYTHON,
        str(HERE / "loadclient.py"),
        url,
        "--clients",
        str(clients),
        "--seconds",
        str(seconds),
        "--interval",
        str(interval),
        "--ramp",
        "2",
    ]
    process = subprocess.Popen(
        pinned(CLIENT_CORE, command), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    watchdog = threading.Timer(seconds + 120, process.kill)
    watchdog.start()
    try:
        assert process.stdout is not None
        last = ""
        for line in process.stdout:
            last = line.strip()
            if on_mark is not None and last in ("connected", "measured"):
                on_mark(last)
        _, errors = process.communicate()
    finally:
        watchdog.cancel()
    if process.returncode:
        raise RuntimeError(f"the load client failed ({process.returncode}): {errors[-2000:]}")
    return json.loads(last)  # type: ignore[no-any-return]


def write_records(path: Path, count: int, size: int) -> Path:
    pad = "x" * max(0, size - 40)
    with path.open("w") as out:
        for n in range(count):
            out.write(json.dumps({"n": n, "pad": pad}, separators=(",", ":")) + "\n")
    return path


def fanout(
    work: Path, ladder: list[int], seconds: float, kinds: list[str], extra: tuple[str, ...] = ()
) -> dict[str, list[dict[str, float]]]:
    """Target 1 (and 2 with --broadcast): the most clients held at >= 99 % delivery and
    drift p99 <= 50 ms, 200-byte events at 10 per second per client."""
    data = write_records(work / "fanout.jsonl", int((seconds + 30) / INTERVAL), 200)
    out: dict[str, list[dict[str, float]]] = {}
    for kind in kinds:
        out[kind] = []
        for clients in ladder:
            with server(kind, data, INTERVAL, extra if kind == "sseplay" else ()) as (url, _):
                result = load(url, clients, seconds, INTERVAL)
            out[kind].append(result)
            print(
                f"  fan-out {kind:8} {clients:5} clients: delivery {result['delivery']:.3f}"
                f" drift p99 {result['drift_p99_ms']} ms (after the ramp"
                f" {result['steady_drift_p99_ms']} ms) client cpu {result['client_cpu']}",
                flush=True,
            )
            if result["delivery"] < 0.9:
                break  # far past its limit: larger counts only take longer to fail
    return out


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process below it (a --workers parent and its workers)."""
    tree, index = [pid], 0
    while index < len(tree):
        for task in Path(f"/proc/{tree[index]}/task").iterdir():
            with contextlib.suppress(OSError):
                tree.extend(int(child) for child in (task / "children").read_text().split())
        index += 1
    return tree


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far (/proc/PID/stat, fields 14 and 15)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (after pid and comm)
    return total / ticks


def context_switches(pids: list[int]) -> tuple[int, int]:
    """(voluntary, involuntary) context switches of these processes so far: a server that
    sleeps between timer ticks switches voluntarily once per wake-up; an involuntary
    switch is a process that the scheduler put aside for another (the same core)."""
    voluntary = involuntary = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    voluntary += int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches:"):
                    involuntary += int(line.split()[1])
    return voluntary, involuntary


def per_worker(port: int, workers: int, tries: int = 200) -> dict[str, int]:
    """Each worker's count of open streams, from its own /healthz: the kernel hands each
    new connection to one worker (SO_REUSEPORT), so ask until every worker has answered."""
    counts: dict[str, int] = {}
    for _ in range(tries):
        answer = health(port)
        counts[str(answer["worker"])] = int(answer["connections"])
        if len(counts) >= workers:
            break
    return counts


def workers_run(data: Path, count: int, clients: int, seconds: float) -> dict[str, Any]:
    """One fan-out run of `sseplay serve --workers COUNT`, sampled over the steady window."""
    with server("sseplay", data, INTERVAL, ("--workers", str(count))) as (url, pid):
        port = int(url.split(":")[2].split("/")[0])
        pids = process_tree(pid)
        if len(pids) < count + 1 or len(per_worker(port, count)) < count:
            raise RuntimeError(f"--workers {count}: not every worker answers")
        spread_: dict[str, int] = {}
        cpu: dict[str, float] = {}
        probes: list[threading.Timer] = []

        switches: dict[str, tuple[int, int]] = {}

        def mark(name: str) -> None:
            cpu[name] = cpu_seconds(pids)
            switches[name] = context_switches(pids)
            if name == "connected":  # every client is in: count them halfway through
                probe = threading.Timer(
                    seconds / 2, lambda: spread_.update(per_worker(port, count))
                )
                probe.start()
                probes.append(probe)

        result: dict[str, Any] = dict(load(url, clients, seconds, INTERVAL, mark))
        for probe in probes:
            probe.join()
    used = cpu["measured"] - cpu["connected"]
    events = result["window_events"]
    result["workers"] = count
    result["server_cpu_seconds"] = round(used, 3)
    result["server_cpu_share"] = round(used / result["window_seconds"], 3)
    result["cpu_us_per_event"] = round(used / events * 1e6, 2) if events else None
    window = result["window_seconds"]
    result["wakeups_per_s"] = round((switches["measured"][0] - switches["connected"][0]) / window)
    result["preempted_per_s"] = round((switches["measured"][1] - switches["connected"][1]) / window)
    result["per_worker_connections"] = spread_
    even = clients / count
    # An overloaded server answers /healthz late, after the clients have gone: no figure.
    counted = len(spread_) == count and sum(spread_.values()) >= 0.95 * clients
    result["spread_worst_percent"] = (
        round(max(abs(n - even) / even * 100 for n in spread_.values()), 1) if counted else None
    )
    print(
        f"  workers {count} {clients:5} clients: delivery {result['delivery']:.3f}"
        f" drift p99 {result['drift_p99_ms']} ms; server CPU {used:.2f} s"
        f" ({result['server_cpu_share']:.0%} of a core) for {events:,} events ="
        f" {result['cpu_us_per_event']} us/event ({result['wakeups_per_s']} wake-ups/s,"
        f" {result['preempted_per_s']} preempted/s); per worker {sorted(spread_.values())}"
        f" (worst {result['spread_worst_percent']} % off an even share);"
        f" client cpu {result['client_cpu']}",
        flush=True,
    )
    return result


def workers_fanout(
    work: Path, ladder: list[int], seconds: float, repeats: int = 2
) -> dict[str, Any]:
    """Issue 14 item 4: the fan-out of ``fanout`` with --workers 1 and --workers 2, in the
    same run. Every server process is pinned to the server core, so the two set-ups get
    the same CPU (the load client needs the other core of this 2-core machine): clients
    held cannot grow with workers here. What can be compared honestly: server CPU per
    delivered event (user + system time of the parent and all its workers, from /proc,
    over the steady window: from every client connected to just before they hang up,
    divided by the events the clients received in it) and how evenly the kernel spreads
    connections (each worker's /healthz count, halfway through the window).

    The two set-ups run in interleaved pairs (1 then 2 workers at each count, ``repeats``
    times), so that a neighbour's load on this shared machine falls on both alike."""
    data = write_records(work / "fanout.jsonl", int((seconds + 30) / INTERVAL), 200)
    runs: list[dict[str, Any]] = []
    for clients in ladder:
        pair = [
            workers_run(data, count, clients, seconds) for _ in range(repeats) for count in (1, 2)
        ]
        runs.extend(pair)
        if all(run["delivery"] < 0.9 for run in pair):
            break  # far past the limit of both
    return {"runs": runs, "summary": workers_summary(runs)}


def kept_up(run: dict[str, Any]) -> bool:
    """The server delivered what was due (drift aside: on this shared machine a neighbour's
    load delays a server that has CPU to spare, and CPU per event is what is compared)."""
    return run["delivery"] >= 0.99


def workers_summary(runs: list[dict[str, Any]], spread_at: int = 2000) -> dict[str, Any]:
    """The figures of issue 14 item 4 from ``workers_fanout``'s runs: per client count where
    both set-ups kept up, the median CPU per event of each; and pooled over those counts
    (all their CPU seconds over all their events)."""
    by_count: dict[int, dict[int, list[dict[str, Any]]]] = {}
    for run in runs:
        by_count.setdefault(run["clients"], {}).setdefault(run["workers"], []).append(run)
    compared = []
    pooled = {1: [0.0, 0], 2: [0.0, 0]}
    for clients, sides in sorted(by_count.items()):
        ok = {w: [r for r in sides.get(w, []) if kept_up(r)] for w in (1, 2)}
        if not ok[1] or not ok[2]:
            continue
        one = statistics.median(r["cpu_us_per_event"] for r in ok[1])
        two = statistics.median(r["cpu_us_per_event"] for r in ok[2])
        compared.append(
            {"clients": clients, "us_1": one, "us_2": two, "ratio": round(two / one, 3)}
        )
        for w in (1, 2):
            pooled[w][0] += sum(r["server_cpu_seconds"] for r in ok[w])
            pooled[w][1] += sum(r["window_events"] for r in ok[w])
    pooled_us = {w: pooled[w][0] / pooled[w][1] * 1e6 if pooled[w][1] else None for w in (1, 2)}
    spreads = [
        r
        for r in runs
        if r["workers"] == 2 and r["clients"] == spread_at and r["spread_worst_percent"] is not None
    ]
    worst = max(spreads, key=lambda r: r["spread_worst_percent"], default=None)
    return {
        "held_1": held([r for r in runs if r["workers"] == 1]),
        "held_2": held([r for r in runs if r["workers"] == 2]),
        "kept_up_1": max(
            (r["clients"] for r in runs if r["workers"] == 1 and kept_up(r)), default=0
        ),
        "kept_up_2": max(
            (r["clients"] for r in runs if r["workers"] == 2 and kept_up(r)), default=0
        ),
        "compared": compared,
        "pooled_us_1": round(pooled_us[1], 2) if pooled_us[1] else None,
        "pooled_us_2": round(pooled_us[2], 2) if pooled_us[2] else None,
        "pooled_ratio": (
            round(pooled_us[2] / pooled_us[1], 3) if pooled_us[1] and pooled_us[2] else None
        ),
        "spread_clients": spread_at,
        "spread_runs": len(spreads),
        "spread_per_worker": worst["per_worker_connections"] if worst else None,
        "spread_worst_percent": worst["spread_worst_percent"] if worst else None,
    }


def held(results: list[dict[str, float]], p99_limit: float = 50) -> int:
    ok = [r["clients"] for r in results if r["delivery"] >= 0.99 and r["drift_p99_ms"] <= p99_limit]
    return int(max(ok, default=0))


def throughput(work: Path, kinds: list[str], events: int = 100_000) -> dict[str, float]:
    """Target 3: one connection at interval 0, 100-byte events: events per second."""
    data = write_records(work / "burst.jsonl", events, 100)
    out = {}
    for kind in kinds:
        with server(kind, data, 0) as (url, _):
            port = int(url.split(":")[2].split("/")[0])
            with socket.create_connection(("127.0.0.1", port)) as conn:
                started = time.perf_counter()
                conn.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                seen, tail = 0, b""
                conn.settimeout(60)
                while seen < events:
                    chunk = conn.recv(1 << 20)
                    if not chunk:
                        break
                    data_ = tail + chunk
                    seen += data_.count(b"\n\n") + data_.count(b"\r\n\r\n")
                    tail = data_[-3:]
                elapsed = time.perf_counter() - started
        out[kind] = seen / elapsed
        print(
            f"  burst   {kind:8} {seen} events in {elapsed:.3f} s = {seen / elapsed:,.0f}/s",
            flush=True,
        )
    return out


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def idle_memory(
    work: Path, kinds: list[str], clients: int = 5000, hold: float = 10
) -> dict[str, float]:
    """Target 4: resident memory per idle held connection (KiB): ``clients`` connections,
    each reads its first event (the naive app sleeps a whole interval before its first,
    so there the response head), then nothing is sent for ``hold`` seconds; the growth
    of VmRSS over the server at rest, per connection."""

    data = write_records(work / "idle.jsonl", 10, 200)
    out = {}
    for kind in kinds:
        with server(kind, data, 3600) as (url, pid):
            port = int(url.split(":")[2].split("/")[0])
            time.sleep(0.5)
            before = rss_kib(pid)
            conns = hold_sockets(port, clients, b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            wanted = b"\r\n\r\n" if kind == "naive" else b"data:"
            received = dict.fromkeys(conns, b"")
            with selectors.DefaultSelector() as selector:  # select() stops at fd 1024
                for conn in conns:
                    selector.register(conn, selectors.EVENT_READ)
                deadline = time.monotonic() + 60
                pending = len(conns)
                while pending and time.monotonic() < deadline:
                    for key, _ in selector.select(1):
                        conn = key.fileobj
                        assert isinstance(conn, socket.socket)
                        received[conn] += conn.recv(65536)
                        if wanted in received[conn]:
                            selector.unregister(conn)
                            pending -= 1
            time.sleep(hold)
            after = rss_kib(pid)
            for conn in conns:
                conn.close()
        per = (after - before) / clients
        out[kind] = per
        out[f"{kind}_rss_kib"] = after
        out["clients"], out["hold_seconds"] = clients, hold
        out[f"{kind}_without_first_event"] = pending
        print(
            f"  idle    {kind:8} {per:.1f} KiB per connection ({clients} connections,"
            f" {hold:g} s idle; RSS {before / 1024:.1f} -> {after / 1024:.1f} MiB;"
            f" {pending} never got their first event)",
            flush=True,
        )
    return out


def startup() -> dict[str, float]:
    """Target 6: `sseplay --help` wall time (the installed script), median of 10, beside
    the interpreter alone (`python -c pass`, same site-packages) as the floor."""
    script = Path(PYTHON).parent / "sseplay"
    command = [str(script)] if script.exists() else [PYTHON, "-m", "sseplay"]

    def median_ms(argv: list[str]) -> float:
        times = []
        for _ in range(10):
            started = time.perf_counter()
            subprocess.run(argv, capture_output=True, check=True)
            times.append(time.perf_counter() - started)
        return sorted(times)[len(times) // 2] * 1000

    help_ms = median_ms([*command, "--help"])
    interpreter_ms = median_ms([PYTHON, "-c", "pass"])
    print(f"  --help  {help_ms:.0f} ms (the interpreter alone {interpreter_ms:.0f} ms)", flush=True)
    return {"help_ms": help_ms, "interpreter_ms": interpreter_ms}


def client(work: Path, events: int = 100_000) -> dict[str, float]:
    """Target 8: `sseplay tail --format json > /dev/null` on an interval-0 stream, and the
    parser against httpx-sse on the same bytes."""

    def tail_seconds(count: int) -> float:
        data = write_records(work / f"tail-{count}.jsonl", count, 100)
        with server("sseplay", data, 0) as (url, _):
            command = [PYTHON, "-m", "sseplay", "tail", url, "--format", "json"]
            started = time.perf_counter()
            subprocess.run(
                pinned(CLIENT_CORE, [*command, "--no-reconnect", "-q"]),
                stdout=subprocess.DEVNULL,
                check=True,
                timeout=300,
            )
            return time.perf_counter() - started

    whole = tail_seconds(events)
    start_up = min(tail_seconds(1) for _ in range(3))
    tail_rate = events / whole
    steady_rate = events / max(whole - start_up, 1e-9)
    print(
        f"  tail    {tail_rate:,.0f} events/s for the whole command; start-up"
        f" {start_up * 1000:.0f} ms; {steady_rate:,.0f} events/s once running",
        flush=True,
    )

    from sseplay.model import Event, encode
    from sseplay.parser import EventStreamParser

    wire = b"".join(
        encode(Event(json.dumps({"n": n, "pad": "x" * 60}), id=str(n))) for n in range(events)
    )
    chunks = [wire[i : i + 65536] for i in range(0, len(wire), 65536)]

    def ours() -> int:
        parser = EventStreamParser()
        return sum(len(parser.feed(chunk)) for chunk in chunks)

    def httpx_sse() -> int:
        from httpx_sse._decoders import SSEDecoder, SSELineDecoder

        text_decoder = codecs.getincrementaldecoder("utf-8")("replace")
        lines, decoder, count = SSELineDecoder(), SSEDecoder(), 0
        for chunk in chunks:
            for line in lines.decode(text_decoder.decode(chunk)):
                if decoder.decode(line) is not None:
                    count += 1
        return count

    rates = {}
    for name, parse in (("sseplay", ours), ("httpx-sse", httpx_sse)):
        best = min(timed(parse) for _ in range(3))
        rates[name] = events / best
        print(f"  parser  {name:9} {events / best:,.0f} events/s", flush=True)
    return {
        "tail_events_per_s": tail_rate,
        "tail_start_up_ms": start_up * 1000,
        "tail_running_events_per_s": steady_rate,
        "parser_sseplay": rates["sseplay"],
        "parser_httpx_sse": rates["httpx-sse"],
    }


def first_event(port: int, deadline: float, headers: str = "") -> None:
    """Connect (retrying until the server listens) and read until the first event."""
    while True:
        try:
            conn = socket.create_connection(("127.0.0.1", port))
            break
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.002)
    with conn:
        conn.sendall(f"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n".encode())
        received = b""
        while b"data:" not in received:
            chunk = conn.recv(65536)
            if not chunk:
                raise RuntimeError("the stream ended before its first event")
            received += chunk


def vm_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def write_array(path: Path, count: int, size: int) -> Path:
    pad = "x" * max(0, size - 40)
    with path.open("w") as out:
        out.write("[\n")
        for n in range(count):
            out.write(json.dumps({"n": n, "pad": pad}, separators=(",", ":")))
            out.write(",\n" if n < count - 1 else "\n]\n")
    return path


def large_files(work: Path, quick: bool) -> dict[str, dict[str, float]]:
    """Target 7: a 2 GB JSON Lines file (10 million records) and a 1 GB JSON array: the
    check's rate at start, peak resident memory, and a cold resume near the end."""
    records = 1_000_000 if quick else 10_000_000
    files = {
        "lines": write_records(work / "large.jsonl", records, 200),
        "array": write_array(work / "large.json", records // 2, 200),
    }
    tiny = write_records(work / "tiny.jsonl", 10, 200)
    baseline = ready_seconds(tiny)[0]
    out = {}
    for layout, path in files.items():
        size = path.stat().st_size
        count = records if layout == "lines" else records // 2
        seconds, pid, port, process = ready_seconds(path, keep=True)
        try:
            resume_at = count * 9 // 10
            started = time.perf_counter()
            first_event(port, time.monotonic() + 30, f"Last-Event-ID: {resume_at}\r\n")
            resume_ms = (time.perf_counter() - started) * 1000
            peak = vm_kib(pid, "VmHWM") / 1024
        finally:
            process.terminate()
            process.wait(10)
        rate = size / 1e6 / max(seconds - baseline, 1e-9)
        out[layout] = {
            "megabytes": size / 1e6,
            "records": count,
            "ready_seconds": seconds,
            "check_mb_per_s": rate,
            "peak_rss_mb": peak,
            "resume_event": resume_at,
            "resume_first_event_ms": resume_ms,
        }
        print(
            f"  large   {layout:6} {size / 1e9:.2f} GB: checked at {rate:.0f} MB/s, peak RSS"
            f" {peak:.0f} MB, resume at {resume_at:,} -> first event in {resume_ms:.1f} ms",
            flush=True,
        )
        path.unlink()
    return out


def ready_seconds(path: Path, keep: bool = False) -> tuple[float, int, int, subprocess.Popen[str]]:
    """Launch `sseplay serve` on ``path`` and time it until it prints its URL (ready)."""
    command = [PYTHON, "-m", "sseplay", "serve", str(path), "--port", "0", "-q", "--ping", "0"]
    started = time.perf_counter()
    process = subprocess.Popen(
        pinned(SERVER_CORE, command), cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    seconds = time.perf_counter() - started
    if not url:
        raise RuntimeError(f"sseplay did not start on {path}")
    port = int(url.split(":")[2].split("/")[0])
    if not keep:
        process.terminate()
        process.wait(10)
    return seconds, process.pid, port, process


def abuse(work: Path, seconds: float, quick: bool) -> dict[str, float]:
    """Target 9: frozen readers next to a fan-out, and connect/disconnect churn."""
    fan = write_records(work / "abuse-fan.jsonl", int((seconds + 30) / INTERVAL), 200)
    # 300 KB events at 10 per second: 3 MB/s, enough to fill the kernel buffers of a
    # reader that has stopped, so the server blocks on it and has to cut it off.
    burst = write_records(work / "abuse-burst.jsonl", 200, 300_000)
    frozen_count, clients = 20, 1000
    with server("sseplay", fan, INTERVAL, ("burst=" + str(burst), "--send-timeout", "2")) as (
        url,
        pid,
    ):
        port = int(url.split(":")[2].split("/")[0])
        frozen = []
        for _ in range(frozen_count):
            conn = socket.socket()
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            conn.connect(("127.0.0.1", port))
            conn.sendall(b"GET /burst HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # and never read
            frozen.append(conn)
        result = load(url, clients, seconds, INTERVAL)
        still_open = health(port)["connections"]
        for conn in frozen:
            conn.close()
        print(
            f"  abuse   {frozen_count} frozen readers + {clients} clients: delivery"
            f" {result['delivery']:.3f} drift p99 {result['drift_p99_ms']} ms;"
            f" {still_open} streams still open afterwards",
            flush=True,
        )
        cycles = 2_000 if quick else 20_000
        churn(port, 1_000)  # warm-up: first-use allocations are not leaks
        time.sleep(0.5)
        before = (vm_kib(pid, "VmRSS"), len(os.listdir(f"/proc/{pid}/fd")))
        started = time.perf_counter()
        churn(port, cycles)
        churn_seconds = time.perf_counter() - started
        time.sleep(1)
        after = (vm_kib(pid, "VmRSS"), len(os.listdir(f"/proc/{pid}/fd")))
        open_after = health(port)["connections"]
    growth = (after[0] - before[0]) / before[0] * 100
    print(
        f"  churn   {cycles:,} connect/disconnect cycles in {churn_seconds:.1f} s: RSS"
        f" {before[0] / 1024:.1f} -> {after[0] / 1024:.1f} MB ({growth:+.1f} %), fds"
        f" {before[1]} -> {after[1]}, open streams afterwards {open_after}",
        flush=True,
    )
    return {
        "frozen_readers": frozen_count,
        "clients": clients,
        "delivery": result["delivery"],
        "drift_p99_ms": result["drift_p99_ms"],
        "streams_open_after": still_open,
        "cycles": cycles,
        "rss_before_kib": before[0],
        "rss_after_kib": after[0],
        "rss_growth_percent": growth,
        "fds_before": before[1],
        "fds_after": after[1],
        "open_after_churn": open_after,
    }


def health(port: int) -> dict[str, Any]:
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        response = b""
        while chunk := conn.recv(65536):
            response += chunk
    return json.loads(response.split(b"\r\n\r\n", 1)[1])  # type: ignore[no-any-return]


def churn(port: int, cycles: int, concurrency: int = 50) -> None:
    """Open a stream, read its first event, hang up; ``cycles`` times, 50 at a time."""

    async def one() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        received = b""
        while b"data:" not in received:
            chunk = await reader.read(65536)
            if not chunk:
                break
            received += chunk
        writer.close()
        await writer.wait_closed()

    async def run() -> None:
        gate = asyncio.Semaphore(concurrency)

        async def guarded() -> None:
            async with gate:
                await one()

        await asyncio.gather(*(guarded() for _ in range(cycles)))

    asyncio.run(run())


def timed(function: Callable[[], int]) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


# --- issue 12 item 7, issue 16 item 5, issue 11 item 4 --------------------------------------

URL_PATTERN = re.compile(r"http://127\.0\.0\.1:(\d+)")
SCORES = ROOT / "samples" / "scores.json"
HTTPX_FLOOR = "python -c 'import httpx'"


def installed(name: str) -> list[str]:
    """The console script next to this interpreter (what a user runs: no pyenv shim, whose
    bash wrapper alone costs tens of ms), else ``python -m name``."""
    script = Path(PYTHON).parent / name
    return [str(script)] if script.exists() else [PYTHON, "-m", name]


def spread(seconds: list[float]) -> dict[str, float]:
    """Median and spread of timings, in ms: min, quartiles, max and the run count."""
    ordered = sorted(s * 1000 for s in seconds)
    n = len(ordered)
    return {
        "median_ms": statistics.median(ordered),
        "min_ms": ordered[0],
        "p25_ms": ordered[n // 4],
        "p75_ms": ordered[(3 * n) // 4 if n > 1 else 0],
        "max_ms": ordered[-1],
        "runs": n,
    }


def shown(stats: dict[str, float]) -> str:
    return (
        f"{stats['median_ms']:.0f} ms (min {stats['min_ms']:.0f}, p25 {stats['p25_ms']:.0f},"
        f" p75 {stats['p75_ms']:.0f}, max {stats['max_ms']:.0f}; {stats['runs']:.0f} runs)"
    )


def cache_bytecode() -> None:
    """Let every Python the harness starts cache its bytecode, in benchmarks/work/pycache.

    These machines set PYTHONDONTWRITEBYTECODE=1 and the editable checkout has no
    __pycache__, so each launch compiled every sseplay module from source again (about
    100 ms of start-up) while the plain FastAPI app, one small file on top of installed
    packages, did not: a cost a user who installs the package never pays. A pycache prefix
    keeps the bytecode out of the source tree; the first run of each command (discarded)
    fills it."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(WORK / "pycache")


def first_body_byte(port: int, deadline: float, path: str = "/events") -> tuple[float, float]:
    """Connect (retrying while refused), ask for ``path``; return the perf_counter times of
    the end of the response head and of the first byte of the body after it."""
    while True:
        try:
            conn = socket.create_connection(("127.0.0.1", port))
            break
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.002)
    with conn:
        conn.settimeout(max(0.1, deadline - time.monotonic()))
        conn.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        received, head_at = b"", 0.0
        while True:
            chunk = conn.recv(65536)
            now = time.perf_counter()
            if not chunk:
                raise RuntimeError(f"the response ended before its first body byte: {received!r}")
            received += chunk
            if not head_at and b"\r\n\r\n" in received:
                head_at = now
            if head_at and received.split(b"\r\n\r\n", 1)[1]:
                return head_at, now


@dataclass(frozen=True)
class Launch:
    """One way to start a server: its command, its environment, and how the harness learns
    the port: ``announced`` on stdout or stderr (started with --port 0), or ``None`` when the
    harness gives the port and connects until the server listens."""

    command: Callable[[int], list[str]]
    env: dict[str, str] = field(default_factory=dict)
    announced: str | None = None


def launch_variants(work: Path) -> dict[str, Launch]:
    lines = work / "scores.jsonl"  # the naive app and node read JSON Lines
    lines.write_text("".join(json.dumps(r) + "\n" for r in json.loads(SCORES.read_text())))
    sseplay = [*installed("sseplay"), "serve", str(SCORES)]
    plain = [*installed("uvicorn"), "benchmarks.plain_app:app"]
    naive = [*installed("uvicorn"), "benchmarks.naive_app:app"]
    variants = {
        # The commands of issue 12 item 7, port 0, as a user runs them: the URL is read
        # from what the server prints (sseplay: stdout; uvicorn: its INFO line on stderr).
        "sseplay --port 0": Launch(lambda _: [*sseplay, "--port", "0"], announced="stdout"),
        "plain --port 0": Launch(lambda _: [*plain, "--port", "0"], announced="stderr"),
        # What this machine's PYTHONDONTWRITEBYTECODE=1 costs an editable checkout: the
        # installed packages' own __pycache__ is read, sseplay is compiled at each launch
        # (an empty PYTHONPYCACHEPREFIX counts as unset).
        "sseplay --port 0, no .pyc": Launch(
            lambda _: [*sseplay, "--port", "0"],
            {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": ""},
            announced="stdout",
        ),
        # The same method for every server: the harness picks the port and connects until
        # the server listens, so nothing depends on when or where a server prints its URL.
        "sseplay": Launch(lambda port: [*sseplay, "--port", str(port)]),
        "plain": Launch(lambda port: [*plain, "--port", str(port)]),
        # interval 0: the naive app sleeps `interval` before each event, so with the
        # harness's usual interval its "first event" would be its sleep, not its start-up.
        "naive": Launch(
            lambda port: [*naive, "--port", str(port)],
            {"NAIVE_FILE": str(lines), "NAIVE_INTERVAL": "0"},
        ),
    }
    if shutil.which("node"):
        variants["node"] = Launch(
            lambda port: ["node", str(HERE / "node_server.js"), str(lines), "0", str(port)]
        )
    return variants


def launch_once(variant: Launch, log: Path | None = None) -> tuple[float, float]:
    """Launch one server (pinned to the server core) and time it to the end of the head and
    to the first body byte of its first stream (seconds)."""
    port = 0 if variant.announced else free_port()
    out = subprocess.PIPE if variant.announced == "stdout" else subprocess.DEVNULL
    err: Any = subprocess.PIPE if variant.announced == "stderr" else subprocess.DEVNULL
    if log is not None:
        err = log.open("w")
    env = {**os.environ, **variant.env}
    started = time.perf_counter()
    process = subprocess.Popen(
        pinned(SERVER_CORE, variant.command(port)),
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=err,
        text=True,
    )
    watchdog = threading.Timer(60, process.kill)  # a server that hangs cannot hang the run
    watchdog.start()
    try:
        if variant.announced:
            stream = process.stdout if variant.announced == "stdout" else process.stderr
            assert stream is not None
            for line in stream:
                if found := URL_PATTERN.search(line):
                    port = int(found.group(1))
                    break
            else:
                raise RuntimeError(f"{variant.command(0)} printed no URL")
        head_at, body_at = first_body_byte(port, time.monotonic() + 60)
        return head_at - started, body_at - started
    finally:
        watchdog.cancel()
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if log is not None:
            err.close()


def import_profile(log: str) -> dict[str, Any]:
    """Parse ``python -X importtime`` output: total, and the self time summed per top-level
    package (ms); ``modules``: each module's cumulative time (ms)."""
    per_package: dict[str, float] = {}
    modules: dict[str, float] = {}
    total = 0.0
    for line in log.splitlines():
        if not line.startswith("import time:") or "imported package" in line:
            continue
        _, self_us, cumulative_us, name = (
            part.strip() for part in re.split(r"[:|]", line, maxsplit=3)
        )
        root = name.split(".")[0]
        per_package[root] = per_package.get(root, 0.0) + int(self_us) / 1000
        modules[name] = int(cumulative_us) / 1000
        total += int(self_us) / 1000
    return {"total_ms": total, "packages_ms": per_package, "modules_ms": modules}


def median_profile(profiles: list[dict[str, Any]]) -> dict[str, Any]:
    """The per-package and per-module medians over several importtime runs."""

    def median_of(key: str) -> dict[str, float]:
        names = {name for p in profiles for name in p[key]}
        merged = {n: statistics.median(p[key].get(n, 0.0) for p in profiles) for n in names}
        return dict(sorted(merged.items(), key=lambda item: -item[1]))

    return {
        "total_ms": statistics.median(p["total_ms"] for p in profiles),
        "packages_ms": median_of("packages_ms"),
        "modules_ms": median_of("modules_ms"),
        "runs": len(profiles),
    }


def top(mapping: dict[str, float], count: int, prefix: str = "") -> str:
    chosen = [(k, v) for k, v in mapping.items() if k.startswith(prefix)][:count]
    return ", ".join(f"{name} {ms:.0f}" for name, ms in chosen)


def first_byte(work: Path, rounds: int) -> dict[str, Any]:
    """Issue 12 item 7: launch of `sseplay serve samples/scores.json` to the first body byte
    of /events, beside a plain FastAPI + uvicorn app serving one event (plain_app.py), the
    naive app (interval 0) and node; rounds interleaved, so that a noisy neighbour hits
    every server alike. Then where the start-up goes: -X importtime of each Python server."""
    variants = launch_variants(work)
    heads: dict[str, list[float]] = {name: [] for name in variants}
    bodies: dict[str, list[float]] = {name: [] for name in variants}
    for round_ in range(rounds + 1):
        for name, variant in variants.items():
            head, body = launch_once(variant)
            if round_:  # the first round only fills the bytecode cache
                heads[name].append(head)
                bodies[name].append(body)
    out: dict[str, Any] = {}
    for name in variants:
        out[name] = {"first_body_byte": spread(bodies[name]), "response_head": spread(heads[name])}
        print(
            f"  launch  {name:17} first body byte {shown(out[name]['first_body_byte'])}", flush=True
        )
    # Where it goes: the same launches under PYTHONPROFILEIMPORTTIME (its own overhead
    # makes these runs slower; the import totals are compared with each other only).
    profiles: dict[str, Any] = {}
    for name in ("sseplay", "plain"):
        variant = variants[name]
        traced = Launch(variant.command, {**variant.env, "PYTHONPROFILEIMPORTTIME": "1"})
        runs = []
        for index in range(max(3, rounds // 2)):
            log = work / f"importtime-{name}-{index}.txt"
            body = launch_once(traced, log)[1] * 1000
            runs.append(import_profile(log.read_text()))
            # Within the same traced run: launch to first byte less the imports is the
            # interpreter's own start, the file check, building the app, uvicorn's start.
            runs[-1]["launch_ms"] = body
            runs[-1]["not_imports_ms"] = body - runs[-1]["total_ms"]
        profiles[name] = median_profile(runs)
        for key in ("launch_ms", "not_imports_ms"):
            profiles[name][key] = statistics.median(run[key] for run in runs)
        print(
            f"  imports {name:17} under importtime: launch to first byte"
            f" {profiles[name]['launch_ms']:.0f} ms, of which imports"
            f" {profiles[name]['total_ms']:.0f} ms and the rest"
            f" {profiles[name]['not_imports_ms']:.0f} ms; imports by package:"
            f" {top(profiles[name]['packages_ms'], 10)}",
            flush=True,
        )
    out["imports"] = {
        name: {
            "traced_launch_ms": p["launch_ms"],
            "total_ms": p["total_ms"],
            "not_imports_ms": p["not_imports_ms"],
            "packages_ms": dict(list(p["packages_ms"].items())[:25]),
            "sseplay_modules_cumulative_ms": {
                k: v for k, v in p["modules_ms"].items() if k.startswith("sseplay")
            },
        }
        for name, p in profiles.items()
    }
    return out


def tail_startup(work: Path, rounds: int) -> dict[str, Any]:
    """Issue 16 item 5: `sseplay tail URL --count 1` from launch to exit against a local
    sseplay server (one event, interval 0: the stream ends after it, so curl exits too),
    beside curl, `python -c pass` and `python -c "import httpx"` (the floor of any httpx
    client); interleaved runs pinned to the client core. Then -X importtime of the tail."""
    data = write_records(work / "one.jsonl", 1, 100)
    with server("sseplay", data, 0) as (url, _):
        commands = {
            "sseplay tail --count 1": [*installed("sseplay"), "tail", url, "--count", "1"],
            "python -c pass": [PYTHON, "-c", "pass"],
            HTTPX_FLOOR: [PYTHON, "-c", "import httpx"],
        }
        if shutil.which("curl"):
            commands["curl"] = ["curl", "-sN", url]
        times: dict[str, list[float]] = {name: [] for name in commands}
        for round_ in range(rounds + 1):
            for name, argv in commands.items():
                started = time.perf_counter()
                subprocess.run(
                    pinned(CLIENT_CORE, argv),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    check=True,
                    timeout=30,
                )
                if round_:  # the first round only fills the bytecode cache
                    times[name].append(time.perf_counter() - started)
        out: dict[str, Any] = {name: spread(values) for name, values in times.items()}
        for name in commands:
            print(f"  tail-up {name:25} {shown(out[name])}", flush=True)
        runs = []
        for _ in range(max(3, rounds // 4)):
            traced = subprocess.run(
                pinned(CLIENT_CORE, commands["sseplay tail --count 1"]),
                env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                check=True,
                timeout=30,
            )
            runs.append(import_profile(traced.stderr))
    profile = median_profile(runs)
    out["imports"] = {
        "total_ms": profile["total_ms"],
        "packages_ms": dict(list(profile["packages_ms"].items())[:25]),
        "modules_cumulative_ms": dict(list(profile["modules_ms"].items())[:40]),
    }
    print(
        f"  imports tail {profile['total_ms']:.0f} ms (under importtime); by package:"
        f" {top(profile['packages_ms'], 12)}; slowest modules (cumulative):"
        f" {top(profile['modules_ms'], 12)}",
        flush=True,
    )
    return out


@contextmanager
def serving(args: list[str], ready_timeout: float = 120) -> Iterator[tuple[int, int]]:
    """`sseplay serve ARGS --port 0 -q --ping 0` pinned to the server core; yield (port,
    pid) once it has printed its URL (after its start-up check of the file)."""
    command = [PYTHON, "-m", "sseplay", "serve", *args, "--port", "0", "-q", "--ping", "0"]
    process = subprocess.Popen(
        pinned(SERVER_CORE, command), cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    watchdog = threading.Timer(ready_timeout, process.kill)
    watchdog.start()
    try:
        assert process.stdout is not None
        url = process.stdout.readline()
        watchdog.cancel()
        found = URL_PATTERN.search(url)
        if not found:
            raise RuntimeError(f"sseplay serve {args} did not start")
        yield int(found.group(1)), process.pid
    finally:
        watchdog.cancel()
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def read_streams(
    port: int, starts: list[str | None], seconds: float, route: str = "/events"
) -> int:
    """One reader thread per entry of ``starts`` (a Last-Event-ID, or None for the start),
    each reading its stream to the end or for ``seconds``; the bytes read in all."""
    totals = [0] * len(starts)

    def read(index: int, last_id: str | None) -> None:
        header = f"Last-Event-ID: {last_id}\r\n" if last_id else ""
        end = time.monotonic() + seconds
        with socket.create_connection(("127.0.0.1", port)) as conn:
            conn.settimeout(5)
            conn.sendall(f"GET {route} HTTP/1.1\r\nHost: 127.0.0.1\r\n{header}\r\n".encode())
            while time.monotonic() < end:
                try:
                    chunk = conn.recv(1 << 20)
                except TimeoutError:
                    break
                if not chunk:
                    break
                totals[index] += len(chunk)

    threads = [threading.Thread(target=read, args=(i, s)) for i, s in enumerate(starts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(totals)


def hold_sockets(port: int, count: int, request: bytes, rcvbuf: int = 0) -> list[socket.socket]:
    held_ = []
    for _ in range(count):
        conn = socket.socket()
        if rcvbuf:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        conn.connect(("127.0.0.1", port))
        conn.sendall(request)
        held_.append(conn)
    return held_


def memory_bounds(work: Path, quick: bool) -> dict[str, Any]:
    """Issue 11 item 4: peak resident memory (VmHWM) of `sseplay serve` under the worst
    shapes for each stated bound, beside the same server on a 10-record file."""
    mib = 1 << 20
    budget = 64 * mib  # source.DEFAULT_MEMORY_BUDGET: encoded bytes + 100 per event
    out: dict[str, Any] = {}

    def record(
        name: str, pid: int, ready: float, bound_mib: float, note: str, **extra: Any
    ) -> None:
        peak = vm_kib(pid, "VmHWM") / 1024
        base = out["baseline"]["peak_mib"] if out else peak  # the baseline is measured first
        out[name] = {
            "peak_mib": peak,
            "over_baseline_mib": peak - base,
            "ready_peak_mib": ready,
            "rss_at_end_mib": vm_kib(pid, "VmRSS") / 1024,
            "bound_mib": bound_mib,
            "shape": note,
        }
        out[name].update(extra)
        print(
            f"  memory  {name:26} peak RSS {peak:6.1f} MiB ({peak - base:+6.1f} over the"
            f" baseline; {ready:.1f} MiB once checked, before any client;"
            f" {out[name]['rss_at_end_mib']:.1f} MiB resident at the end; stated bound"
            f" {bound_mib:g} MiB: {note})",
            flush=True,
        )

    tiny = write_records(work / "mem-tiny.jsonl", 10, 200)
    with serving([str(tiny)]) as (port, pid):
        ready = vm_kib(pid, "VmHWM") / 1024  # after the start-up check
        read_streams(port, [None], 5)
        record("baseline", pid, ready, 0, "10 records of 200 B, one client")

    # In memory, just under the budget: 98 % of it in the accounting sseplay keeps
    # (encoded body + 100 per event). Tiny records are the worst case for object overhead.
    for label, size in (("in-memory 15 B records", 15), ("in-memory 1 KB records", 1000)):
        count = int(0.98 * budget / (size + 8 + 100))
        path = work / f"mem-{size}.jsonl"
        with path.open("w") as file:
            # '{"n":"0000001"}' is 15 bytes; larger records add ',"p":"xx..."'.
            pad = "" if size <= 15 else ',"p":"' + "x" * (size - 22) + '"'
            for n in range(count):
                file.write(f'{{"n":"{n:07d}"{pad}}}\n')
        with serving([str(path), "--interval", "0"]) as (port, pid):
            ready = vm_kib(pid, "VmHWM") / 1024  # after the start-up check
            read_streams(port, [None, str(count // 2)], 60)
            record(
                label,
                pid,
                ready,
                64,
                f"{count:,} events, file {path.stat().st_size / mib:.1f} MiB;"
                " two clients read it all",
                events=count,
            )
        path.unlink()

    # From disk, 40 KB records, four clients resuming at different places at once: the
    # page cache (32 MiB per file) is what can grow.
    size_mb = 100 if quick else 200
    count = size_mb * 1_000_000 // 40_000
    disk = write_records(work / "mem-40k.jsonl", count, 40_000)
    starts = [None, *(str(count * k // 4) for k in (1, 2, 3))]
    with serving([str(disk), "--interval", "0"]) as (port, pid):
        ready = vm_kib(pid, "VmHWM") / 1024  # after the start-up check
        moved = read_streams(port, starts, 60)
        record(
            "disk 40 KB, 4 resumes",
            pid,
            ready,
            32,
            f"{count:,} events of 40 KB, {moved / mib:.0f} MiB sent",
            bytes_sent=moved,
        )

    # ~512 KiB unsent per connection: readers that never read, on the same file.
    frozen_count = 50
    with serving([str(disk), "--interval", "0", "--send-timeout", "60"]) as (port, pid):
        ready = vm_kib(pid, "VmHWM") / 1024  # after the start-up check
        frozen = hold_sockets(
            port, frozen_count, b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 4096
        )
        time.sleep(5)
        record(
            f"{frozen_count} frozen readers",
            pid,
            ready,
            32 + frozen_count * 0.5,
            "page cache + 512 KiB each",
        )
        for conn in frozen:
            conn.close()

    # --broadcast, 1 MB events from disk, looped, no client: the history (16 MiB, 10,000
    # events) is what can grow; 50 events per second for the whole bounded window.
    seconds = 8 if quick else 15
    big = write_records(work / "mem-1m.jsonl", 80, 1_000_000)
    args = [str(big), "--broadcast", "--loop", "--interval", "0.02"]
    with serving(args) as (port, pid):
        ready = vm_kib(pid, "VmHWM") / 1024  # after the start-up check
        samples = []
        for _ in range(seconds):
            time.sleep(1)
            samples.append(round(vm_kib(pid, "VmRSS") / 1024, 1))
        record(
            "broadcast 1 MB, no client",
            pid,
            ready,
            16 + 32,
            f"history + page cache; RSS each second {samples}",
            rss_each_second_mib=samples,
        )
    for path in (disk, big):
        path.unlink()

    # Many idle clients, and many request heads held just under the 16 KiB limit.
    idle_count = 2000 if quick else 5000
    with serving([str(tiny), "--interval", "3600"]) as (port, pid):
        ready = vm_kib(pid, "VmHWM") / 1024  # after the start-up check
        idle = hold_sockets(port, idle_count, b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        time.sleep(3)
        record(
            f"{idle_count} idle clients",
            pid,
            ready,
            0,
            "no byte bound stated: per connection below",
            per_connection_kib=(vm_kib(pid, "VmHWM") - out["baseline"]["peak_mib"] * 1024)
            / idle_count,
        )
        for conn in idle:
            conn.close()
    heads_count = 500
    head = b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * (15 << 10)  # never ended
    with serving([str(tiny), "--interval", "3600"]) as (port, pid):
        ready = vm_kib(pid, "VmHWM") / 1024  # after the start-up check
        pending = hold_sockets(port, heads_count, head)
        time.sleep(3)
        record(f"{heads_count} 15 KiB heads", pid, ready, heads_count * 16 / 1024, "16 KiB each")
        for conn in pending:
            conn.close()
    return out


def machine() -> str:
    cpu = "unknown cpu"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    import fastapi
    import sse_starlette
    import uvicorn

    return (
        f"{os.cpu_count()} cores, {cpu}; Linux {platform.release()}; "
        f"Python {platform.python_version()}; node {node}; fastapi {fastapi.__version__}, "
        f"sse-starlette {sse_starlette.__version__}, "
        f"uvicorn {uvicorn.__version__}"
    )


SERVERS = ("sseplay", "naive", "node")
TARGETS = {
    "fanout": "fan-out, per-client replay (targets 1 and 5)",
    "workers": "fan-out with --workers 1 and --workers 2: CPU per event, spread (issue 14 item 4)",
    "broadcast": "fan-out, --broadcast (target 2)",
    "burst": "burst at interval 0 (target 3)",
    "idle": "idle memory (target 4)",
    "startup": "start-up: --help (target 6)",
    "launch": "launch to first byte, beside a plain FastAPI app (target 6, issue 12 item 7)",
    "large": "large files (target 7)",
    "client": "client (target 8)",
    "abuse": "abuse (target 9)",
    "tail-startup": "sseplay tail --count 1 launch to exit (issue 16 item 5)",
    "memory": "memory bounds under the worst file shapes (issue 11 item 4)",
    "follow": "serve --follow: line end in a followed file to N clients, p50/p99 (issue 15)",
    "redis": "serve redis://: XADD to N clients, p50/p99 (issue 15; needs redis-server)",
}


def run_targets(
    chosen: list[str], quick: bool, work: Path, kinds: list[str] | None = None
) -> dict[str, Any]:
    # Past the 5,000 of the targets, so that two servers that both hold 5,000 are told apart.
    ladder = [500, 1000, 2000] if quick else [1000, 2000, 3000, 4000, 5000, 6000, 7000]
    seconds = 5 if quick else 10
    rounds = 5 if quick else 10
    kinds = kinds or list(SERVERS)
    runners: dict[str, Callable[[], Any]] = {
        "fanout": lambda: fanout(work, ladder, seconds, kinds),
        "workers": lambda: workers_fanout(work, ladder[:4], seconds, 2 if quick else 3),
        "broadcast": lambda: fanout(work, ladder, seconds, ["sseplay"], ("--broadcast",)),
        "burst": lambda: throughput(work, kinds),
        "idle": lambda: idle_memory(work, kinds, 2000 if quick else 5000),
        "startup": startup,
        "launch": lambda: first_byte(work, rounds),
        "large": lambda: large_files(work, quick),
        "client": lambda: client(work),
        "abuse": lambda: abuse(work, seconds, quick),
        "tail-startup": lambda: tail_startup(work, 2 * rounds),
        "memory": lambda: memory_bounds(work, quick),
        "follow": lambda: live_latency("follow_latency.py", 200 if quick else 1000),
        "redis": lambda: live_latency("redis_latency.py", 200 if quick else 1000),
    }
    results = {}
    for name in chosen:
        print(TARGETS[name], flush=True)
        results[name] = runners[name]()
    return results


def live_latency(script: str, clients: int) -> dict[str, Any]:
    """Issue 15: one of the live-latency scripts beside this one (they start their own
    server, and redis-server for Redis), with ``clients`` connections: its JSON result."""
    result = subprocess.run(
        [sys.executable, str(HERE / script), "--clients", str(clients)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    figures: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"  {script}: {figures}", flush=True)
    return figures


def cell_of(figures: dict[str, Any], kind: str, form: str = "{:.1f}") -> str:
    """A figure of one server, or "n/a" when that server was not run (``--servers``)."""
    return form.format(figures[kind]) if kind in figures else "n/a"


def table_rows(r: dict[str, Any]) -> list[tuple[Any, ...]]:
    """One row per figure of the targets that ran: (target, goal, sseplay, naive, node)."""
    rows: list[tuple[Any, ...]] = []
    if "fanout" in r:
        per_client = r["fanout"]
        rows.append(
            (
                "1 fan-out clients held (>=99 %, p99 <= 50 ms)",
                "5,000 and >= node",
                *(held(per_client[kind]) if kind in per_client else "n/a" for kind in SERVERS),
            )
        )
    if "workers" in r:
        w = r["workers"]["summary"]
        rows.append(
            (
                "issue 14.4 fan-out, --workers 1 / --workers 2 (all server processes on one"
                " core): clients held (>= 99 %, p99 <= 50 ms); kept up (>= 99 %)",
                "2 workers >= 1 worker",
                f"{w['held_1']:,} / {w['held_2']:,}; {w['kept_up_1']:,} / {w['kept_up_2']:,}",
                "",
                "",
            )
        )
        rows.extend(
            (
                f"issue 14.4 server CPU per delivered event, us, at {c['clients']:,} clients:"
                " 1 worker / 2 workers (ratio)",
                "ratio <= 1.10",
                f"{c['us_1']} / {c['us_2']} ({c['ratio']})",
                "",
                "",
            )
            for c in w["compared"]
        )
        rows.append(
            (
                "issue 14.4 server CPU per delivered event, us, pooled over those counts",
                "ratio <= 1.10",
                f"{w['pooled_us_1']} / {w['pooled_us_2']} ({w['pooled_ratio']})",
                "",
                "",
            )
        )
        rows.append(
            (
                f"issue 14.4 {w['spread_clients']:,} connections over 2 workers: per worker,"
                " worst off an even share",
                "each within 15 %",
                f"{sorted((w['spread_per_worker'] or {}).values())}, {w['spread_worst_percent']} %",
                "",
                "",
            )
        )
    if "broadcast" in r:
        rows.append(("2 broadcast clients held", "5,000", held(r["broadcast"]["sseplay"]), "", ""))
    if "burst" in r:
        burst = r["burst"]
        rows.append(
            (
                "3 events/s, one connection, interval 0",
                "1,000,000",
                *(cell_of(burst, kind, "{:,.0f}") for kind in SERVERS),
            )
        )
    if "idle" in r:
        idle = r["idle"]
        rows.append(
            (
                f"4 KiB per idle connection ({idle.get('clients', 1000):,} connections,"
                f" first event, then {idle.get('hold_seconds', 1):g} s idle)",
                "<= 16 and <= node",
                cell_of(idle, "sseplay"),
                cell_of(idle, "naive"),
                cell_of(idle, "node"),
            )
        )
    if "fanout" in r:
        at_1000 = next((x for x in r["fanout"].get("sseplay", []) if x["clients"] == 1000), None)
        rows.append(
            (
                "5 drift p99 at 1,000 clients (ms)",
                "<= 5",
                f"{at_1000['drift_p99_ms']}" if at_1000 else "",
                "",
                "",
            )
        )
    if "startup" in r:
        start = r["startup"]
        rows.append(
            (
                "6 `sseplay --help` ms (interpreter alone)",
                "< 150",
                f"{start['help_ms']:.0f} ({start['interpreter_ms']:.0f})",
                "",
                "",
            )
        )
    if "launch" in r:
        launched = r["launch"]

        def cell(name: str) -> str:
            if name not in launched:
                return "n/a"
            stats = launched[name]["first_body_byte"]
            return f"{stats['median_ms']:.0f} ({stats['min_ms']:.0f}-{stats['max_ms']:.0f})"

        plain = f"plain FastAPI {cell('plain')}; naive (interval 0) {cell('naive')}"
        rows.append(
            (
                "6 launch to first body byte of /events, ms, median (min-max):"
                " `serve samples/scores.json --port 0`, URL read from its output",
                "<= plain FastAPI",
                cell("sseplay --port 0"),
                f"plain FastAPI --port 0 {cell('plain --port 0')}",
                "",
            )
        )
        rows.append(
            (
                "6 the same, port given, connect until it listens (same method for all)",
                "<= plain FastAPI",
                cell("sseplay"),
                plain,
                cell("node"),
            )
        )
    if "large" in r:
        rows.extend(
            (
                f"7 {layout} {info['megabytes'] / 1000:.1f} GB: check MB/s, peak RSS MB, resume ms",
                ">= 150, < 250, <= 50",
                f"{info['check_mb_per_s']:.0f}, {info['peak_rss_mb']:.0f},"
                f" {info['resume_first_event_ms']:.1f}",
                "",
                "",
            )
            for layout, info in r["large"].items()
        )
    if "client" in r:
        tail = r["client"]
        rows.append(
            (
                "8 tail events/s (json to /dev/null): once running; whole command",
                ">= 100,000",
                f"{tail['tail_running_events_per_s']:,.0f};"
                f" {tail['tail_events_per_s']:,.0f} (start-up {tail['tail_start_up_ms']:.0f} ms)",
                "",
                "",
            )
        )
        rows.append(
            (
                "8 parser events/s vs httpx-sse",
                ">= 2x",
                f"{tail['parser_sseplay']:,.0f}",
                f"httpx-sse {tail['parser_httpx_sse']:,.0f}",
                "",
            )
        )
    if "abuse" in r:
        abused = r["abuse"]
        rows.append(
            (
                f"9 {abused['frozen_readers']} frozen readers + {abused['clients']} clients:"
                " delivery, p99 ms, left open",
                ">= 99 %, <= 50, 0",
                f"{abused['delivery'] * 100:.1f} %, {abused['drift_p99_ms']},"
                f" {abused['streams_open_after']}",
                "",
                "",
            )
        )
        rows.append(
            (
                f"9 {abused['cycles']:,} connect cycles: RSS growth, fds, left open",
                "<= 10 %, same, 0",
                f"{abused['rss_growth_percent']:+.1f} %, {abused['fds_before']} -> "
                f"{abused['fds_after']}, {abused['open_after_churn']}",
                "",
                "",
            )
        )
    if "tail-startup" in r:
        up = r["tail-startup"]

        def ms(name: str) -> str:
            if name not in up:
                return "n/a"
            return (
                f"{up[name]['median_ms']:.0f} ({up[name]['min_ms']:.0f}-{up[name]['max_ms']:.0f})"
            )

        rows.append(
            (
                "tail `--count 1` launch to exit, ms, median (min-max) (issue 16.5)",
                "<= 150",
                ms("sseplay tail --count 1"),
                f"curl {ms('curl')}; `python -c pass` {ms('python -c pass')};"
                f" `import httpx` {ms(HTTPX_FLOOR)}",
                "",
            )
        )
    if "memory" in r:
        for name, info in r["memory"].items():
            bound = f"+{info['bound_mib']:g} MiB" if info["bound_mib"] else "stated: none"
            rows.append(
                (
                    f"memory (issue 11.4): {name}: peak RSS MiB (over the baseline;"
                    " peak once checked, before any client)",
                    bound,
                    f"{info['peak_mib']:.0f} ({info['over_baseline_mib']:+.0f};"
                    f" {info['ready_peak_mib']:.0f})",
                    "",
                    "",
                )
            )
    if "follow" in r:
        f = r["follow"]
        rows.append(
            (
                f"issue 15 --follow: line end to client, ms, {f['clients']:,} clients x"
                f" {f['records']} records: p50 / p99 / max (missing)",
                "within 100 ms",
                f"{f['p50_ms']} / {f['p99_ms']} / {f['max_ms']} ({f['missing']})",
                "",
                "",
            )
        )
    if "redis" in r:
        d = r["redis"]
        rows.append(
            (
                f"issue 15 serve redis://: XADD to client, ms, {d['clients']:,} clients x"
                f" {d['events']} events: p50 / p99 / max (delivery)",
                "",
                f"{d['latency_p50_ms']} / {d['latency_p99_ms']} / {d['latency_max_ms']}"
                f" ({d['delivery']:.2%})",
                "",
                "",
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smaller ladder, shorter runs")
    parser.add_argument(
        "--only",
        metavar="TARGET[,TARGET...]",
        help="run only these targets: " + ", ".join(TARGETS),
    )
    parser.add_argument(
        "--servers",
        metavar="SERVER[,SERVER...]",
        help="the servers of the comparing targets (fanout, burst, idle): "
        + ", ".join(SERVERS)
        + " (default: all)",
    )
    parser.add_argument(
        "--note", help="a line for the results file: what else ran on the machine, what code"
    )
    args = parser.parse_args()
    kinds = [k.strip() for k in args.servers.split(",")] if args.servers else list(SERVERS)
    if any(k not in SERVERS for k in kinds):
        parser.error(f"--servers: choose from {', '.join(SERVERS)}")
    chosen = list(TARGETS) if not args.only else [t.strip() for t in args.only.split(",")]
    unknown = [t for t in chosen if t not in TARGETS]
    if unknown:
        parser.error(f"unknown target {', '.join(unknown)}: choose from {', '.join(TARGETS)}")
    command = "python benchmarks/run.py" + (" --quick" if args.quick else "")
    command += f" --only {','.join(chosen)}" if args.only else ""
    command += f" --servers {','.join(kinds)}" if args.servers else ""
    # Generated files live here (gitignored); the large ones are removed after their target.
    WORK.mkdir(exist_ok=True)
    cache_bytecode()
    results = run_targets(chosen, args.quick, WORK, kinds)

    table = ["| target | goal | sseplay | naive / plain / floor | node |"]
    table += ["| --- | --- | --- | --- | --- |"]
    table += [f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in table_rows(results)]
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%SZ")
    report = "\n".join(
        [
            f"# Benchmark run {stamp}",
            "",
            f"Machine: {machine()}",
            "",
            f"Load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())};"
            f" niceness {os.nice(0)} (figures from a loaded machine need a quiet rerun)",
            "",
            f"Command: `{command}`",
            "",
            *([f"Note: {args.note}", ""] if args.note else []),
            *table,
            "",
            "## Raw results",
            "",
            "```json",
            json.dumps(results, indent=1),
            "```",
            "",
        ]
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stamp}.md").write_text(report)
    print("\n".join(table))
    print(f"\nwritten to {RESULTS / f'{stamp}.md'}")


if __name__ == "__main__":
    main()
