"""``sseplay tail`` as a CI assertion, against real servers: --expect (with --ignore,
--ignore-id, --exact), --schema, --stats and --wait, from the CLI and from ``tail()``."""

from __future__ import annotations

import json
import select
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sseplay.client.api import tail
from sseplay.client.stats import TailStats
from sseplay.config import ServerConfig
from sseplay.errors import ExitCode, Invalid, Mismatch, StreamError
from sseplay.http.app import create_app
from sseplay.http.hub import AppOptions
from tests.conftest import (
    ROOT,
    SSE_HEAD,
    LiveServer,
    RawServer,
    free_port,
    make_stream,
    run_cli,
    sseplay,
    write_lines,
)

CHAT = [
    {"created": 1700000001, "choices": [{"delta": {"id": "x1", "content": "Hel"}}]},
    {"created": 1700000002, "choices": [{"delta": {"id": "x2", "content": "lo"}}]},
    "[DONE]",
]


def served(sse_server: Callable[..., Any], records: list[Any], **options: Any) -> str:
    """A stream that ends after ``records`` and answers the reconnection with 204."""
    url: str = sse_server(records, interval=0, retry=10, **options).url
    return url


def tail_events(records: list[Any], types: list[str] | None = None) -> list[dict[str, Any]]:
    """The expected file's lines, as ``tail --format json`` prints them."""
    return [
        {
            "time": "2026-01-01T00:00:00.000Z",
            "type": types[n] if types else "message",
            "id": str(n + 1),
            "data": record if isinstance(record, str) else json.dumps(record),
        }
        for n, record in enumerate(records)
    ]


def stats_of(stderr: str) -> dict[str, Any]:
    lines = [line for line in stderr.splitlines() if line.startswith("{")]
    assert len(lines) == 1, stderr
    report: dict[str, Any] = json.loads(lines[0])
    return report


# ---------------------------------------------------------------------------
# --expect


def test_expect_passes_against_a_recording_and_json_output_of_the_same_stream(
    sse_server: Callable[..., Any], tmp_path: Path
) -> None:
    url = served(sse_server, CHAT)
    recording = tmp_path / "golden.jsonl"
    recorded = run_cli("tail", url, "--record", str(recording), "-q")
    assert recorded.returncode == 0, recorded.stderr
    printed = tmp_path / "printed.jsonl"
    printed.write_text(recorded.stdout)
    array = tmp_path / "array.json"
    array.write_text(json.dumps([json.loads(line) for line in recorded.stdout.splitlines()]))
    for golden in (recording, printed, array):
        result = run_cli("tail", url, "--expect", str(golden), "-q")
        assert result.returncode == 0, (golden.name, result.stderr)
        assert len(result.stdout.splitlines()) == 3


# Characters str.splitlines() takes for line ends, though JSON Lines (and SSE) do not:
# NEL, LS, PS, the file/group/record separators, VT and FF.
NOT_LINE_ENDS = "\u0085 \u2028 \u2029 \x1c \x1d \x1e \x0b \x0c"


def test_expect_takes_the_json_lines_tail_wrote_whatever_the_data_holds(
    sse_server: Callable[..., Any], tmp_path: Path
) -> None:
    records = [
        {"text": f"a{NOT_LINE_ENDS}b"},
        f"plain{NOT_LINE_ENDS}text",
        {"last": "\u0085"},
    ]
    url = served(sse_server, records)
    golden = tmp_path / "golden.jsonl"
    with golden.open("wb") as out:  # the bytes tail wrote, untouched
        written = subprocess.run(
            sseplay("tail", url, "--format", "json", "-q"),
            stdout=out,
            stderr=subprocess.PIPE,
            timeout=20,
            cwd=ROOT,
        )
    assert written.returncode == 0, written.stderr
    assert "\u0085".encode() in golden.read_bytes()  # raw in the file, as JSON allows
    result = run_cli("tail", url, "--expect", str(golden), "--exact", "-q")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 3  # one line per event, split at LF only


