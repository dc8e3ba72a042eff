"""The recording proxy's upstream reader (``sseplay.http.upstream``): the framings an
upstream may use (chunked, Content-Length, none), interim responses, HEAD, an upstream that
stops halfway or answers garbage, TLS, and back-pressure from a client that stops reading.
Every upstream here is a hand-written server on a real socket (``RawServer``), so each
byte and each pause is the test's."""

from __future__ import annotations

import socket
import ssl
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sseplay.http.proxy_server import RecordingProxy
from sseplay.http.tls import TlsFiles, make_self_signed
from sseplay.http.upstream import Upstream
from tests.conftest import RawServer
from tests.http.recordings_support import only_recording
from tests.support import wait_until


@pytest.fixture
def recorded(tmp_path: Path) -> Path:
    return tmp_path / "rec"


def base(server: RawServer) -> str:
    return server.url.removesuffix("/events")


def pieces_of(url: str, method: str = "GET") -> tuple[httpx.Response, list[bytes]]:
    with httpx.Client(timeout=10) as client, client.stream(method, url) as response:
        return response, list(response.iter_raw())


def writes(*parts: bytes, pause: float = 0.05) -> RawServer:
    """An upstream that writes ``parts`` one by one, ``pause`` apart, then closes."""

    def handler(conn: socket.socket, request: bytes, number: int) -> None:
        for part in parts:
            conn.sendall(part)
            time.sleep(pause)

    return RawServer(handler)


STREAM_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"


def test_the_request_is_written_with_the_upstreams_host_and_base_path() -> None:
    upstream = Upstream("https", "api.example.com", None, "/v1/")
    request = upstream.request(
        "POST",
        b"/chat?stream=1",
        [(b"Host", b"proxy:1"), (b"x-a", b"1"), (b"Content-Length", b"99"), (b"x-b", b"2")],
        b'{"a":1}',
    )
    assert request == (
        b"POST /v1/chat?stream=1 HTTP/1.1\r\nhost: api.example.com\r\n"
        b"content-length: 7\r\nx-a: 1\r\nx-b: 2\r\n\r\n"
        b'{"a":1}'
    )
    ipv6 = Upstream("http", "::1", 8080, "")
    assert ipv6.request("GET", b"/", [], b"") == b"GET / HTTP/1.1\r\nhost: [::1]:8080\r\n\r\n"
    assert ipv6.port == 8080
    assert Upstream("https", "h", None, "").port == 443
    # An empty POST still says so, as httpx did.
    assert b"content-length: 0\r\n" in ipv6.request("POST", b"/", [], b"")


def test_a_chunked_upstream_whose_chunks_straddle_reads(recorded: Path) -> None:
    parts = (
        STREAM_HEAD + b"transfer-encoding: chunked\r\n\r\n9\r\ndata: a\n\n\r\n",
        b"a\r\ndata: ",  # a chunk's size line and half its data
        b"bcd\n\r\n",
        b"1\r\n\n\r\n0\r\n\r\n",
    )
    with writes(*parts) as upstream, RecordingProxy(base(upstream), recorded) as proxy:
        response, pieces = pieces_of(proxy.url + "/events")
    assert response.status_code == 200
    assert b"".join(pieces) == b"data: a\n\ndata: bcd\n\n"
    assert b"data: a\n\n" in pieces  # sent on before the rest arrived
    exchange = only_recording(recorded)
    assert exchange.complete
    assert [block.raw for block in exchange.blocks] == [b"data: a\n\n", b"data: bcd\n\n"]
    assert sum(read.size for read in exchange.reads) == len(b"data: a\n\ndata: bcd\n\n")


def test_a_content_length_upstream_keeps_its_length_and_reaches_its_end(recorded: Path) -> None:
    body = b"data: one\n\ndata: two\n\n"
    parts = (STREAM_HEAD + b"content-length: %d\r\n\r\n" % len(body) + body[:11], body[11:])
    with writes(*parts, pause=0.2) as upstream, RecordingProxy(base(upstream), recorded) as proxy:
        response, pieces = pieces_of(proxy.url + "/events")
    assert response.headers["content-length"] == str(len(body))
    assert pieces == [body[:11], body[11:]]  # the pause between them kept
    exchange = only_recording(recorded)
    assert exchange.complete
    assert [block.raw for block in exchange.blocks] == [b"data: one\n\n", b"data: two\n\n"]


