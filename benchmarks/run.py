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
import json
import os
import platform
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "benchmarks"
RESULTS = HERE / "results"
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


def load(url: str, clients: int, seconds: float, interval: float) -> dict[str, float]:
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
    output = subprocess.run(
        pinned(CLIENT_CORE, command),
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        check=True,
    ).stdout
    return json.loads(output)  # type: ignore[no-any-return]


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
                conn.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
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


def idle_memory(work: Path, kinds: list[str], clients: int = 1000) -> dict[str, float]:
    """Target 4: resident memory per idle held connection (KiB)."""
    data = write_records(work / "idle.jsonl", 10, 200)
    out = {}
    for kind in kinds:
        with server(kind, data, 3600) as (url, pid):
            port = int(url.split(":")[2].split("/")[0])
            time.sleep(0.5)
            before = rss_kib(pid)
            conns = []
            for _ in range(clients):
                conn = socket.create_connection(("127.0.0.1", port))
                conn.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
                conns.append(conn)
            deadline = time.monotonic() + 30
            pending = list(conns)
            while pending and time.monotonic() < deadline:  # until every client has its first event
                ready, _, _ = select.select(pending, [], [], 1)
                for conn in ready:
                    conn.recv(65536)
                    pending.remove(conn)
            time.sleep(1)
            after = rss_kib(pid)
            for conn in conns:
                conn.close()
        out[kind] = (after - before) / clients
        print(f"  idle    {kind:8} {(after - before) / clients:.1f} KiB per connection", flush=True)
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