def test_a_nested_difference_exits_9_with_the_event_and_the_path(
    sse_server: Callable[..., Any], tmp_path: Path
) -> None:
    url = served(sse_server, CHAT)
    expected = tail_events(CHAT)
    second = json.loads(expected[1]["data"])
    second["choices"][0]["delta"]["content"] = "lp"
    expected[1]["data"] = json.dumps(second, indent=2)  # spacing does not matter
    golden = write_lines(tmp_path / "golden.jsonl", expected)
    result = run_cli("tail", url, "--expect", str(golden), "-q")
    assert result.returncode == ExitCode.MISMATCH == 9, result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("sseplay: error: event 2 (type 'message', id '2')"), error
    assert 'data at choices.0.delta.content: expected "lp", got "lo"' in error
    # The events up to the one that differs are shown, so the CI log has it.
    assert [json.loads(line)["id"] for line in result.stdout.splitlines()] == ["1", "2"]


def test_ignored_paths_that_differ_still_match(
    sse_server: Callable[..., Any], tmp_path: Path
) -> None:
    url = served(sse_server, CHAT)
    expected = tail_events(CHAT)
    for line, created, delta_id in ((0, 5, "other1"), (1, 6, "other2")):
        data = json.loads(expected[line]["data"])
        data["created"] = created
        data["choices"][0]["delta"]["id"] = delta_id
        expected[line]["data"] = json.dumps(data)
    golden = str(write_lines(tmp_path / "golden.jsonl", expected))
    plain = run_cli("tail", url, "--expect", golden, "-q")
    assert plain.returncode == 9
    assert "data at created: expected 5, got 1700000001" in plain.stderr
    half = run_cli("tail", url, "--expect", golden, "--ignore", "created", "-q")
    assert half.returncode == 9
    assert 'data at choices.0.delta.id: expected "other1", got "x1"' in half.stderr
    ignored = run_cli(
        "tail", url, "--expect", golden, "--ignore", "created", "--ignore", "choices.*.delta.id"
    )
    assert ignored.returncode == 0, ignored.stderr


def test_ignore_id_leaves_ids_out(sse_server: Callable[..., Any], tmp_path: Path) -> None:
    url = served(sse_server, CHAT)
    expected = tail_events(CHAT)
    for line in expected:
        line["id"] = "run-" + line["id"]
    golden = str(write_lines(tmp_path / "golden.jsonl", expected))
    strict = run_cli("tail", url, "--expect", golden, "-q")
    assert strict.returncode == 9
    assert "id: expected 'run-1', got '1'" in strict.stderr
    assert run_cli("tail", url, "--expect", golden, "--ignore-id", "-q").returncode == 0


def test_exact_makes_an_extra_event_a_mismatch(
    sse_server: Callable[..., Any], tmp_path: Path
) -> None:
    url = served(sse_server, CHAT)
    golden = str(write_lines(tmp_path / "golden.jsonl", tail_events(CHAT[:2])))
    prefix = run_cli("tail", url, "--expect", golden, "-q")
    assert prefix.returncode == 0, prefix.stderr
    assert len(prefix.stdout.splitlines()) == 2  # it stops once the expected ones came
    exact = run_cli("tail", url, "--expect", golden, "--exact", "-q")
    assert exact.returncode == 9
    assert "event 3 (type 'message', id '3') is one more than the 2" in exact.stderr
    whole = str(write_lines(tmp_path / "whole.jsonl", tail_events(CHAT)))
    # The whole stream, then the end (a 204 on the reconnection): a match.
    assert run_cli("tail", url, "--expect", whole, "--exact", "-q").returncode == 0