def test_a_body_without_length_ends_with_the_connection_and_is_complete(recorded: Path) -> None:
    parts = (b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nhello ", b"world")
    with writes(*parts) as upstream, RecordingProxy(base(upstream), recorded) as proxy:
        _response, pieces = pieces_of(proxy.url + "/events")
    assert b"".join(pieces) == b"hello world"
    exchange = only_recording(recorded)
    assert exchange.complete
    assert b"".join(piece.raw for piece in exchange.body) == b"hello world"


@pytest.mark.parametrize(
    "framing",
    [b"content-length: 100\r\n\r\n", b"transfer-encoding: chunked\r\n\r\n10\r\n"],
    ids=["content-length", "chunked"],
)
def test_an_upstream_that_closes_mid_body_cuts_the_client_short(
    recorded: Path, framing: bytes
) -> None:
    parts = (STREAM_HEAD + framing + b"data: cut\n\n",)
    with writes(*parts) as upstream, RecordingProxy(base(upstream), recorded) as proxy:
        got: list[bytes] = []
        with (
            pytest.raises(httpx.RemoteProtocolError),  # as the upstream cut it
            httpx.Client(timeout=10) as client,
            client.stream("GET", proxy.url + "/events") as response,
        ):
            got.extend(response.iter_raw())
    assert b"".join(got) == b"data: cut\n\n"
    exchange = only_recording(recorded)
    assert exchange.end is not None
    assert exchange.end.startswith("upstream failed: the upstream closed the connection")
    assert [block.raw for block in exchange.blocks] == [b"data: cut\n\n"]


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (b"", "closed the connection without a response"),
        (b"SPDY/9 hello\r\n\r\n", "not valid HTTP/1.1"),
    ],
    ids=["nothing", "garbage"],
)
def test_no_valid_response_is_a_502_json_line(recorded: Path, answer: bytes, said: str) -> None:
    with writes(answer) as upstream, RecordingProxy(base(upstream), recorded) as proxy:
        response = httpx.get(proxy.url + "/events", timeout=10)
        assert response.status_code == 502
        assert said in response.json()["error"]
        assert response.text.count("\n") == 1
    end = only_recording(recorded).end
    assert end is not None
    assert said in end


