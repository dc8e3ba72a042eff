"""``sseplay tail`` against sseplay's own server and servers that misbehave on purpose."""

from __future__ import annotations

import io
import json
import os
import select
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from rich.console import Console

from sseplay.client.api import tail
from sseplay.client.exchange import tls_settings
from sseplay.client.render import PrettyRenderer
from sseplay.errors import ExitCode
from sseplay.exchange import read_exchange
from sseplay.model import Event
from tests.conftest import (
    ROOT,
    SAMPLES,
    SSE_HEAD,
    RawServer,
    free_port,
    make_stream,
    run_cli,
    sseplay,
)


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def test_json_output_against_sseplay_serve(live: Any) -> None:
    server = live([make_stream(SAMPLES / "llm.jsonl", retry=20)])
    result = run_cli("tail", server.url + "/events", "--format", "json")
    assert result.returncode == 0, result.stderr
    lines = json_lines(result.stdout)
    assert [line["id"] for line in lines] == [str(n) for n in range(1, 12)]
    assert lines[-1]["data"] == "[DONE]"
    assert lines[0]["type"] == "message"
    assert json.loads(lines[0]["data"])["choices"][0]["delta"]["content"] == "Server"
    assert set(lines[0]) == {"time", "type", "id", "data"}
    assert datetime.fromisoformat(lines[0]["time"]).tzinfo is not None
    assert "204 No Content" in result.stderr


def test_data_only_and_raw_and_piped_default(live: Any) -> None:
    server = live([make_stream(SAMPLES / "llm.jsonl", retry=20)])
    url = server.url + "/events"
    data = run_cli("tail", url, "--data-only", "--until", r"^\[DONE\]$")
    assert data.returncode == 0
    assert data.stdout.splitlines()[-1] == "[DONE]"
    assert len(data.stdout.splitlines()) == 11
    raw = run_cli("tail", url, "--format", "raw", "--count", "11")
    assert raw.stdout.startswith("retry: 20\n\nid: 1\ndata: {")
    assert raw.stdout.endswith("id: 11\ndata: [DONE]\n\n")
    piped = run_cli("tail", url, "--count", "1")
    assert json_lines(piped.stdout)[0]["id"] == "1"  # json is the default when piped


def test_pretty_output_is_plain_text_and_pretty_json() -> None:
    out = io.StringIO()
    renderer = PrettyRenderer(
        Console(file=out, width=60, color_system=None, highlight=False, markup=False)
    )
    arrived = datetime(2026, 1, 1, 12, 0, 0, 250000, tzinfo=UTC)
    renderer.event(Event("[bold red]not markup[/] <b>x</b>", "note", "7"), arrived)
    renderer.event(Event('{"a": [1, 2], "b": "[i]x[/i]"}'), arrived)
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("  note  id=7")
    assert lines[1] == "[bold red]not markup[/] <b>x</b>"
    assert lines[3:] == ["{", '  "a": [', "    1,", "    2", "  ],", '  "b": "[i]x[/i]"', "}"]


def test_pretty_output_shows_json_nested_past_the_decoder_as_text() -> None:
    """A hostile stream can send JSON nested deeper than Python's json recurses."""
    out = io.StringIO()
    renderer = PrettyRenderer(Console(file=out, width=60, color_system=None, soft_wrap=True))
    deep = "[" * 100_000 + "]" * 100_000
    renderer.event(Event(deep), datetime(2026, 1, 1, tzinfo=UTC))
    assert out.getvalue().splitlines()[1] == deep


def test_filters_and_count(live: Any) -> None:
    from sseplay.eventfile import FieldMapping

    mapping = FieldMapping(data_field="payload", event_field="type", id_field="id")
    server = live([make_stream(SAMPLES / "notifications.json", mapping=mapping, retry=20)])
    result = run_cli(
        "tail", server.url + "/events", "-e", "presence", "-e", "message", "-f", "json"
    )
    assert [line["id"] for line in json_lines(result.stdout)] == ["n-102", "n-103", "n-105"]
    counted = run_cli("tail", server.url + "/events", "-e", "notification", "--count", "2")
    assert counted.returncode == 0
    assert [line["id"] for line in json_lines(counted.stdout)] == ["n-101", "n-104"]
    short = run_cli("tail", server.url + "/events", "--count", "9")
    assert short.returncode == ExitCode.ASSERTION_FAILED
    assert "the stream ended after 5 events without 9 events" in short.stderr


