"""A Redis entry over the size limit of a record is skipped and logged once, live and in
a resume's backfill, and the entries around it are sent (issue 23: five 100 MiB entries
with 40 clients took 5.5 GB and /healthz stopped answering)."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sseplay.errors import UsageError
from sseplay.outlet import Outlet
from sseplay.parser import EventStreamParser
from sseplay.records import MAX_RECORD_BYTES
from sseplay.sources.redis_feed import FIRST_PAGE_ENTRIES, PAGE_BYTES, RedisFeed, RedisStream
from sseplay.sources.redis_reader import Backoff, Entry, StreamReader
from sseplay.timer import Timer
from tests.redis_server import REDIS_SERVER, RedisServer

redis = pytest.importorskip("redis")

pytestmark = pytest.mark.skipif(
    not os.path.exists(REDIS_SERVER), reason="needs redis-server (apt-get install redis-server)"
)

LIMIT = 1000


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "redis") as running:
        yield running


def test_the_limit_is_the_record_limit_of_files_and_can_be_lowered() -> None:
    url = "redis://127.0.0.1:6379/0?stream=ticks"
    assert RedisStream(url).max_entry_bytes == MAX_RECORD_BYTES == 64 << 20
    assert RedisStream(url, max_entry_bytes=LIMIT).max_entry_bytes == LIMIT
    with pytest.raises(UsageError, match="max_entry_bytes=0"):
        RedisStream(url, max_entry_bytes=0)


def test_an_entry_over_the_limit_is_skipped_once_live_and_in_backfills(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    key = f"ticks-{time.monotonic_ns()}"
    redis_client = redis.Redis(port=server.port)

    def add(data: str) -> str:
        return str(redis_client.xadd(key, {"type": "tick", "data": data}).decode())

    start = add("before")
    big = "x" * LIMIT  # with its field names, just over the limit
    backfilled: list[bytes] = []

    async def scenario() -> tuple[bytes, list[str], list[str]]:
        loop = asyncio.get_running_loop()
        source = RedisStream(
            server.url(key), block=0.1, backoff=Backoff(0.01), max_entry_bytes=LIMIT
        )
        redis_feed = RedisFeed(source)
        redis_feed.start(Timer(loop), ping=0)
        live: list[bytes] = []

        async def to_live(message: dict[str, object]) -> None:
            live.append(message["body"])  # type: ignore[arg-type]

        async def to_backfilled(message: dict[str, object]) -> None:
            backfilled.append(message["body"])  # type: ignore[arg-type]

        async def until(chunks: list[bytes], text: bytes) -> None:
            deadline = loop.time() + 10
            while text not in b"".join(chunks):
                assert loop.time() < deadline, b"".join(chunks)
                await asyncio.sleep(0.01)

        watching = Outlet(to_live, 10, lambda outlet: None)
        resuming = Outlet(to_backfilled, 10, lambda outlet: None)
        try:
            await redis_feed.join(watching, None, b"")
            small = [add("one")]
            # A whole first page of a backfill over the limit: the rest must still come.
            skipped = [add(big) for _ in range(FIRST_PAGE_ENTRIES)]
            small += [add("two"), add("three")]
            await until(live, b"data: three")
            # A client that resumes before them all reads them from Redis itself.
            await redis_feed.join(resuming, start, b"")
            await until(backfilled, b"data: three")
        finally:
            watching.close()
            resuming.close()
            await redis_feed.stop()
        return b"".join(live), small, skipped

    with caplog.at_level(logging.WARNING, logger="sseplay.redis"):
        live, small, skipped = asyncio.run(scenario())
    for got in (live, b"".join(backfilled)):
        events = EventStreamParser().feed(got)
        assert [(event.id, event.data) for event in events] == list(
            zip(small, ["one", "two", "three"], strict=True)
        )
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    size = len(b"type") + len(b"tick") + len(b"data") + LIMIT
    assert warnings == [
        f"entry {entry_id} of {server.url(key)} is {size} bytes, more than the {LIMIT} of "
        "an event: skipped"
        for entry_id in skipped
    ]


def test_a_backfill_after_skipped_entries_reads_short_pages(
    server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Skipped entries are read from Redis all the same: they weigh in the page size, so
    # that a resume over big entries never asks for a thousand of them at once.
    key = f"ticks-{time.monotonic_ns()}"
    redis_client = redis.Redis(port=server.port)
    limit = PAGE_BYTES // 4
    start = redis_client.xadd(key, {"data": "before"}).decode()
    for _ in range(FIRST_PAGE_ENTRIES + 4):
        redis_client.xadd(key, {"data": "x" * limit})
    redis_client.xadd(key, {"data": "last"})
    counts: list[int] = []
    backfill = StreamReader.backfill

    async def counted(self: StreamReader, *args: Any, **kwargs: Any) -> list[Entry]:
        counts.append(kwargs["count"])
        return await backfill(self, *args, **kwargs)

    monkeypatch.setattr(StreamReader, "backfill", counted)

    async def scenario() -> bytes:
        loop = asyncio.get_running_loop()
        source = RedisStream(server.url(key), block=0.1, max_entry_bytes=limit)
        redis_feed = RedisFeed(source)
        redis_feed.start(Timer(loop), ping=0)
        chunks: list[bytes] = []

        async def send(message: dict[str, object]) -> None:
            chunks.append(message["body"])  # type: ignore[arg-type]

        outlet = Outlet(send, 10, lambda outlet: None)
        try:
            await redis_feed.join(outlet, start, b"")
            deadline = loop.time() + 10
            while b"data: last" not in b"".join(chunks):
                assert loop.time() < deadline, b"".join(chunks)
                await asyncio.sleep(0.01)
        finally:
            outlet.close()
            await redis_feed.stop()
        return b"".join(chunks)

    events = EventStreamParser().feed(asyncio.run(scenario()))
    assert [event.data for event in events] == ["last"]
    # The first page's size is a guess; the next ones hold about PAGE_BYTES of entries.
    assert counts[0] == FIRST_PAGE_ENTRIES
    assert max(counts[1:]) <= 4, counts
