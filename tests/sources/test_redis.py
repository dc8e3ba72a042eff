"""Redis Streams: ``sseplay publish`` and ``sseplay serve redis://``, against a real
``redis-server`` started on a free 127.0.0.1 port for this module (``tests/redis_server.py``)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from sseplay.errors import UsageError
from sseplay.outlet import Outlet
from sseplay.parser import EventStreamParser
from sseplay.sources.redis_feed import RedisFeed, RedisStream
from sseplay.sources.redis_reader import (
    Backoff,
    Entry,
    RedisTarget,
    RedisUnavailable,
    StreamReader,
    Trimmed,
    parse_entry_id,
)
from sseplay.timer import Timer
from tests.conftest import ROOT, ServeProcess, free_port, run_cli, write_lines
from tests.redis_server import REDIS_SERVER, RedisServer
from tests.sources.redis_support import Client, publish, serve_redis, settled
from tests.support import wait_until

redis = pytest.importorskip("redis")

pytestmark = pytest.mark.skipif(
    not os.path.exists(REDIS_SERVER), reason="needs redis-server (apt-get install redis-server)"
)


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
        ("redis://[::1/0?stream=a", "the host is not a valid [IPv6] address"),
        ("redis://h/0?stream", "names no stream key"),
        ("redis://h/0?=a", "a parameter has no name"),
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
        (["serve", "redis://[::1/0?stream=a"], "the host is not a valid [IPv6] address"),
        # Usage errors come before connecting: nothing listens on port 1, and that is
        # not what they say.
        (["serve", "redis://127.0.0.1:1/0?stream=a", "--once"], "--once waits for the end"),
        (["serve", "redis://127.0.0.1:1/0?stream=a", "--fault", "drop:after=1"], "--fault and"),
        # The route is the stream key, decoded: "a b", which no route can be.
        (["serve", "redis://127.0.0.1:1/0?stream=a%20b", "F"], "gives the route '/a b'"),
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
        "from sseplay.cli.app import main\n"
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
    # The upper bounds only catch a schedule gone wrong (the publisher is a process of its
    # own on a shared machine: a stall of its own must not fail this).
    assert all(35 <= gap <= 500 for gap in gaps), gaps
    # 4 gaps of 50 ms: 200 ms from the first entry to the last.
    assert 190 <= stamps[-1] - stamps[0] <= 1000, stamps


def test_publish_to_a_redis_that_is_down_is_one_line_and_exit_4(tmp_path: Path) -> None:
    events = write_lines(tmp_path / "events.jsonl", [{"n": 1}])
    url = f"redis://127.0.0.1:{free_port()}/0?stream=a"
    result = run_cli("publish", str(events), "--to", url)
    assert result.returncode == 4, result.stderr
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"sseplay: error: cannot connect to Redis at {url}: ")


def _wait_for_length(redis_client: redis.Redis, key: str, length: int) -> None:
    wait_until(
        lambda: redis_client.xlen(key) >= length,
        timeout=10,
        message=lambda: f"{redis_client.xlen(key)} of {length} entries",
    )


def test_publish_follow_publishes_each_appended_record_as_it_is_written(
    server: RedisServer, key: str, tmp_path: Path
) -> None:
    events = write_lines(tmp_path / "growing.jsonl", [{"n": 1}, {"n": 2}])
    redis_client = client(server)
    process = subprocess.Popen(
        [sys.executable, "-m", "sseplay", "publish", str(events), "--to", server.url(key),
         "--interval", "0", "--follow"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    try:
        _wait_for_length(redis_client, key, 2)
        with events.open("a") as growing:
            growing.write('{"n": 3}\n{"n": ')  # a partial line waits for its line end
            growing.flush()
            _wait_for_length(redis_client, key, 3)
            time.sleep(0.1)
            assert redis_client.xlen(key) == 3
            written = time.monotonic()
            growing.write("4}\n")
            growing.flush()
            _wait_for_length(redis_client, key, 4)
            assert time.monotonic() - written < 1
    finally:
        process.terminate()
        _, err = process.communicate(timeout=10)
    entries = client(server).xrange(key)
    assert [fields[b"id"] for _, fields in entries] == [b"1", b"2", b"3", b"4"]
    assert [fields[b"data"] for _, fields in entries] == [
        b'{"n":1}',
        b'{"n":2}',
        b'{"n":3}',
        b'{"n":4}',
    ]
    assert b"Traceback" not in err


def test_publish_follow_on_standard_input_ends_when_the_input_closes(
    server: RedisServer, key: str
) -> None:
    redis_client = client(server)
    process = subprocess.Popen(
        [sys.executable, "-m", "sseplay", "publish", "-", "--to", server.url(key), "--follow",
         "--event-field", "kind"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    assert process.stdin is not None
    try:
        process.stdin.write(b'{"kind": "a"}\n')
        process.stdin.flush()
        _wait_for_length(redis_client, key, 1)  # sent as it arrives, not at the end
        # The last line, then the end of the input: the command ends.
        _, err = process.communicate(b'{"kind": "b"}\n', timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert b"published 2 events" in err
    assert [fields[b"type"] for _, fields in redis_client.xrange(key)] == [b"a", b"b"]


def test_publish_follow_refuses_loop_and_id_field(tmp_path: Path) -> None:
    events = write_lines(tmp_path / "events.jsonl", [{"n": 1}])
    for flag in (["--loop"], ["--id-field", "n"]):
        result = run_cli(
            "publish", str(events), "--to", "redis://127.0.0.1:1/0?stream=a", "--follow", *flag
        )
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1
        assert flag[0] in result.stderr


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


# sseplay serve redis://


def test_two_servers_on_one_stream_give_the_same_events_with_the_same_ids(
    server: RedisServer, key: str
) -> None:
    redis_client = client(server)
    with serve_redis(server.url(key)) as one, serve_redis(server.url(key)) as two:
        settled(one)
        settled(two)
        with Client(one.url) as first, Client(one.url) as second, Client(two.url) as third:
            time.sleep(0.1)  # all three are at the live edge
            added = publish(redis_client, key, [f"event {n}" for n in range(20)])
            seen = [c.wait_for(20) for c in (first, second, third)]
    assert seen[0] == seen[1] == seen[2]
    assert [event.id for event in seen[0]] == added
    assert [(event.type, event.data) for event in seen[0]] == [
        ("tick", f"event {n}") for n in range(20)
    ]


def test_a_client_moved_to_another_server_resumes_exactly(server: RedisServer, key: str) -> None:
    redis_client = client(server)
    with serve_redis(server.url(key)) as one, serve_redis(server.url(key)) as two:
        settled(one)
        settled(two)
        with Client(one.url) as before:
            time.sleep(0.1)
            added = publish(redis_client, key, [f"event {n}" for n in range(10)])
            got = before.wait_for(4)
        # Gone after event 4; 6 more were added while it moved; then it lands on the other.
        added += publish(redis_client, key, [f"event {n}" for n in range(10, 16)])
        with Client(two.url, last_event_id=got[-1].id) as after:
            rest = after.wait_for(12)
            added += publish(redis_client, key, [f"event {n}" for n in range(16, 20)])
            rest = after.wait_for(16)
    assert [event.id for event in got + rest] == added
    assert [event.data for event in got + rest] == [f"event {n}" for n in range(20)]
    assert not after.raw.startswith(b":")  # no comment: nothing was missed


def test_a_resume_lands_between_the_backfill_and_the_live_edge_without_a_gap(
    server: RedisServer, key: str
) -> None:
    # Entries go in while clients resume: each must get every entry once, in order.
    redis_client = client(server)
    added = publish(redis_client, key, ["start"])
    stop = threading.Event()

    def produce() -> None:
        n = 0
        while not stop.is_set():
            added.append(redis_client.xadd(key, {"data": f"live {n}"}).decode())
            n += 1
            time.sleep(0.001)

    with serve_redis(server.url(key)) as process:
        settled(process)
        producer = threading.Thread(target=produce)
        producer.start()
        try:
            clients = [Client(process.url, last_event_id=added[0]) for _ in range(5)]
            for resuming in clients:
                resuming.__enter__()
                time.sleep(0.02)
            time.sleep(0.1)
        finally:
            stop.set()
            producer.join(5)
        for resuming in clients:
            resuming.wait_for(len(added) - 1)
            resuming.__exit__()
    for resuming in clients:
        assert [event.id for event in resuming.events] == added[1:]


def test_a_redis_restart_mid_stream_loses_nothing(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "aof", aof=True) as restarting:
        redis_client = client(restarting)
        url = restarting.url("events")
        with serve_redis(url) as process:
            settled(process)
            with Client(process.url) as watching:
                time.sleep(0.1)
                added = publish(redis_client, "events", [f"event {n}" for n in range(5)])
                watching.wait_for(5)
                restarting.stop()
                time.sleep(0.5)  # pings go on meanwhile
                restarting.start()
                added += publish(redis_client, "events", [f"event {n}" for n in range(5, 10)])
                got = watching.wait_for(10, seconds=20)
                assert watching.thread.is_alive()  # the client kept its connection
            _, _, log = process.stop()
    assert [event.id for event in got] == added
    assert "lost Redis at" in log
    assert "is back after" in log
    # While Redis was away (between events 4 and 5) the stream stayed alive with pings.
    while_away = watching.raw.partition(b"event 4")[2].partition(b"event 5")[0]
    assert while_away.count(b": ping\n") >= 1, while_away


def test_a_trimmed_last_event_id_gets_a_resync_event_then_the_oldest_entry(
    server: RedisServer, key: str
) -> None:
    redis_client = client(server)
    added = publish(redis_client, key, [f"event {n}" for n in range(10)])
    redis_client.xtrim(key, maxlen=4, approximate=False)
    with serve_redis(server.url(key)) as process:
        settled(process)
        with Client(process.url, last_event_id=added[2]) as resuming:
            events = resuming.wait_for(5)
    assert events[0].type == "sseplay.resync"
    # No id of its own: a client that drops right after it still sends its old id, and is
    # told again.
    assert events[0].id is None
    assert json.loads(events[0].data) == {
        "reason": "trimmed",
        "last_event_id": added[2],
        "oldest": added[6],
    }
    assert [event.id for event in events[1:]] == added[6:]
    comment = resuming.raw.split(b"\n\n")[0].decode()
    assert comment == (
        f": Last-Event-ID '{added[2]}' was trimmed from the Redis stream: entries after it are "
        f"gone; from the oldest entry left, {added[6]}"
    )


def test_odd_last_event_ids_are_told_and_served_live(server: RedisServer, key: str) -> None:
    redis_client = client(server)
    publish(redis_client, key, ["old"])
    with serve_redis(server.url(key)) as process:
        settled(process)
        with (
            Client(process.url, "not-an-id") as unknown,
            Client(process.url, "99999999999999-0") as future,
        ):
            time.sleep(0.1)
            added = publish(redis_client, key, ["new"])
            assert [event.id for event in unknown.wait_for(1)] == added
            assert [event.id for event in future.wait_for(1)] == added
    assert unknown.raw.startswith(b": unknown Last-Event-ID 'not-an-id': not an entry id")
    assert future.raw.startswith(b": Last-Event-ID '99999999999999-0' is newer than")


def test_serve_with_redis_down_at_start_is_one_line_and_exit_4() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0?stream=a"
    result = run_cli("serve", "--port", "0", url)
    assert result.returncode == 4, result.stderr
    assert result.stderr == (
        f"sseplay: error: cannot connect to Redis at {url}: Error 111 connecting to "
        f"127.0.0.1:{url.split(':')[2].split('/')[0]}. Connect call failed "
        f"('127.0.0.1', {url.split(':')[2].split('/')[0]}). (is redis-server running there?)\n"
    )


def test_a_file_and_a_redis_stream_are_served_side_by_side(
    server: RedisServer, key: str, tmp_path: Path
) -> None:
    events = write_lines(tmp_path / "ticks.jsonl", [{"n": 1}, {"n": 2}])
    with ServeProcess(str(events), f"feed={server.url(key)}", "--interval", "0") as process:
        assert [url.rsplit("/", 1)[1] for url in process.urls] == ["ticks", "feed"]
        health = httpx.get(process.url.rsplit("/", 1)[0] + "/healthz").json()
        assert [s["route"] for s in health["streams"]] == ["/ticks", "/feed"]
        assert health["streams"][1]["file"] == server.url(key)
        replay = httpx.get(process.urls[0], timeout=10)
        assert replay.text.count("data: ") == 2


def test_a_backfill_longer_than_a_page_comes_whole_and_in_order(
    server: RedisServer, key: str
) -> None:
    redis_client = client(server)
    pipe = redis_client.pipeline(transaction=False)
    for n in range(2500):  # two and a half pages of XRANGE (BATCH_ENTRIES)
        pipe.xadd(key, {"data": f"old {n}"})
    added = [entry_id.decode() for entry_id in pipe.execute()]
    with serve_redis(server.url(key)) as process:
        settled(process)
        with Client(process.url, last_event_id=added[0]) as resuming:
            resuming.wait_for(2499)
            added += publish(redis_client, key, ["live"])
            events = resuming.wait_for(2500)
    assert [event.id for event in events] == added[1:]
    assert events[-1].data == "live"


def test_a_client_ahead_of_a_lagging_server_gets_nothing_twice(
    server: RedisServer, key: str
) -> None:
    # A client moves from a server that has read further than this one: this one must
    # not send it the entries up to its Last-Event-ID again once it reads them.
    redis_client = client(server)
    publish(redis_client, key, ["before"])

    async def scenario() -> tuple[bytes, list[str]]:
        loop = asyncio.get_running_loop()
        redis_feed = RedisFeed(RedisStream(server.url(key), block=0.2))
        # This server hands what it reads to its feed 0.3 s late.
        redis_feed.reader.on_entries = lambda entries: loop.call_later(
            0.3, redis_feed._publish, entries
        )
        redis_feed.start(Timer(loop), ping=0)
        chunks: list[bytes] = []

        async def send(message: dict[str, object]) -> None:
            chunks.append(message["body"])  # type: ignore[arg-type]

        try:
            await redis_feed._ready.wait()
            added = publish(redis_client, key, ["one", "two", "three"])
            outlet = Outlet(send, 10, lambda outlet: None)
            subscriber = await redis_feed.join(outlet, added[1], b"")
            assert subscriber is not None
            added += publish(redis_client, key, ["four"])
            deadline = loop.time() + 5
            while b"four" not in b"".join(chunks):
                assert loop.time() < deadline
                await asyncio.sleep(0.01)
            outlet.close()
        finally:
            await redis_feed.stop()
        return b"".join(chunks), added

    received, added = asyncio.run(scenario())
    parsed = EventStreamParser().feed(received)
    assert [event.id for event in parsed] == added[2:]
