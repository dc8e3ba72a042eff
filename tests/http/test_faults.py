"""--fault: what a client gets from each kind, byte for byte, from a real server and socket."""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from sseplay.config import ServerConfig
from sseplay.errors import ExitCode, UsageError
from sseplay.faults.spec import choose, malform, parse_fault, parse_faults
from sseplay.http.hub import AppOptions
from sseplay.schedule import Timing
from sseplay.server import Server
from sseplay.stream import Stream as PublicStream
from tests.conftest import LiveServer, ServeProcess, make_stream, run_cli, write_json

RECORDS = [{"n": n} for n in range(1, 6)]


def event(n: int, data: str | None = None) -> bytes:
    return b"id: %d\ndata: %b\n\n" % (
        n,
        (data or json.dumps({"n": n}, separators=(",", ":"))).encode(),
    )


EVERY_EVENT = b"".join(event(n) for n in range(1, 6))


@pytest.fixture
def five(tmp_path: Path) -> Path:
    return write_json(tmp_path / "five.json", RECORDS)


def serve(
    live: Callable[..., LiveServer],
    path: Path,
    *faults: str,
    interval: float = 0,
    retry: int | None = None,
    **options: Any,
) -> LiveServer:
    stream = make_stream(path, timing=Timing(interval=interval), retry=retry)
    app_settings = {"seed": options.pop("seed", 1)}
    if "direct_writes" in options:
        app_settings["direct_writes"] = options.pop("direct_writes")
    settings: dict[str, Any] = {"ping": 0, "faults": parse_faults(faults), **options}
    return live([stream], AppOptions(ServerConfig(**settings), **app_settings))