def test_exact_on_a_stream_that_goes_quiet_passes_at_the_idle_timeout(tmp_path: Path) -> None:
    """A stream that sends the expected events and then stays open: with --exact, silence
    for --idle-timeout means no extra event came. Short of the expected events it is still
    the idle timeout (exit 6)."""
    body = b"".join(
        f"id: {n + 1}\ndata: {e['data']}\n\n".encode() for n, e in enumerate(tail_events(CHAT))
    )

    def hold(conn: socket.socket, request: bytes, number: int) -> None:
        conn.sendall(SSE_HEAD + body)
        time.sleep(1)

    whole = str(write_lines(tmp_path / "whole.jsonl", tail_events(CHAT)))
    with RawServer(hold) as server:
        quiet = run_cli(
            "tail", server.url, "--expect", whole, "--exact", "--idle-timeout", "0.3", "-q"
        )
    assert quiet.returncode == 0, quiet.stderr
    more = str(write_lines(tmp_path / "more.jsonl", [*tail_events(CHAT), *tail_events(CHAT)]))
    with RawServer(hold) as server:
        waiting = run_cli("tail", server.url, "--expect", more, "--idle-timeout", "0.3", "-q")
    assert waiting.returncode == ExitCode.IDLE_TIMED_OUT, waiting.stderr


def test_a_stream_that_ends_early_or_differs_in_type_is_a_mismatch(
    sse_server: Callable[..., Any], tmp_path: Path
) -> None:
    url = served(sse_server, CHAT[:2])
    golden = str(write_lines(tmp_path / "golden.jsonl", tail_events(CHAT)))
    short = run_cli("tail", url, "--expect", golden, "-q")
    assert short.returncode == 9
    assert "the stream ended after 2 of the 3 events" in short.stderr
    assert "event 3 (type 'message', id '3') with data \"[DONE]\"" in short.stderr
    typed = str(write_lines(tmp_path / "typed.jsonl", tail_events(CHAT[:2], ["delta"] * 2)))
    wrong = run_cli("tail", url, "--expect", typed, "-q")
    assert wrong.returncode == 9
    assert "event 1 (type 'message', id '1') differs" in wrong.stderr
    assert "type: expected 'delta', got 'message'" in wrong.stderr


def test_bad_expect_files_are_one_line_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"data": "a"}\n{"data": \n')
    result = run_cli("tail", "http://127.0.0.1:9/", "--expect", str(broken))
    assert result.returncode == ExitCode.BAD_INPUT
    assert result.stderr.startswith(f"sseplay: error: --expect {broken}: line 2: invalid JSON")
    assert len(result.stderr.splitlines()) == 1
    lonely = run_cli("tail", "http://127.0.0.1:9/", "--ignore", "created")
    assert lonely.returncode == ExitCode.USAGE
    assert "--ignore works with --expect FILE" in lonely.stderr


# ---------------------------------------------------------------------------
# --schema

DELTA_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["choices"],
    "properties": {
        "choices": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"delta": {"properties": {"content": {"type": "string"}}}},
            },
        }
    },
}
DONE_SCHEMA = {"type": "object", "required": ["finish"], "properties": {"finish": {"enum": [1]}}}


def typed_records(third_content: Any) -> list[Any]:
    return [
        {"kind": "delta", "choices": [{"delta": {"content": "Hel"}}]},
        {"kind": "delta", "choices": [{"delta": {"content": "lo"}}]},
        {"kind": "delta", "choices": [{"delta": {"content": third_content}}]},
        {"kind": "done", "finish": 1},
    ]


def test_a_schema_per_event_type(sse_server: Callable[..., Any], tmp_path: Path) -> None:
    delta = tmp_path / "delta.schema.json"
    delta.write_text(json.dumps(DELTA_SCHEMA))
    done = tmp_path / "done.schema.json"
    done.write_text(json.dumps(DONE_SCHEMA))
    schemas = ["--schema", f"delta={delta}", "--schema", f"done={done}"]
    good = served(sse_server, typed_records("!"), event_field="kind")
    passed = run_cli("tail", good, *schemas, "-q")
    assert passed.returncode == 0, passed.stderr
    assert len(passed.stdout.splitlines()) == 4
    bad = served(sse_server, typed_records(5), event_field="kind")
    failed = run_cli("tail", bad, *schemas, "-q")
    assert failed.returncode == ExitCode.INVALID == 10
    error = failed.stderr.strip().splitlines()[-1]
    assert error.startswith("sseplay: error: event 3 (type 'delta', id '3'): ")
    assert f"data at choices.0.delta.content breaks --schema delta={delta}" in error
    assert "(rule properties/choices/items/properties/delta/properties/content/type)" in error
    assert "5 is not of type 'string'" in error
    # The done schema applies to done events only: against every event it fails at once.
    everything = run_cli("tail", good, "--schema", str(done), "-q")
    assert everything.returncode == 10
    assert "event 1 (type 'delta', id '1'): data breaks" in everything.stderr
    assert "'finish' is a required property" in everything.stderr


