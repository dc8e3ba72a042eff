"""A fault armed on a live connection by its id (``POST /_sseplay/fault {"conn": ID}``,
``server.fault(spec, conn=ID)``), on real servers: its ``after=``/``at=`` count from the
events that connection was already sent, and no other connection is touched."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from sseplay.errors import UsageError
from sseplay.faults.outlet import FaultyOutlet, _count_events, _is_event
from sseplay.faults.spec import parse_fault
from sseplay.server import Server
from sseplay.stream import Stream
from tests.conftest import write_lines
from tests.http.test_control import Reader, control
from tests.support import wait_until

# A slow stream: a test ends long before it would.
SLOW = [{"n": n} for n in range(1, 401)]


def slow_server(**settings: Any) -> Server:
    return Server(Stream.from_records(SLOW, interval=0.05), control=True, ping=0, **settings)


def two_readers(server: Server, url: str | None = None) -> tuple[Reader, Reader, int, int]:
    """Two clients, each with a few events; their connection ids, in the same order."""
    first = Reader(url or server.url)
    wait_until(lambda: len(server.connections()) == 1)
    second = Reader(url or server.url)
    wait_until(lambda: len(server.connections()) == 2)
    first.wait_for(2)
    second.wait_for(2)
    one, two = sorted(connection["id"] for connection in server.connections())
    return first, second, one, two


def entry_of(server: Server, connection: int) -> dict[str, Any]:
    return next(e for e in server.journal() if e["connection"] == connection)


def healthz_faults(server: Server) -> dict[str, int]:
    faults: dict[str, int] = httpx.get(f"{server.base_url}/healthz").json()["faults"]
    return faults


CHUNKS = [
    b"data: 1\n\n",
    b"id: 7\nevent: tick\ndata: a\ndata: b\n\n",
    b": ping\n\n",
    b"retry: 500\n\n",
    b"retry: 500\n\n: unknown Last-Event-ID\n\nid: 1\ndata: x\n\ndata: y\n\n",
    b"data: 1\n\n" * 10,
    b"",
]


def test_an_outlet_with_no_fault_counts_the_events_of_each_chunk() -> None:
    """What ``after=`` counts from: the events of whole chunks, comments and a lone
    ``retry:`` not counted, as the outlet counts them once a fault acts."""

    async def count(chunks: list[bytes], specs: list[str]) -> int:
        outlet = FaultyOutlet(
            _taken,
            10.0,
            lambda outlet: None,
            None,
            None,
            chosen=[],
            fire=lambda fault, where: True,
            transport=None,
            ping=15.0,
            jitter=lambda n: 0.0,
        )
        outlet.arm(parse_fault(spec) for spec in specs)
        for chunk in chunks:
            assert outlet.write(chunk)
        return outlet.events

    blocks = [block for chunk in CHUNKS for block in chunk.split(b"\n\n")[:-1]]
    expected = sum(_is_event(block + b"\n\n") for block in blocks)
    assert expected == 14
    assert sum(map(_count_events, CHUNKS)) == expected
    assert asyncio.run(count(CHUNKS, [])) == expected
    assert asyncio.run(count(CHUNKS, ["drop:after=1000"])) == expected  # counted by block


async def _taken(message: dict[str, Any]) -> None:
    return None


def test_drop_armed_on_a_live_connection_sends_2_more_events_then_ends() -> None:
    with slow_server() as server:
        target, other, target_id, other_id = two_readers(server)
        armed = control(server, "POST", "fault", spec="drop:after=2", conn=target_id)
        assert armed.status_code == 200, armed.text
        answer = armed.json()
        assert answer["armed"] == "drop:after=2"
        assert answer["conn"] == target_id
        already = answer["events"]  # what the connection had been sent: after= counts on
        assert already >= 2
        assert target.ended.wait(10)
        assert len(target.events) == already + 2
        assert target.ids()[-1] == str(already + 2)
        wait_until(lambda: entry_of(server, target_id)["ended"] is not None)
        entry = entry_of(server, target_id)
        assert entry["ended"] == "fault:drop"
        assert entry["events"] == already + 2
        assert healthz_faults(server) == {"drop": 1}
        # The other connection goes on, with no fault of its own.
        other.wait_for(already + 6)
        assert not other.ended.is_set()
        listed = {connection["id"]: connection for connection in server.connections()}
        assert set(listed) == {other_id}
        assert listed[other_id]["faults"] == []


def test_a_live_connection_lists_the_fault_armed_on_it() -> None:
    with slow_server() as server:
        _, _, target_id, other_id = two_readers(server)
        control(server, "POST", "fault", spec="drop:after=1000", conn=str(target_id))
        faults = {c["id"]: c["faults"] for c in server.connections()}
        assert faults == {target_id: ["drop:after=1000"], other_id: []}


def test_stall_armed_live_holds_the_stream_and_kick_ends_it() -> None:
    with slow_server() as server:
        stalled, other, stalled_id, _ = two_readers(server)
        answer = control(server, "POST", "fault", spec="stall", conn=stalled_id)
        assert answer.status_code == 200, answer.text
        held_at = answer.json()["events"]
        # 8 more events (0.4 s) to the other: none to the stalled one.
        other.wait_for(held_at + 8)
        assert len(stalled.events) == held_at
        assert not stalled.ended.is_set()
        server.kick(stalled_id)
        assert stalled.ended.wait(10)
        assert len(stalled.events) == held_at
        assert not other.ended.is_set()
        assert healthz_faults(server) == {"stall": 1}


def test_a_fault_before_the_stream_is_a_409_for_a_live_connection() -> None:
    with slow_server() as server:
        _, _, target_id, _ = two_readers(server)
        for spec in ("status:code=503", "refuse", "hang"):
            answer = control(server, "POST", "fault", spec=spec, conn=target_id)
            assert answer.status_code == 409
            error = answer.json()["error"]
            assert f"{spec.partition(':')[0]} acts before a stream" in error
            assert '"conn": "next"' in error
            assert "\n" not in error
        assert all(c["faults"] == [] for c in server.connections())
        # One that acts on the stream is armed on it.
        answer = control(server, "POST", "fault", spec="drop:after=1000", conn=target_id)
        assert answer.status_code == 200


def test_an_unknown_connection_is_a_404() -> None:
    with slow_server() as server:
        _, _, target_id, other_id = two_readers(server)
        unknown = max(target_id, other_id) + 100
        answer = control(server, "POST", "fault", spec="drop", conn=unknown)
        assert answer.status_code == 404
        assert str(unknown) in answer.json()["error"]
        assert control(server, "POST", "fault", spec="drop", conn="x").status_code == 404
        with pytest.raises(UsageError, match="no open connection"):
            server.fault("drop", conn=unknown)


def test_a_bad_spec_or_a_selector_for_a_named_connection_is_a_400() -> None:
    with slow_server() as server:
        _, _, target_id, _ = two_readers(server)
        assert control(server, "POST", "fault", spec="nonsense", conn=target_id).status_code == 400
        chooser = control(server, "POST", "fault", spec="drop:conn=2", conn=target_id)
        assert chooser.status_code == 400
        assert "conn=" in chooser.json()["error"]


def test_server_fault_from_python_arms_a_live_connection() -> None:
    with slow_server() as server:
        target, other, target_id, _ = two_readers(server)
        answer = server.fault("skip:at=1", conn=target_id)  # the next event is never sent
        already = answer["events"]
        assert server.fault("drop:after=3", conn=target_id)["events"] == already
        assert target.ended.wait(10)
        # Events already+1 to already+3 were written; the first of them skipped.
        assert target.ids()[already:] == [str(already + 2), str(already + 3)]
        wait_until(lambda: entry_of(server, target_id)["ended"] == "fault:drop")
        assert healthz_faults(server) == {"drop": 1, "skip": 1}
        assert not other.ended.is_set()
        # conn="next" (the default) from Python as well.
        assert server.fault("drop:after=1") == {"armed": "drop:after=1"}
        dropped = Reader(server.url)
        assert dropped.ended.wait(10)
        assert dropped.ids() == ["1"]


def test_a_live_fault_on_a_published_route() -> None:
    with Server({"/chat": None}, control=True, ping=0) as server:

        def add(n: int) -> object:
            return server.publish("/chat", str(n))

        target, other, target_id, _ = _readers_of(server, server.url_for("/chat"), add)
        assert server.fault("drop:after=1", conn=target_id)["events"] == 2
        add(3)
        add(4)
        assert target.ended.wait(10)
        assert target.ids() == ["1", "2", "3"]
        other.wait_for(4)
        assert other.ids() == ["1", "2", "3", "4"]
        wait_until(lambda: entry_of(server, target_id)["ended"] == "fault:drop")


def test_a_live_fault_on_a_followed_file(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "grows.jsonl", [{"n": 1}, {"n": 2}])
    stream = Stream.from_file(path, follow=True, interval=0)
    with Server(stream, control=True, ping=0) as server:
        target, other, target_id, _ = two_readers(server)
        assert server.fault("drop:after=1", conn=target_id)["events"] == 2
        with path.open("a") as grown:
            grown.write('{"n": 3}\n{"n": 4}\n')
        assert target.ended.wait(10)
        assert target.ids() == ["1", "2", "3"]
        other.wait_for(4)
        wait_until(lambda: entry_of(server, target_id)["ended"] == "fault:drop")


def test_a_live_fault_on_a_redis_route(tmp_path: Path) -> None:
    import redis

    from sseplay.sources.redis_feed import RedisStream
    from tests.redis_server import RedisServer

    with RedisServer(tmp_path / "redis") as store:
        entries = redis.Redis(port=store.port)
        stream = RedisStream(store.url("live"), block=0.2)
        with Server({"/events": stream}, control=True, ping=0) as server:
            target, other, target_id, _ = _readers_of(server, server.url, partial(_xadd, entries))
            assert server.fault("drop:after=1", conn=target_id)["events"] == 2
            _xadd(entries, 3)
            _xadd(entries, 4)
            assert target.ended.wait(10)
            assert [data for _, data in target.events] == ["1", "2", "3"]
            other.wait_for(4)
            assert not other.ended.is_set()
            wait_until(lambda: entry_of(server, target_id)["ended"] == "fault:drop")
            assert healthz_faults(server) == {"drop": 1}


def _xadd(entries: Any, n: int) -> None:
    entries.xadd("live", {"data": str(n)})


def _readers_of(
    server: Server, url: str, add: Callable[[int], object]
) -> tuple[Reader, Reader, int, int]:
    """Two clients of a live route, each with its first two events (``add`` adds one)."""
    first = Reader(url)
    wait_until(lambda: len(server.connections()) == 1)
    second = Reader(url)
    wait_until(lambda: len(server.connections()) == 2)
    add(1)
    add(2)
    first.wait_for(2)
    second.wait_for(2)
    one, two = sorted(connection["id"] for connection in server.connections())
    return first, second, one, two


def test_a_live_fault_joins_the_faults_chosen_when_it_connected() -> None:
    """Connection 1 has a fault of --fault (so its stream is not handed over to its
    connection): a ``cut`` armed on it live cuts the next event but one in its middle."""
    with slow_server(faults=["duplicate:at=100000,conn=1"]) as server:
        target, other, target_id, _ = two_readers(server)
        answer = control(server, "POST", "fault", spec="cut:after=1", conn=target_id)
        already = answer.json()["events"]
        assert target.ended.wait(10)
        assert len(target.events) == already + 1  # the next; the one after it cut short
        wait_until(lambda: entry_of(server, target_id)["ended"] == "fault:cut")
        assert entry_of(server, target_id)["events"] == already + 1
        assert not other.ended.is_set()
        assert healthz_faults(server) == {"cut": 1}


def test_times_counts_a_live_fault_with_the_others_of_its_spec() -> None:
    with slow_server() as server:
        first, second, one, two = two_readers(server)
        for connection in (one, two):
            server.fault("drop:after=1,times=1", conn=connection)
        wait_until(lambda: first.ended.is_set() or second.ended.is_set())
        dropped, going_on = (first, second) if first.ended.is_set() else (second, first)
        going_on.wait_for(len(dropped.events) + 5)  # its fault found its times= used up
        assert not going_on.ended.is_set()
        assert healthz_faults(server) == {"drop": 1}
