"""The recording proxy's side of the upstream: one request per connection, the response
read by an ``asyncio.Protocol`` with httptools' parser and handed, piece by piece, to a
``Sink`` from inside ``data_received``: no task switch and no copy between the upstream's
socket and the client's (issue 24's performance targets).

A connection carries one exchange and is closed after it (no keep-alive pool: a held
stream keeps its connection anyway, and a pool's bookkeeping was most of httpx's cost per
piece). TCP_NODELAY is set on it; an ``https`` upstream gets TLS, its certificate and
host name checked, ALPN ``http/1.1``.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterable
from typing import Protocol, cast

import httptools
import httpx

# Fields the proxy writes itself (RFC 9112 section 3.2, 6.2): never the client's.
OWN_FIELDS = frozenset({b"host", b"content-length"})
# Methods whose empty body is still announced as such (what httpx did).
LENGTH_ALWAYS = frozenset({"POST", "PUT", "PATCH"})


class Sink(Protocol):
    """Where an exchange's response goes, each call as soon as it is known."""

    def head(self, status: int, headers: list[tuple[bytes, bytes]]) -> None: ...

    def piece(self, data: bytes) -> bool:
        """A piece of the body; False when reading should pause (until ``resume``)."""

    def done(self, failure: str | None) -> None:
        """The end: None when the body came whole, else what went wrong."""


class Upstream:
    """Where the proxy connects: scheme, host, port, the base path, the Host field."""

    def __init__(self, scheme: str, host: str, port: int | None, base_path: str) -> None:
        self.tls = scheme == "https"
        self.host = host
        self.port = port or (443 if self.tls else 80)
        self.base_path = base_path.rstrip("/").encode("latin-1")
        shown = f"[{host}]" if ":" in host else host
        self.authority = (shown if port is None else f"{shown}:{port}").encode("latin-1")
        self._context: ssl.SSLContext | None = None

    def context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        if self._context is None:  # made once, on the first https exchange
            # httpx's trust, as the proxy had when it forwarded with httpx: the CA file
            # or folder of SSL_CERT_FILE or SSL_CERT_DIR, else certifi's.
            context = httpx.create_ssl_context()
            context.set_alpn_protocols(["http/1.1"])
            self._context = context
        return self._context

    def request(
        self, method: str, target: bytes, headers: Iterable[tuple[bytes, bytes]], body: bytes
    ) -> bytes:
        """The request's bytes: ``target`` (path and query as the client sent them) under
        the base path, the client's fields but Host and Content-Length, which are the
        proxy's (hop-by-hop fields are the caller's to leave out)."""
        lines = [b"%s %s%s HTTP/1.1\r\nhost: %s\r\n" % (
            method.encode("ascii"), self.base_path, target, self.authority
        )]  # fmt: skip
        if body or method.upper() in LENGTH_ALWAYS:
            lines.append(b"content-length: %d\r\n" % len(body))
        lines.extend(b"%s: %s\r\n" % pair for pair in headers if pair[0].lower() not in OWN_FIELDS)
        lines.append(b"\r\n")
        lines.append(body)
        return b"".join(lines)

    async def open(
        self, sink: Sink, request: bytes, *, head_only: bool, timeout: float
    ) -> UpstreamReader:
        """Connect (within ``timeout`` seconds) and send ``request``; the response goes to
        ``sink``. Raises OSError (ssl.SSLError is one) or TimeoutError."""
        loop = asyncio.get_running_loop()
        context = self.context()
        _, reader = await asyncio.wait_for(
            loop.create_connection(
                lambda: UpstreamReader(sink, request, head_only),
                self.host,
                self.port,
                ssl=context,
                server_hostname=self.host if context is not None else None,
            ),
            timeout,
        )
        return reader


class UpstreamReader(asyncio.Protocol):
    """One exchange on one connection: sends the request when connected, parses the
    response and calls its sink. ``pause`` and ``resume`` stop and restart reading (the
    client's side is full, or drained)."""

    def __init__(self, sink: Sink, request: bytes, head_only: bool) -> None:
        self.sink = sink
        self.request = request
        self.head_only = head_only  # a response to HEAD: no body, whatever its fields say
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.headers: list[tuple[bytes, bytes]] = []
        self.length_known = False  # Content-Length or chunked: else the body ends at close
        self.started = False  # the final (not 1xx) head is given to the sink
        self.finished = False
        self.paused = False

    # ---- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport has asyncio.Transport's methods, not its class.
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.transport.write(self.request)
        self.request = b""

    def data_received(self, data: bytes) -> None:
        if self.finished:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._finish("the upstream switched protocols, which the proxy does not relay")
        except httptools.HttpParserError as error:
            self._finish(f"the response is not valid HTTP/1.1: {error}")

    def eof_received(self) -> bool | None:
        return None  # the transport closes; connection_lost says how the body ended

    def connection_lost(self, exc: Exception | None) -> None:
        if self.finished:
            return
        if exc is not None:
            self._finish(f"the connection failed: {exc}")
        elif self.started and not self.length_known:
            self._finish(None)  # a body delimited by the end of the connection
        elif self.started:
            self._finish("the upstream closed the connection before the body's end")
        else:
            self._finish("the upstream closed the connection without a response")

    # ---- httptools' callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        lowered = name.lower()
        if lowered == b"content-length" or (
            lowered == b"transfer-encoding" and b"chunked" in value.lower()
        ):
            self.length_known = True

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        headers, self.headers = self.headers, []
        if 100 <= status < 200 and status != 101:
            self.length_known = False
            return  # an interim response (100 Continue, 103): the final one follows
        self.started = True
        self.sink.head(status, headers)
        if self.head_only:
            self._finish(None)

    def on_body(self, body: bytes) -> None:
        # Paused at once, from inside the read: libuv goes on reading a busy socket up
        # to 32 times per wake-up, megabytes before any task could ask for a pause.
        if not self.finished and not self.sink.piece(body):
            self.pause()

    def on_message_complete(self) -> None:
        if self.started:
            self._finish(None)

    # ---- the sink's controls

    def pause(self) -> None:
        if not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.paused and self.transport is not None:
            self.paused = False
            if not self.transport.is_closing():
                self.transport.resume_reading()

    def close(self) -> None:
        """Ends the exchange from the proxy's side: the sink hears nothing more."""
        self.finished = True
        if self.transport is not None:
            self.transport.close()

    def _finish(self, failure: str | None) -> None:
        self.finished = True
        if self.transport is not None:
            self.transport.close()
        self.sink.done(failure)
