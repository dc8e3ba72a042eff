"""Backfills of big or many entries go out in pages of bytes, and a client that reads nothing
holds no one else up. A real ``redis-server``."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from sseplay.outlet import Outlet
from sseplay.sources.redis_feed import FIRST_PAGE_ENTRIES, PAGE_BYTES, RedisFeed, RedisStream
from sseplay.timer import Timer
from tests.redis_server import REDIS_SERVER, RedisServer
from tests.sources.redis_support import (
    Client,
    fill,
    resuming_sockets,
    serve_redis,
    settled,
)

redis = pytest.importorskip("redis")

pytestmark = pytest.mark.skipif(
    not os.path.exists(REDIS_SERVER), reason="needs redis-server (apt-get install redis-server)"
)


def test_a_backfill_of_big_entries_to_a_client_that_does_not_read_holds_a_page_of_bytes(
    server: RedisServer, key: str
) -> None:
    redis_client = redis.Redis(port=server.port)
    fill(redis_client, key, 24, 512 << 10)  # 12 MiB, far fewer entries than a page

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


def test_a_backfill_of_big_entries_goes_out_in_pages_of_about_a_mebibyte(
    server: RedisServer, key: str
) -> None:
    # The next page's entry count comes from the last page's sizes: with 512 KiB entries a
    # page is 2 entries, not BATCH_ENTRIES (which would put all 16 left in one write).
    redis_client = redis.Redis(port=server.port)
    fill(redis_client, key, 24, 512 << 10)

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


def test_a_stalled_client_in_a_long_backfill_holds_no_one_of_many_resuming(
    server: RedisServer, key: str
) -> None:
    redis_client = redis.Redis(port=server.port)
    added = fill(redis_client, key, 2000, 2_000)  # 4 MB, many pages each
    # Stalled clients are not cut off during the test: if they held the others, those
    # would wait for a minute.
    with serve_redis(server.url(key), extra=("--send-timeout", "60")) as process:
        settled(process)
        stalled = resuming_sockets(process.url, added[0], 3)  # they read nothing
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
