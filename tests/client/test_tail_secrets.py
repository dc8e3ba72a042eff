"""Secrets given to ``sseplay tail`` stay out of what it prints and writes (issue 23):
a token in the URL's query, and credential headers on a redirect to another origin."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from sseplay.redaction import redact_url
from tests.conftest import SSE_HEAD, RawServer, run_cli

END = b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"


def _one_event_then_204(conn: socket.socket, request: bytes, number: int) -> None:
    if number == 1:
        conn.sendall(SSE_HEAD + b"retry: 1\n\ndata: x\n\n")
    else:
        conn.sendall(END)


def _request_target(request: bytes) -> str:
    return request.split(b" ")[1].decode()


# --- a token in the URL's query ---


def test_a_token_in_the_query_is_redacted_in_status_lines_and_the_recording(
    tmp_path: Path,
) -> None:
    record = tmp_path / "rec.jsonl"
    query = "?token=s3cret-t0k&Api_Key=k3y-v4lue&access_token=acc3ss&KEY=plainkey&room=7"
    with RawServer(_one_event_then_204) as server:
        result = run_cli("tail", server.url + query, "--record", str(record), timeout=15)
        first = server.requests[0]
    assert result.returncode == 0, result.stderr
    # The server still gets the real values: only what tail shows is redacted.
    assert _request_target(first) == "/events" + query
    written = record.read_text()
    shown = f"{server.url}?token=***&Api_Key=***&access_token=***&KEY=***&room=7"
    request = json.loads(written.splitlines()[0])["request"]  # the recording's request
    upstream = json.loads(written.splitlines()[0])["upstream"]
    assert f"{upstream}{request['path']}?{request['query']}" == shown
    assert f"connected to {shown}" in result.stderr
    for secret in ("s3cret-t0k", "k3y-v4lue", "acc3ss", "plainkey"):
        assert secret not in written
        assert secret not in result.stderr


def test_a_token_is_redacted_in_a_redirect_trail_and_a_usage_error() -> None:
    def handler(conn: socket.socket, request: bytes, number: int) -> None:
        target = "/b?token=l00p" if _request_target(request).startswith("/events") else "/events"
        conn.sendall(
            f"HTTP/1.1 302 Found\r\nLocation: {target}\r\nContent-Length: 0\r\n"
            "Connection: close\r\n\r\n".encode()
        )

    with RawServer(handler) as server:
        looped = run_cli("tail", server.url + "?access_token=f1rst", timeout=15)
    assert "redirect loop" in looped.stderr
    assert "access_token=***" in looped.stderr
    assert "token=***" in looped.stderr
    assert "f1rst" not in looped.stderr
    assert "l00p" not in looped.stderr
    bad = run_cli("tail", "ftp://127.0.0.1/events?token=n0tsent", timeout=15)
    assert bad.returncode == 2
    assert "token=***" in bad.stderr
    assert "n0tsent" not in bad.stderr


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://h/e?token=a&x=1#frag", "http://h/e?token=***&x=1#frag"),
        ("http://h/e?x=1&TOKEN=a", "http://h/e?x=1&TOKEN=***"),
        ("http://h/e?%74oken=a", "http://h/e?%74oken=***"),  # a percent-encoded name
        ("http://h/e?api_key=a;key=b", "http://h/e?api_key=***;key=***"),
        ("http://h/e?tokens=a&monkey=b&token", "http://h/e?tokens=a&monkey=b&token"),
        ("http://h/e#access_token=a", "http://h/e#access_token=***"),  # OAuth's fragment
        ("http://u:p@h/e?key=a", "http://u:***@h/e?key=***"),
        ("http://h/e?token=", "http://h/e?token="),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


# --- credential headers on a redirect to another origin ---

CREDENTIALS = {
    "Cookie": "session=c00kie",
    "X-Api-Key": "x-ap1-key",
    "Api-Key": "ap1-key",
    "Proxy-Authorization": "Basic cHJveHk6cHc=",
    "X-Auth-Token": "x-auth-t0k",
}


def _headers_args() -> list[str]:
    args = ["--token", "b3arer", "-H", "X-Tenant: blue"]
    for name, value in CREDENTIALS.items():
        args += ["-H", f"{name}: {value}"]
    return args


def test_credential_headers_are_not_sent_to_another_origin() -> None:
    def second(conn: socket.socket, request: bytes, number: int) -> None:
        conn.sendall(SSE_HEAD + b"data: here\n\n")

    with RawServer(second) as other:

        def first(conn: socket.socket, request: bytes, number: int) -> None:
            conn.sendall(
                f"HTTP/1.1 307 Moved\r\nLocation: {other.url}\r\nContent-Length: 0\r\n"
                "Connection: close\r\n\r\n".encode()
            )

        with RawServer(first) as server:
            # Two listeners on 127.0.0.1 with different ports: different origins.
            assert server.port != other.port
            result = run_cli("tail", server.url, "--count", "1", *_headers_args(), timeout=15)
            assert result.returncode == 0, result.stderr
            for name, value in CREDENTIALS.items():  # the first origin got them all
                assert server.header(0, name) == value
            assert server.header(0, "Authorization") == "Bearer b3arer"
            received = {
                name: other.header(0, name) for name in [*CREDENTIALS, "Authorization", "X-Tenant"]
            }
    assert received == dict.fromkeys([*CREDENTIALS, "Authorization"]) | {"X-Tenant": "blue"}
    assert "not sent to another origin" in result.stderr
    assert "Cookie" in result.stderr


def test_credential_headers_follow_a_redirect_within_the_origin() -> None:
    def handler(conn: socket.socket, request: bytes, number: int) -> None:
        if _request_target(request) == "/events":
            conn.sendall(
                b"HTTP/1.1 302 Found\r\nLocation: /moved\r\nContent-Length: 0\r\n"
                b"Connection: close\r\n\r\n"
            )
        else:
            conn.sendall(SSE_HEAD + b"data: here\n\n")

    with RawServer(handler) as server:
        result = run_cli("tail", server.url, "--count", "1", *_headers_args(), timeout=15)
        assert result.returncode == 0, result.stderr
        for name, value in CREDENTIALS.items():
            assert server.header(1, name) == value
        assert server.header(1, "Authorization") == "Bearer b3arer"
