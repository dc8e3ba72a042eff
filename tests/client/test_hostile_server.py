"""``sseplay tail`` against servers that misbehave on purpose (issues 10 and 11).

Every server here is a raw socket on 127.0.0.1 (``RawServer``) that writes exactly the
bytes of the attack; every test is bounded in time by a subprocess timeout or --timeout.
"""

from __future__ import annotations

import gzip
import json
import socket
import subprocess
import time
import zlib
from pathlib import Path
from typing import Any

import pytest

from sseplay.errors import ExitCode
from tests.conftest import ROOT, SSE_HEAD, RawServer, run_cli, sseplay
from tests.support import recorded_events

END = b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def wait_for_hangup(conn: socket.socket, seconds: float = 5) -> None:
    """Hold the connection open (sending nothing) until the client leaves."""
    conn.settimeout(seconds)
    try:
        while conn.recv(65536):
            pass
    except OSError:
        pass


def path_of(request: bytes) -> str:
    return request.split(b" ", 2)[1].decode()


# --- issue 11.6: the wait for the response headers and for an error body is bounded ---


def test_a_server_that_accepts_and_never_answers_is_one_line_after_the_connect_time() -> None:
    def silent(conn: socket.socket, request: bytes, number: int) -> None:
        wait_for_hangup(conn)

    with RawServer(silent) as server:
        started = time.monotonic()
        result = run_cli("tail", server.url, "--connect-timeout", "0.5", timeout=15)
        elapsed = time.monotonic() - started
    assert result.returncode == ExitCode.ERROR
    assert "sent no response within 0.5 s (--connect-timeout)" in one_line(result.stderr)
    assert elapsed < 4


def test_the_idle_timeout_also_bounds_the_wait_for_the_headers() -> None:
    def silent(conn: socket.socket, request: bytes, number: int) -> None:
        wait_for_hangup(conn)

    with RawServer(silent) as server:
        result = run_cli("tail", server.url, "--idle-timeout", "0.3", timeout=15)
    assert result.returncode == ExitCode.IDLE_TIMED_OUT
    assert "no response for 0.3 s (--idle-timeout)" in one_line(result.stderr)


def test_headers_then_nothing_ends_at_the_idle_timeout() -> None:
    def headers_only(conn: socket.socket, request: bytes, number: int) -> None:
        conn.sendall(SSE_HEAD)
        wait_for_hangup(conn)

    with RawServer(headers_only) as server:
        result = run_cli("tail", server.url, "--idle-timeout", "0.3", "-q", timeout=15)
    assert result.returncode == ExitCode.IDLE_TIMED_OUT
    assert "no data for 0.3 s" in one_line(result.stderr)


def test_an_error_body_sent_slowly_does_not_hold_tail() -> None:
    def trickle(conn: socket.socket, request: bytes, number: int) -> None:
        conn.sendall(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
            b"Content-Length: 1000\r\n\r\n"
        )
        for _ in range(100):  # a byte every 0.1 s: 20 s for the 200-byte preview
            conn.sendall(b"x")
            time.sleep(0.1)

    with RawServer(trickle) as server:
        started = time.monotonic()
        result = run_cli("tail", server.url, "--connect-timeout", "0.5", timeout=30)
        elapsed = time.monotonic() - started
    assert result.returncode == ExitCode.ERROR
    assert "answered 503 Service Unavailable" in one_line(result.stderr)
    assert elapsed < 5


# --- issue 11.6: a clean end with retry: 0 is not a reconnect storm ---


def test_retry_zero_and_an_immediate_end_reconnects_no_faster_than_the_floor() -> None:
    def end_at_once(conn: socket.socket, request: bytes, number: int) -> None:
        conn.sendall(SSE_HEAD + b"retry: 0\n\n")

    with RawServer(end_at_once) as server:
        result = run_cli("tail", server.url, "--timeout", "1", "-q", timeout=15)
        connections = len(server.requests)
    assert result.returncode == ExitCode.TIMED_OUT
    # 100 ms floor, then doubling back-off: 0.1 + 0.1..0.2 + 0.2..0.4 + ... within 1 s.
    assert 2 <= connections <= 8, connections


# --- issue 11.6: an id with leading or trailing whitespace goes back as a browser sends it ---


