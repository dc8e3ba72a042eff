"""Redis Streams: ``sseplay publish`` and ``sseplay serve redis://``, against a real
``redis-server`` started on a free 127.0.0.1 port for this module (``tests/redis_server.py``)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sseplay.errors import UsageError
from sseplay.redis_source import (
    Backoff,
    Entry,
    RedisTarget,
    RedisUnavailable,
    StreamReader,
    Trimmed,
    parse_entry_id,
)
from tests.conftest import ROOT, run_cli, write_lines
from tests.redis_server import REDIS_SERVER, RedisServer, free_port

redis = pytest.importorskip("redis")

pytestmark = pytest.mark.skipif(
    not os.path.exists(REDIS_SERVER), reason="needs redis-server (apt-get install redis-server)"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("redis")) as running:
        yield running


@pytest.fixture
def key(request: pytest.FixtureRequest) -> str:
    """A stream key of this test's own, on the module's shared server."""
    return f"{request.node.name}-{time.monotonic_ns()}"


def client(server: RedisServer) -> redis.Redis:
    return redis.Redis(port=server.port)


def ids(entries: list[tuple[bytes, dict[bytes, bytes]]]) -> list[str]:
    return [entry_id.decode() for entry_id, _ in entries]


def millis(entry_id: str) -> int:
    parsed = parse_entry_id(entry_id)
    assert parsed is not None
    return parsed[0]


# redis:// URLs.


def test_a_url_is_parsed_into_a_target() -> None:
    target = RedisTarget.parse("redis://user:s%40cret@db.example:6380/3?stream=feed%2F1")
    assert (target.host, target.port, target.db, target.stream) == ("db.example", 6380, 3, "feed/1")
    assert (target.username, target.password, target.tls) == ("user", "s@cret", False)
    # The password never shows: not in the URL that logs use, not in repr.
    assert target.shown == "redis://user@db.example:6380/3?stream=feed/1"
    assert "s@cret" not in repr(target)
    defaults = RedisTarget.parse("rediss://[::1]?stream=x")
    assert (defaults.host, defaults.port, defaults.db, defaults.tls) == ("::1", 6379, 0, True)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis://127.0.0.1:6379/0", "names no stream key: add ?stream=KEY"),
        ("redis://127.0.0.1:6379/0?stream=", "names no stream key"),
        ("redis://127.0.0.1:0/0?stream=a", "the port must be a number from 1 to 65535"),
        ("redis://127.0.0.1:99999/0?stream=a", "the port must be a number from 1 to 65535"),
        ("redis://127.0.0.1:x/0?stream=a", "the port must be a number from 1 to 65535"),
        ("redis://127.0.0.1/db?stream=a", "the database 'db' must be a number"),
        ("redis:///0?stream=a", "it names no host"),
        ("redis://h/0?stream=a&stream=b", "one stream key per URL"),
        ("redis://h/0?stream=a&maxlen=3", "unknown parameter 'maxlen'"),
        ("kafka://h/0?stream=a", "the scheme kafka:// is not one sseplay reads"),
        ("redis://:hunter2@h:0/0?stream=a", "redis://:***@h:0"),
    ],
)
def test_a_bad_url_is_one_usage_line(url: str, says: str) -> None:
    with pytest.raises(UsageError, match="write it like redis://") as error:
        RedisTarget.parse(url, "--to")
    assert says in str(error.value)
    assert "hunter2" not in str(error.value)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["publish", "F", "--to", "redis://127.0.0.1/0"], "--to redis://127.0.0.1/0: it names no"),
        (["publish", "F", "--to", "http://127.0.0.1/"], "the scheme http:// is not one"),
        (["publish", "F", "--to", "redis://h:70000/0?stream=a"], "the port must be a number"),
        (["publish", "F", "--to", "redis://h/0?stream=a", "--maxlen", "0"], "--maxlen must be"),
        (["serve", "redis://127.0.0.1:6379/0"], "redis://127.0.0.1:6379/0: it names no stream"),
        (["serve", "kafka://127.0.0.1/0?stream=a"], "the scheme kafka:// is not one"),
        (["serve", "feed=redis://h:0/0?stream=a"], "the port must be a number"),
    ],
)
def test_bad_urls_on_the_command_line_are_one_line_and_exit_2(
    args: list[str], says: str, tmp_path: Path
) -> None:
    events = write_lines(tmp_path / "events.jsonl", [{"n": 1}])
    args = [str(events) if arg == "F" else arg for arg in args]
    result = run_cli(*args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("sseplay: error: ")
    assert says in result.stderr


def test_a_missing_redis_package_says_how_to_install_it(tmp_path: Path) -> None:
    events = write_lines(tmp_path / "events.jsonl", [{"n": 1}])
    blocked = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'redis' or name.startswith('redis.'):\n"
        "            raise ImportError('No module named ' + repr(name))\n"
        "sys.meta_path.insert(0, Block())\n"
        "from sseplay.cli import main\n"
        "main(sys.argv[1:])\n"
    )
    for args in (
        ["publish", str(events), "--to", "redis://127.0.0.1:1/0?stream=a"],
        ["serve", "--port", "0", "redis://127.0.0.1:1/0?stream=a"],
    ):
        result = subprocess.run(
            [sys.executable, "-c", blocked, *args],
            capture_output=True,
            text=True,
            timeout=20,
            cwd=ROOT,
        )
        assert result.returncode == 4, result.stderr
        assert result.stderr == (
            "sseplay: error: redis:// needs the redis package (redis-py): "
            "pip install 'sseplay[redis]'\n"
        )


# sseplay publish.


def test_publish_writes_type_id_and_data_into_each_entry(
    server: RedisServer, key: str, tmp_path: Path
) -> None:
    records = [{"kind": "tick", "n": 1}, {"kind": "quote", "n": 2, "text": "a\nb"}]
    events = write_lines(tmp_path / "events.jsonl", records)
    result = run_cli(
        "publish", str(events), "--to", server.url(key), "--interval", "0", "--event-field", "kind"
    )
    assert result.returncode == 0, result.stderr
    assert "published 2 events" in result.stderr
    entries = client(server).xrange(key)
    assert [fields for _, fields in entries] == [
        {
            b"type": b"tick",
            b"id": b"1",
            b"data": json.dumps(records[0], separators=(",", ":")).encode(),
        },
        {
            b"type": b"quote",
            b"id": b"2",
            b"data": json.dumps(records[1], separators=(",", ":")).encode(),
        },
    ]
    # With --id-field the event's own id goes in; --data-field picks the data.
    result = run_cli(
        "publish", str(events), "--to", server.url(key + "b"), "--interval", "0",
        "--id-field", "n", "--data-field", "kind",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert [fields for _, fields in client(server).xrange(key + "b")] == [
        {b"type": b"message", b"id": b"1", b"data": b"tick"},
        {b"type": b"message", b"id": b"2", b"data": b"quote"},
    ]


def test_publish_maxlen_trims_the_stream_approximately(
    server: RedisServer, key: str, tmp_path: Path
) -> None:
    events = write_lines(tmp_path / "events.jsonl", [{"n": n} for n in range(3000)])
    result = run_cli(
        "publish", str(events), "--to", server.url(key), "--interval", "0", "--maxlen", "200"
    )
    assert result.returncode == 0, result.stderr
    length = client(server).xlen(key)
    # MAXLEN ~ removes whole macro nodes (100 entries by default): about 200, never fewer.
    assert 200 <= length <= 400, length
    newest = client(server).xrevrange(key, count=1)[0][1]
    assert newest[b"id"] == b"3000"


def test_publish_keeps_the_schedule(server: RedisServer, key: str, tmp_path: Path) -> None:
    # --time-field with --speed: records 1 s apart at 20x are 50 ms apart in the stream.
    events = write_lines(tmp_path / "events.jsonl", [{"t": t} for t in range(5)])
    started = time.monotonic()
    result = run_cli(
        "publish", str(events), "--to", server.url(key), "--time-field", "t", "--speed", "20"
    )
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started >= 0.2
    stamps = [millis(entry_id) for entry_id in ids(client(server).xrange(key))]
    gaps = [later - earlier for earlier, later in itertools.pairwise(stamps)]
    assert len(gaps) == 4
    assert all(35 <= gap <= 150 for gap in gaps), gaps
    # Deadlines are absolute: the whole play takes 200 ms, not 4 gaps plus their delays.
    assert 190 <= stamps[-1] - stamps[0] <= 260, stamps


def test_publish_to_a_redis_that_is_down_is_one_line_and_exit_4(tmp_path: Path) -> None:
    events = write_lines(tmp_path / "events.jsonl", [{"n": 1}])
    url = f"redis://127.0.0.1:{free_port()}/0?stream=a"
    result = run_cli("publish", str(events), "--to", url)
    assert result.returncode == 4, result.stderr
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"sseplay: error: cannot connect to Redis at {url}: ")


# The reader: XREAD BLOCK, XRANGE backfill, trimmed ids, reconnecting.


async def _collect_until(got: list[Entry], count: int, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while len(got) < count:
        assert time.monotonic() < deadline, f"only {len(got)} of {count} entries arrived"
        await asyncio.sleep(0.005)


def test_the_reader_reads_live_after_the_last_entry(server: RedisServer, key: str) -> None:
    redis_client = client(server)
    old = redis_client.xadd(key, {"type": "t", "data": "old"}).decode()

    async def scenario() -> list[Entry]:
        got: list[Entry] = []
        reader = StreamReader(RedisTarget.parse(server.url(key)), got.extend, block=0.2)
        await reader.open()
        assert reader.last_id == old  # the live edge: what was there is not read live
        task = asyncio.create_task(reader.run())
        try:
            await asyncio.sleep(0.05)
            for n in range(3):
                redis_client.xadd(key, {"type": "tick", "data": f"d{n}"})
            await _collect_until(got, 3)
            # A backfill is exclusive of its start and inclusive of its end.
            backfill = await reader.backfill(old, got[1].id)
            assert backfill == got[:2]
        finally:
            task.cancel()
            await reader.close()
        return got

    got = asyncio.run(scenario())
    sent = ids(redis_client.xrange(key))[1:]
    assert [entry.id for entry in got] == sent
    assert got[0].wire == f"id: {sent[0]}\nevent: tick\ndata: d0\n\n".encode()


def test_an_entry_of_another_producer_is_sent_as_json_of_its_fields(
    server: RedisServer, key: str
) -> None:
    redis_client = client(server)
    first = redis_client.xadd(key, {"price": "3", "type": "bad\ntype"}).decode()

    async def scenario() -> list[Entry]:
        reader = StreamReader(RedisTarget.parse(server.url(key)), lambda entries: None)
        try:
            return await reader.backfill("0-0", "+")
        finally:
            await reader.close()

    (entry,) = asyncio.run(scenario())
    # A type with a line break would end the field early: sent as "message".
    assert entry.wire == (f'id: {first}\ndata: {{"price":"3","type":"bad\\ntype"}}\n\n'.encode())


def test_the_reader_tells_a_trimmed_id_from_one_merely_old(server: RedisServer, key: str) -> None:
    redis_client = client(server)
    added = [redis_client.xadd(key, {"data": str(n)}, id=f"{n + 10}-0").decode() for n in range(10)]
    redis_client.xtrim(key, maxlen=3, approximate=False)

    async def scenario() -> tuple[object, object, object, object]:
        reader = StreamReader(RedisTarget.parse(server.url(key)), lambda entries: None)
        try:
            return (
                await reader.trimmed(added[0]),  # entries after it are gone
                await reader.trimmed(added[7]),  # the oldest entry itself
                await reader.trimmed(added[8]),
                await reader.trimmed("1-0"),  # older than anything, and 10-0.. were removed
            )
        finally:
            await reader.close()

    trimmed_first, oldest, newer, ancient = asyncio.run(scenario())
    assert isinstance(trimmed_first, Trimmed)
    assert trimmed_first.oldest == "17-0"
    assert oldest is None
    assert newer is None
    assert ancient is not None
    # A stream that never lost an entry: an id older than its first misses nothing.
    fresh = key + "-fresh"
    redis_client.xadd(fresh, {"data": "x"}, id="50-0")

    async def never_trimmed() -> object:
        reader = StreamReader(RedisTarget.parse(server.url(fresh)), lambda entries: None)
        try:
            return await reader.trimmed("1-0")
        finally:
            await reader.close()

    assert asyncio.run(never_trimmed()) is None


def test_the_reader_fails_at_start_when_redis_is_down() -> None:
    target = RedisTarget.parse(f"redis://127.0.0.1:{free_port()}/0?stream=a")

    async def scenario() -> None:
        await StreamReader(target, lambda entries: None).open()

    with pytest.raises(RedisUnavailable, match=r"cannot connect to Redis at redis://127\.0\.0\.1"):
        asyncio.run(scenario())


def test_the_reader_reconnects_after_a_restart_and_loses_nothing(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "aof", aof=True) as restarting:
        url = restarting.url("events")
        redis_client = client(restarting)

        async def scenario() -> tuple[list[Entry], StreamReader]:
            got: list[Entry] = []
            reader = StreamReader(
                RedisTarget.parse(url), got.extend, block=0.2, backoff=Backoff(0.5, 0.5)
            )
            await reader.open()
            task = asyncio.create_task(reader.run())
            try:
                for n in range(3):
                    redis_client.xadd("events", {"data": f"before {n}"})
                await _collect_until(got, 3)
                # Back before the loop retries (its back-off is 0.5 s), and entries written
                # meanwhile: it must read them from the last id it read, not from "$".
                await asyncio.to_thread(restarting.stop)
                await asyncio.sleep(0.3)
                await asyncio.to_thread(restarting.start)
                for n in range(3):
                    redis_client.xadd("events", {"data": f"after {n}"})
                await _collect_until(got, 6)
            finally:
                task.cancel()
                await reader.close()
            return got, reader

        got, reader = asyncio.run(scenario())
        assert [entry.id for entry in got] == ids(redis_client.xrange("events"))
        assert reader.reconnects == 1
