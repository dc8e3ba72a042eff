"""``sseplay tail`` names itself in User-Agent (issue 23), and a user's -H wins."""

from __future__ import annotations

import socket

import sseplay
from sseplay.client.api import tail
from tests.conftest import SSE_HEAD, RawServer, run_cli


def _one_event(conn: socket.socket, request: bytes, number: int) -> None:
    conn.sendall(SSE_HEAD + b"data: x\n\n")


def _user_agents(request: bytes) -> list[bytes]:
    head = request.split(b"\r\n\r\n")[0].split(b"\r\n")[1:]
    return [
        line.split(b":", 1)[1].strip() for line in head if line.lower().startswith(b"user-agent:")
    ]


def test_tail_sends_sseplay_and_its_version_as_user_agent() -> None:
    with RawServer(_one_event) as server:
        result = run_cli("tail", server.url, "--count", "1", timeout=15)
        request = server.requests[0]
    assert result.returncode == 0, result.stderr
    assert _user_agents(request) == [f"sseplay/{sseplay.__version__}".encode()]


def test_the_library_sends_it_too_and_a_user_agent_header_wins() -> None:
    with RawServer(_one_event) as server:
        events = list(tail(server.url, count=1, headers={"user-agent": "mine/2.0 (ci)"}))
        request = server.requests[0]
    assert [event.data for event in events] == ["x"]
    assert _user_agents(request) == [b"mine/2.0 (ci)"]


def test_a_user_agent_given_with_h_wins() -> None:
    with RawServer(_one_event) as server:
        result = run_cli("tail", server.url, "--count", "1", "-H", "User-Agent: curl/8", timeout=15)
        request = server.requests[0]
    assert result.returncode == 0, result.stderr
    assert _user_agents(request) == [b"curl/8"]
