"""Streams that are not what sseplay wrote: keys of another type, streams made anew or back
without their last entries, entries and Last-Event-IDs of other producers. A real
``redis-server``."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time

import pytest

from sseplay.outlet import Outlet
from sseplay.parser import EventStreamParser
from sseplay.sources.redis_feed import RedisFeed, RedisStream
from sseplay.sources.redis_reader import Backoff, Entry, RedisTarget, StreamReader
from sseplay.timer import Timer
from tests.conftest import run_cli
from tests.redis_server import REDIS_SERVER, RedisServer
from tests.sources.redis_support import (
    Client,
    head_and_first_chunk,
    publish,
    resuming_sockets,
    serve_redis,
    settled,
)

redis = pytest.importorskip("redis")

pytestmark = pytest.mark.skipif(
    not os.path.exists(REDIS_SERVER), reason="needs redis-server (apt-get install redis-server)"
)


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
        socks = {lei: resuming_sockets(process.url, lei, 1)[0] for lei in cases}
        try:
            answers = {lei: head_and_first_chunk(sock) for lei, sock in socks.items()}
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