def test_an_id_with_surrounding_whitespace_is_sent_back_trimmed() -> None:
    def handler(conn: socket.socket, request: bytes, number: int) -> None:
        if number == 1:
            conn.sendall(SSE_HEAD + b"retry: 1\n\nid:  spaced\t\ndata: one\n\n")
        else:
            conn.sendall(END)

    with RawServer(handler) as server:
        result = run_cli("tail", server.url, "--timeout", "5", timeout=15)
        assert result.returncode == 0, result.stderr
        # The header's surrounding whitespace is not part of its value (RFC 9110 5.5),
        # so this is what a server receives from a browser too.
        assert server.header(1, "Last-Event-ID") == "spaced"
    assert json_lines(result.stdout)[0]["id"] == " spaced\t"


# --- issue 11.5: retry: values of 20 and more digits ---


@pytest.mark.parametrize("digits", [20, 25, 5000])
def test_a_huge_retry_is_ignored_and_breaks_nothing(digits: int, tmp_path: Path) -> None:
    huge = b"9" * digits

    def handler(conn: socket.socket, request: bytes, number: int) -> None:
        conn.sendall(SSE_HEAD + b"retry: " + huge + b"\nid: 1\ndata: x\n\n")

    record = tmp_path / "rec.jsonl"
    with RawServer(handler) as server:
        result = run_cli("tail", server.url, "--no-reconnect", "--record", str(record), timeout=15)
    assert result.returncode == 0, result.stderr
    [line] = json_lines(result.stdout)
    assert line["data"] == "x"
    assert "retry" not in line  # past an unsigned 64-bit integer: ignored, as Chrome does
    assert [event.data for _, event in recorded_events(record)] == ["x"]


# --- issue 10.3: compressed streams ---


@pytest.mark.parametrize(
    ("coding", "compress"),
    [("gzip", gzip.compress), ("deflate", zlib.compress)],
)
def test_a_compressed_stream_is_decoded(coding: str, compress: Any) -> None:
    body = compress(b"id: 1\ndata: packed\n\nid: 2\ndata: twice\n\n")

    def handler(conn: socket.socket, request: bytes, number: int) -> None:
        conn.sendall(
            SSE_HEAD.replace(b"\r\n\r\n", f"\r\nContent-Encoding: {coding}\r\n\r\n".encode()) + body
        )

    with RawServer(handler) as server:
        result = run_cli("tail", server.url, "--no-reconnect", timeout=15)
        accepted = server.header(0, "Accept-Encoding") or ""
    assert result.returncode == 0, result.stderr
    assert [line["data"] for line in json_lines(result.stdout)] == ["packed", "twice"]
    assert coding in accepted


@pytest.mark.parametrize(
    ("coding", "body", "expected"),
    [
        ("gzip", b"this is not gzip at all\n\n", "the body cannot be decoded"),
        ("x-unheard-of", b"data: x\n\n", "Content-Encoding: x-unheard-of"),
    ],
    ids=["undecodable", "unknown-coding"],
)
def test_bytes_that_cannot_be_decoded_are_a_stream_error(
    coding: str, body: bytes, expected: str
) -> None:
    def handler(conn: socket.socket, request: bytes, number: int) -> None:
        conn.sendall(
            SSE_HEAD.replace(b"\r\n\r\n", f"\r\nContent-Encoding: {coding}\r\n\r\n".encode()) + body
        )

    with RawServer(handler) as server:
        result = run_cli("tail", server.url, "--timeout", "5", "-q", timeout=15)
        assert len(server.requests) == 1  # no reconnect loop
    assert result.returncode == ExitCode.ERROR
    assert expected in one_line(result.stderr)


