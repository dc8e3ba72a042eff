"""``sseplay record``: a reverse proxy that forwards every request to one upstream and
records each exchange into a directory as it goes (issue 24; the format is
``sseplay.exchange``'s).

Nothing is held on the way: each piece httpx reads from the upstream is written to the
client as it comes (no read-ahead, no line assembly), compressed bodies pass through as
they are, and the recording is made from a decoded copy after the client has its bytes.
TCP_NODELAY is on for both sockets: uvloop sets it on every TCP transport
(``TCPTransport.new`` calls ``uv_tcp_nodelay``), asyncio on every TCP socket it wraps
(``base_events._set_nodelay``), and the upstream connection asks for it once more through
httpx's ``socket_options``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path

import httpx
from httpx._decoders import (  # see sseplay/client/CONTRACT.md
    SUPPORTED_DECODERS,
    ContentDecoder,
    IdentityDecoder,
    MultiDecoder,
)
from starlette.types import Message, Receive, Scope, Send

from sseplay.errors import UsageError
from sseplay.exchange import (
    BlockSplitter,
    ExchangeWriter,
    RecordedRequest,
    is_stream_type,
    recording_name,
    unique_path,
)
from sseplay.recording import json_line
from sseplay.redaction import redact_headers, redact_query, redact_url

logger = logging.getLogger("sseplay.record")

# How long connecting to the upstream may take; reading a body has no limit (a stream may
# pause for as long as it likes).
CONNECT_TIMEOUT = 10.0
# Ctrl-C and SIGTERM stop the proxy within a second even with streams open.
GRACEFUL_SHUTDOWN_SECONDS = 0.5
# Hop-by-hop fields (RFC 9110 section 7.6.1): they describe one connection, never the
# next; so are the fields named in Connection. Host is the upstream's (RFC 9110 7.2).
HOP_BY_HOP = frozenset(
    {"connection", "proxy-connection", "keep-alive", "te", "transfer-encoding", "upgrade"}
)
PROXY_STOPPED = "proxy stopped"
CLIENT_LEFT = "client left"


def check_upstream(upstream: str) -> str:
    """The upstream base URL without a trailing slash; a usage error unless http(s)."""
    try:
        url = httpx.URL(upstream)
    except httpx.InvalidURL as error:
        raise UsageError(f"UPSTREAM {redact_url(upstream)!r}: {error}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise UsageError(
            f"UPSTREAM {redact_url(upstream)!r} is not an http:// or https:// URL: "
            "write it like https://api.openai.com or http://127.0.0.1:9000"
        )
    if url.query or url.fragment:
        raise UsageError(
            f"UPSTREAM {redact_url(upstream)!r}: give the base URL without ?query or #fragment"
        )
    return upstream.rstrip("/")


def _without_hop_by_hop(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    pairs = [(name.lower(), value) for name, value in headers]
    named = {
        token.strip().lower()
        for name, value in pairs
        if name == b"connection"
        for token in value.decode("latin-1").split(",")
    }
    return [
        (name, value)
        for name, value in pairs
        if name.decode("latin-1") not in HOP_BY_HOP and name.decode("latin-1") not in named
    ]


def _text_pairs(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    # ISO-8859-1 maps every byte to one character, so a value survives the round trip.
    return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in headers]


def content_decoder(headers: httpx.Headers) -> tuple[ContentDecoder, list[str]]:
    """The decoder of a body in its Content-Encoding (as httpx builds it for
    ``Response.aiter_bytes``), and the codings it does not know (left encoded)."""
    codings = [c.strip().lower() for c in headers.get_list("content-encoding", split_commas=True)]
    unknown = [c for c in codings if c and c not in SUPPORTED_DECODERS]
    decoders = [SUPPORTED_DECODERS[c]() for c in codings if c in SUPPORTED_DECODERS]
    if unknown or not decoders:
        return IdentityDecoder(), unknown
    return (decoders[0] if len(decoders) == 1 else MultiDecoder(children=decoders)), unknown


class _Recording:
    """One exchange's recording: the writer, the decoder of its copy of the body and, for
    an event stream, the block splitter. A file that cannot be written is logged once and
    given up; the exchange itself goes on."""

    def __init__(
        self, path: Path, upstream: str, request: RecordedRequest, redact: Sequence[str]
    ) -> None:
        self.path = path
        self.redact = redact
        self.started = time.monotonic()
        self.writer: ExchangeWriter | None = None
        self.decoder: ContentDecoder = IdentityDecoder()
        self.splitter: BlockSplitter | None = None
        self.ended: str | None = None  # how it ended, once its end line is written
        self._try(lambda: setattr(self, "writer", ExchangeWriter(path, upstream, request)))

    def offset(self) -> float:
        return time.monotonic() - self.started

    def _try(self, write: Callable[[], object]) -> None:
        try:
            write()
        except OSError as error:
            logger.error("%s: cannot write the recording: %s", self.path, error.strerror)
            self._drop()

    def _drop(self) -> None:
        writer, self.writer = self.writer, None
        if writer is not None:
            with contextlib.suppress(OSError):  # already reported
                writer.close()

    def response(self, status: int, headers: httpx.Headers) -> None:
        writer = self.writer
        if writer is None:
            return
        self.decoder, unknown = content_decoder(headers)
        if unknown:
            logger.warning(
                "%s: Content-Encoding %s is not one sseplay decodes: recorded encoded",
                self.path,
                ", ".join(unknown),
            )
        if is_stream_type(headers.get("content-type")):
            self.splitter = BlockSplitter()
        pairs = redact_headers(_text_pairs(headers.raw), self.redact)
        self._try(lambda: writer.response(self.offset(), status, pairs))

    def piece(self, raw: bytes) -> None:
        """One read from the upstream, as the client got it."""
        if self.writer is None:
            return
        try:
            data = self.decoder.decode(raw)
        except httpx.DecodingError as error:
            self.finish(f"upstream failed: the body does not decode ({error})")
            return
        self._record(data)

    def _record(self, data: bytes) -> None:
        writer = self.writer
        if writer is None or not data:
            return
        offset = self.offset()

        def write() -> None:
            writer.read(offset, len(data))
            if self.splitter is None:
                writer.body(offset, data)
                return
            for block in self.splitter.feed(data):
                writer.block(offset, block)

        self._try(write)

    def finish(self, how: str) -> None:
        """The end line (``complete`` or why not); what the decoder and splitter still
        hold is recorded first."""
        writer = self.writer
        if writer is None:
            return
        if how == "complete":
            try:
                self._record(self.decoder.flush())
            except httpx.DecodingError as error:
                how = f"upstream failed: the body does not decode ({error})"
        splitter = self.splitter
        if splitter is not None and self.writer is not None and (rest := splitter.rest()):
            self._try(lambda: writer.block(self.offset(), rest))
        if self.writer is not None:
            self._try(lambda: writer.end(self.offset(), how))
            if self.writer is not None:
                self.ended = how
        self._drop()


class ProxyApp:
    """The ASGI application: every request goes to ``upstream`` + its path and query."""

    def __init__(self, upstream: str, out: Path, redact: Sequence[str] = ()) -> None:
        self.upstream = check_upstream(upstream)
        self.shown = redact_url(self.upstream)
        self.out = out
        self.redact = tuple(redact)
        self.client: httpx.AsyncClient | None = None
        # The exchanges in flight, each with the reason it would be stopped for.
        self.flights: dict[asyncio.Task[Path | None], list[str]] = {}

    def new_client(self) -> httpx.AsyncClient:
        """The one client of the proxy: no redirects followed (the client sees them), no
        cookies kept, no proxy or .netrc from the environment, no read timeout."""
        return httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,
            cookies=CookieJar(DefaultCookiePolicy(allowed_domains=[])),
            timeout=httpx.Timeout(None, connect=CONNECT_TIMEOUT),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=100),
            transport=httpx.AsyncHTTPTransport(
                socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
            ),
        )

    def close_all(self) -> None:
        """Stop every exchange in flight: its client's response ends, its recording gets
        the end line ``proxy stopped``."""
        for task, reason in self.flights.items():
            reason[0] = PROXY_STOPPED
            task.cancel()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1011})
            return
        if scope["type"] != "http":
            return
        body = await _whole_body(receive)
        await self.forward(scope, body, receive, send)

    async def forward(self, scope: Scope, body: bytes, receive: Receive, send: Send) -> Path | None:
        """Forward one request whose ``body`` has been read, relay the answer and record
        the exchange; the recording's path when it was recorded whole (``complete``),
        else None (the upstream failed, the client left, the proxy stopped). Also what
        ``serve DIR --record-missing`` does with a request no recording matches."""
        reason = [CLIENT_LEFT]
        relay = asyncio.ensure_future(self._exchange(scope, body, send, reason))
        self.flights[relay] = reason
        left = asyncio.ensure_future(_disconnected(receive))
        try:
            await asyncio.wait((relay, left), return_when=asyncio.FIRST_COMPLETED)
            if not relay.done():  # the client left: stop reading the upstream for it
                relay.cancel()
            await asyncio.gather(relay, return_exceptions=True)
        finally:
            left.cancel()
            relay.cancel()
            self.flights.pop(relay, None)
        if relay.cancelled() or relay.exception() is not None:
            return None
        return relay.result()

    async def _exchange(
        self, scope: Scope, body: bytes, send: Send, reason: list[str]
    ) -> Path | None:
        assert self.client is not None, "the proxy's client is made before it serves"
        method: str = scope["method"]
        path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        query = scope["query_string"].decode("latin-1")
        headers = [
            (name, value)
            for name, value in _without_hop_by_hop(scope["headers"])
            if name != b"host"
        ]
        recorded = RecordedRequest(
            method.upper(),
            path,
            redact_query(query, self.redact),
            redact_headers(_text_pairs(headers), self.redact),
            body,
        )
        target = self.upstream + path + ("?" + query if query else "")
        try:
            request = httpx.Request(method, target, headers=headers, content=body)
        except (httpx.InvalidURL, UnicodeError) as error:
            await _answer(send, 400, f"cannot forward {method} {path}: {error}")
            return None
        path_of_file = unique_path(self.out, recording_name(recorded))
        recording = _Recording(path_of_file, self.shown, recorded, self.redact)
        try:
            response = await self.client.send(request, stream=True)
        except httpx.HTTPError as error:
            what = _failure(error)
            logger.warning("%s %s: upstream %s: %s", method, path, self.shown, what)
            recording.finish(f"upstream failed: {what}")
            await _answer(send, 502, f"upstream {self.shown}: {what}")
            return None
        except asyncio.CancelledError:
            recording.finish(reason[0])
            raise
        try:
            await self._relay(response, recording, send)
        except httpx.HTTPError as error:
            # The status line is sent: the client can only see the body cut short, as it
            # would have from the upstream (the connection closes without the last chunk).
            what = _failure(error)
            logger.warning("%s %s: upstream %s failed mid-body: %s", method, path, self.shown, what)
            recording.finish(f"upstream failed: {what}")
        except asyncio.CancelledError:
            recording.finish(reason[0])
            if reason[0] == PROXY_STOPPED:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            raise
        else:
            recording.finish("complete")
            logger.info(
                "%s %s -> %d, recorded in %s",
                method,
                path,
                response.status_code,
                recording.path.name,
            )
        finally:
            await response.aclose()
        return recording.path if recording.ended == "complete" else None

    async def _relay(self, response: httpx.Response, recording: _Recording, send: Send) -> None:
        raw = response.headers.raw
        recording.response(response.status_code, response.headers)
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": _without_hop_by_hop(raw),
            }
        )
        # aiter_raw: the bytes as the upstream sent them (still compressed), each piece
        # the moment httpcore has it; the client gets it first, the recording after.
        async for piece in response.aiter_raw():
            await send({"type": "http.response.body", "body": piece, "more_body": True})
            recording.piece(piece)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _whole_body(receive: Receive) -> bytes:
    """The request body, whole: it is part of what names and matches a recording."""
    parts: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(parts)


async def _disconnected(receive: Receive) -> Message:
    """Returns when the client has gone (or uvicorn is done with the response)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return message


def _failure(error: httpx.HTTPError) -> str:
    text = str(error).strip()
    kind = type(error).__name__
    return f"{kind}: {text}" if text else kind


async def _answer(send: Send, status: int, error: str) -> None:
    """A one-line JSON error of the proxy's own."""
    body = json_line({"error": error}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})
