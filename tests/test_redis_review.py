"""An adversarial review of Redis Streams (``sseplay publish``, ``sseplay serve redis://``):
hostile producers, clients and networks, against a real ``redis-server`` of the module's
own on a free 127.0.0.1 port (``tests/redis_server.py``), and ones of a test's own where
a test stops or kills its Redis."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from sseplay.model import Event
from sseplay.outlet import Outlet
from sseplay.parser import EventStreamParser
from sseplay.sources.redis_feed import FIRST_PAGE_ENTRIES, PAGE_BYTES, RedisFeed, RedisStream
from sseplay.sources.redis_reader import Backoff, Entry, RedisTarget, StreamReader
from sseplay.timer import Timer
from tests.conftest import ROOT, run_cli
from tests.redis_server import REDIS_SERVER, RedisServer
from tests.sources.test_redis import Client, key, publish, serve_redis, server, settled

redis = pytest.importorskip("redis")

pytestmark = pytest.mark.skipif(
    not os.path.exists(REDIS_SERVER), reason="needs redis-server (apt-get install redis-server)"
)


__all__ = ["key", "server"]  # the fixtures of test_redis, used here too


# The public API.


def test_redis_stream_is_exported_without_loading_redis_or_the_server() -> None:
    probe = (
        "import sys, sseplay\n"
        "assert 'RedisStream' in sseplay.__all__\n"
        "heavy = {m.split('.')[0] for m in sys.modules}\n"
        "print(sorted(heavy & {'fastapi', 'uvicorn', 'sse_starlette', 'starlette', 'redis'}))\n"
        "from sseplay import RedisStream\n"
        "import sseplay.sources.redis_feed\n"
        "assert RedisStream is sseplay.sources.redis_feed.RedisStream\n"
        "stream = RedisStream('redis://127.0.0.1:1/0?stream=feed')\n"
        "print(stream.label, 'redis' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=30, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["[]", "redis://127.0.0.1:1/0?stream=feed False"]


# Flags that shape a file's replay, on redis:// routes.


@pytest.mark.parametrize(
    "flag",
    [
        ["--interval", "0"],
        ["--speed", "2"],
        ["--time-field", "t"],
        ["--data-field", "d"],
        ["--event-type", "tick"],
        ["--broadcast"],
        ["--follow"],
    ],
)
def test_a_file_flag_with_only_redis_sources_is_one_usage_line(flag: list[str]) -> None:
    # Refused before Redis is even asked (nothing listens on port 1): a flag that would
    # silently do nothing is a usage error, exit 2, not a server that ignores it.
    result = run_cli("serve", "--port", "0", "redis://127.0.0.1:1/0?stream=a", *flag)
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        f"sseplay: error: {flag[0]} applies to files only: a redis:// stream sends each entry "
        f"as it is read, with its own type and id; drop {flag[0]}\n"
    )


def test_the_serve_help_says_the_file_flags_apply_to_files_only() -> None:
    result = run_cli("serve", "--help")
    assert result.returncode == 0
    assert "flags apply to files only" in " ".join(result.stdout.replace("│", " ").split())


# Redis lost while a client is backfilled.


def _fill(redis_client: redis.Redis, key: str, count: int, size: int) -> list[str]:
    """``count`` entries of ``size`` bytes of data each; their ids."""
    added: list[str] = []
    for start in range(0, count, 500):
        pipe = redis_client.pipeline(transaction=False)
        for n in range(start, min(count, start + 500)):
            pipe.xadd(key, {"type": "old", "data": f"{n:06d}" + "x" * (size - 6)})
        added += [entry_id.decode() for entry_id in pipe.execute()]
    return added


def test_redis_killed_mid_backfill_ends_the_response_and_the_client_resumes_exactly(
    tmp_path: Path,
) -> None:
    # AOF with fsync always: the entries survive the kill, so the resume can be exact.
    restarting = RedisServer(tmp_path / "aof", aof=True).start()
    try:
        redis_client = redis.Redis(port=restarting.port)
        # 2.5 pages of XRANGE of 10 kB entries: the client's buffers cannot hold them all.
        added = _fill(redis_client, "events", 2500, 10_000)
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


# publish --follow while Redis is away: bounded in bytes, and the input is held.


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


# SIGTERM while clients are backfilled, and while Redis is away.


def _resuming_sockets(url: str, last_event_id: str, count: int) -> list[socket.socket]:
    """``count`` raw connections that resume after ``last_event_id`` and read nothing."""
    host, port = url.split("/")[2].split(":")
    socks = []
    for _ in range(count):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((host, int(port)))
        request = f"GET /events HTTP/1.1\r\nHost: {host}\r\nLast-Event-ID: {last_event_id}\r\n"
        sock.sendall(request.encode() + b"\r\n")
        socks.append(sock)
    return socks


@pytest.mark.parametrize("redis_away", [False, True], ids=["backfill", "redis-away"])
def test_sigterm_during_backfills_exits_0_within_a_second_without_a_traceback(
    tmp_path: Path, redis_away: bool
) -> None:
    restarting = RedisServer(tmp_path / "redis").start()
    try:
        added = _fill(redis.Redis(port=restarting.port), "events", 2500, 10_000)
        with serve_redis(restarting.url("events")) as process:
            settled(process)
            socks = _resuming_sockets(process.url, added[0], 3)
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


# A key that holds another type than a stream.


def test_a_key_of_another_type_is_one_line_at_start(server: RedisServer, key: str) -> None:
    redis.Redis(port=server.port).set(key, "a string")
    result = run_cli("serve", "--port", "0", server.url(key))
    assert result.returncode == 4, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"sseplay: error: Redis at {server.url(key)} refused: ")
    assert "WRONGTYPE" in result.stderr


def test_a_key_turned_into_another_type_while_serving_is_logged_once(
    server: RedisServer, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    redis_client = redis.Redis(port=server.port)
    redis_client.xadd(key, {"data": "before"})

    async def scenario() -> list[Entry]:
        got: list[Entry] = []
        reader = StreamReader(
            RedisTarget.parse(server.url(key)), got.extend, block=0.05, backoff=Backoff(0.01, 0.02)
        )
        await reader.open()
        task = asyncio.create_task(reader.run())
        try:
            redis_client.delete(key)
            redis_client.set(key, "a string")
            await asyncio.sleep(0.5)  # dozens of retries
            redis_client.delete(key)
            added = redis_client.xadd(key, {"data": "after"}).decode()
            deadline = time.monotonic() + 10
            while not got:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            assert [entry.id for entry in got] == [added]
        finally:
            task.cancel()
            await reader.close()
        return got

    with caplog.at_level(logging.INFO, logger="sseplay.redis"):
        asyncio.run(scenario())
    said = [record.getMessage() for record in caplog.records]
    refusals = [line for line in said if "answered XREAD with" in line]
    assert len(refusals) == 1, said
    assert "WRONGTYPE" in refusals[0]
    assert any("reads the stream again" in line for line in said), said


# The stream made anew: Redis restarted without persistence, a key deleted and written again.


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


def test_a_key_deleted_and_written_again_with_lower_ids_is_read_after_a_resync(
    server: RedisServer, key: str
) -> None:
    redis_client = redis.Redis(port=server.port)
    old = publish(redis_client, key, ["old"])

    async def scenario() -> bytes:
        loop = asyncio.get_running_loop()
        redis_feed = RedisFeed(RedisStream(server.url(key), block=0.1, backoff=Backoff(0.01)))
        redis_feed.start(Timer(loop), ping=0)
        chunks: list[bytes] = []

        async def send(message: dict[str, object]) -> None:
            chunks.append(message["body"])  # type: ignore[arg-type]

        outlet = Outlet(send, 10, lambda outlet: None)
        try:
            await redis_feed.join(outlet, None, b"")
            redis_client.delete(key)
            redis_client.xadd(key, {"type": "tick", "data": "lost"}, id="1-1")
            deadline = loop.time() + 5
            while b"sseplay.resync" not in b"".join(chunks):
                assert loop.time() < deadline, b"".join(chunks)
                await asyncio.sleep(0.01)
            # Written after its resync: read, though its id is below the old ones.
            redis_client.xadd(key, {"type": "tick", "data": "written after"}, id="1-2")
            while b"written after" not in b"".join(chunks):
                assert loop.time() < deadline, b"".join(chunks)
                await asyncio.sleep(0.01)
        finally:
            outlet.close()
            await redis_feed.stop()
        return b"".join(chunks)

    events = EventStreamParser().feed(asyncio.run(scenario()))
    assert [event.type for event in events] == ["sseplay.resync", "tick"]
    assert json.loads(events[0].data)["last_event_id"] == old[0]
    assert (events[1].id, events[1].data) == ("1-2", "written after")


# Hostile producers: entries written by another program, with odd fields.


def test_odd_entries_of_another_producer_inject_nothing_and_stop_no_one(
    server: RedisServer, key: str
) -> None:
    redis_client = redis.Redis(port=server.port)
    huge = "h" * (4 << 20)
    many = {f"f{n}": "v" for n in range(3000)}
    odd: list[tuple[dict[str | bytes, str | bytes], str, str]] = [
        # (the entry's fields, the type a client sees, the data a client sees)
        ({"type": "a\nevent: injected\ndata: x", "data": "1"}, "message", "1"),
        ({"type": "a:b", "data": "2"}, "a:b", "2"),
        ({"type": "t\r", "data": "3"}, "message", "3"),
        ({"type": "", "data": "4"}, "message", "4"),
        ({"data": "5\rid: 9\r\n\ndata: x\nevent: y"}, "message", "5\nid: 9\n\ndata: x\nevent: y"),
        ({b"data": b"\xff\xfe6\x00"}, "message", "\ufffd\ufffd6\x00"),
        ({b"\xff\x00": b"\x01\n"}, "message", '{"\ufffd\\u0000":"\\u0001\\n"}'),
        (dict(many), "message", json.dumps(many, separators=(",", ":"))),
        ({"type": "big", "data": huge}, "big", huge),
        ({"type": "after", "data": "still read"}, "after", "still read"),
    ]
    with serve_redis(server.url(key)) as process:
        settled(process)
        with Client(process.url) as live:
            time.sleep(0.1)
            added = [redis_client.xadd(key, fields).decode() for fields, _, _ in odd]
            seen_live = live.wait_for(len(odd))
        # The same entries read back by XRANGE for a client that resumes.
        with Client(process.url, last_event_id="0-0") as resuming:
            seen_resumed = resuming.wait_for(len(odd))
        _, _, log = process.stop()
    for seen in (seen_live, seen_resumed):
        assert [event.id for event in seen] == added
        assert [(event.type, event.data) for event in seen] == [(t, d) for _, t, d in odd]
    for raw in (live.raw, resuming.raw):
        assert b"\nevent: injected" not in raw
        assert b"\nid: 9" not in raw
    assert log.count("cannot be sent as an event type: sent as message") == 2, log
    assert "Traceback" not in log


# Hostile Last-Event-IDs: one defined answer each, never a 500.


def test_odd_last_event_ids_each_get_one_defined_answer(server: RedisServer, key: str) -> None:
    redis_client = redis.Redis(port=server.port)
    added = publish(redis_client, key, ["a", "b", "c"])
    everything = b"".join(
        f"id: {i}\nevent: tick\ndata: {d}\n\n".encode() for i, d in zip(added, "abc", strict=True)
    )
    unknown = b": unknown Last-Event-ID "
    newer = b": Last-Event-ID "
    cases = {
        "0-0": everything,  # before every entry of a stream that lost none: all of it
        "0-1": everything,
        "00000000000000000001-0": everything,
        added[1]: everything[everything.index(f"id: {added[2]}".encode()) :],
        "18446744073709551615-0": newer,
        "18446744073709551615-18446744073709551615": newer,
        "99999999999999999999-0": unknown,  # beyond 64 bits: no entry id
        "-": unknown,
        "+": unknown,
        "$": unknown,
        ">": unknown,
        "1" * 1000: unknown,
        "1 2": unknown,
        "1-": unknown,
        "-1-0": unknown,
    }
    with serve_redis(server.url(key)) as process:
        settled(process)
        socks = {lei: _resuming_sockets(process.url, lei, 1)[0] for lei in cases}
        try:
            answers = {lei: _head_and_first_chunk(sock) for lei, sock in socks.items()}
        finally:
            for sock in socks.values():
                sock.close()
        code, _, log = process.stop()
    assert code == 0
    for lei, expected in cases.items():
        head, _, body = answers[lei].partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK"), (lei[:40], head)
        first_chunk = body.split(b"\r\n", 2)[1]  # chunked coding: size, then the chunk
        assert first_chunk.startswith(expected), (lei[:40], first_chunk[:200])
    assert "Traceback" not in log


# Backfills bounded in bytes, not only in entries.


def test_a_backfill_of_big_entries_to_a_client_that_does_not_read_holds_a_page_of_bytes(
    server: RedisServer, key: str
) -> None:
    redis_client = redis.Redis(port=server.port)
    _fill(redis_client, key, 24, 512 << 10)  # 12 MiB, far fewer entries than a page

    async def scenario() -> list[int]:
        loop = asyncio.get_running_loop()
        redis_feed = RedisFeed(RedisStream(server.url(key), block=0.2))
        redis_feed.start(Timer(loop), ping=0)
        handed: list[int] = []
        never = loop.create_future()

        async def send(message: dict[str, object]) -> None:
            handed.append(len(message["body"]))  # type: ignore[arg-type]
            await never  # a client that reads nothing: every write stays pending

        outlet = Outlet(send, 30, lambda outlet: None)
        join = loop.create_task(redis_feed.join(outlet, "0-0", b""))
        try:
            await redis_feed._ready.wait()
            await asyncio.sleep(0.5)
        finally:
            join.cancel()
            await asyncio.wait((join,))
            outlet.close()
            never.cancel()
            await redis_feed.stop()
        return handed

    handed = asyncio.run(scenario())
    # One short first page went out and the backfill waits for the client: not 12 MiB.
    assert handed, "nothing was written"
    assert sum(handed) <= 8 * (520 << 10), handed


def _head_and_first_chunk(sock: socket.socket) -> bytes:
    """What a socket receives up to the end of the first chunk of its body (10 s at most)."""
    sock.settimeout(10)
    received = b""
    while True:
        _, _, body = received.partition(b"\r\n\r\n")
        size, crlf, rest = body.partition(b"\r\n")
        if crlf and len(rest) >= int(size, 16):
            return received
        data = sock.recv(1 << 16)
        assert data, received[:200]
        received += data


def test_a_backfill_of_big_entries_goes_out_in_pages_of_about_a_mebibyte(
    server: RedisServer, key: str
) -> None:
    # The next page's entry count comes from the last page's sizes: with 512 KiB entries a
    # page is 2 entries, not BATCH_ENTRIES (which would put all 16 left in one write).
    redis_client = redis.Redis(port=server.port)
    _fill(redis_client, key, 24, 512 << 10)

    async def scenario() -> list[int]:
        loop = asyncio.get_running_loop()
        redis_feed = RedisFeed(RedisStream(server.url(key), block=0.2))
        redis_feed.start(Timer(loop), ping=0)
        handed: list[int] = []

        async def send(message: dict[str, object]) -> None:
            handed.append(len(message["body"]))  # type: ignore[arg-type]
            await asyncio.sleep(0.005)  # a client that reads, slowly

        outlet = Outlet(send, 30, lambda outlet: None)
        try:
            await asyncio.wait_for(redis_feed.join(outlet, "0-0", b""), 30)
            while outlet.blocked:  # the last page, handed to the feed
                await asyncio.sleep(0.01)
        finally:
            outlet.close()
            await redis_feed.stop()
        return handed

    handed = asyncio.run(scenario())
    entry = 520 << 10  # an entry on the wire, with its id and field lines
    assert sum(handed) >= 24 * (512 << 10), handed  # every entry went out
    assert handed[0] <= FIRST_PAGE_ENTRIES * entry, handed
    assert all(size <= PAGE_BYTES + entry for size in handed[1:]), handed


# Stopping a reader: a cancellation redis-py takes in must not keep it running.


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


# Many clients resuming from far back at once, one of them reading nothing.


def test_a_stalled_client_in_a_long_backfill_holds_no_one_of_many_resuming(
    server: RedisServer, key: str
) -> None:
    redis_client = redis.Redis(port=server.port)
    added = _fill(redis_client, key, 2000, 2_000)  # 4 MB, many pages each
    # Stalled clients are not cut off during the test: if they held the others, those
    # would wait for a minute.
    with serve_redis(server.url(key), extra=("--send-timeout", "60")) as process:
        settled(process)
        stalled = _resuming_sockets(process.url, added[0], 3)  # they read nothing
        try:
            time.sleep(0.2)
            started = time.monotonic()
            clients = [Client(process.url, last_event_id=added[0]) for _ in range(8)]
            for resuming in clients:
                resuming.__enter__()
            for resuming in clients:
                resuming.wait_for(len(added) - 1, seconds=30)
            took = time.monotonic() - started
            for resuming in clients:
                resuming.__exit__()
        finally:
            for sock in stalled:
                sock.close()
        _, _, log = process.stop()
    for resuming in clients:
        assert [event.id for event in resuming.events] == added[1:]
    assert took < 30, took
    assert "Traceback" not in log


def test_a_stream_that_lost_its_last_entries_sends_none_of_the_others_again(
    server: RedisServer, key: str
) -> None:
    # Redis restarted with the AOF of a second ago (appendfsync everysec): the stream is
    # back without its last entries. Those before them were sent already: not again.
    redis_client = redis.Redis(port=server.port)
    for n in range(1, 6):
        redis_client.xadd(key, {"data": f"old {n}"}, id=f"10-{n}")

    async def scenario() -> bytes:
        loop = asyncio.get_running_loop()
        redis_feed = RedisFeed(RedisStream(server.url(key), block=0.1, backoff=Backoff(0.01)))
        redis_feed.start(Timer(loop), ping=0)
        chunks: list[bytes] = []

        async def send(message: dict[str, object]) -> None:
            chunks.append(message["body"])  # type: ignore[arg-type]

        outlet = Outlet(send, 10, lambda outlet: None)

        async def until(text: bytes) -> None:
            deadline = loop.time() + 5
            while text not in b"".join(chunks):
                assert loop.time() < deadline, b"".join(chunks)
                await asyncio.sleep(0.01)

        try:
            await redis_feed.join(outlet, None, b"")
            for n in (6, 7):
                redis_client.xadd(key, {"data": f"live {n}"}, id=f"10-{n}")
            await until(b"live 7")
            redis_client.delete(key)  # back from disk up to 10-6 only
            for n in range(1, 7):
                redis_client.xadd(key, {"data": f"again {n}"}, id=f"10-{n}")
            await until(b"sseplay.resync")
            redis_client.xadd(key, {"data": "new 8"}, id="10-8")
            await until(b"new 8")
        finally:
            outlet.close()
            await redis_feed.stop()
        return b"".join(chunks)

    events = EventStreamParser().feed(asyncio.run(scenario()))
    assert [event.data for event in events][:2] == ["live 6", "live 7"]
    assert events[2].type == "sseplay.resync"
    assert [event.data for event in events[3:]] == ["new 8"]
