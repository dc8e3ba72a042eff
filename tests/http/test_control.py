"""The control API (``--control``, issue 26) on real servers: publish, pause and advance,
the connections and their end, faults armed at run time, and who may use it."""

from __future__ import annotations

import json
import logging
import socket
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from sseplay.errors import UsageError
from sseplay.server import Server
from sseplay.stream import Stream
from tests.conftest import write_lines
from tests.support import wait_until

RECORDS = [{"n": 1}, {"n": 2}, {"n": 3}]


class Reader:
    """One client reading a stream in a thread: the events as they come (id, data)."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.events: list[tuple[str | None, str]] = []
        self.ended = threading.Event()
        self.status = 0
        self._url, self._headers = url, headers or {}
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        event_id: str | None = None
        data: list[str] = []
        try:
            with httpx.stream("GET", self._url, headers=self._headers, timeout=20) as response:
                self.status = response.status_code
                for line in response.iter_lines():
                    if line.startswith("id: "):
                        event_id = line[4:]
                    elif line.startswith("data: "):
                        data.append(line[6:])
                    elif not line and data:
                        self.events.append((event_id, "\n".join(data)))
                        event_id, data = None, []
        except httpx.HTTPError:
            pass
        finally:
            self.ended.set()

    def ids(self) -> list[str | None]:
        return [event_id for event_id, _ in self.events]

    def wait_for(self, count: int) -> None:
        wait_until(
            lambda: len(self.events) >= count,
            timeout=10,
            message=lambda: f"got {self.events}, wanted {count} events",
        )


def control(server: Server, method: str, operation: str, **body: Any) -> httpx.Response:
    url = f"{server.base_url}/_sseplay/{operation}"
    return httpx.request(method, url, json=body if body else None, timeout=10)


def test_every_control_path_is_a_404_without_control() -> None:
    with Server(Stream.from_records(RECORDS, interval=0)) as server:
        for method, operation in [("GET", "connections"), ("POST", "publish"), ("POST", "pause")]:
            answer = control(server, method, operation, route="/events", data="x")
            assert answer.status_code in (404, 405)
            if answer.status_code == 404:  # sseplay's own, naming the routes it serves
                assert answer.json() == {
                    "error": f"no stream at /_sseplay/{operation}",
                    "routes": ["/events"],
                }
        with pytest.raises(RuntimeError, match="control=True"):
            server.publish("/events", "x")


def test_a_published_event_reaches_a_client_with_the_next_id_and_resumes() -> None:
    with Server(Stream.from_records(RECORDS, interval=0), control=True, ping=0) as server:
        reader = Reader(server.url)
        reader.wait_for(3)  # the file's events; the stream stays open after them
        answer = control(
            server, "POST", "publish", route="/events", data={"k": [1, 2]}, event="tick"
        )
        assert answer.json() == {"id": "4"}
        reader.wait_for(4)
        assert reader.events[3] == ("4", '{"k":[1,2]}')  # compact, as a file's records
        assert server.publish("/events", "plain text") == "5"
        reader.wait_for(5)
        assert reader.events[4] == ("5", "plain text")
        # A client that had event 3 gets the published ones; one that had 4 gets 5.
        after_3 = Reader(server.url, {"Last-Event-ID": "3"})
        after_4 = Reader(server.url, {"Last-Event-ID": "4"})
        after_3.wait_for(2)
        after_4.wait_for(1)
        assert after_3.ids() == ["4", "5"]
        assert after_4.ids() == ["5"]
        assert not reader.ended.is_set()


def test_an_empty_route_is_live_and_takes_published_events() -> None:
    with Server({"/chat": None, "/events": Stream.from_records(RECORDS)}, control=True) as server:
        reader = Reader(server.url_for("/chat"))
        wait_until(lambda: len(server.connections()) == 1)
        assert server.publish("/chat", {"hello": "you"}, event="greeting") == "1"
        reader.wait_for(1)
        assert reader.events == [("1", '{"hello":"you"}')]
    with pytest.raises(UsageError, match="expected a Stream"):
        Server({"/chat": None})  # without control, a route needs a stream


def test_pause_then_advance_3_releases_exactly_3() -> None:
    records = [{"n": n} for n in range(20)]
    with Server(Stream.from_records(records, interval=0), control=True, ping=0) as server:
        assert control(server, "POST", "pause").json() == {"paused": True}
        reader = Reader(server.url)
        wait_until(lambda: len(server.connections()) == 1)
        assert control(server, "POST", "advance", count=3).status_code == 200
        reader.wait_for(3)
        server.advance(2)
        reader.wait_for(5)
        # Unpaused, all 20 would have gone out in the first write: exactly 3, then 2.
        assert reader.ids() == ["1", "2", "3", "4", "5"]
        listed = server.connections()
        assert [(c["events"], c["last_id"]) for c in listed] == [(5, "5")]
        # Paused, a published event waits too; resumed, everything goes on.
        server.publish("/events", "later")
        server.resume()
        reader.wait_for(21)
        assert reader.ids()[-2:] == ["20", "21"]


def test_delete_ends_one_connection(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "sseplay.server")
    with Server(Stream.from_records(RECORDS, interval=0), control=True) as server:
        first, second = Reader(server.url), Reader(server.url)
        first.wait_for(3)
        second.wait_for(3)
        listed = control(server, "GET", "connections").json()["connections"]
        assert len(listed) == 2
        assert {c["route"] for c in listed} == {"/events"}
        assert all(c["client"].startswith("127.0.0.1:") for c in listed)
        assert all(c["events"] == 3 and c["last_id"] == "3" for c in listed)
        assert control(server, "DELETE", f"connections/{listed[0]['id']}").status_code == 200
        wait_until(lambda: first.ended.is_set() or second.ended.is_set())
        wait_until(lambda: len(server.connections()) == 1)
        assert not (first.ended.is_set() and second.ended.is_set())
        gone = control(server, "DELETE", f"connections/{listed[0]['id']}")
        assert gone.status_code == 404
        server.kick(server.connections()[0]["id"])
        wait_until(lambda: first.ended.is_set() and second.ended.is_set())
        wait_until(lambda: caplog.text.count("after 3 events (ended by the control API)") == 2)


def test_a_fault_armed_for_the_next_connection_fires_on_it_alone() -> None:
    with Server(Stream.from_records(RECORDS, interval=0), control=True) as server:
        armed = control(server, "POST", "fault", spec="drop:after=1", conn="next")
        assert armed.status_code == 200
        dropped = Reader(server.url)
        dropped.ended.wait(10)
        assert dropped.ids() == ["1"]
        whole = Reader(server.url)
        whole.wait_for(3)
        assert server.connections()[0]["faults"] == []
        bad = control(server, "POST", "fault", spec="nonsense", conn="next")
        assert bad.status_code == 400
        # Connection 1 (dropped) has ended: no fault can be armed on it.
        assert control(server, "POST", "fault", spec="drop", conn="1").status_code == 404
        assert control(server, "POST", "reset").json() == {"reset": True}


def test_with_a_token_the_control_api_needs_it() -> None:
    stream = Stream.from_records(RECORDS, interval=0)
    with Server(stream, control=True, token="s3cret") as server:
        assert control(server, "GET", "connections").status_code == 401
        answer = httpx.get(
            f"{server.base_url}/_sseplay/connections",
            headers={"Authorization": "Bearer s3cret"},
        )
        assert answer.json() == {"connections": []}


def test_a_page_on_another_host_name_cannot_drive_it() -> None:
    """DNS rebinding: a page whose name resolves to 127.0.0.1 is refused (421)."""
    with Server(Stream.from_records(RECORDS), control=True) as server:
        answer = httpx.post(
            f"{server.base_url}/_sseplay/pause", headers={"Host": "evil.example"}, json={}
        )
        assert answer.status_code == 421


def _own_address() -> str | None:
    """An address of this machine that is not the loopback, if it has one."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # TEST-NET-1 (RFC 5737): no packet is sent
        address: str = probe.getsockname()[0]
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") else address