def test_an_interim_100_continue_is_skipped_for_the_final_answer(recorded: Path) -> None:
    parts = (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok",)
    with writes(*parts) as upstream, RecordingProxy(base(upstream), recorded) as proxy:
        response = httpx.post(proxy.url + "/things", content=b"x", timeout=10)
    assert (response.status_code, response.content) == (201, b"ok")
    exchange = only_recording(recorded)
    assert exchange.response is not None
    assert exchange.response.status == 201


def test_head_is_answered_with_the_head_alone_though_a_length_is_announced(
    recorded: Path,
) -> None:
    # The upstream keeps the connection open after the head: a reader that waited for
    # the 1,000 announced bytes would hang here.
    parts = (b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 1000\r\n\r\n",)
    with writes(*parts, pause=5) as upstream, RecordingProxy(base(upstream), recorded) as proxy:
        response = httpx.head(proxy.url + "/file", timeout=3)
        assert response.status_code == 200
        assert response.headers["content-length"] == "1000"
        assert response.content == b""
        assert upstream.requests[0].startswith(b"HEAD /file HTTP/1.1\r\n")
    assert only_recording(recorded).complete


@pytest.fixture
def tls_pair() -> Iterator[TlsFiles]:
    files = make_self_signed("127.0.0.1")
    yield files
    files.remove()


def test_an_https_upstream_is_read_through_tls_and_its_certificate_checked(
    recorded: Path, tls_pair: TlsFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_pair.certfile, tls_pair.keyfile)
    body = b"data: secret-free\n\n"

    def handler(conn: socket.socket, request: bytes, number: int) -> None:
        conn.sendall(STREAM_HEAD + b"content-length: %d\r\n\r\n" % len(body) + body)

    with RawServer(handler, tls=context) as upstream:
        https = base(upstream)
        # Not trusted: the certificate is checked, and the 502 says why.
        with RecordingProxy(https, recorded) as proxy:
            refused = httpx.get(proxy.url + "/events", timeout=10)
        assert refused.status_code == 502
        assert "CERTIFICATE_VERIFY_FAILED" in refused.json()["error"]
        # Trusted through SSL_CERT_FILE, as httpx trusts it.
        assert tls_pair.ca_file is not None
        monkeypatch.setenv("SSL_CERT_FILE", str(tls_pair.ca_file))
        with RecordingProxy(https, recorded / "trusted") as proxy:
            response, pieces = pieces_of(proxy.url + "/events")
    assert response.status_code == 200
    assert b"".join(pieces) == body
    assert only_recording(recorded / "trusted").complete


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_a_client_that_stops_reading_pauses_the_upstream_then_gets_every_byte(
    recorded: Path, chunked: bool
) -> None:
    """Back-pressure, on both write paths (chunked: straight to the client's transport;
    Content-Length: through ASGI send): while the client reads nothing, the proxy stops
    reading the upstream, which can send only what the sockets' buffers hold, and the
    proxy's memory stays small; then every byte comes, in order."""
    event = b"data: " + b"x" * 1000 + b"\n\n"
    chunk = event * 64
    total = 48 << 20  # far past every socket buffer on the way
    sent = [0]
    done = threading.Event()

    def handler(conn: socket.socket, request: bytes, number: int) -> None:
        framing = b"transfer-encoding: chunked" if chunked else b"content-length: %d" % total
        conn.sendall(STREAM_HEAD + framing + b"\r\n\r\n")
        conn.settimeout(30)
        while sent[0] < total:
            part = chunk[: total - sent[0]]
            conn.sendall(b"%x\r\n%b\r\n" % (len(part), part) if chunked else part)
            sent[0] += len(part)
        if chunked:
            conn.sendall(b"0\r\n\r\n")
        done.set()

    tracemalloc.start()
    with RawServer(handler) as upstream, RecordingProxy(base(upstream), recorded) as proxy:
        held_before = tracemalloc.get_traced_memory()[0]
        host, port = proxy.url.removeprefix("http://").split(":")
        client = socket.create_connection((host, int(port)))
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
        client.sendall(b"GET /big HTTP/1.1\r\nhost: x\r\n\r\n")
        # The upstream fills the buffers, then stalls: its count stops growing.
        wait_until(lambda: sent[0] > 1 << 20, timeout=10)
        previous = -1
        while sent[0] != previous:
            previous = sent[0]
            time.sleep(0.3)
        # What Python holds (the proxy's buffers: the kernel's are not counted) stays small.
        held = tracemalloc.get_traced_memory()[0] - held_before
        tracemalloc.stop()
        assert held < 4 << 20, f"{held} bytes held for a client reading none"
        assert not done.is_set()
        client.settimeout(10)
        answer = bytearray()
        while not answer.endswith(b"0\r\n\r\n") if chunked else len(answer) < total:
            data = client.recv(1 << 20)
            assert data, f"the proxy closed after {len(answer)} bytes"
            answer += data
            if not chunked and len(answer) >= total:  # the head's length is known once it came
                head = answer.partition(b"\r\n\r\n")[0]
                if len(answer) - len(head) - 4 == total:
                    break
        client.close()
        assert done.wait(10)
    body = bytes(answer).partition(b"\r\n\r\n")[2]
    if chunked:
        body = b"".join(_dechunk(body))
    assert len(body) == total
    assert body == (chunk * (total // len(chunk) + 1))[:total], "the bytes in their order"
    exchange = only_recording(recorded)
    assert exchange.complete
    assert sum(read.size for read in exchange.reads) == total


def _dechunk(body: bytes) -> Iterator[bytes]:
    at = 0
    while True:
        end = body.index(b"\r\n", at)
        size = int(body[at:end], 16)
        if size == 0:
            return
        yield body[end + 2 : end + 2 + size]
        at = end + 2 + size + 2
