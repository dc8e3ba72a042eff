"""A Redis key deleted and written again with an automatic id: the entry read live before
the reset is noticed is not sent again after the resync event (issue 23)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sseplay.outlet import Outlet
from sseplay.parser import EventStreamParser
from sseplay.sources.redis_feed import RedisFeed, RedisStream
from sseplay.sources.redis_reader import Backoff
from sseplay.timer import Timer
from tests.redis_server import REDIS_SERVER, RedisServer

redis = pytest.importorskip("redis")

pytestmark = pytest.mark.skipif(
    not os.path.exists(REDIS_SERVER), reason="needs redis-server (apt-get install redis-server)"
)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "redis") as running:
        yield running


def test_an_entry_added_to_a_deleted_key_comes_once_then_the_resync(server: RedisServer) -> None:
    key = f"ticks-{time.monotonic_ns()}"
    redis_client = redis.Redis(port=server.port)
    for n in (1, 2):
        redis_client.xadd(key, {"type": "tick", "data": f"old {n}"})
    added: list[str] = []

    async def scenario() -> bytes:
        loop = asyncio.get_running_loop()
        redis_feed = RedisFeed(RedisStream(server.url(key), block=0.1, backoff=Backoff(0.01)))
        redis_feed.start(Timer(loop), ping=0)
        chunks: list[bytes] = []

        async def send(message: dict[str, object]) -> None:
            chunks.append(message["body"])  # type: ignore[arg-type]

        async def until(text: bytes) -> None:
            deadline = loop.time() + 10
            while text not in b"".join(chunks):
                assert loop.time() < deadline, b"".join(chunks)
                await asyncio.sleep(0.01)

        outlet = Outlet(send, 10, lambda outlet: None)
        try:
            await redis_feed.join(outlet, None, b"")
            redis_client.delete(key)
            added.append(redis_client.xadd(key, {"type": "tick", "data": "anew"}).decode())
            await until(b"sseplay.resync")
            # One more after the resync: once it is here, a repeat of "anew" (read again
            # from the stream's start) would have come before it.
            added.append(redis_client.xadd(key, {"type": "tick", "data": "after"}).decode())
            await until(b"data: after")
        finally:
            outlet.close()
            await redis_feed.stop()
        return b"".join(chunks)

    events = EventStreamParser().feed(asyncio.run(scenario()))
    assert [(event.type, event.data) for event in events if event.type == "tick"] == [
        ("tick", "anew"),
        ("tick", "after"),
    ]
    assert [event.type for event in events] == ["tick", "sseplay.resync", "tick"]
    assert [event.id for event in events if event.type == "tick"] == added
    assert json.loads(events[1].data)["reason"] == "reset"