def test_a_client_that_is_not_loopback_is_refused_without_a_token() -> None:
    address = _own_address()
    if address is None:
        pytest.skip("this machine has no address besides the loopback")
    stream = Stream.from_records(RECORDS, interval=0)
    with Server(stream, control=True, host="0.0.0.0", allowed_hosts=("*",)) as server:
        port = server.base_url.rsplit(":", 1)[1]
        # The client's address is this machine's own, not 127.0.0.1.
        refused = httpx.get(f"http://{address}:{port}/_sseplay/connections")
        assert refused.status_code == 403
        assert "--token" in refused.json()["error"]
        assert control(server, "GET", "connections").status_code == 200
    with Server(stream, control=True, host="0.0.0.0", token="s3cret") as server:
        port = server.base_url.rsplit(":", 1)[1]
        allowed = httpx.get(
            f"http://{address}:{port}/_sseplay/connections",
            headers={"Authorization": "Bearer s3cret"},
        )
        assert allowed.status_code == 200


def test_an_event_for_one_connection_reaches_it_alone_without_an_id() -> None:
    with Server(Stream.from_records(RECORDS, interval=0), control=True, ping=0) as server:
        first, second = Reader(server.url), Reader(server.url)
        first.wait_for(3)
        second.wait_for(3)
        target = server.connections()[0]["id"]
        answer = control(server, "POST", "publish", route="/events", data="psst", to=target)
        # No id: the connection's Last-Event-ID still names an event the route has.
        assert answer.json() == {"id": None}
        wait_until(lambda: len(first.events) + len(second.events) == 7)
        targeted, other = (first, second) if len(first.events) == 4 else (second, first)
        assert targeted.events[-1] == (None, "psst")
        assert other.events[-1] == ("3", '{"n":3}')
        assert server.publish("/events", "all") == "4"
        targeted.wait_for(5)
        other.wait_for(4)
        assert targeted.events[-1] == other.events[-1] == ("4", "all")


