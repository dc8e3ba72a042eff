"""Where the bytes of an idle held connection go: tracemalloc in a real ``sseplay serve``.

    python benchmarks/idle_profile.py                  # 1,000 then 2,000 idle connections
    python benchmarks/idle_profile.py --step 500 --frames 12

Starts ``sseplay serve`` (the command, with its collector tuning) under tracemalloc, holds
``--step`` idle connections (each reads its first event, then nothing comes: interval
3600 s), takes a snapshot, holds ``--step`` more, takes another, and prints what grew
between the two, per connection: by line, and by traceback for the largest. Resident
memory (VmRSS) is read at both points, so what Python allocates is told from the rest
(the event loop's C structures, allocator slack). tracemalloc's own bookkeeping is not
in its figures, but it is in VmRSS: compare RSS figures with ``run.py --only idle``.
"""

from __future__ import annotations

import argparse
import gc
import selectors
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / "work"
REQUEST = b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def serve(frames: int, argv: list[str]) -> None:
    """The child: the sseplay command under tracemalloc; a snapshot per line on stdin."""
    tracemalloc.start(frames)

    def snapshots() -> None:
        for line in sys.stdin:
            path = line.strip()
            gc.collect()  # what the collector would free is not held by a connection
            tracemalloc.take_snapshot().dump(path)
            print("snapshot", path, flush=True)

    threading.Thread(target=snapshots, daemon=True).start()
    from sseplay.cli.app import main

    main(argv)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def hold(port: int, count: int) -> list[socket.socket]:
    """``count`` connections, each read until its first event."""
    conns = []
    for _ in range(count):
        conn = socket.create_connection(("127.0.0.1", port))
        conn.sendall(REQUEST)
        conns.append(conn)
    received = dict.fromkeys(conns, b"")
    with selectors.DefaultSelector() as selector:
        for conn in conns:
            selector.register(conn, selectors.EVENT_READ)
        pending, deadline = count, time.monotonic() + 60
        while pending and time.monotonic() < deadline:
            for key, _ in selector.select(1):
                conn = key.fileobj
                assert isinstance(conn, socket.socket)
                received[conn] += conn.recv(65536)
                if b"data:" in received[conn]:
                    selector.unregister(conn)
                    pending -= 1
    if pending:
        raise RuntimeError(f"{pending} connections got no first event")
    return conns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--step", type=int, default=1000)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--tracebacks", type=int, default=10)
    parser.add_argument("--depth", type=int, default=4, help="frames shown per traceback")
    parser.add_argument("--settle", type=float, default=2.0)
    parser.add_argument("--serve", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.frames, args.serve)
        return
    WORK.mkdir(exist_ok=True)
    data = WORK / "idle-profile.jsonl"
    data.write_text("".join(f'{{"n":{n},"pad":"{"x" * 160}"}}\n' for n in range(10)))
    command = [sys.executable, __file__, "--frames", str(args.frames), "--serve", "serve"]
    command += [str(data), "--interval", "3600", "--port", "0", "--ping", "0", "-q"]
    child = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=HERE.parent
    )
    assert child.stdin is not None
    assert child.stdout is not None
    try:
        url = child.stdout.readline().strip()
        port = int(url.split(":")[2].split("/")[0])

        def snapshot(name: str) -> tuple[tracemalloc.Snapshot, int]:
            time.sleep(args.settle)
            path = str(WORK / f"idle-{name}.snapshot")
            assert child.stdin is not None
            assert child.stdout is not None
            child.stdin.write(path + "\n")
            child.stdin.flush()
            child.stdout.readline()
            return tracemalloc.Snapshot.load(path), rss_kib(child.pid)

        first = hold(port, args.step)
        before, rss_before = snapshot("a")
        second = hold(port, args.step)
        after, rss_after = snapshot("b")
        step = args.step
        traced = sum(s.size_diff for s in after.compare_to(before, "filename"))
        print(
            f"per connection: VmRSS {(rss_after - rss_before) / step:.2f} KiB,"
            f" traced by tracemalloc {traced / step / 1024:.2f} KiB"
            f" ({(rss_after - rss_before) / step - traced / step / 1024:.2f} KiB elsewhere)"
        )
        print(f"\nby line (bytes and allocations per connection, top {args.top}):")
        for stat in after.compare_to(before, "lineno")[: args.top]:
            frame = stat.traceback[0]
            print(
                f"{stat.size_diff / step:8.0f} B {stat.count_diff / step:6.2f}"
                f"  {frame.filename.split('site-packages/')[-1]}:{frame.lineno}"
            )
        print(f"\nby traceback (the largest {args.tracebacks}; innermost frame first):")
        for stat in after.compare_to(before, "traceback")[: args.tracebacks]:
            print(f"{stat.size_diff / step:8.0f} B {stat.count_diff / step:6.2f}")
            for frame in list(stat.traceback)[::-1][: args.depth]:
                name = frame.filename.split("site-packages/")[-1].split("python3.11/")[-1]
                print(f"      {name}:{frame.lineno}")
        for conn in first + second:
            conn.close()
    finally:
        child.terminate()
        child.wait(10)
        for name in ("a", "b"):
            (WORK / f"idle-{name}.snapshot").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