def launch(work: Path, kinds: list[str], rounds: int = 5) -> dict[str, float]:
    """Target 6: from launching a server to the first event on its first connection (ms,
    median of ``rounds``), sseplay against the naive app."""
    data = write_records(work / "launch.jsonl", 10, 200)
    out = {}
    for kind in kinds:
        times = []
        for _ in range(rounds):
            with server(kind, data, 1.0, wait=False) as (url, _):
                port = int(url.split(":")[2].split("/")[0])
                started = time.perf_counter()
                first_event(port, deadline=started + 20)
                times.append(time.perf_counter() - started)
        out[kind] = sorted(times)[len(times) // 2] * 1000
        print(f"  launch  {kind:8} {out[kind]:.0f} ms to the first event", flush=True)
    return out


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
        conn.sendall(f"GET /events HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
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
            conn.sendall(b"GET /burst HTTP/1.1\r\nHost: x\r\n\r\n")  # and never read
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
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        response = b""
        while chunk := conn.recv(65536):
            response += chunk
    return json.loads(response.split(b"\r\n\r\n", 1)[1])  # type: ignore[no-any-return]


def churn(port: int, cycles: int, concurrency: int = 50) -> None:
    """Open a stream, read its first event, hang up; ``cycles`` times, 50 at a time."""

    async def one() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smaller ladder, shorter runs")
    args = parser.parse_args()
    # Past the 5,000 of the targets, so that two servers that both hold 5,000 are told apart.
    ladder = [500, 1000, 2000] if args.quick else [1000, 2000, 3000, 4000, 5000, 6000, 7000]
    seconds = 5 if args.quick else 10
    kinds = ["sseplay", "naive", "node"]
    command = "python benchmarks/run.py" + (" --quick" if args.quick else "")
    with tempfile.TemporaryDirectory(prefix="sseplay-bench-") as tmp:
        work = Path(tmp)
        print("fan-out, per-client replay (targets 1 and 5)", flush=True)
        per_client = fanout(work, ladder, seconds, kinds)
        print("fan-out, --broadcast (target 2)", flush=True)
        broadcast = fanout(work, ladder, seconds, ["sseplay"], ("--broadcast",))
        print("burst at interval 0 (target 3)", flush=True)
        burst = throughput(work, kinds)
        print("idle memory (target 4)", flush=True)
        idle = idle_memory(work, kinds)
        print("start-up (target 6)", flush=True)
        start = startup()
        launched = launch(work, ["sseplay", "naive"])
        print("large files (target 7)", flush=True)
        large = large_files(work, args.quick)
        print("client (target 8)", flush=True)
        tail = client(work)
        print("abuse (target 9)", flush=True)
        abused = abuse(work, seconds, args.quick)

    at_1000 = next((r for r in per_client["sseplay"] if r["clients"] == 1000), None)
    rows = [
        (
            "1 fan-out clients held (>=99 %, p99 <= 50 ms)",
            "5,000 and >= node",
            held(per_client["sseplay"]),
            held(per_client["naive"]),
            held(per_client["node"]),
        ),
        ("2 broadcast clients held", "5,000", held(broadcast["sseplay"]), "", ""),
        (
            "3 events/s, one connection, interval 0",
            "1,000,000",
            f"{burst['sseplay']:,.0f}",
            f"{burst['naive']:,.0f}",
            f"{burst['node']:,.0f}",
        ),
        (
            "4 KiB per idle connection",
            "<= 16",
            f"{idle['sseplay']:.1f}",
            f"{idle['naive']:.1f}",
            f"{idle['node']:.1f}",
        ),
        (
            "5 drift p99 at 1,000 clients (ms)",
            "<= 5",
            f"{at_1000['drift_p99_ms']}" if at_1000 else "",
            "",
            "",
        ),
        (
            "6 `sseplay --help` ms (interpreter alone)",
            "< 150",
            f"{start['help_ms']:.0f} ({start['interpreter_ms']:.0f})",
            "",
            "",
        ),
        (
            "6 launch to first event, ms",
            "<= naive",
            f"{launched['sseplay']:.0f}",
            f"{launched['naive']:.0f}",
            "",
        ),
        *(
            (
                f"7 {layout} {info['megabytes'] / 1000:.1f} GB: check MB/s, peak RSS MB, resume ms",
                ">= 150, < 250, <= 50",
                f"{info['check_mb_per_s']:.0f}, {info['peak_rss_mb']:.0f},"
                f" {info['resume_first_event_ms']:.1f}",
                "",
                "",
            )
            for layout, info in large.items()
        ),
        (
            "8 tail events/s (json to /dev/null): once running; whole command",
            ">= 100,000",
            f"{tail['tail_running_events_per_s']:,.0f};"
            f" {tail['tail_events_per_s']:,.0f} (start-up {tail['tail_start_up_ms']:.0f} ms)",
            "",
            "",
        ),
        (
            "8 parser events/s vs httpx-sse",
            ">= 2x",
            f"{tail['parser_sseplay']:,.0f}",
            f"httpx-sse {tail['parser_httpx_sse']:,.0f}",
            "",
        ),
        (
            f"9 {abused['frozen_readers']} frozen readers + {abused['clients']} clients:"
            " delivery, p99 ms, left open",
            ">= 99 %, <= 50, 0",
            f"{abused['delivery'] * 100:.1f} %, {abused['drift_p99_ms']},"
            f" {abused['streams_open_after']}",
            "",
            "",
        ),
        (
            f"9 {abused['cycles']:,} connect cycles: RSS growth, fds, left open",
            "<= 10 %, same, 0",
            f"{abused['rss_growth_percent']:+.1f} %, {abused['fds_before']} -> "
            f"{abused['fds_after']}, {abused['open_after_churn']}",
            "",
            "",
        ),
    ]
    table = ["| target | goal | sseplay | naive | node |", "| --- | --- | --- | --- | --- |"]
    table += [f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in rows]
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%SZ")
    report = "\n".join(
        [
            f"# Benchmark run {stamp}",
            "",
            f"Machine: {machine()}",
            "",
            f"Command: `{command}`",
            "",
            *table,
            "",
            "## Raw results",
            "",
            "```json",
            json.dumps(
                {
                    "per_client": per_client,
                    "broadcast": broadcast,
                    "burst": burst,
                    "idle": idle,
                    "startup": start,
                    "launch": launched,
                    "large_files": large,
                    "client": tail,
                    "abuse": abused,
                },
                indent=1,
            ),
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