def test_reset_counts_connections_and_firings_from_zero() -> None:
    stream = Stream.from_records(RECORDS, interval=0)
    with Server(stream, control=True, faults=["drop:after=1,conn=1"]) as server:
        assert Reader(server.url).ended.wait(10)  # connection 1: dropped after one event
        whole = Reader(server.url)
        whole.wait_for(3)  # connection 2: not
        assert control(server, "POST", "reset").status_code == 200
        again = Reader(server.url)  # connection 1 again
        assert again.ended.wait(10)
        assert again.ids() == ["1"]


def test_control_does_not_go_with_once_broadcast_or_workers() -> None:
    stream = Stream.from_records(RECORDS)
    for setting in ({"once": True}, {"broadcast": True}, {"workers": 2}):
        with pytest.raises(UsageError, match="drop --"):
            Server(stream, control=True, **setting)


def test_a_followed_file_is_held_by_pause_and_takes_no_published_events(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "grows.jsonl", [{"n": 1}])
    stream = Stream.from_file(path, follow=True, interval=0)
    with Server(stream, control=True, ping=0) as server:
        reader = Reader(server.url)
        reader.wait_for(1)
        server.pause()
        with path.open("a") as appended:
            appended.writelines(json.dumps({"n": n}) + "\n" for n in (2, 3, 4))
        wait_until(lambda: _published(server) == 4)
        server.advance(1)
        reader.wait_for(2)
        assert reader.ids() == ["1", "2"]  # the appended lines wait: one released
        server.resume()
        reader.wait_for(4)
        assert reader.ids() == ["1", "2", "3", "4"]
        with pytest.raises(UsageError, match="append to it"):
            server.publish("/events", "x")


def _published(server: Server) -> int:
    events: int = httpx.get(f"{server.base_url}/healthz").json()["streams"][0]["events"]
    return events