# --- issue 10.4: redirects, and the MIME type check ---


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_are_followed_as_fetch_follows_them(status: int) -> None:
    def handler(conn: socket.socket, request: bytes, number: int) -> None:
        if path_of(request) == "/events":
            conn.sendall(
                f"HTTP/1.1 {status} Moved\r\nLocation: /moved\r\nContent-Length: 0\r\n"
                "Connection: close\r\n\r\n".encode()
            )
        else:
            conn.sendall(SSE_HEAD + b"data: here\n\n")

    with RawServer(handler) as server:
        result = run_cli("tail", server.url, "-X", "POST", "-d", "{}", "--count", "1", timeout=15)
        assert result.returncode == 0, result.stderr
        assert json_lines(result.stdout)[0]["data"] == "here"
        second = server.requests[1]
    assert second.split(b" ")[1] == b"/moved"
    # Fetch 4.4 step 12: 301, 302 and 303 turn a POST into a GET without its body;
    # 307 and 308 repeat the request as it was.
    if status in (301, 302, 303):
        assert second.startswith(b"GET ")
        assert b"content-type" not in second.lower()
    else:
        assert second.startswith(b"POST ")
        assert second.endswith(b"\r\n\r\n{}")


def test_a_redirect_loop_is_one_line_naming_the_urls() -> None:
    def handler(conn: socket.socket, request: bytes, number: int) -> None:
        target = "/b" if path_of(request) == "/events" else "/events"
        conn.sendall(
            f"HTTP/1.1 302 Found\r\nLocation: {target}\r\nContent-Length: 0\r\n"
            "Connection: close\r\n\r\n".encode()
        )

    with RawServer(handler) as server:
        result = run_cli("tail", server.url, "--timeout", "5", timeout=15)
        base = server.url[: -len("/events")]
    assert result.returncode == ExitCode.ERROR
    line = one_line(result.stderr)
    assert f"redirect loop: {base}/events -> {base}/b -> {base}/events" in line


def test_a_redirect_chain_has_a_hop_limit() -> None:
    def handler(conn: socket.socket, request: bytes, number: int) -> None:
        conn.sendall(
            f"HTTP/1.1 307 Again\r\nLocation: /hop{number}\r\nContent-Length: 0\r\n"
            "Connection: close\r\n\r\n".encode()
        )

    with RawServer(handler) as server:
        result = run_cli("tail", server.url, "--timeout", "10", timeout=20)
        hops = len(server.requests)
    assert result.returncode == ExitCode.ERROR
    assert "more than 20 redirects" in one_line(result.stderr)
    assert hops == 21


def test_the_mime_type_check_ignores_case_and_allows_parameters() -> None:
    def handler(conn: socket.socket, request: bytes, number: int) -> None:
        conn.sendall(
            SSE_HEAD.replace(b"text/event-stream", b"Text/Event-Stream ; charset=UTF-8")
            + b"data: yes\n\n"
        )

    with RawServer(handler) as server:
        result = run_cli("tail", server.url, "--no-reconnect", timeout=15)
    assert result.returncode == 0, result.stderr
    assert json_lines(result.stdout)[0]["data"] == "yes"


# --- issue 10.6: terminal injection ---


def test_control_characters_reach_the_terminal_escaped_in_pretty_output() -> None:
    attack = (
        b"event: t\x1b]0;pwned\x07\nid: \x1b[31mred\ndata: \x1b]52;c;aGk=\x07 \xc2\x9b2J\n\n"
        b'data: {"k": "\\u001b[2J \\u009b \\u202e \xc3\xa9"}\n\n'
    )

    def handler(conn: socket.socket, request: bytes, number: int) -> None:
        conn.sendall(SSE_HEAD + attack)

    with RawServer(handler) as server:
        result = run_cli("tail", server.url, "--no-reconnect", "-f", "pretty", timeout=15)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for control in ("\x1b", "\x07", "\x9b", "\u202e"):
        assert control not in out
    assert "t\\x1b]0;pwned\\x07" in out
    assert "id=\\x1b[31mred" in out
    assert "\\x1b]52;c;aGk=\\x07 \\x9b2J" in out
    # JSON data that decodes to controls is shown with JSON's escapes.
    assert '"\\u001b[2J \\u009b \\u202e \\u00e9"' in out


# --- issue 11.8 and 10.12: plain mistakes in the URL ---


def test_a_port_out_of_range_is_a_usage_error() -> None:
    result = run_cli("tail", "http://127.0.0.1:99999/", timeout=15)
    assert result.returncode == ExitCode.USAGE
    assert "ports are 1 to 65535" in one_line(result.stderr)