def test_reconnects_with_last_event_id_no_duplicates_no_gaps() -> None:
    def handler(conn: socket.socket, request: bytes, number: int) -> None:
        if number == 1:
            conn.sendall(
                SSE_HEAD + b"retry: 10\n\nid: 1\ndata: one\n\nid: 2\ndata: two\n\ndata: cut"
            )
        elif number == 2:
            conn.sendall(SSE_HEAD + b"id: 3\ndata: three\n\n")
        else:
            conn.sendall(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")

    with RawServer(handler) as server:
        result = run_cli("tail", server.url, "-f", "json")
        assert result.returncode == 0, result.stderr
        assert [line["data"] for line in json_lines(result.stdout)] == ["one", "two", "three"]
        assert server.header(0, "Last-Event-ID") is None
        assert server.header(1, "Last-Event-ID") == "2"
        assert server.header(2, "Last-Event-ID") == "3"
        assert server.header(0, "Accept") == "text/event-stream"


def test_one_byte_chunks() -> None:
    payload = 'retry: 5\n\nid: é1\r\nevent: tick\r\ndata: {"v": "ü\u2028"}\r\n\r\n'.encode()

    def handler(conn: socket.socket, request: bytes, number: int) -> None:
        if number > 1:
            conn.sendall(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            return
        conn.sendall(SSE_HEAD)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for byte in payload:
            conn.sendall(bytes([byte]))
            time.sleep(0.0005)

    with RawServer(handler) as server:
        result = run_cli("tail", server.url, "-f", "json")
    assert result.returncode == 0, result.stderr
    [line] = json_lines(result.stdout)
    assert (line["type"], line["id"], line["data"]) == ("tick", "é1", '{"v": "ü\u2028"}')


def test_post_with_body_and_headers() -> None:
    def handler(conn: socket.socket, request: bytes, number: int) -> None:
        conn.sendall(SSE_HEAD + b'data: {"ok": true}\n\n')

    with RawServer(handler) as server:
        result = run_cli(
            "tail",
            server.url,
            "-X",
            "post",
            "-d",
            '{"stream": true}',
            "-H",
            "Authorization: Bearer t0k",
            "--count",
            "1",
        )
        assert result.returncode == 0, result.stderr
        request = server.requests[0]
    assert request.startswith(b"POST /events HTTP/1.1")
    assert request.endswith(b'\r\n\r\n{"stream": true}')
    assert server.header(0, "Authorization") == "Bearer t0k"
    assert server.header(0, "Content-Type") == "application/json"


def test_data_from_a_file(tmp_path: Path) -> None:
    body = tmp_path / "body.json"
    body.write_text('{"from": "file"}')

    def handler(conn: socket.socket, request: bytes, number: int) -> None:
        conn.sendall(SSE_HEAD + b"data: x\n\n")

    with RawServer(handler) as server:
        assert run_cli("tail", server.url, "-d", f"@{body}", "--count", "1").returncode == 0
        assert server.requests[0].endswith(b'{"from": "file"}')


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n"
            b"Content-Length: 12\r\n\r\ndatabase down",
            "answered 500 Internal Server Error; the body starts: 'database dow'",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
            b"Content-Length: 25\r\n\r\n<html><b>login</b></html>",
            "is not an event stream (Content-Type: text/html)",
        ),
        (b"", "Server disconnected without sending a response"),
    ],
    ids=["500", "html", "closed-before-headers"],
)
def test_fatal_answers_are_one_line_not_a_reconnect_loop(response: bytes, expected: str) -> None:
    def handler(conn: socket.socket, request: bytes, number: int) -> None:
        conn.sendall(response)

    with RawServer(handler) as server:
        result = run_cli("tail", server.url, "--timeout", "10")
        assert len(server.requests) == 1
    assert result.returncode == ExitCode.ERROR
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("sseplay: error: ")
    assert expected in line


def test_204_first_ends_with_success() -> None:
    def handler(conn: socket.socket, request: bytes, number: int) -> None:
        conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")

    with RawServer(handler) as server:
        result = run_cli("tail", server.url)
    assert result.returncode == 0
    assert result.stdout == ""


def _stall(conn: socket.socket, request: bytes, number: int) -> None:
    conn.sendall(SSE_HEAD + b"data: first\n\n")
    time.sleep(3)


def test_idle_timeout_and_timeout_have_their_own_codes() -> None:
    with RawServer(_stall) as server:
        idle = run_cli("tail", server.url, "--idle-timeout", "0.3")
    assert idle.returncode == ExitCode.IDLE_TIMED_OUT
    assert "no data for 0.3 s" in idle.stderr
    assert json_lines(idle.stdout)[0]["data"] == "first"
    with RawServer(_stall) as server:
        started = time.monotonic()
        whole = run_cli("tail", server.url, "--timeout", "0.5")
        assert time.monotonic() - started < 2.5
    assert whole.returncode == ExitCode.TIMED_OUT
    assert "timed out after 0.5 s with 1 events shown" in whole.stderr


