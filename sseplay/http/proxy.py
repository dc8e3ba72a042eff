"""``sseplay record``: a reverse proxy that forwards every request to one upstream and
records each exchange into a directory as it goes (issue 24; the format is
``sseplay.exchange``'s).

Nothing is held on the way: each piece read from the upstream (``sseplay.http.upstream``)
is written to the client from inside the read's callback, straight to uvicorn's transport
(``DirectBody``) while the client keeps up, through ASGI ``send`` otherwise (the response's
start and end, a client that is behind: the upstream is paused until it has drained, so
what the proxy holds per stream stays bounded). No read-ahead, no line assembly, no task
switch per piece; compressed bodies pass through as they are, and the recording is made
from a decoded copy after the client has its bytes, a read and its blocks in one write.
TCP_NODELAY is on for both sockets: uvloop sets it on every TCP transport
(``TCPTransport.new`` calls ``uv_tcp_nodelay``), asyncio on every TCP socket it wraps
(``base_events._set_nodelay``), and the upstream reader sets it once more.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import httpx
from starlette.types import Message, Receive, Scope, Send

from sseplay.errors import UsageError
from sseplay.exchange import (
    RecordedRequest,
    recording_name,
    unique_path,
)
from sseplay.http.proxy_recording import COMPLETE, ExchangeRecording, text_pairs
from sseplay.http.upstream import Upstream, UpstreamReader
from sseplay.http.uvicorn.direct import DirectBody
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
# What may wait for ASGI ``send`` before the upstream is paused (a body that is not
# chunked, or a client that is behind): about one read of the upstream's.
PENDING_BYTES = 64 << 10
_END = {"type": "http.response.body", "body": b"", "more_body": False}


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


class _Relay:
    """One exchange's response on its way to the client, fed by the upstream reader from
    its read callbacks (``head``, ``piece``, ``done``: an ``upstream.Sink``).

    A piece goes straight to the client's transport when the fast path is on (the
    response's start is sent, the server is uvicorn's httptools one, the body is chunked,
    the client's side is not full); otherwise it waits in ``pending`` and ``run`` sends it
    through ASGI ``send``, which waits for the client to drain. The upstream is paused
    while the client is full or more than ``PENDING_BYTES`` wait, and resumed once they
    are sent. Pieces keep their order: none goes direct while any is pending."""

    __slots__ = (
        "_waiter",
        "direct",
        "ended",
        "fast",
        "pending",
        "pending_bytes",
        "reader",
        "recording",
        "started",
    )

    def __init__(self, recording: ExchangeRecording) -> None:
        self.recording = recording
        self.reader: UpstreamReader | None = None
        self.direct: DirectBody | None = None
        self.fast = False
        self.started: tuple[int, list[tuple[bytes, bytes]]] | None = None
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.ended: str | None = None  # COMPLETE, or what failed
        self._waiter: asyncio.Future[None] | None = None

    def head(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.started = (status, headers)
        self.recording.response(status, headers)  # before the pieces read with it
        self._wake()

    def piece(self, data: bytes) -> bool:
        if self.fast:
            assert self.direct is not None
            try:
                if self.direct.write(data):
                    self.recording.piece(data)
                    return True
            except RuntimeError:  # uvloop: the client's transport is closed
                pass
            self.fast = False
            keep_reading = False  # the client is full (or gone): the upstream waits
        else:
            keep_reading = self.pending_bytes + len(data) <= PENDING_BYTES
        self.pending.append(data)
        self.pending_bytes += len(data)
        self.recording.piece(data)
        self._wake()
        return keep_reading

    def done(self, failure: str | None) -> None:
        self.ended = COMPLETE if failure is None else failure
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    async def head_or_end(self) -> tuple[int, list[tuple[bytes, bytes]]] | None:
        """The response's status and fields, or None when the upstream failed first."""
        while self.started is None and self.ended is None:
            await self._wait()
        return self.started

    async def run(self, send: Send) -> str:
        """Relays the body until its end; what ended it (COMPLETE or the failure)."""
        while True:
            while self.pending:
                piece = self.pending.pop(0)
                self.pending_bytes -= len(piece)
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            if self.ended is not None:
                return self.ended
            self.fast = self.direct is not None
            if self.reader is not None:
                self.reader.resume()
            await self._wait()