def raw_get(
    port: int, path: str = "/events", headers: bytes = b"", timeout: float = 5
) -> tuple[bytes, str]:
    """Everything the server sends until it closes (``eof``), resets (``reset``) or says
    nothing for ``timeout`` seconds (``quiet``)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(
            b"GET %b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%b\r\n" % (path.encode(), headers)
        )
        got = b""
        while True:
            try:
                part = sock.recv(65536)
            except ConnectionResetError:
                return got, "reset"
            except TimeoutError:
                return got, "quiet"
            if not part:
                return got, "eof"
            got += part


def dechunk(response: bytes) -> tuple[bytes, bytes, list[bytes], bool]:
    """The head, the body, the body's chunks (RFC 9112 section 7.1) and whether the last
    chunk came."""
    head, _, rest = response.partition(b"\r\n\r\n")
    chunks: list[bytes] = []
    while rest:
        size_line, crlf, rest = rest.partition(b"\r\n")
        if not crlf:
            break
        size = int(size_line, 16)
        if size == 0:
            return head, b"".join(chunks), chunks, True
        chunks.append(rest[:size])
        rest = rest[size + 2 :]
    return head, b"".join(chunks), chunks, False


# The spec and its checks.


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("bogus", "unknown kind 'bogus': use one of status, refuse, hang, drop"),
        ("drop:aftr=2", "drop takes no aftr=; it takes after, retry, conn, times, p"),
        ("drop:after=two", "after= must be a whole number, 0 or more, not 'two'"),
        ("skip", "skip needs at=, like skip:at=3"),
        ("status:code=200", "code= must be 204 or an HTTP status from 400 to 599"),
        ("drop:conn=0", "conn= takes connection numbers from 1"),
        ("drop:conn=3-1", "conn= range 3-1 runs backwards: write 1-3"),
        ("drop:p=1.5", "p= must be above 0 and at most 1"),
        ("stall:for=-1", "for= must be a number of seconds"),
        ("malformed:at=1,kind=xml", "kind= must be json or utf8 or crlf"),
        ("drop:after=1,after=2", "after= is given twice"),
        ("drop:", "nothing after the colon"),
    ],
)
def test_a_bad_spec_is_a_usage_error_naming_it(spec: str, says: str) -> None:
    with pytest.raises(UsageError) as error:
        parse_fault(spec)
    assert str(error.value).startswith(f"--fault {spec!r}: ")
    assert says in str(error.value)


def test_a_bad_fault_on_the_command_line_is_one_line_and_exit_2(five: Path) -> None:
    result = run_cli("serve", str(five), "--port", "0", "--fault", "drop:after=x")
    assert result.returncode == ExitCode.USAGE
    assert result.stderr == (
        "sseplay: error: --fault 'drop:after=x': after= must be a whole number, "
        "0 or more, not 'x'\n"
    )


def test_conn_selects_by_number_parity_and_resume() -> None:
    def hits(conn: str, resuming: bool = False) -> list[int]:
        spec = parse_fault(f"drop:conn={conn}")
        return [n for n in range(1, 9) if choose([spec], 0, "/events", n, resuming)]

    assert hits("1,4") == [1, 4]
    assert hits("2-3") == [2, 3]
    assert hits("2-3,7") == [2, 3, 7]
    assert hits("odd") == [1, 3, 5, 7]
    assert hits("even") == [2, 4, 6, 8]
    assert hits("all") == list(range(1, 9))
    assert hits("resume") == []
    assert hits("resume", resuming=True) == list(range(1, 9))
    # The comma of conn= is not taken for the next key=value.
    assert parse_fault("drop:conn=1,4,after=2").after == 2


def test_malformed_damages_only_what_it_names() -> None:
    plain = b'id: 3\ndata: {"n":3}\n\n'
    assert malform(plain, "json") == b'id: 3\ndata: {"n":3\n\n'
    assert malform(b"id: 3\ndata: 12\n\n", "json") == b"id: 3\ndata: {1\n\n"
    assert malform(plain, "utf8") == b'id: 3\ndata: {"n":3}\xe2\x82\n\n'
    assert malform(plain, "crlf") == b'id: 3\rdata: {"n":3}\r\r'


# Before the stream.


def test_status_answers_instead_of_the_stream(live: Callable[..., LiveServer], five: Path) -> None:
    server = serve(
        live, five, "status:code=503,retry_after=7,conn=1", "status:code=429,body=slow down"
    )
    first = httpx.get(server.url + "/events", timeout=5)
    assert (first.status_code, first.headers["retry-after"]) == (503, "7")
    assert first.text == "503 Service Unavailable\n"
    second = httpx.get(server.url + "/events", timeout=5)
    assert (second.status_code, second.text) == (429, "slow down")
    assert "retry-after" not in second.headers
    health = httpx.get(server.url + "/healthz", timeout=5).json()
    assert health["faults"] == {"status": 2}


def test_refuse_closes_before_any_response(live: Callable[..., LiveServer], five: Path) -> None:
    server = serve(live, five, "refuse:conn=1")
    assert raw_get(server.port) == (b"", "eof")
    head, body, _, complete = dechunk(raw_get(server.port)[0])
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert body == EVERY_EVENT
    assert complete


def test_hang_sends_nothing_or_only_the_headers(
    live: Callable[..., LiveServer], five: Path
) -> None:
    server = serve(live, five, "hang:conn=1", "hang:headers=yes,conn=2")
    assert raw_get(server.port, timeout=0.4) == (b"", "quiet")
    got, how = raw_get(server.port, timeout=0.4)
    assert how == "quiet"
    assert got.startswith(b"HTTP/1.1 200 OK\r\n")
    assert got.endswith(b"\r\n\r\n")
    assert b"text/event-stream" in got
    _head, body, _, complete = dechunk(raw_get(server.port)[0])
    assert body == EVERY_EVENT
    assert complete


def test_times_limits_firings_in_all(live: Callable[..., LiveServer], five: Path) -> None:
    server = serve(live, five, "status:code=503,times=2")
    codes = [httpx.get(server.url + "/events", timeout=5).status_code for _ in range(4)]
    assert codes == [503, 503, 200, 200]


def test_p_with_the_same_seed_fires_on_the_same_connections(
    live: Callable[..., LiveServer], five: Path
) -> None:
    def run(seed: int) -> list[int]:
        server = serve(live, five, "status:code=503,p=0.5", seed=seed)
        return [httpx.get(server.url + "/events", timeout=5).status_code for _ in range(16)]

    first, again, other = run(7), run(7), run(8)
    assert first == again
    assert 0 < first.count(503) < 16
    assert other != first


# During the stream: the exact bytes.


def test_drop_ends_the_response_cleanly_after_event_n_with_a_retry(
    live: Callable[..., LiveServer], five: Path
) -> None:
    server = serve(live, five, "drop:after=2,retry=50,conn=1")
    _, body, _, complete = dechunk(raw_get(server.port)[0])
    assert body == event(1) + event(2) + b"retry: 50\n\n"
    assert complete
    # The next connection is not chosen, and resumes where the client left.
    _, body, _, complete = dechunk(raw_get(server.port, headers=b"Last-Event-ID: 2\r\n")[0])
    assert body == event(3) + event(4) + event(5)
    assert complete


def test_reset_sends_event_n_then_a_tcp_reset(live: Callable[..., LiveServer], five: Path) -> None:
    server = serve(live, five, "reset:after=1")
    got, how = raw_get(server.port)
    assert how == "reset"
    _, body, _, complete = dechunk(got)
    assert body == event(1)
    assert not complete


def test_cut_sends_part_of_the_next_event_then_closes(
    live: Callable[..., LiveServer], five: Path
) -> None:
    server = serve(live, five, "cut:after=1,bytes=9,conn=1", "cut:after=0,conn=2")
    got, how = raw_get(server.port)
    _, body, _, complete = dechunk(got)
    assert how == "eof"
    assert not complete
    assert body == event(1) + event(2)[:9]
    _, body, _, complete = dechunk(raw_get(server.port)[0])
    assert body == event(1)[: len(event(1)) // 2]
    assert not complete


def test_stall_keeps_pinging_then_goes_on(live: Callable[..., LiveServer], five: Path) -> None:
    server = serve(live, five, "stall:after=1,for=0.35,pings=keep", ping=0.1)
    started = time.monotonic()
    _, body, _, complete = dechunk(raw_get(server.port)[0])
    assert time.monotonic() - started >= 0.35
    assert body.startswith(event(1) + b": ping\n\n")
    assert body.endswith(EVERY_EVENT[len(event(1)) :])
    assert body.replace(b": ping\n\n", b"") == EVERY_EVENT
    assert complete


def test_stall_forever_without_pings_sends_nothing_more(
    live: Callable[..., LiveServer], five: Path
) -> None:
    server = serve(live, five, "stall:after=2,pings=stop", ping=0.1)
    got, how = raw_get(server.port, timeout=0.5)
    _, body, _, _ = dechunk(got)
    assert (how, body) == ("quiet", event(1) + event(2))


def arrivals(url: str, headers: dict[str, str] | None = None) -> list[tuple[float, str]]:
    """(monotonic time, line) of every id line of a stream, read with httpx."""
    out = []
    with httpx.stream("GET", url, headers=headers, timeout=10) as response:
        for line in response.iter_lines():
            if line.startswith("id: "):
                out.append((time.monotonic(), line[4:]))
    return out


def test_delay_adds_ms_before_each_event_after_n(
    live: Callable[..., LiveServer], five: Path
) -> None:
    server = serve(live, five, "delay:after=2,ms=120")
    asked = time.monotonic()
    got = arrivals(server.url + "/events")
    assert [n for _, n in got] == ["1", "2", "3", "4", "5"]
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(got)]
    assert gaps[0] < 0.1  # events 1 and 2 keep their interval of 0
    # Event 3 waits 120 ms, event 4 120 more, event 5 120 more. Counted from the request,
    # as a client that reads late (this one shares its interpreter with the server) can
    # only make arrivals later, never earlier; each step still shows on its own.
    since_asked = [at - asked for at, _ in got]
    assert all(since_asked[k] >= 0.115 * (k - 1) for k in (2, 3, 4)), since_asked
    assert all(gap > 0.03 for gap in gaps[1:]), gaps  # a read late by under 90 ms passes


def test_slice_writes_the_stream_in_pieces_of_size_bytes(
    live: Callable[..., LiveServer], tmp_path: Path
) -> None:
    # A two-line text (a line break inside the data) and a character of 3 UTF-8 bytes.
    path = write_json(tmp_path / "awkward.json", ["ca\u00e9\u20ac", "one\ntwo"])
    server = serve(live, path, "slice:size=3")
    _, body, chunks, complete = dechunk(raw_get(server.port)[0])
    expected = "id: 1\ndata: ca\u00e9\u20ac\n\nid: 2\ndata: one\ndata: two\n\n".encode()
    assert body == expected
    assert complete
    assert max(map(len, chunks)) == 3
    # Both characters (c3 a9, e2 82 ac) are split between writes.
    assert chunks[4:7] == [b"ca\xc3", b"\xa9\xe2\x82", b"\xac\n\n"]
    # And a real client puts it back together.
    with httpx.stream("GET", server.url + "/events", timeout=10) as response:
        assert "".join(response.iter_text()) == expected.decode()


def test_duplicate_skip_and_malformed_change_event_n(
    live: Callable[..., LiveServer], five: Path
) -> None:
    server = serve(
        live,
        five,
        "duplicate:at=2,conn=1",
        "skip:at=2,conn=2",
        "malformed:at=3,kind=json,conn=3",
        "malformed:at=3,kind=utf8,conn=4",
        "malformed:at=3,kind=crlf,conn=5",
    )
    bodies = [dechunk(raw_get(server.port)[0])[1] for _ in range(5)]
    one, two, three, four, five_ = (event(n) for n in range(1, 6))
    assert bodies[0] == one + two + two + three + four + five_
    assert bodies[1] == one + three + four + five_
    assert bodies[2] == one + two + b'id: 3\ndata: {"n":3\n\n' + four + five_
    assert bodies[3] == one + two + b'id: 3\ndata: {"n":3}\xe2\x82\n\n' + four + five_
    assert bodies[4] == one + two + b'id: 3\rdata: {"n":3}\r\r' + four + five_


def test_faults_work_on_the_asgi_path_and_in_broadcast(
    live: Callable[..., LiveServer], five: Path
) -> None:
    asgi = serve(live, five, "drop:after=2", "slice:size=4", direct_writes=False)
    _, body, chunks, complete = dechunk(raw_get(asgi.port)[0])
    assert body == event(1) + event(2)
    assert complete
    assert max(map(len, chunks)) == 4
    # Broadcast: a timeline from server start; a client resuming at event 1 catches up
    # from the history. Events are counted as the stream has them (a duplicate is not one).
    shared = serve(live, five, "drop:after=2", "duplicate:at=1", interval=0.2, broadcast=True)
    _, body, _, complete = dechunk(raw_get(shared.port, headers=b"Last-Event-ID: 1\r\n")[0])
    assert body == event(2) + event(2) + event(3)
    assert complete


def test_each_firing_is_logged_and_counted(
    live: Callable[..., LiveServer], five: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = serve(live, five, "drop:after=2,conn=2", "skip:at=1,conn=2")
    with caplog.at_level(logging.INFO, logger="sseplay.server"):
        raw_get(server.port)
        raw_get(server.port)
        health = httpx.get(server.url + "/healthz", timeout=5).json()
    assert health["faults"] == {"drop": 1, "skip": 1}
    messages = [record.getMessage() for record in caplog.records]
    assert "fault skip fired on /events connection 2 at event 1" in messages
    assert "fault drop fired on /events connection 2 after event 2" in messages
    assert any(m.endswith("(ended by fault drop)") for m in messages)


# Per request.


def test_a_request_names_its_faults_only_with_fault_header(
    live: Callable[..., LiveServer], five: Path
) -> None:
    off = serve(live, five)
    assert httpx.get(off.url + "/events?fault=status:code=503", timeout=5).status_code == 200
    on = serve(live, five, fault_header=True)
    assert httpx.get(on.url + "/events?fault=status:code%3D503", timeout=5).status_code == 503
    # Events are counted as the stream has them: a skipped one is one.
    _, body, _, complete = dechunk(
        raw_get(on.port, headers=b"Sseplay-Fault: skip:at=1; drop:after=2\r\n")[0]
    )
    assert body == event(2)
    assert complete
    bad = httpx.get(on.url + "/events", headers={"Sseplay-Fault": "explode"}, timeout=5)
    assert bad.status_code == 400
    assert "unknown kind 'explode'" in bad.text
    plain = httpx.get(on.url + "/events", timeout=5)
    assert plain.content == EVERY_EVENT


# Real clients.


@pytest.mark.parametrize("fault", ["drop:after=2,conn=1", "cut:after=2,bytes=7,conn=1"])
def test_tail_gets_every_event_once_across_the_reconnect(five: Path, fault: str) -> None:
    with ServeProcess(str(five), "--interval", "0", "--retry", "50", "--fault", fault) as server:
        result = run_cli("tail", server.url, "--format", "json", "--timeout", "15")
        _code, _, err = server.stop()
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["id"] for e in events] == ["1", "2", "3", "4", "5"]
    assert [json.loads(e["data"]) for e in events] == RECORDS
    kind = fault.split(":")[0]
    assert f"fault {kind} fired on /events connection 1 after event 2" in err


def test_a_fault_on_one_connection_delays_nobody_else(tmp_path: Path) -> None:
    path = write_json(tmp_path / "ten.json", [{"n": n} for n in range(10)])
    stream = PublicStream.from_file(path, interval=0.05)
    faults = ["stall:after=1,conn=1", "slice:size=1,conn=2", "delay:ms=200,conn=3"]
    with Server(stream, ping=0, faults=faults, seed=0) as server:
        results: dict[int, list[tuple[float, str]]] = {}
        threads = []

        def read(number: int) -> None:
            with contextlib.suppress(httpx.HTTPError):  # the stalled one, at the stop
                results[number] = arrivals(server.url)

        for number in (1, 2, 3):
            # The faulty ones in the background; connection 4, the healthy one, here.
            thread = threading.Thread(target=read, args=(number,), daemon=True)
            thread.start()
            threads.append(thread)
            while server.connections < number:
                time.sleep(0.005)
        healthy = arrivals(server.url)
        health = httpx.get(server.url.replace("/events", "/healthz"), timeout=5).json()
        threads[2].join(10)
    for thread in threads:
        thread.join(10)
    assert [n for _, n in healthy] == [str(n) for n in range(1, 11)]
    start = healthy[0][0]
    drift = [abs(at - start - k * 0.05) for k, (at, _) in enumerate(healthy)]
    # Well under the 200 ms a leaked delay would add (a busy 2-core machine has jitter).
    assert max(drift) < 0.15, drift
    assert health["faults"] == {"delay": 1, "slice": 1, "stall": 1}
    assert 1 not in results  # stalled after its first event until the server stopped
    assert [n for _, n in results[2]] == [n for _, n in results[3]] == [n for _, n in healthy]
    assert results[3][-1][0] - healthy[-1][0] > 1.0  # 9 x 200 ms later, less their head start


def test_a_fault_no_stream_reaches_is_said_at_start_up(
    five: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stream = PublicStream.from_file(five, interval=0)
    with caplog.at_level(logging.WARNING, logger="sseplay.server"):
        Server(stream, faults=["cut:after=5", "drop:after=5", "skip:at=6"])
    assert [record.getMessage() for record in caplog.records] == [
        "--fault 'cut:after=5' can never fire: no stream has more than 5 events",
        "--fault 'skip:at=6' can never fire: no stream has more than 5 events",
    ]
    with pytest.raises(UsageError, match="--fault 'drop:at=1': drop takes no at="):
        Server(stream, faults=["drop:at=1"])
