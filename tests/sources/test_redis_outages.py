"""Redis lost, restarted or stopping under ``sseplay serve redis://`` and ``sseplay publish``:
nothing is lost, clients resume exactly, the server stops at once. Real ``redis-server``s."""

from __future__ import annotations

import asyncio
import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from sseplay.model import Event
from sseplay.parser import EventStreamParser
from sseplay.sources.redis_feed import RedisFeed, RedisStream
from sseplay.sources.redis_reader import Backoff
from sseplay.timer import Timer
from tests.conftest import ROOT
from tests.redis_server import REDIS_SERVER, RedisServer
from tests.sources.redis_support import (
    Client,
    fill,
    publish,
    resuming_sockets,
    serve_redis,
    settled,
)

redis = pytest.importorskip("redis")

pytestmark = pytest.mark.skipif(
    not os.path.exists(REDIS_SERVER), reason="needs redis-server (apt-get install redis-server)"
)


def test_redis_killed_mid_backfill_ends_the_response_and_the_client_resumes_exactly(
    tmp_path: Path,
) -> None:
    # AOF with fsync always: the entries survive the kill, so the resume can be exact.
    restarting = RedisServer(tmp_path / "aof", aof=True).start()
    try:
        redis_client = redis.Redis(port=restarting.port)
        # 2.5 pages of XRANGE of 10 kB entries: the client's buffers cannot hold them all.
        added = fill(redis_client, "events", 2500, 10_000)
        with serve_redis(restarting.url("events")) as process:
            settled(process)
            first: list[Event] = []
            parser = EventStreamParser()
            with (
                httpx.Client(timeout=httpx.Timeout(10, read=20)) as http,
                http.stream("GET", process.url, headers={"Last-Event-ID": added[0]}) as response,
            ):
                chunks = response.iter_raw()
                while len(first) < 10:
                    first += parser.feed(next(chunks))
                time.sleep(0.5)  # the server is held by this client's full buffers
                assert restarting.process is not None
                restarting.process.kill()  # by its PID, mid-backfill
                restarting.process.wait(10)
                restarting.process = None
                # The rest that was written, then the end of the body (chunked coding's
                # last chunk, RFC 9112 7.1), not a connection closed mid-body.
                for chunk in chunks:
                    first += parser.feed(chunk)
            assert 10 <= len(first) < len(added) - 1, len(first)
            restarting.start()
            # The client reconnects with the last id it got: the rest, then the live edge.
            with Client(process.url, last_event_id=first[-1].id) as resumed:
                rest = resumed.wait_for(len(added) - 1 - len(first), seconds=20)
                added += publish(redis_client, "events", ["live"])
                rest = resumed.wait_for(len(added) - 1 - len(first), seconds=20)
            _, _, log = process.stop()
    finally:
        restarting.stop()
    assert [event.id for event in first + rest] == added[1:]
    assert rest[-1].data == "live"
    assert "ended: Redis could not be read for its backfill" in log
    assert "Traceback" not in log
    assert "without completing response" not in log