class ProxyApp:
    """The ASGI application: every request goes to ``upstream`` + its path and query."""

    def __init__(self, upstream: str, out: Path, redact: Sequence[str] = ()) -> None:
        self.upstream = check_upstream(upstream)
        self.shown = redact_url(self.upstream)
        url = httpx.URL(self.upstream)
        self.target = Upstream(
            url.scheme, url.raw_host.decode("ascii"), url.port, url.raw_path.decode("ascii")
        )
        self.out = out
        self.redact = tuple(redact)
        # The exchanges in flight, each with the reason it would be stopped for.
        self.flights: dict[asyncio.Task[Path | None], list[str]] = {}

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
        relay = asyncio.ensure_future(self._exchange(scope, body, receive, send, reason))
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
        self, scope: Scope, body: bytes, receive: Receive, send: Send, reason: list[str]
    ) -> Path | None:
        method: str = scope["method"]
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        path = raw_path.decode("latin-1")
        query: bytes = scope["query_string"]
        headers = [
            (name, value)
            for name, value in _without_hop_by_hop(scope["headers"])
            if name != b"host"
        ]
        recorded = RecordedRequest(
            method.upper(),
            path,
            redact_query(query.decode("latin-1"), self.redact),
            redact_headers(text_pairs(headers), self.redact),
            body,
        )
        target = raw_path + (b"?" + query if query else b"")
        try:
            request = self.target.request(method, target, headers, body)
        except UnicodeError as error:
            await _answer(send, 400, f"cannot forward {method} {path}: {error}")
            return None
        recording = ExchangeRecording(
            unique_path(self.out, recording_name(recorded)), self.shown, recorded, self.redact
        )
        relay = _Relay(recording)
        try:
            relay.reader = await self.target.open(
                relay, request, head_only=method.upper() == "HEAD", timeout=CONNECT_TIMEOUT
            )
        except (OSError, TimeoutError) as error:
            what = _connect_failure(error)
            logger.warning("%s %s: upstream %s: %s", method, path, self.shown, what)
            recording.finish(f"upstream failed: {what}")
            await _answer(send, 502, f"upstream {self.shown}: {what}")
            return None
        except asyncio.CancelledError:
            recording.finish(reason[0])
            raise
        try:
            return await self._relay(relay, scope, receive, send, reason)
        finally:
            relay.reader.close()

    async def _relay(
        self, relay: _Relay, scope: Scope, receive: Receive, send: Send, reason: list[str]
    ) -> Path | None:
        method, path, recording = scope["method"], scope["path"], relay.recording
        try:
            started = await relay.head_or_end()
            if started is None:  # no response: the proxy answers for the upstream
                what = relay.ended
                logger.warning("%s %s: upstream %s: %s", method, path, self.shown, what)
                recording.finish(f"upstream failed: {what}")
                await _answer(send, 502, f"upstream {self.shown}: {what}")
                return None
            status, headers = started
            start = {"type": "http.response.start", "status": status}
            await send({**start, "headers": _without_hop_by_hop(headers)})
            relay.direct = DirectBody.of(scope, receive)
            ended = await relay.run(send)
        except asyncio.CancelledError:
            recording.finish(reason[0])
            if reason[0] == PROXY_STOPPED and relay.started is not None:
                await send(_END)
            raise
        if ended != COMPLETE:
            # The status line is sent: the client can only see the body cut short, as it
            # would have from the upstream (the connection closes without the last chunk).
            logger.warning(
                "%s %s: upstream %s failed mid-body: %s", method, path, self.shown, ended
            )
            recording.finish(f"upstream failed: {ended}")
            return None
        await send(_END)
        recording.finish(COMPLETE)
        logger.info("%s %s -> %d, recorded in %s", method, path, status, recording.path.name)
        return recording.path if recording.ended == COMPLETE else None


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


def _connect_failure(error: OSError | TimeoutError) -> str:
    if isinstance(error, TimeoutError):
        return f"cannot connect within {CONNECT_TIMEOUT:g} s"
    text = str(error).strip()
    kind = type(error).__name__
    return f"cannot connect: {kind}: {text}" if text else f"cannot connect: {kind}"


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