def test_a_url_without_a_scheme_gets_http() -> None:
    def handler(conn: socket.socket, request: bytes, number: int) -> None:
        conn.sendall(SSE_HEAD + b"data: plain\n\n")

    with RawServer(handler) as server:
        bare = server.url.removeprefix("http://")
        result = run_cli("tail", bare, "--count", "1", timeout=15)
    assert result.returncode == 0, result.stderr
    assert json_lines(result.stdout)[0]["data"] == "plain"


# --- issue 11.11: credentials in the URL ---


def test_credentials_in_the_url_are_redacted_in_the_recording_and_status_lines(
    tmp_path: Path,
) -> None:
    def handler(conn: socket.socket, request: bytes, number: int) -> None:
        if number == 1:
            conn.sendall(SSE_HEAD + b"retry: 1\n\ndata: x\n\n")
        else:
            conn.sendall(END)

    record = tmp_path / "rec.jsonl"
    with RawServer(handler) as server:
        url = server.url.replace("http://", "http://user:s3cret@")
        result = run_cli("tail", url, "--record", str(record), timeout=15)
        sent = server.header(0, "Authorization")
    assert result.returncode == 0, result.stderr
    assert sent is not None
    assert sent.startswith("Basic ")  # still used, just not shown
    header = json.loads(record.read_text().splitlines()[0])
    shown = header["upstream"] + header["request"]["path"]
    assert shown == server.url.replace("http://", "http://user:***@")
    assert ["authorization", "***"] in header["request"]["headers"]
    assert "s3cret" not in record.read_text()
    assert "s3cret" not in result.stderr
    assert "user:***@" in result.stderr


# --- issue 11.7: output that cannot be written ---


def _endless(conn: socket.socket, request: bytes, number: int) -> None:
    """An event every 5 ms until the client leaves (at most 10 s)."""
    conn.sendall(SSE_HEAD)
    conn.settimeout(1)
    for n in range(2000):
        conn.sendall(f"id: {n}\ndata: {'x' * 40} {n}\n\n".encode())
        time.sleep(0.005)


def test_tail_into_head_exits_0_for_pipefail_scripts() -> None:
    with RawServer(_endless) as server:
        command = " ".join(sseplay("tail", server.url, "--data-only", "-q"))
        result = subprocess.run(
            ["bash", "-c", f"set -o pipefail; {command} | head -3"],
            capture_output=True,
            text=True,
            timeout=20,
            cwd=ROOT,
        )
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 3
    assert result.stderr == ""


def test_stdout_on_a_full_disk_is_one_line_and_its_own_exit_code() -> None:
    with RawServer(_endless) as server, open("/dev/full", "w") as full:
        result = subprocess.run(
            sseplay("tail", server.url, "-q"),
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=20,
            cwd=ROOT,
        )
    assert result.returncode == ExitCode.OUTPUT_FAILED
    assert "cannot write the output: No space left on device" in one_line(result.stderr)


def test_a_recording_on_a_full_disk_is_one_line_and_its_own_exit_code() -> None:
    with RawServer(_endless) as server:
        result = run_cli("tail", server.url, "-q", "--record", "/dev/full", timeout=20)
    assert result.returncode == ExitCode.OUTPUT_FAILED
    assert "--record /dev/full: No space left on device" in one_line(result.stderr)


def test_a_recording_cut_short_holds_only_whole_lines(tmp_path: Path) -> None:
    """A file size limit (RLIMIT_FSIZE) stands in for a full disk: writes past it fail
    with EFBIG after writing what fits, as a filling disk does."""
    import resource
    import signal

    limit = 3000

    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write, not the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    record = tmp_path / "rec.jsonl"
    with RawServer(_endless) as server:
        result = subprocess.run(
            sseplay("tail", server.url, "-q", "--record", str(record)),
            capture_output=True,
            text=True,
            timeout=20,
            cwd=ROOT,
            preexec_fn=limit_file_size,
        )
    assert result.returncode == ExitCode.OUTPUT_FAILED, result.stderr
    assert "in whole lines" in one_line(result.stderr)
    text = record.read_text()
    assert 0 < len(text) <= limit
    assert text.endswith("\n")
    lines = [json.loads(line) for line in text.splitlines()]
    assert len(lines) > 2
    events = [event.data.split()[-1] for _, event in recorded_events(record)]
    assert events == [str(n) for n in range(len(events))]
    assert len(events) > 2
