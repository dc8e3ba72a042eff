"""The control API end to end (issue 26): ``sseplay serve --control`` driven over HTTP
while a client streams, and the ``sse_server`` fixture's server driven from Python."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx

from sseplay.server import Server
from tests.conftest import ServeProcess, write_lines
from tests.http.test_control import Reader
from tests.support import wait_until


def test_serve_control_publishes_pauses_and_ends_connections(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "e.jsonl", [{"n": n} for n in range(10)])
    with ServeProcess(
        f"events={path}", "chat=", "--control", "--interval", "0", "--ping", "0"
    ) as served:
        events, chat = served.urls
        base = events.rsplit("/", 1)[0]
        reader = Reader(events)
        reader.wait_for(10)
        answer = httpx.post(f"{base}/_sseplay/publish", json={"route": "/events", "data": "hi"})
        assert answer.json() == {"id": "11"}
        reader.wait_for(11)
        assert reader.events[-1] == ("11", "hi")
        # ROUTE= with no file: an empty live route.
        listener = Reader(chat)
        wait_until(
            lambda: len(httpx.get(f"{base}/_sseplay/connections").json()["connections"]) == 2
        )
        httpx.post(f"{base}/_sseplay/pause", json={"route": "/chat"})
        for n in range(4):
            httpx.post(f"{base}/_sseplay/publish", json={"route": "/chat", "data": {"n": n}})
        httpx.post(f"{base}/_sseplay/advance", json={"route": "/chat", "count": 3})
        listener.wait_for(3)
        assert listener.ids() == ["1", "2", "3"]
        listed = httpx.get(f"{base}/_sseplay/connections").json()["connections"]
        ours = next(c for c in listed if c["route"] == "/chat")
        assert ours["events"] == 3
        httpx.delete(f"{base}/_sseplay/connections/{ours['id']}")
        assert listener.ended.wait(10)
        assert listener.ids() == ["1", "2", "3"]
        assert not reader.ended.is_set()
    with ServeProcess(str(path)) as plain:
        base = plain.url.rsplit("/", 1)[0]
        assert httpx.get(f"{base}/_sseplay/connections").status_code == 404


def test_the_fixture_gives_a_server_to_drive(sse_server: Callable[..., Server]) -> None:
    server = sse_server([{"n": 1}], interval=0, control=True)
    reader = Reader(server.url)
    reader.wait_for(1)
    assert server.publish("/events", {"n": 2}) == "2"
    reader.wait_for(2)
    assert reader.events[1] == ("2", '{"n":2}')
    (connection,) = server.connections()
    assert server.connections == 1  # still the count, as before
    server.kick(connection["id"])
    assert reader.ended.wait(10)