def test_gives_up_after_max_retries() -> None:
    def handler(conn: socket.socket, request: bytes, number: int) -> None:
        conn.sendall(SSE_HEAD + b"retry: 1\n\ndata: again\n\n")

    with RawServer(handler) as server:
        result = run_cli("tail", server.url, "--max-retries", "2")
        assert len(server.requests) == 3
    assert result.returncode == ExitCode.GAVE_UP
    assert "gave up after 2 reconnection attempts" in result.stderr


def test_no_reconnect_stops_at_the_first_end() -> None:
    def handler(conn: socket.socket, request: bytes, number: int) -> None:
        conn.sendall(SSE_HEAD + b"data: once\n\n")

    with RawServer(handler) as server:
        result = run_cli("tail", server.url, "--no-reconnect")
        assert len(server.requests) == 1
    assert result.returncode == 0
    assert json_lines(result.stdout)[0]["data"] == "once"


def test_event_larger_than_the_limit() -> None:
    def handler(conn: socket.socket, request: bytes, number: int) -> None:
        conn.sendall(SSE_HEAD + b"data: " + b"x" * 5000 + b"\n\n")

    with RawServer(handler) as server:
        result = run_cli("tail", server.url, "--max-event-size", "1000")
    assert result.returncode == ExitCode.ERROR
    assert "raise --max-event-size" in result.stderr


@pytest.mark.parametrize(
    ("args", "code", "expected"),
    [
        (["http://[::1"], ExitCode.USAGE, "malformed URL"),
        (["ftp://example.test/x"], ExitCode.USAGE, "unsupported URL scheme"),
        (["http:///events"], ExitCode.USAGE, "has no host"),
        (["http://no-such-host.invalid/events"], ExitCode.ERROR, "cannot resolve the host"),
        (["http://127.0.0.1:{port}/events"], ExitCode.ERROR, "cannot connect"),
        (["http://127.0.0.1:1/x", "-H", "no colon"], ExitCode.USAGE, "bad header 'no colon'"),
        (["http://127.0.0.1:1/x", "--format", "xml"], ExitCode.USAGE, "--format must be"),
        (
            ["http://127.0.0.1:1/x", "--until", "("],
            ExitCode.USAGE,
            "--until: bad regular expression",
        ),
        (["http://127.0.0.1:1/x", "-d", "@/no/such/file"], ExitCode.USAGE, "cannot read the file"),
    ],
)
def test_bad_input_is_one_line(args: list[str], code: int, expected: str) -> None:
    args = [arg.replace("{port}", str(free_port())) for arg in args]
    result = run_cli("tail", *args)
    assert result.returncode == code, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert expected in line
    assert "Traceback" not in result.stderr


def test_ctrl_c_stops_at_once_with_130() -> None:
    with RawServer(_stall) as server:
        process = subprocess.Popen(
            sseplay("tail", server.url), stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT
        )
        assert process.stdout is not None
        process.stdout.readline()  # the first event is shown
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=5)
    assert process.returncode == ExitCode.INTERRUPTED
    assert b"Traceback" not in err


def test_tail_never_imports_the_server_stack() -> None:
    def handler(conn: socket.socket, request: bytes, number: int) -> None:
        conn.sendall(SSE_HEAD + b"data: x\n\n")

    probe = (
        "import sys\n"
        "sys.argv = ['sseplay', 'tail', sys.argv[1], '--count', '1', '-f', 'pretty']\n"
        "from sseplay.cli.app import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = {m.split('.')[0] for m in sys.modules}\n"
        "heavy &= {'fastapi', 'uvicorn', 'sse_starlette', 'starlette'}\n"
        "print('HEAVY', sorted(heavy))\n"
    )
    with RawServer(handler) as server:
        result = subprocess.run(
            [sys.executable, "-c", probe, server.url], capture_output=True, text=True, timeout=20
        )
    assert "HEAVY []" in result.stdout, result.stdout + result.stderr


