"""--token, the Host check against DNS rebinding, credentialed CORS: real servers, real sockets."""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import sseplay.http.access
import sseplay.server
from sseplay import Stream
from sseplay.client.api import tail
from sseplay.config import ServerConfig
from sseplay.errors import StreamError, UsageError
from sseplay.server import Server
from tests.conftest import SAMPLES, run_cli

SCORES = str(SAMPLES / "scores.json")  # three events
TOKEN = "s3cret-Token_42"


@pytest.fixture
def guarded() -> Iterator[Server]:
    config = ServerConfig(token=TOKEN)
    with Server(Stream.from_file(SCORES, interval=0), config=config) as server:
        yield server


def base(server: Server) -> str:
    return server.url.rsplit("/", 1)[0]


def raw_get(port: int, target: str, headers: str = "Host: 127.0.0.1\r\n") -> bytes:
    """One request over a raw socket; the whole answer, read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(f"GET {target} HTTP/1.1\r\n{headers}Connection: close\r\n\r\n".encode())
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
            assert len(received) < 1 << 20
    return received


def port_of(server: Server) -> int:
    return int(server.url.split(":")[2].split("/")[0])


WRONG = [
    ({}, "no token"),
    ({"Authorization": "Bearer wrong"}, "a wrong token"),
    ({"Authorization": f"Basic {TOKEN}"}, "no token"),
    ({"Authorization": f"Bearer {TOKEN}x"}, "a wrong token"),
]


@pytest.mark.parametrize(("headers", "why"), WRONG)
def test_a_missing_or_wrong_token_is_401_with_one_line_and_nothing_streamed(
    guarded: Server, headers: dict[str, str], why: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "sseplay")
    for url in (guarded.url, base(guarded) + "/"):
        response = httpx.get(url, headers=headers, timeout=10)
        assert response.status_code == 401
        assert response.headers["content-type"] == "text/plain; charset=utf-8"
        assert response.headers["www-authenticate"] == 'Bearer realm="sseplay"'
        assert response.text == (
            f"sseplay: {why}: send the server's --token as 'Authorization: Bearer TOKEN' "
            "or as ?token=TOKEN\n"
        )
        assert "data:" not in response.text
    assert guarded.connections == 0
    assert f"GET /events with {why}: answered 401" in caplog.text
    # Logged without the token, the right one or the one presented.
    assert TOKEN not in caplog.text
    assert "wrong" not in caplog.text.replace("a wrong token", "")


def test_a_wrong_token_in_the_query_is_401_and_not_logged(
    guarded: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "sseplay")
    response = httpx.get(guarded.url + "?token=guess-1234", timeout=10)
    assert response.status_code == 401
    assert response.text.startswith("sseplay: a wrong token:")
    assert "guess-1234" not in caplog.text
    assert TOKEN not in caplog.text


def test_the_token_works_as_a_bearer_header_and_as_a_query_parameter(guarded: Server) -> None:
    by_header = httpx.get(guarded.url, headers={"Authorization": f"bearer {TOKEN}"}, timeout=10)
    by_query = httpx.get(guarded.url, params={"token": TOKEN}, timeout=10)
    for response in (by_header, by_query):
        assert response.status_code == 200
        assert response.text.count("data: ") == 3
    # The viewer too.
    viewer = httpx.get(base(guarded) + "/", params={"token": TOKEN}, timeout=10)
    assert viewer.status_code == 200
    assert "Bearer" in viewer.text  # it passes the token on (the browser test runs it)


def test_healthz_tells_the_status_without_a_token_and_the_details_with_it(
    guarded: Server,
) -> None:
    url = base(guarded) + "/healthz"
    bare = httpx.get(url, timeout=10)
    assert bare.status_code == 200
    assert bare.json() == {"status": "ok"}
    detailed = httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert detailed.json()["streams"][0]["route"] == "/events"
    assert httpx.get(url, params={"token": TOKEN}, timeout=10).json()["connections"] == 0
    wrong = httpx.get(url, params={"token": "nope"}, timeout=10)
    assert wrong.status_code == 401


def test_the_token_is_compared_in_constant_time(
    guarded: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = sseplay.http.access.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(sseplay.http.access.hmac, "compare_digest", spy)
    assert httpx.get(guarded.url, params={"token": "x"}, timeout=10).status_code == 401
    assert compared == [(b"x", TOKEN.encode())]


def test_the_fast_write_path_still_serves_a_stream_behind_the_guard() -> None:
    config = ServerConfig(token=TOKEN, allowed_hosts=("example.test",))
    stream = Stream.from_file(SCORES, interval=30)
    with Server(stream, config=config) as server:
        port = port_of(server)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(f"GET /events?token={TOKEN} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
            received = b""
            while b"data:" not in received:
                received += conn.recv(65536)
            assert server._hub is not None
            (listener,) = server._hub.listeners
            assert listener.outlet.direct


def test_tail_token_sends_it(guarded: Server) -> None:
    events = list(tail(guarded.url, token=TOKEN, count=3))
    assert [event.id for event in events] == ["1", "2", "3"]
    with pytest.raises(StreamError, match="401 Unauthorized"):
        list(tail(guarded.url, count=1))
    with pytest.raises(
        UsageError, match=re.escape("use --token or -H 'Authorization: ...', not both")
    ):
        tail(guarded.url, token=TOKEN, headers={"Authorization": "Bearer x"})
    result = run_cli("tail", guarded.url, "--token", TOKEN, "--count", "3", "--data-only", "-q")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 3
    refused = run_cli("tail", guarded.url, "--count", "1", "-q")
    assert refused.returncode == 1
    assert len(refused.stderr.splitlines()) == 1
    assert "401 Unauthorized" in refused.stderr


def test_a_bad_token_value_is_a_usage_error() -> None:
    for token in ("", "two words", "a+b", "é"):
        with pytest.raises(UsageError, match="--token may hold only"):
            ServerConfig(token=token)


def test_a_non_loopback_bind_without_token_warns_that_anyone_can_read(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The tests bind 127.0.0.1 only: the address asked for is swapped at the socket.
    real_bind = sseplay.server.bind
    monkeypatch.setattr(sseplay.server, "bind", lambda host, port: real_bind("127.0.0.1", port))
    caplog.set_level(logging.WARNING, "sseplay")
    with Server(Stream.from_file(SCORES), config=ServerConfig(host="0.0.0.0")):
        pass
    assert (
        "listening on 0.0.0.0 without --token: every stream is readable by anyone who can "
        "reach this port" in caplog.text
    )
    caplog.clear()
    with Server(Stream.from_file(SCORES), config=ServerConfig(host="0.0.0.0", token=TOKEN)):
        pass
    assert "without --token" not in caplog.text
    assert "the token crosses the network in clear text" in caplog.text
    caplog.clear()
    with Server(Stream.from_file(SCORES), config=ServerConfig(host="127.0.0.1")):
        pass
    assert "listening on" not in caplog.text


LOOPBACK_HOSTS = [
    "localhost",
    "localhost:8000",
    "LOCALHOST.",
    "127.0.0.1",
    "127.0.0.1:1",
    "127.8.9.10:80",
    "[::1]",
    "[::1]:8000",
]
REBINDING_HOSTS = [
    "evil.example",
    "evil.example:8000",
    "127.0.0.1.nip.io",
    "localhost.evil.example",
    "192.168.1.5",
    "[fe80::1]:80",
    "0.0.0.0",
]


def test_a_loopback_server_answers_loopback_host_names_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "sseplay")
    with Server(Stream.from_file(SCORES, interval=0)) as server:
        port = port_of(server)
        for host in LOOPBACK_HOSTS:
            answer = raw_get(port, "/healthz", f"Host: {host}\r\n")
            assert answer.startswith(b"HTTP/1.1 200 "), (host, answer)
        for host in REBINDING_HOSTS:
            for target in ("/events", "/", "/healthz"):
                answer = raw_get(port, target, f"Host: {host}\r\n")
                head, _, body = answer.partition(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 421 "), (host, answer)
                name = host.rsplit(":", 1)[0].strip("[]") if host.count(":") == 1 else host
                name = name.strip("[]").rsplit("]", 1)[0] if host.startswith("[") else name
                assert body.decode() == (
                    f"sseplay: this server does not answer for the host {name!r}; "
                    f"start it with --allowed-host {name} to allow it\n"
                )
                assert b"data:" not in body
        assert server.connections == 0
    assert "with Host 'evil.example': answered 421" in caplog.text


def test_allowed_host_lets_that_name_in_and_star_any(caplog: pytest.LogCaptureFixture) -> None:
    config = ServerConfig(allowed_hosts=("Evil.Example", "[fd00::1]"))
    with Server(Stream.from_file(SCORES, interval=0), config=config) as server:
        port = port_of(server)
        for host in ("evil.example:8000", "EVIL.EXAMPLE", "[fd00::1]:80", "localhost"):
            assert raw_get(port, "/events", f"Host: {host}\r\n").startswith(b"HTTP/1.1 200 ")
        assert raw_get(port, "/events", "Host: other.example\r\n").startswith(b"HTTP/1.1 421 ")
    with Server(
        Stream.from_file(SCORES, interval=0), config=ServerConfig(allowed_hosts=("*",))
    ) as server:
        assert raw_get(port_of(server), "/events", "Host: any.example\r\n").startswith(
            b"HTTP/1.1 200 "
        )
    with pytest.raises(
        UsageError, match=re.escape("--allowed-host 'http://x.test' is not a host name")
    ):
        ServerConfig(allowed_hosts=("http://x.test",))


def test_the_host_check_and_the_token_through_the_command() -> None:
    result = run_cli("serve", SCORES, "--allowed-host", "a:b:c")
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1


def _preflight_and_get(url: str, origin: str) -> tuple[httpx.Response, httpx.Response]:
    preflight = httpx.options(
        url,
        headers={"Origin": origin, "Access-Control-Request-Method": "GET"},
        timeout=10,
    )
    response = httpx.get(url, headers={"Origin": origin}, timeout=10)
    return preflight, response


def test_cors_allows_credentials_for_listed_origins_and_never_with_star() -> None:
    page = "http://127.0.0.1:3000"
    config = ServerConfig(cors=(page,))
    with Server(Stream.from_file(SCORES, interval=0), config=config) as server:
        preflight, response = _preflight_and_get(server.url, page)
        for answer in (preflight, response):
            assert answer.headers["access-control-allow-origin"] == page
            assert answer.headers["access-control-allow-credentials"] == "true"
        _, other = _preflight_and_get(server.url, "http://127.0.0.1:4000")
        # No Allow-Origin for an origin not listed: the browser keeps the answer from it
        # (Starlette sends Allow-Credentials regardless, which alone allows nothing).
        assert "access-control-allow-origin" not in other.headers
    with Server(Stream.from_file(SCORES, interval=0)) as server:  # any origin: "*"
        preflight, response = _preflight_and_get(server.url, page)
        for answer in (preflight, response):
            assert answer.headers["access-control-allow-origin"] == "*"
            assert "access-control-allow-credentials" not in answer.headers


def test_a_401_carries_the_cors_headers_of_a_listed_origin() -> None:
    page = "http://127.0.0.1:3000"
    config = ServerConfig(cors=(page,), token=TOKEN)
    with Server(Stream.from_file(SCORES, interval=0), config=config) as server:
        response: Any = httpx.get(server.url, headers={"Origin": page}, timeout=10)
        assert response.status_code == 401
        assert response.headers["access-control-allow-origin"] == page
