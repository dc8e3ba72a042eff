"""Faults a request names (``--fault-header``) are remembered in bounded memory (issue 23:
each distinct spec was kept forever, 20,000 requests took a server from 50 to 210 MB)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx

from sseplay.config import ServerConfig
from sseplay.faults.spec import (
    MAX_REQUEST_COUNTERS,
    FaultCounters,
    choose,
    parse_faults,
    parse_request_faults,
)
from sseplay.http.hub import AppOptions
from sseplay.schedule import Timing
from tests.conftest import LiveServer, make_stream, write_json


def kept(counters: FaultCounters) -> int:
    """How many per-spec firing counts the counters hold."""
    return len(counters.fired) + len(getattr(counters, "request_fired", {}))


def fire_named(counters: FaultCounters, text: str, number: int = 1) -> list[bool]:
    """What the endpoint does with a request's Sseplay-Fault: parse, choose, fire."""
    chosen = choose(parse_request_faults(text), 1, "/events", number, False, scope="request")
    return [counters.fire(fault) for fault in chosen]


def test_distinct_request_specs_are_kept_at_most_to_the_bound() -> None:
    counters = FaultCounters()
    for n in range(5000):
        # One that counts its firings, one that does not need to.
        fire_named(counters, f"status:code=503,times=3,body={n}; drop:after=1,retry={n + 1}", n)
        assert kept(counters) <= MAX_REQUEST_COUNTERS
    assert kept(counters) == MAX_REQUEST_COUNTERS
    assert counters.by_kind == {"status": 5000, "drop": 5000}


def test_times_counts_across_requests_and_a_forgotten_spec_starts_anew() -> None:
    counters = FaultCounters()
    server = choose(parse_faults(["skip:at=1,times=1"]), 1, "/events", 1, False)
    assert [counters.fire(fault) for fault in server] == [True]
    spec = "status:code=503,times=2"
    assert [fire_named(counters, spec) for _ in range(3)] == [[True], [True], [False]]
    # Named again while other specs come and go: still remembered (the least recently
    # named is the one forgotten).
    for n in range(MAX_REQUEST_COUNTERS * 2):
        fire_named(counters, f"drop:after=1,times=1,retry={n + 1}")
        if n % 100 == 0:
            assert fire_named(counters, spec) == [False]
    # Not named for MAX_REQUEST_COUNTERS other counted specs: forgotten, it fires anew.
    for n in range(MAX_REQUEST_COUNTERS):
        fire_named(counters, f"drop:after=1,times=1,retry={10_000 + n}")
    assert fire_named(counters, spec) == [True]
    # The server's own --fault counters are never forgotten.
    assert [counters.fire(fault) for fault in server] == [False]


def test_a_fault_header_still_works_on_a_real_server_and_memory_stays_bounded(
    live: Callable[..., LiveServer], tmp_path: Path
) -> None:
    path = write_json(tmp_path / "five.json", [{"n": n} for n in range(1, 6)])
    stream = make_stream(path, timing=Timing(interval=0))
    server = live([stream], AppOptions(ServerConfig(ping=0, fault_header=True), seed=1))
    url = server.url + "/events"
    with httpx.Client(timeout=10) as client:
        header = {"Sseplay-Fault": "status:code=503,times=1"}
        assert client.get(url, headers=header).status_code == 503
        assert client.get(url, headers=header).status_code == 200  # its one time is used
        for n in range(MAX_REQUEST_COUNTERS + 20):
            answer = client.get(url, params={"fault": f"status:code=429,times=1,body={n}"})
            assert (answer.status_code, answer.text) == (429, str(n))
        assert client.get(url).text.count("data: ") == 5
    assert server.hub.fault_counters is not None
    assert kept(server.hub.fault_counters) == MAX_REQUEST_COUNTERS