def test_tls_failure_is_one_line_and_insecure_skips_the_check(tmp_path: Path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=127.0.0.1",
            "-days",
            "1",
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    def handler(conn: socket.socket, request: bytes, number: int) -> None:
        conn.sendall(SSE_HEAD + b"data: secret\n\n")

    with RawServer(handler, tls=context) as server:
        refused = run_cli("tail", server.url, "--count", "1")
        accepted = run_cli("tail", server.url, "--count", "1", "--insecure")
    assert refused.returncode == ExitCode.ERROR
    [line] = refused.stderr.strip().splitlines()
    assert "TLS failed" in line
    assert "--insecure" in line
    assert accepted.returncode == 0, accepted.stderr
    assert json_lines(accepted.stdout)[0]["data"] == "secret"


@pytest.mark.parametrize(
    ("output", "expected"),
    [("json", b'"data":"first"'), ("data", b"first\n"), ("raw", b"data: first\n\n")],
)
def test_an_event_is_shown_while_the_stream_is_still_open(output: str, expected: bytes) -> None:
    """stdout is a pipe here, so only a flush after each chunk gets the event out now."""
    seen = threading.Event()

    def hold_open(conn: socket.socket, request: bytes, number: int) -> None:
        conn.sendall(SSE_HEAD + b"data: first\n\n")
        seen.wait(10)

    with RawServer(hold_open) as server:
        # As in a user's pipeline: stdout block-buffered, whatever this machine sets.
        buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
        process = subprocess.Popen(
            sseplay("tail", server.url, "--format", output, "-q"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            env=buffered,
        )
        assert process.stdout is not None
        try:
            ready, _, _ = select.select([process.stdout], [], [], 10)
            assert ready, "nothing shown while the stream was open"
            shown = os.read(process.stdout.fileno(), 65536)
        finally:
            seen.set()
            process.kill()
            process.communicate(timeout=5)
    assert expected in shown


def test_a_plain_http_tail_never_loads_certificates_and_https_still_verifies() -> None:
    """Loading the CA bundle is start-up time that an http:// URL never needs."""

    def handler(conn: socket.socket, request: bytes, number: int) -> None:
        conn.sendall(SSE_HEAD + b"data: plain\n\n")

    loaded: list[object] = []
    real_load = ssl.SSLContext.load_verify_locations

    def counting_load(context: ssl.SSLContext, *args: Any, **kwargs: Any) -> None:
        loaded.append(args or kwargs)
        real_load(context, *args, **kwargs)

    with (
        RawServer(handler) as server,
        mock.patch.object(ssl.SSLContext, "load_verify_locations", counting_load),
    ):
        events = list(tail(server.url, reconnect=False))
        assert [event.data for event in events] == ["plain"]
        assert loaded == []
        verifying = tls_settings("https://127.0.0.1/events", True)
        insecure = tls_settings("https://127.0.0.1/events", False)
    assert verifying is True
    assert insecure is False
    # The context an http:// URL gets would refuse any certificate, never accept one.
    plain = tls_settings(server.url, True)
    assert isinstance(plain, ssl.SSLContext)
    assert plain.verify_mode == ssl.CERT_REQUIRED
    assert plain.check_hostname


def test_a_recorded_retry_is_sent_again_when_the_recording_is_served(
    live: Any, tmp_path: Path
) -> None:
    """The server's retry: comes in a block of its own, which dispatches no event; the
    recording keeps it with the next event and serve sends it again (issue 10.7)."""
    from tests.conftest import ServeProcess

    server = live([make_stream(SAMPLES / "llm.jsonl", retry=20)])
    record = tmp_path / "rec.jsonl"
    recorded = run_cli("tail", server.url + "/events", "--record", str(record), "-q")
    assert recorded.returncode == 0, recorded.stderr
    # Recorded as the server sent it (issue 24's format), then served byte for byte at
    # the path it was recorded from.
    assert "retry: 20\n" in "".join(block.raw.decode() for block in read_exchange(record).blocks)
    with ServeProcess(str(record), "--interval", "0") as replay:
        raw = run_cli("tail", replay.url + "/events", "--format", "raw", "--count", "11", "-q")
    assert raw.returncode == 0, raw.stderr
    assert "retry: 20\n" in raw.stdout


def test_help_reads_like_a_hand_written_one() -> None:
    result = run_cli("tail", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for shown in (
        "URL",
        "--format FORMAT",
        "--method METHOD",
        "--header 'NAME: VALUE'",
        "--event TYPE",
        "--count N",
        "--until REGEX",
        "--timeout SECONDS",
        "--record FILE",
        "--no-reconnect",
        "--insecure",
    ):
        assert shown in text, shown
    for python_ish in ("<float>", "<list", "TEXT", "INTEGER", "FLOAT", " / --no-", "PATH"):
        assert python_ish not in text, python_ish