def test_schema_on_data_that_is_not_json_and_a_broken_schema(
    sse_server: Callable[..., Any], tmp_path: Path
) -> None:
    schema = tmp_path / "s.json"
    schema.write_text(json.dumps({"type": "object"}))
    url = served(sse_server, ["plain words"])
    text = run_cli("tail", url, "--schema", str(schema), "-q")
    assert text.returncode == 10
    assert text.stderr.splitlines()[-1] == (
        f"sseplay: error: event 1 (type 'message', id '1'): data breaks --schema {schema} "
        "(rule type): 'plain words' is not of type 'object' "
        "(the data is not JSON, so it was checked as a string)"
    )
    sentinel = tmp_path / "sentinel.json"
    sentinel.write_text(json.dumps({"anyOf": [{"const": "plain words"}, {"type": "object"}]}))
    assert run_cli("tail", url, "--schema", str(sentinel), "-q").returncode == 0
    schema.write_text(json.dumps({"type": "objekt"}))
    broken = run_cli("tail", url, "--schema", str(schema))
    assert broken.returncode == ExitCode.USAGE
    assert f"--schema {schema}: invalid schema at type" in broken.stderr


# ---------------------------------------------------------------------------
# --stats


def _reconnecting_server() -> RawServer:
    """Two events per connection and a close, then a 204 on the third connection."""

    def handler(conn: socket.socket, request: bytes, number: int) -> None:
        if number >= 3:
            conn.sendall(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            return
        first = 2 * number - 1
        conn.sendall(SSE_HEAD + b"retry: 10\n\n" + f"id: {first}\ndata: a\n\n".encode())
        time.sleep(0.05)
        conn.sendall(f"id: {first + 1}\ndata: bb\n\n".encode())

    return RawServer(handler)


def test_stats_count_reconnects_and_times(tmp_path: Path) -> None:
    with _reconnecting_server() as server:
        result = run_cli("tail", server.url, "--stats", "-q")
    assert result.returncode == 0, result.stderr
    stats = stats_of(result.stderr)
    assert stats["events"] == stats["shown"] == 4
    assert stats["connections"] == 2
    assert stats["reconnects"] == 2  # the second connection and the one that got 204
    assert stats["bytes"] == 2 * len(b"retry: 10\n\nid: 1\ndata: a\n\nid: 2\ndata: bb\n\n")
    gaps = stats["inter_arrival_ms"]
    assert gaps["count"] == 3
    assert 40 <= gaps["max"] < 5000  # the 50 ms pause, or the reconnection
    assert gaps["min"] <= gaps["p50"] <= gaps["p90"] <= gaps["p99"] <= gaps["max"]
    assert 0 < stats["first_event_ms"] <= stats["duration_ms"]
    assert (stats["exit_code"], stats["result"]) == (0, "ok")


def test_stats_are_written_however_the_tail_ends(
    sse_server: Callable[..., Any], tmp_path: Path
) -> None:
    url = served(sse_server, CHAT)
    figures = tmp_path / "stats.json"
    golden = str(write_lines(tmp_path / "golden.jsonl", tail_events(["other"])))
    result = run_cli("tail", url, "--expect", golden, "--stats-file", str(figures), "-q")
    assert result.returncode == 9
    stats = json.loads(figures.read_text())
    assert (stats["exit_code"], stats["result"], stats["events"]) == (9, "mismatch", 3)
    assert not any(line.startswith("{") for line in result.stderr.splitlines())  # the file
    counted = run_cli("tail", url, "--count", "1", "--stats", "-q")
    assert counted.returncode == 0
    assert stats_of(counted.stderr)["shown"] == 1
    refused = run_cli("tail", "http://127.0.0.1:9/", "--stats", "-q")
    assert refused.returncode == 1
    assert stats_of(refused.stderr)["connections"] == 0
    assert refused.stderr.splitlines()[-1].startswith("sseplay: error: cannot connect")


# ---------------------------------------------------------------------------
# --wait


def test_wait_finds_a_server_that_comes_up_late(tmp_path: Path) -> None:
    """The server starts only once the tail has been refused (its status line says so)."""
    port = free_port()
    events = write_lines(tmp_path / "late.jsonl", ["one", "two"])
    tail_process = subprocess.Popen(
        sseplay("tail", f"http://127.0.0.1:{port}/events", "--wait", "10"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert tail_process.stderr is not None
        ready, _, _ = select.select([tail_process.stderr], [], [], 15)
        assert ready, "the tail said nothing"
        first = tail_process.stderr.readline()
        assert "cannot connect" in first
        assert first.rstrip().endswith("retrying for up to 10 s (--wait)")
        time.sleep(0.2)  # refused a few more times
        app = create_app([make_stream(events, retry=10)], AppOptions(ServerConfig(ping=0)))
        with LiveServer(app, port=port):
            out, err = tail_process.communicate(timeout=15)
    finally:
        if tail_process.poll() is None:
            tail_process.kill()
            tail_process.communicate()
    assert tail_process.returncode == 0, err
    assert [json.loads(line)["data"] for line in out.splitlines()] == ["one", "two"]


def test_without_wait_a_refused_first_connection_fails_at_once() -> None:
    port = free_port()
    started = time.monotonic()
    result = run_cli("tail", f"http://127.0.0.1:{port}/events")
    assert result.returncode == 1
    assert "cannot connect" in result.stderr
    assert "--wait" not in result.stderr
    assert time.monotonic() - started < 10


def test_wait_for_a_server_that_never_comes_is_bounded() -> None:
    port = free_port()
    started = time.monotonic()
    result = run_cli("tail", f"http://127.0.0.1:{port}/events", "--wait", "1")
    elapsed = time.monotonic() - started
    assert result.returncode == ExitCode.ERROR
    last = result.stderr.splitlines()[-1]
    assert last.startswith("sseplay: error: cannot connect to")
    assert last.endswith("(still, after --wait 1 s)")
    assert 1 <= elapsed < 10


def test_wait_retries_a_proxy_503_then_streams() -> None:
    def handler(conn: socket.socket, request: bytes, number: int) -> None:
        if number <= 2:
            conn.sendall(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 8\r\n"
                b"Connection: close\r\n\r\nstarting"
            )
            return
        conn.sendall(SSE_HEAD + b"id: 1\ndata: up\n\n")

    with RawServer(handler) as server:
        no_wait = run_cli("tail", server.url, "--count", "1")
        assert no_wait.returncode == 1
        assert "answered 503" in no_wait.stderr
        waited = run_cli("tail", server.url, "--count", "1", "--wait", "5")
    assert waited.returncode == 0, waited.stderr
    assert json.loads(waited.stdout)["data"] == "up"
    assert len(server.requests) == 3


# ---------------------------------------------------------------------------
# The library


def test_the_library_raises_what_the_cli_exits_with(
    sse_server: Callable[..., Any], tmp_path: Path
) -> None:
    url = served(sse_server, CHAT)
    wrong = tail_events(CHAT)
    wrong[2]["data"] = "[END]"
    with pytest.raises(Mismatch, match=r"event 3 .*expected \"\[END\]\"") as mismatch:
        list(tail(url, expect=wrong))
    assert mismatch.value.exit_code == 9
    assert [e.id for e in tail(url, expect=tail_events(CHAT)[:1], ignore=["created"])] == ["1"]
    with pytest.raises(Invalid, match=r"event 1 .*data at created") as invalid:
        list(tail(url, schema={"properties": {"created": {"type": "string"}}}))
    assert invalid.value.exit_code == 10
    stats = TailStats()
    assert len(list(tail(url, stats=stats))) == 3
    report = stats.report()
    assert (report["events"], report["connections"], report["result"]) == (3, 1, "ok")
    with pytest.raises(StreamError, match=r"after --wait 0.3 s"):
        list(tail(f"http://127.0.0.1:{free_port()}/", wait=0.3))