def test_publish_follow_holds_its_input_while_redis_is_away_and_loses_nothing(
    tmp_path: Path,
) -> None:
    restarting = RedisServer(tmp_path / "aof", aof=True).start()
    record = (json.dumps({"pad": "p" * 4000}) + "\n").encode()
    process = subprocess.Popen(
        [sys.executable, "-m", "sseplay", "publish", "-", "--to", restarting.url("events"),
         "--follow"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    assert process.stdin is not None
    redis_client = redis.Redis(port=restarting.port)
    try:
        process.stdin.write(record)
        process.stdin.flush()
        deadline = time.monotonic() + 10
        while redis_client.xlen("events") < 1:
            assert time.monotonic() < deadline, "the first record never reached Redis"
            time.sleep(0.01)
        restarting.stop()
        # Write as fast as the pipe takes it until it takes nothing for a second (the
        # command stopped reading), or 64 MiB went in (it never did).
        fd = process.stdin.fileno()
        os.set_blocking(fd, False)
        written = 0
        pending = b""
        while written < 64 << 20:
            if not pending:
                pending = record
            try:
                sent = os.write(fd, pending)
            except BlockingIOError:
                if not select.select([], [fd], [], 1.0)[1]:
                    break
                continue
            written += sent
            pending = pending[sent:]
        # 16 MiB wait for Redis, one read of 1 MiB past it, and the pipe's own buffer.
        assert written < 20 << 20, f"{written:,} bytes went in while Redis was away"
        restarting.start()
        os.set_blocking(fd, True)
        os.write(fd, pending)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        restarting.stop()
    records = 1 + (written + len(pending)) // len(record)
    log = err.decode()
    assert process.returncode == 0, log
    assert "reading it is paused until Redis takes them" in log
    assert "Redis took what waited: reading <stdin> on" in log
    assert f"published {records} events" in log
    restarting.start()
    try:
        entries = redis.Redis(port=restarting.port).xrange("events")
    finally:
        restarting.stop()
    assert [fields[b"id"] for _, fields in entries] == [
        str(n).encode() for n in range(1, records + 1)
    ]


@pytest.mark.parametrize("redis_away", [False, True], ids=["backfill", "redis-away"])
def test_sigterm_during_backfills_exits_0_within_a_second_without_a_traceback(
    tmp_path: Path, redis_away: bool
) -> None:
    restarting = RedisServer(tmp_path / "redis").start()
    try:
        added = fill(redis.Redis(port=restarting.port), "events", 2500, 10_000)
        with serve_redis(restarting.url("events")) as process:
            settled(process)
            socks = resuming_sockets(process.url, added[0], 3)
            try:
                time.sleep(0.5)  # each is held mid-backfill by its full buffers
                if redis_away:
                    restarting.stop()
                    time.sleep(0.3)
                started = time.monotonic()
                code, _, log = process.stop()
                took = time.monotonic() - started
            finally:
                for sock in socks:
                    sock.close()
    finally:
        restarting.stop()
    assert code == 0, log
    assert took < 1.0, log
    assert log.count("left /events after") == 3, log
    for said in ("Traceback", "CancelledError", "without completing", "graceful shutdown"):
        assert said not in log, log


def test_a_redis_restart_without_persistence_tells_live_clients_to_resync(
    tmp_path: Path,
) -> None:
    restarting = RedisServer(tmp_path / "redis").start()  # no AOF: the stream goes with it
    try:
        redis_client = redis.Redis(port=restarting.port)
        with serve_redis(restarting.url("events")) as process:
            settled(process)
            with Client(process.url) as watching:
                time.sleep(0.1)
                added = publish(redis_client, "events", ["one", "two", "three"])
                watching.wait_for(3)
                restarting.restart()
                got = watching.wait_for(4, seconds=20)  # told before anything new comes
                added += publish(redis_client, "events", ["anew"])
                got = watching.wait_for(5)
            _, _, log = process.stop()
    finally:
        restarting.stop()
    assert [event.data for event in got[:3]] == ["one", "two", "three"]
    assert got[3].type == "sseplay.resync"
    assert got[3].id == added[2]  # no id line: the client's Last-Event-ID is left as it was
    (resync_block,) = [b for b in watching.raw.split(b"\n\n") if b"event: sseplay.resync" in b]
    assert not any(line.startswith(b"id:") for line in resync_block.split(b"\n")), resync_block
    assert json.loads(got[3].data) == {"reason": "reset", "last_event_id": added[2], "oldest": None}
    assert (got[4].id, got[4].data) == (added[3], "anew")
    assert f"is not the one read up to entry {added[2]} any more" in log


def test_a_redis_feed_stops_every_time_it_is_stopped(server: RedisServer, key: str) -> None:
    # Stopped while its XREAD is read: redis-py closes the connection of a cancelled
    # read, and could take the cancellation in and read on; the server then hung at
    # SIGTERM (its lifespan waits for the reader). Many rounds: it was a race.
    redis_client = redis.Redis(port=server.port)

    async def round_trip(stream: str) -> None:
        redis_client.xadd(stream, {"data": "old"})
        loop = asyncio.get_running_loop()
        redis_feed = RedisFeed(RedisStream(server.url(stream), block=0.1, backoff=Backoff(0.01)))
        redis_feed.start(Timer(loop), ping=0)
        await redis_feed._ready.wait()
        redis_client.delete(stream)
        redis_client.xadd(stream, {"data": "anew"})
        deadline = loop.time() + 5
        while redis_feed.published < 1:
            assert loop.time() < deadline
            await asyncio.sleep(0.005)
        stopping = loop.create_task(redis_feed.stop())
        done, _ = await asyncio.wait((stopping,), timeout=2)
        assert done, "the reader did not stop"

    for n in range(30):
        asyncio.run(round_trip(f"{key}-{n}"))
