"""What one publish costs the server per connection, in process (issue 26).

A ``Server(live=None, control=True)`` runs in this process on uvloop (its own thread);
N connections are held by a client in another process (pinned to the other core), which
reads everything as it comes. On the server's loop, in interleaved rounds:

- ``publish``: ``Control.publish`` (JSON, encoding, the feed, the gate, every outlet and
  ``DirectBody.write``: the whole fan-out a ``POST /_sseplay/publish`` does);
- ``floor``: a bare loop of ``transport.write(framed)`` of the same bytes on the same
  sockets: the send() syscalls alone, what no Python code can go under;
- ``python``: the fan-out with every transport's ``write`` a no-op (the Python work alone).

Each is measured in CPU time of the server's thread (``time.thread_time``: the
neighbours' load on the machine does not count) and in wall time, per connection; and
the share of softirq in it (the kernel's receive side of a loopback send, done on the
sender's core: ``/proc/stat`` samples it per tick, and a kernel without
IRQ_TIME_ACCOUNTING, like this one, counts it in the thread's time too).
``--profile`` adds a cProfile of the publishes.

    python benchmarks/publish_fanout.py --clients 1000 --rounds 5 --publishes 50
    python benchmarks/publish_fanout.py --ab BEFORE_DIR --pairs 3   # interleaved, ~2 minutes
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import resource
import select
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def client(port: int, clients: int) -> None:
    """The other process: hold ``clients`` streams and read them until stdin closes."""
    request = f"GET /live HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    poller = select.epoll()
    socks = {}
    for _ in range(clients):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(request)
        sock.setblocking(False)
        poller.register(sock.fileno(), select.EPOLLIN)
        socks[sock.fileno()] = sock
    poller.register(sys.stdin.fileno(), select.EPOLLIN)
    print("ready", flush=True)
    while True:
        for fd, _ in poller.poll():
            if fd == sys.stdin.fileno():
                return
            try:
                if not socks[fd].recv(65536):
                    poller.unregister(fd)
            except BlockingIOError:
                pass


def softirq_ticks(core: int) -> int:
    """The time core ``core`` spent in softirq (``/proc/stat``), in clock ticks."""
    with open("/proc/stat") as stat:
        for line in stat:
            if line.startswith(f"cpu{core} "):
                return int(line.split()[7])
    return 0


class NoWrite:
    """A transport whose ``write`` does nothing, in C (the Python work alone): built-in
    functions are not descriptors, so ``fake.write(data)`` is ``len(data)``."""

    write = len
    writelines = len
    is_closing = bool  # bool() is False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--publishes", type=int, default=40, help="per round and kind")
    parser.add_argument("--gap", type=float, default=0.02, help="seconds between publishes")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--code", help="the checkout whose sseplay to measure (default: this)")
    parser.add_argument(
        "--ab", metavar="BEFORE_DIR", help="BEFORE_DIR's sseplay and this one's, interleaved"
    )
    parser.add_argument("--pairs", type=int, default=3, help="--ab: runs of each")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--client-port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client_port:
        client(args.client_port, args.clients)
    elif args.ab:
        compare(args)
    else:
        measure(args)


def measure(args: argparse.Namespace) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.clients + 200)), hard))
    pinned = shutil.which("taskset") is not None and (os.cpu_count() or 1) > 1
    core = 0
    if pinned:
        os.sched_setaffinity(0, {core})
    tick = 1 / os.sysconf("SC_CLK_TCK")
    sys.path.insert(0, args.code or str(ROOT))
    import asyncio

    import sseplay
    from sseplay import Server

    server = Server({"live": None}, control=True, ping=0).start()
    hub = server._hub
    assert hub is not None
    assert hub.control is not None
    control, feed = hub.control, hub.feeds["/live"]
    port = int(server.url.split(":")[2].split("/")[0])
    command = [sys.executable, __file__, "--client-port", str(port)]
    command += ["--clients", str(args.clients)]
    if pinned:
        command = ["taskset", "-c", "1", *command]
    reader = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert reader.stdout is not None
    reader.stdout.readline()
    deadline = time.monotonic() + 60
    while feed.subscribers < args.clients and time.monotonic() < deadline:
        time.sleep(0.05)
    assert feed.subscribers == args.clients, feed.subscribers
    load = os.getloadavg()
    loop_kind = control.call(lambda: type(asyncio.get_running_loop()).__module__)
    data = {"k": 1, "text": "a published event of a typical size"}
    results: dict[str, list[tuple[float, float]]] = {"publish": [], "floor": [], "python": []}

    def publish() -> None:
        control.publish("/live", data)

    def floor() -> None:
        for transport in transports:
            transport.write(framed)

    softirq: dict[str, int] = dict.fromkeys(results, 0)

    def timed(operation: Any) -> tuple[float, float]:
        cpu, wall = time.thread_time(), time.perf_counter()
        operation()
        return time.thread_time() - cpu, time.perf_counter() - wall

    def counted(kind: str, operation: Any) -> tuple[float, float]:
        before = softirq_ticks(core)
        result = timed(operation)
        softirq[kind] += softirq_ticks(core) - before
        return result

    outlets = [subscriber.outlet for subscriber in feed._subscribers]
    directs = [outlet._direct for outlet in outlets]
    transports = [direct._transport for direct in directs]
    body = b"id: 1\nevent: message\ndata: " + json.dumps(data).encode() + b"\n\n"
    framed = b"%x\r\n%b\r\n" % (len(body), body)

    def python() -> None:
        for direct, fake in zip(directs, fakes, strict=True):
            direct._transport = fake
        try:
            control.publish("/live", data)
        finally:
            for direct, transport in zip(directs, transports, strict=True):
                direct._transport = transport

    fakes = [NoWrite() for _ in transports]
    profiler = cProfile.Profile() if args.profile else None
    kinds = {"publish": publish, "floor": floor, "python": python}
    for _ in range(args.rounds):
        for kind, operation in kinds.items():
            for _ in range(args.publishes):
                if kind == "publish" and profiler is not None:
                    results[kind].append(control.call(timed, lambda: profiler.runcall(publish)))
                else:
                    results[kind].append(control.call(counted, kind, operation))
                time.sleep(args.gap)
    reader.stdin.close()  # type: ignore[union-attr]
    reader.wait(10)
    server.stop()
    n = args.clients
    summary: dict[str, Any] = {"code": str(Path(sseplay.__file__).parent.parent), "load": load}
    summary["loop"] = loop_kind
    for kind, measured in results.items():
        cpu = [c / n * 1e6 for c, _ in measured]
        wall = [w / n * 1e6 for _, w in measured]
        summary[kind] = {
            "cpu_us_median": round(statistics.median(cpu), 3),
            "cpu_us_p10": round(statistics.quantiles(cpu, n=10)[0], 3),
            "wall_us_median": round(statistics.median(wall), 3),
            # The kernel's receive work of a loopback send, done in softirq on the
            # sender's core (sampled per 10 ms tick, summed over every run of the kind;
            # the "python" kind, which sends nothing, shows the other processes' share).
            "softirq_us": round(softirq[kind] * tick / (len(measured) * n) * 1e6, 3),
        }
    if args.json:
        print(json.dumps(summary), flush=True)
    else:
        print(f"clients {n}, {args.rounds} rounds x {args.publishes} of each")
        print(f"server loop: {'core 0, client core 1' if pinned else 'not pinned'}")
        print(json.dumps(summary, indent=1))
    if profiler is not None:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(14)
        print(text.getvalue())


def compare(args: argparse.Namespace) -> None:
    """``measure`` for BEFORE_DIR's sseplay and this checkout's, alternately, each in a
    fresh process; the results in ``benchmarks/results/<UTC time>-fanout-ab.md``."""
    runs: list[tuple[str, dict[str, Any]]] = []
    load_before = os.getloadavg()
    for index in range(args.pairs * 2):
        kind, code = ("before", args.ab) if index % 2 == 0 else ("after", str(ROOT))
        command = [sys.executable, __file__, "--json", "--code", code]
        command += ["--clients", str(args.clients), "--rounds", str(args.rounds)]
        command += ["--publishes", str(args.publishes), "--gap", str(args.gap)]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        runs.append((kind, json.loads(output.strip().splitlines()[-1])))
        print(kind, json.dumps(runs[-1][1]), flush=True)
    load_after = os.getloadavg()
    stamp = time.strftime("%Y-%m-%dT%H-%M-%SZ", time.gmtime())
    lines = [
        f"# One publish's CPU per connection, in process, before and after ({stamp})",
        "",
        f"Machine: {os.cpu_count()} cores; {platform.platform()}; "
        f"Python {platform.python_version()}",
        "",
        f"Load average before {' '.join(f'{x:.2f}' for x in load_before)}, after "
        f"{' '.join(f'{x:.2f}' for x in load_after)} (server loop on core 0, clients on core 1)",
        "",
        f"Command: `python benchmarks/publish_fanout.py {' '.join(sys.argv[1:])}`",
        "",
        "```",
        *(f"{kind}: {json.dumps(result)}" for kind, result in runs),
    ]
    for kind in ("before", "after"):
        for measured in ("publish", "floor", "python"):
            values = [r[measured] for k, r in runs if k == kind]
            lines.append(
                f"median of {kind}, {measured}: CPU "
                f"{statistics.median(v['cpu_us_median'] for v in values):.2f} us per "
                f"connection (p10 {statistics.median(v['cpu_us_p10'] for v in values):.2f}), "
                f"softirq {statistics.median(v['softirq_us'] for v in values):.2f} us, "
                f"wall {statistics.median(v['wall_us_median'] for v in values):.2f} us"
            )
    lines += ["```", ""]
    out = ROOT / "benchmarks" / "results" / f"{stamp}-fanout-ab.md"
    out.write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
