"""The journal (issue 26) on real servers: what each request sent and how it ended, with
no secret in it; the control API's ids; the live SSE feed; the verdict over HTTP."""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx
import pytest

from sseplay.server import Server
from sseplay.stream import Stream
from tests.support import wait_until

RECORDS = [{"n": n} for n in range(1, 6)]
SECRETS = ("Bearer s3cret", "sid=c00kie", "k3y-value", "sess-v4lue", "t0ken", "ap1")


def journal_lines(server: Server) -> list[dict[str, Any]]:
    answer = httpx.get(f"{server.base_url}/_sseplay/journal", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/jsonl")
    return [json.loads(line) for line in answer.text.splitlines()]


def test_the_journal_shows_last_event_id_and_no_secret() -> None:
    stream = Stream.from_records(RECORDS, interval=0)
    # --expect-client turns the journal on too (with --control a route stays open).
    rules = ("method=GET",)
    with Server(stream, expect_client=rules, redact=("X-Session", "sess")) as server:
        httpx.get(
            server.url + "?token=t0ken&api_key=ap1&sess=sess-v4lue&keep=1",
            headers={
                "Authorization": "Bearer s3cret",
                "Cookie": "sid=c00kie",
                "X-Api-Key": "k3y-value",
                "X-Session": "sess-v4lue",
                "Last-Event-ID": "2",
            },
            timeout=10,
        )
        httpx.get(server.url + "?lastEventId=4", timeout=10)
        wait_until(lambda: len(server.journal()) == 2 and server.journal()[1]["ended"])
        raw = httpx.get(f"{server.base_url}/_sseplay/journal", timeout=10).text
        entries = journal_lines(server)
    first, second = entries
    assert first["last_event_id"] == "2"
    assert second["last_event_id"] == "4"
    for name in ("authorization", "cookie", "x-api-key", "x-session"):
        assert first["headers"][name] == "***"
    assert first["query"] == "token=***&api_key=***&sess=***&keep=1"
    for secret in SECRETS:
        assert secret not in raw
    assert first["status"] == 200
    assert first["ended"] == "end"
    assert first["events"] == 3
    assert first["last_id"] == "5"
    assert second["events"] == 1
    assert second["last_id"] == "5"
    assert (first["seq"], second["seq"]) == (1, 2)
    assert set(first) == {
        "seq", "time", "route", "client", "connection", "method", "path", "query", "headers",
        "body", "last_event_id", "status", "events", "last_id", "ended", "gap_ms", "retry_ms",
    }  # fmt: skip


def test_client_key_body_gap_and_the_connection_id_of_the_control_api() -> None:
    stream = Stream.from_records(RECORDS, interval=0.05)
    with Server(stream, control=True) as server:
        with httpx.stream(
            "POST",
            server.url + "?client=tab-1",
            content=b"x" * 5000,
            headers={"Content-Type": "text/plain"},
            timeout=10,
        ) as response:
            lines = response.iter_lines()  # held: a generator let go closes the response
            next(lines)
            listed = httpx.get(f"{server.base_url}/_sseplay/connections", timeout=10).json()
            opened = server.journal()
        wait_until(lambda: server.journal()[0]["ended"] is not None)
        headers = {"Sseplay-Client": "tab-1", "Last-Event-ID": "5"}
        with httpx.stream("GET", server.url, headers=headers, timeout=10) as response:
            assert response.status_code == 200
        wait_until(lambda: server.journal()[1]["ended"] is not None)
        entries = server.journal()
    assert [c["id"] for c in listed["connections"]] == [opened[0]["connection"]]
    assert opened[0]["ended"] is None
    # Open, as it stands: streaming, with what it was sent so far.
    assert opened[0]["status"] == 200
    assert opened[0]["events"] >= 1
    assert opened[0]["last_id"] == str(opened[0]["events"])
    first, second = entries
    assert first["client"] == second["client"] == "tab-1"
    assert first["method"] == "POST"
    assert len(first["body"]) == 4096
    assert first["ended"] == second["ended"] == "client left"
    assert second["last_event_id"] == "5"
    assert second["gap_ms"] is not None
    assert second["gap_ms"] >= 0
    assert second["connection"] == first["connection"] + 1


def test_how_each_request_ended_and_the_retry_it_was_sent() -> None:
    stream = Stream.from_records(RECORDS, interval=0)
    faults = ("status:code=503,conn=1", "drop:after=2,retry=250,conn=2")
    with Server(stream, faults=faults, expect_client=("resumes",)) as server:
        assert httpx.get(server.url, timeout=10).status_code == 503
        httpx.get(server.url, timeout=10)
        httpx.get(server.url, headers={"Last-Event-ID": "2"}, timeout=10)
        assert httpx.get(server.url, headers={"Last-Event-ID": "5"}).status_code == 204
        wait_until(lambda: all(e["ended"] for e in server.journal()))
        entries = server.journal()
    assert [(e["ended"], e["status"]) for e in entries] == [
        ("fault:status", 503),
        ("fault:drop", 200),
        ("end", 200),
        ("204", 204),
    ]
    assert entries[1]["retry_ms"] == 250
    assert entries[1]["last_id"] == "2"
    assert entries[1]["events"] == 2


def test_reset_clears_the_journal_and_the_verdict() -> None:
    stream = Stream.from_records(RECORDS, interval=0)
    with Server(stream, control=True, expect_client=("method=POST",)) as server:
        httpx.head(server.url, timeout=10)  # the route stays open: HEAD ends at once
        wait_until(lambda: not server.verdict()["ok"])
        assert server.journal()[0]["ended"] == "end"
        assert httpx.post(f"{server.base_url}/_sseplay/reset", timeout=10).json() == {"reset": True}
        assert server.journal() == []
        assert server.verdict() == {"ok": True, "rules": ["method=POST"], "broken": []}


def test_the_verdict_over_http_and_from_python_and_after_stop() -> None:
    stream = Stream.from_records(RECORDS, interval=0)
    server = Server(stream, expect_client=("header=X-Mode:fast",))
    with server:
        httpx.get(server.url, headers={"X-Mode": "slow"}, timeout=10)
        wait_until(lambda: not server.verdict()["ok"])
        over_http = httpx.get(f"{server.base_url}/_sseplay/verdict", timeout=10).json()
        # Without --control only the journal and the verdict answer.
        publish = httpx.post(f"{server.base_url}/_sseplay/publish", json={}, timeout=10)
    assert over_http == server.verdict()  # after stop too
    assert over_http == {
        "ok": False,
        "rules": ["header=x-mode:fast"],
        "broken": [
            {
                "rule": "header=x-mode:fast",
                "client": "127.0.0.1",
                "connection": 1,
                "message": "sent x-mode 'slow', expected 'fast'",
            }
        ],
    }
    assert publish.status_code == 404
    assert "--control" in publish.json()["error"]


def test_without_control_or_rules_there_is_no_journal() -> None:
    with Server(Stream.from_records(RECORDS, interval=0)) as server:
        assert httpx.get(f"{server.base_url}/_sseplay/journal", timeout=10).status_code == 404
        with pytest.raises(RuntimeError, match="needs the journal"):
            server.journal()


class LiveReader:
    """Reads the live journal (SSE) in a thread: its events as (type, id, data)."""

    def __init__(self, url: str) -> None:
        self.events: list[tuple[str, str | None, Any]] = []
        self.status = 0
        self._url = url
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        kind, event_id, data = "message", None, []
        headers = {"Accept": "text/event-stream"}
        try:
            with httpx.stream("GET", self._url, headers=headers, timeout=20) as response:
                self.status = response.status_code
                for line in response.iter_lines():
                    if line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("id: "):
                        event_id = line[4:]
                    elif line.startswith("data: "):
                        data.append(line[6:])
                    elif not line and data:
                        self.events.append((kind, event_id, json.loads("\n".join(data))))
                        kind, event_id, data = "message", None, []
        except httpx.HTTPError:
            pass

    def kinds(self) -> list[str]:
        return [kind for kind, _, _ in self.events]


def test_the_live_journal_delivers_an_open_and_an_end_entry() -> None:
    stream = Stream.from_records(RECORDS, interval=0.05)
    with Server(stream, expect_client=("method=POST",)) as server:
        httpx.get(server.url, headers={"Last-Event-ID": "4"}, timeout=10)  # before
        reader = LiveReader(f"{server.base_url}/_sseplay/journal")
        wait_until(lambda: len(reader.events) >= 2, message=lambda: str(reader.events))
        with httpx.stream("GET", server.url, timeout=10) as response:
            lines = response.iter_lines()  # held: a generator let go closes the response
            next(lines)
            wait_until(lambda: "open" in reader.kinds()[2:], message=lambda: str(reader.events))
        wait_until(lambda: reader.kinds().count("end") >= 2, message=lambda: str(reader.events))
    assert reader.status == 200
    (kind, first_id, first), verdict = reader.events[0], reader.events[1]
    assert kind == "end"
    assert first["last_event_id"] == "4"
    assert first_id == "1"
    assert verdict[0] == "verdict"
    assert verdict[2]["ok"] is False
    live = reader.events[2:]
    opened = next(data for kind, _, data in live if kind == "open")
    ended = next(data for kind, _, data in live if kind == "end")
    assert opened["seq"] == ended["seq"] == 2
    assert opened["ended"] is None
    assert ended["ended"] == "client left"
    assert ("verdict", None) in [(kind, event_id) for kind, event_id, _ in live]


def test_the_live_journal_says_when_entries_were_dropped() -> None:
    stream = Stream.from_records(RECORDS, interval=0)
    with Server(stream, expect_client=("resumes",), journal_bytes=4096) as server:
        reader = LiveReader(f"{server.base_url}/_sseplay/journal")
        wait_until(lambda: reader.status == 200)
        with httpx.Client(timeout=10) as client:
            for _ in range(12):
                client.get(server.url, headers={"X-Pad": "p" * 300})
        wait_until(lambda: "dropped" in reader.kinds(), message=lambda: str(reader.kinds()))
        kept = server.journal()
    dropped = [data for kind, _, data in reader.events if kind == "dropped"]
    assert dropped[-1]["dropped"] >= 1
    assert len(kept) < 12
    assert kept[-1]["seq"] == 12
