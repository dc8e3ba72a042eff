"""Issue 25, performance: many concurrent shaped LLM streams from one core.

    python benchmarks/shapes_load.py                       # 1,000 streams, --tps 50, 10 s window
    python benchmarks/shapes_load.py --clients 200 --profile benchmarks/work/shapes.prof

Starts `sseplay serve --shape openai-chat TURNS.jsonl --tps 50 --ttft T --port 0` pinned to
core 0 (as run.py does), with one turn long enough to stream through the whole window, and
a load client pinned to core 1 (this script again, `--client`: uvloop, raw sockets,
httptools, so it measures the server and not itself; it reports its own CPU) that opens the
streams (POST /v1/chat/completions, `"stream": true`), spread evenly over `--ramp` seconds
(`--burst N`: N at a time, back to back). Per stream, on the client's clock:

- TTFT: from the request written to the arrival of the first token chunk (the second SSE
  event: the first is the `role` chunk, sent with the first token), against `--ttft`;
- drift of token k: its arrival - the arrival of token 1 - (k - 1) / tps;
- tokens per second delivered in all, between every stream open and the end of the window;
- server CPU per token (user + system time from /proc over that window / tokens in it).

Then a check, in-process, that a turn is expanded and encoded once per request shape and
not per token per client: 50 clients of one request shape and 50 of another on a `Server`,
with the shape's `answer()` counted. Results go to benchmarks/results/<UTC time>-shapes.md.
`--profile FILE` runs the server under cProfile (stopped with SIGINT so the profile is
written) and prints where its time went.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import pstats
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import run

ROUTE = "/v1/chat/completions"
SHAPE = "openai-chat"


def write_turn(path: Path, words: int) -> Path:
    text = " ".join(f"word{n}" for n in range(words))
    path.write_text(json.dumps({"text": text}) + "\n")
    return path


@contextmanager
def shaped_server(
    turns: Path, tps: float, ttft: float, profile: Path | None
) -> Iterator[tuple[int, int]]:
    """The server pinned to core 0; yield (port, pid) once it has printed its URL. Stopped
    with SIGINT (its Ctrl-C: a clean exit, so cProfile writes its file)."""
    python = [run.PYTHON] + (["-m", "cProfile", "-o", str(profile)] if profile else [])
    command = [
        *python,
        "-m",
        "sseplay",
        "serve",
        "--shape",
        SHAPE,
        str(turns),
        "--tps",
        str(tps),
        "--ttft",
        str(ttft),
        "--port",
        "0",
        "-q",
    ]
    process = subprocess.Popen(
        run.pinned(run.SERVER_CORE, command), cwd=run.ROOT, stdout=subprocess.PIPE, text=True
    )
    watchdog = threading.Timer(60, process.kill)
    watchdog.start()
    try:
        assert process.stdout is not None
        found = run.URL_PATTERN.search(process.stdout.readline())
        watchdog.cancel()
        if not found:
            raise RuntimeError("sseplay serve --shape did not start")
        yield int(found.group(1)), process.pid
    finally:
        watchdog.cancel()
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- the load client (core 1) ----------------------------------------------------------


class TokenClient(asyncio.Protocol):
    """One streamed POST: the time the request was written, and (arrival, events so far)
    per body read. Each chunk is one SSE event ending in a blank line; the JSON inside
    holds no raw newline, so counting LF LF counts events."""

    def __init__(self, request: bytes) -> None:
        import httptools

        self.request = request
        self.sent = 0.0
        self.events = 0
        self.reads: list[tuple[float, int]] = []
        self.status = 0
        self.ended = False
        self._tail = b""
        self._parser = httptools.HttpResponseParser(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.sent = time.monotonic()
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self._parser.feed_data(data)

    def on_status(self, status: bytes) -> None:
        self.status = self._parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        now = time.monotonic()
        data = self._tail + body
        count = data.count(b"\n\n")
        self._tail = b"\n" if data.endswith(b"\n") and not data.endswith(b"\n\n") else b""
        if count:
            self.events += count
            self.reads.append((now, self.events))

    def on_message_complete(self) -> None:
        self.ended = True

    def token_arrivals(self, until: float) -> list[float]:
        """Arrival of token 1, 2, ... (events 2, 3, ...) up to ``until``."""
        arrivals: list[float] = []
        seen = 0
        for at, events in self.reads:
            if at > until:
                break
            arrivals.extend([at] * (events - seen))
            seen = events
        return arrivals[1:]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def cpu_now() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def load(
    port: int, clients: int, seconds: float, tps: float, ramp: float, burst: int
) -> dict[str, Any]:
    body = json.dumps(
        {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    ).encode()
    request = (
        f"POST {ROUTE} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    loop = asyncio.get_running_loop()
    streams: list[TokenClient] = []
    failed = 0
    started, cpu_started = time.monotonic(), cpu_now()
    for index in range(clients):
        try:
            _, stream = await loop.create_connection(
                lambda: TokenClient(request), "127.0.0.1", port
            )
            streams.append(stream)
        except OSError:
            failed += 1
        if ramp and index % burst == burst - 1:
            # Opened at absolute deadlines, ``burst`` at a time: one every 2 ms by default,
            # as clients arrive; ``--burst 50`` is the old load, 50 back to back.
            delay = started + ramp * (index + 1) / clients - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
    connected, cpu_connected = time.monotonic(), cpu_now()
    print("connected", flush=True)  # the harness samples the server's CPU here
    # Less the role chunks still to come (one per stream that has had no event yet).
    events_connected = sum(s.events or 1 for s in streams)
    await asyncio.sleep(seconds)
    end, cpu_end = time.monotonic(), cpu_now()
    events_end = sum(s.events for s in streams)
    print("measured", flush=True)
    for stream in streams:
        stream.transport.close()

    ttfts, drifts, steady = [], [], []
    by_second: dict[int, list[float]] = {}  # drift by arrival, whole seconds from the first open
    tokens = 0
    for stream in streams:
        arrivals = stream.token_arrivals(end)
        tokens += len(arrivals)
        if not arrivals:
            continue
        first = arrivals[0]
        ttfts.append(first - stream.sent)
        for k, at in enumerate(arrivals[1:], start=1):
            drift = at - first - k / tps
            drifts.append(drift)
            if at >= connected:
                steady.append(drift)
            by_second.setdefault(int(at - started), []).append(drift)
    window = end - connected

    def ms(values: list[float], q: float) -> float:
        return round(percentile(values, q) * 1000, 2)

    return {
        "clients": clients,
        "connected": len(streams),
        "failed": failed,
        "bad_status": sum(s.status != 200 for s in streams),
        "ended_early": sum(s.ended for s in streams),
        "no_token": sum(not s.token_arrivals(end) for s in streams),
        "connect_seconds": round(connected - started, 3),
        "ttft_p50_ms": ms(ttfts, 0.50),
        "ttft_p99_ms": ms(ttfts, 0.99),
        "ttft_min_ms": round(min(ttfts, default=math.nan) * 1000, 2),
        "ttft_max_ms": ms(ttfts, 1.0),
        # TTFT p50 of each tenth of the streams, in the order they were opened.
        "ttft_p50_by_tenth_ms": [
            ms(ttfts[n * len(ttfts) // 10 : (n + 1) * len(ttfts) // 10], 0.5) for n in range(10)
        ],
        "drift_p99_by_second_ms": [ms(by_second[n], 0.99) for n in sorted(by_second)],
        "drift_p50_ms": ms(drifts, 0.50),
        "drift_p99_ms": ms(drifts, 0.99),
        "drift_max_ms": ms(drifts, 1.0),
        "drift_min_ms": round(min(drifts, default=math.nan) * 1000, 2),
        "steady_drift_p99_ms": ms(steady, 0.99),
        "tokens": tokens,
        "window_seconds": round(window, 3),
        # Every stream open: token events (all events after the role chunks) in the window.
        "window_tokens": events_end - events_connected,
        "window_tokens_per_s": round((events_end - events_connected) / window),
        "client_cpu_window": round((cpu_end - cpu_connected) / window, 3),
        "client_cpu_ramp": round((cpu_connected - cpu_started) / max(connected - started, 1e-9), 3),
    }


def client_main(args: argparse.Namespace) -> None:
    import uvloop

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    uvloop.install()
    # The client's own collector would stall it while it walks the arrivals it keeps
    # (hundreds of thousands of them), and its stalls would read as the server's drift.
    gc.disable()
    result = asyncio.run(
        load(args.client, args.clients, args.seconds, args.tps, args.ramp, args.burst)
    )
    print(json.dumps(result), flush=True)


# --- the harness ----------------------------------------------------------------------


def measure(args: argparse.Namespace, turns: Path, profile: Path | None) -> dict[str, Any]:
    with shaped_server(turns, args.tps, args.ttft, profile) as (port, pid):
        command = [
            run.PYTHON,
            str(Path(__file__).resolve()),
            "--client",
            str(port),
            "--clients",
            str(args.clients),
            "--seconds",
            str(args.seconds),
            "--tps",
            str(args.tps),
            "--ramp",
            str(args.ramp),
            "--burst",
            str(args.burst),
        ]
        process = subprocess.Popen(
            run.pinned(run.CLIENT_CORE, command),
            cwd=run.ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        watchdog = threading.Timer(args.seconds + args.ramp + 120, process.kill)
        watchdog.start()
        cpu: dict[str, float] = {}
        switches: dict[str, tuple[int, int]] = {}
        try:
            assert process.stdout is not None
            last = ""
            for line in process.stdout:
                last = line.strip()
                if last in ("connected", "measured"):
                    cpu[last] = run.cpu_seconds([pid])
                    switches[last] = run.context_switches([pid])
            _, errors = process.communicate()
        finally:
            watchdog.cancel()
        if process.returncode:
            raise RuntimeError(f"the load client failed: {errors[-2000:]}")
    result: dict[str, Any] = json.loads(last)
    used = cpu["measured"] - cpu["connected"]
    result["server_cpu_share"] = round(used / result["window_seconds"], 3)
    tokens = result["window_tokens"]
    window = result["window_seconds"]
    # Involuntary switches: the scheduler put the server aside for another process on its
    # core (a neighbour on this shared machine), time its deadlines wait without its fault.
    result["server_wakeups_per_s"] = round(
        (switches["measured"][0] - switches["connected"][0]) / window
    )
    result["server_preempted_per_s"] = round(
        (switches["measured"][1] - switches["connected"][1]) / window
    )
    result["server_cpu_us_per_token"] = round(used / tokens * 1e6, 2) if tokens else None
    return result


def encoded_once(clients: int = 50) -> dict[str, int]:
    """Count the shape's ``answer()`` calls while ``clients`` clients of one request shape
    and ``clients`` of another (``include_usage``) read the same turn from a ``Server``."""
    import httpx

    from sseplay.server import Server
    from sseplay.shaped import Turns

    turns = Turns([{"text": "one two three four five six"}], shape=SHAPE, tps=200)
    calls = 0
    answer = turns.shape.answer

    def counted(*a: Any, **k: Any) -> Any:
        nonlocal calls
        calls += 1
        return answer(*a, **k)

    tokens_read = 0
    lock = threading.Lock()

    def read(url: str, usage: bool) -> None:
        nonlocal tokens_read
        body: dict[str, Any] = {"model": "m", "stream": True, "messages": []}
        if usage:
            body["stream_options"] = {"include_usage": True}
        with httpx.stream("POST", url, json=body, timeout=30) as response:
            text = "".join(response.iter_text())
        with lock:
            tokens_read += text.count('"content":"') - 1  # less the role chunk's ""

    turns.shape.answer = counted  # type: ignore[method-assign]
    try:
        with Server(turns) as server:
            url = server.base_url.rstrip("/") + ROUTE
            threads = [
                threading.Thread(target=read, args=(url, n % 2 == 1)) for n in range(2 * clients)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    finally:
        del turns.shape.answer  # back to the class's method
    return {
        "requests": 2 * clients,
        "request_shapes": 2,
        "answer_calls": calls,
        "tokens": tokens_read,
    }


def profile_summary(path: Path, count: int = 25) -> str:
    out = Path(str(path) + ".txt")
    with out.open("w") as stream:
        stats = pstats.Stats(str(path), stream=stream)
        stats.sort_stats("tottime").print_stats(count)
        stats.sort_stats("cumulative").print_stats(count)
    return out.read_text()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000, help="streams (at most 1,000)")
    parser.add_argument("--seconds", type=float, default=10, help="the measured window")
    parser.add_argument("--tps", type=float, default=50, help="tokens per second per stream")
    parser.add_argument("--ttft", type=float, default=0.5, help="seconds before the first token")
    parser.add_argument("--ramp", type=float, default=2, help="seconds to open the streams over")
    parser.add_argument(
        "--burst", type=int, default=1, help="streams opened back to back at each step of the ramp"
    )
    parser.add_argument("--profile", type=Path, help="run the server under cProfile into FILE")
    parser.add_argument("--no-write", action="store_true", help="print only, no results file")
    parser.add_argument("--client", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        client_main(args)
        return
    if not 0 < args.clients <= 1000:
        parser.error("--clients: 1 to 1,000")
    run.cache_bytecode()
    run.WORK.mkdir(parents=True, exist_ok=True)
    # Long enough that no stream ends inside the window, the ramp and the TTFT included.
    words = math.ceil(args.tps * (args.ramp + args.ttft + args.seconds + 5))
    turns = write_turn(run.WORK / "shapes-turn.jsonl", words)
    load_before = os.getloadavg()
    result = measure(args, turns, args.profile)
    load_after = os.getloadavg()
    once = encoded_once()
    targets = {
        "tokens/s": (result["window_tokens_per_s"], args.clients * args.tps),
        "drift p99 ms": (result["drift_p99_ms"], 5.0),
        "TTFT p99 - ttft ms": (round(result["ttft_p99_ms"] - args.ttft * 1000, 2), 5.0),
    }
    met = {
        "tokens/s": targets["tokens/s"][0] >= 0.99 * targets["tokens/s"][1],
        "drift p99 ms": targets["drift p99 ms"][0] <= 5.0,
        "TTFT p99 - ttft ms": abs(targets["TTFT p99 - ttft ms"][0]) <= 5.0,
    }
    command = (
        f"python benchmarks/shapes_load.py --clients {args.clients} --seconds {args.seconds:g}"
        f" --tps {args.tps:g} --ttft {args.ttft:g} --ramp {args.ramp:g} --burst {args.burst}"
        + (f" --profile {args.profile}" if args.profile else "")
    )
    served = (
        f"sseplay serve --shape {SHAPE} TURNS.jsonl --tps {args.tps:g} --ttft {args.ttft:g}"
        f" --port 0 -q (one turn of {words} words, words:1 chunks; taskset -c {run.SERVER_CORE})"
    )
    lines = [
        f"streams {result['connected']}/{args.clients} (failed {result['failed']}, not 200"
        f" {result['bad_status']}, ended early {result['ended_early']}, no token"
        f" {result['no_token']}), opened over {result['connect_seconds']} s",
        f"TTFT p50 {result['ttft_p50_ms']} ms, p99 {result['ttft_p99_ms']} ms, max"
        f" {result['ttft_max_ms']} ms, min {result['ttft_min_ms']} ms"
        f" (--ttft {args.ttft * 1000:g} ms)",
        f"drift p50 {result['drift_p50_ms']} ms, p99 {result['drift_p99_ms']} ms, max"
        f" {result['drift_max_ms']} ms, min {result['drift_min_ms']} ms; after the ramp p99"
        f" {result['steady_drift_p99_ms']} ms",
        f"TTFT p50 per tenth of the streams, in the order opened (ms):"
        f" {result['ttft_p50_by_tenth_ms']}",
        f"drift p99 per second from the first open (ms): {result['drift_p99_by_second_ms']}",
        f"delivered {result['window_tokens_per_s']:,} tokens/s over {result['window_seconds']} s"
        f" (due {args.clients * args.tps:,.0f})",
        f"server CPU {result['server_cpu_share']:.0%} of a core,"
        f" {result['server_cpu_us_per_token']} us per token, {result['server_wakeups_per_s']}"
        f" wake-ups/s, preempted {result['server_preempted_per_s']} times/s; load client CPU"
        f" {result['client_cpu_window']:.0%} of a core in the window"
        f" ({result['client_cpu_ramp']:.0%} during the ramp)",
        f"encoded once: {once['requests']} requests of {once['request_shapes']} request shapes,"
        f" {once['tokens']} tokens read, answer() called {once['answer_calls']} times",
        "targets: "
        + "; ".join(
            f"{name} {got} (goal {goal:g}): {'met' if met[name] else 'MISSED'}"
            for name, (got, goal) in targets.items()
        ),
    ]
    print("\n".join(lines))
    if args.profile:
        print(profile_summary(args.profile)[:6000])
    if args.no_write:
        return
    import httptools
    import uvloop

    import sseplay

    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%SZ")
    report = "\n".join(
        [
            f"# Shaped LLM streams under load, issue 25 ({stamp})",
            "",
            f"Machine: {run.machine()}; sseplay {sseplay.__version__}, httptools"
            f" {httptools.__version__}, uvloop {uvloop.__version__}",
            "",
            f"Load average before {' '.join(f'{x:.2f}' for x in load_before)}, after"
            f" {' '.join(f'{x:.2f}' for x in load_after)} (a shared 2-core machine: the server"
            f" on core {run.SERVER_CORE}, the load client on core {run.CLIENT_CORE})",
            "",
            f"Command: `{command}`",
            "",
            f"Server: `{served}`",
            "",
            "```",
            *lines,
            "```",
            "",
            *(
                [
                    "## Where the server's time went (cProfile, by own time)",
                    "",
                    "```",
                    profile_summary(args.profile).split("Ordered by: cumulative")[0][:5000],
                    "```",
                    "",
                ]
                if args.profile
                else []
            ),
            "## Raw results",
            "",
            "```json",
            json.dumps({"load": result, "encoded_once": once}, indent=1),
            "```",
            "",
        ]
    )
    run.RESULTS.mkdir(exist_ok=True)
    path = run.RESULTS / f"{stamp}-shapes.md"
    path.write_text(report)
    print(f"written to {path}")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
