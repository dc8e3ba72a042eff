"""uvicorn's httptools protocol, subclassed: a limit on the size of a request head,
lighter per-connection objects, and streams handed over to their connection (``Held``)
so that their request's task can end. Every name of uvicorn's used here is listed in
CONTRACT.md beside this file."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Callable
from typing import Any, Protocol, cast

import httptools
from starlette.types import Receive, Scope
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from sseplay.http.uvicorn.close_delimited import CloseDelimitedCycle
from sseplay.http.uvicorn.direct import LeanEvent, LeanFlowControl, LeanPipeline
from sseplay.http.uvicorn.heads import HeadWatch
from sseplay.outlet import Listener

logger = logging.getLogger("sseplay.server")

# What uvicorn logs when an application returns with its response unfinished: that
# is how a client cut off for not reading is dropped (ASGI has no other way).
UNFINISHED = "ASGI callable returned without completing response."
# The most bytes a request line and its headers may take; beyond, the answer is 431
# Request Header Fields Too Large (RFC 6585 section 5) and the connection is closed. The
# same 16 KiB as uvicorn's h11 protocol (h11's default) and Node.js; uvicorn's httptools
# protocol, which sseplay runs on, has no limit of its own.
MAX_REQUEST_HEAD_BYTES = 16 << 10
# What a connection may send ahead of a response still under way (pipelined requests,
# RFC 9112 section 9.3.2, which can be answered only once it ends: behind a stream,
# perhaps never): at most MAX_PIPELINED whole requests queued and READ_AHEAD_BYTES
# received. Beyond, the connection is closed. uvicorn stops reading at the first queued
# request, but only after parsing all it had read (up to 256 KiB: thousands of tiny
# requests, each a request object), and the request's own ``receive`` reads on.
MAX_PIPELINED = 16
# The scope key of when the whole request arrived (``arrived_at``).
ARRIVED = "sseplay.arrived"
READ_AHEAD_BYTES = 64 << 10
# --once: after the first whole replay, how long the server waits for that client to


class StreamEnd(Protocol):
    """What a held stream's end is told to (the endpoint that started it)."""

    def left(self, scope: Scope, listener: Listener) -> None: ...


class Held:
    """A stream handed over to its connection: what ends it needs.

    A held stream used to keep its request's task waiting for the disconnect, and with
    it the coroutine frame of every layer the request went through (uvicorn's
    ``run_asgi``, FastAPI, Starlette's middleware and router, the endpoint) and
    their wrappers of ``send``: 7 KiB per idle connection, more than all the rest
    (measured with benchmarks/idle_profile.py). Once the response has started on the
    fast path (``sseplay.http.uvicorn.direct``) nothing of that is used any more: the timer writes
    to the transport, and the connection tells its end (``connection_lost``, or the
    last chunk sent). So the endpoint returns, and the connection calls ``finish``."""

    __slots__ = ("cycle", "endpoint", "listener", "scope")

    def __init__(self, endpoint: StreamEnd, scope: Scope, listener: Listener, cycle: Any):
        self.endpoint = endpoint
        self.scope = scope
        self.listener = listener
        self.cycle = cycle

    def finish(self) -> None:
        # uvicorn breaks this reference cycle (request -> connection -> request) when
        # the request's task ends; a held stream's has ended long before.
        self.cycle.on_response = _nothing
        try:
            self.endpoint.left(self.scope, self.listener)
        except Exception:  # the connection's own bookkeeping must go on
            logger.exception("ending a stream failed")


def _nothing() -> None:
    pass


def arrived_at(scope: Scope, clock: Callable[[], float]) -> float:
    """When the whole request arrived (on the event loop's clock), or now when it did
    not come through this protocol (HTTP/2, a test client)."""
    arrived = scope.get(ARRIVED)
    return clock() if arrived is None else float(arrived)


def holder_of(receive: Receive) -> HeadLimitedHttpToolsProtocol | None:
    """The connection a stream can be handed over to (ours, on uvicorn's httptools), or
    None. Found through ``receive``, the way ``DirectBody.of`` finds the request."""
    cycle: Any = getattr(receive, "__self__", None)
    protocol = getattr(getattr(cycle, "on_response", None), "__self__", None)
    if isinstance(protocol, HeadLimitedHttpToolsProtocol):
        return protocol
    return None


def _request_parser(protocol: HttpToolsProtocol) -> httptools.HttpRequestParser:
    """A request parser made as uvicorn makes each connection's (``HttpToolsProtocol``)."""
    parser = httptools.HttpRequestParser(protocol)
    with contextlib.suppress(AttributeError):  # httptools < 0.6.3, as uvicorn allows
        parser.set_dangerous_leniencies(lenient_data_after_close=True)
    return parser


class _HeadCount:
    """How much of a request head has arrived (see ``HeadLimitedHttpToolsProtocol``)."""

    __slots__ = ("ahead", "held", "in_head", "in_message", "refused", "seen", "tail")

    def __init__(self) -> None:
        self.held: Held | None = None  # the stream handed over to this connection
        self.ahead = 0  # bytes received ahead of the response under way (MAX_PIPELINED)
        self.in_head = True  # the next bytes belong to a request line or headers
        self.in_message = False  # the parser has begun a request it has not finished
        self.seen = 0
        self.tail = b""  # the last bytes of the head so far: its end may straddle reads
        self.refused = False


class HeadLimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a limit on the size of a request head, and
    lighter per-connection objects.

    httptools gathers a header in memory however long it grows (and a long one by
    repeated concatenation), and uvicorn keeps every header of a request for as long as
    its response lasts: here the bytes of a request head are counted as they arrive, and
    a head that has not ended within ``MAX_REQUEST_HEAD_BYTES`` is answered 431 (RFC 6585
    section 5) and its connection closed before the parser sees the excess.

    Memory: a held stream keeps its protocol for as long as it is open, thousands of
    them. The head count is ONE attribute: uvicorn's protocol already sets 28, and
    CPython shares the key table of instances' attribute dicts only up to 29 keys; past
    that every connection carries a full dict of its own (1.3 KiB more each, measured
    with benchmarks/idle_profile.py). uvicorn's flow control, its request's event and
    its queue of pipelined requests become the slotted, deque-free equivalents of
    ``sseplay.http.uvicorn.direct`` (2.2 KiB less each). And while a keep-alive connection has no
    request in the parser (a held stream's request ended with its head), the parser is
    let go (0.9 KiB) and a new one made when bytes come: httptools starts each request
    of a keep-alive connection from the same state as a new parser's."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pipeline = LeanPipeline()  # type: ignore[assignment]
        self._head = _HeadCount()

    @property
    def _watch(self) -> HeadWatch | None:
        """The server's watch on request heads (``heads.py``): sseplay's server has one,
        a plain uvicorn server does not. A property: the protocol has no room for
        another attribute (see the class's docstring)."""
        state = self.server_state
        return state if isinstance(state, HeadWatch) else None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.flow = LeanFlowControl(transport)  # type: ignore[assignment]
        watch = self._watch
        if watch is not None:
            watch.admit(self)
            watch.wait_for_head(self, self.loop)  # the first request's, from now

    def head_timed_out(self) -> None:
        """The request head has not all come within the header timeout: close. A client
        that sent some of it is told 408 Request Timeout (RFC 9110 section 15.5.9),
        unless a response is under way on this connection (the head is a pipelined
        request's); one that sent nothing is closed without a word."""
        head = self._head
        if head.refused or self.transport.is_closing():
            return
        cycle = self.cycle
        started = head.in_message or head.seen > 0
        if started and (cycle is None or cycle.response_complete):
            message = b"Request head not received in time\n"
            self.transport.write(
                b"HTTP/1.1 408 Request Timeout\r\n"
                b"content-type: text/plain; charset=utf-8\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%b" % (len(message), message)
            )
        host, port = self.client or ("?", 0)
        timeout = self.server_state.header_timeout  # type: ignore[attr-defined]
        logger.info("%s:%s sent no whole request head within %g s: closed", host, port, timeout)
        self.transport.close()

    def drop(self) -> None:
        """Close now, to make room near the open-file limit (``HeadWatch.admit``)."""
        self.transport.abort()

    def data_received(self, data: bytes) -> None:
        head = self._head
        if head.refused:
            return
        cycle = self.cycle
        if cycle is not None and (
            self.pipeline or (not cycle.response_complete and not cycle.more_body)
        ):
            # The response's request is all read (or others already wait behind it):
            # these bytes are further requests, which must wait for it to end.
            head.ahead += len(data)
            if head.ahead > READ_AHEAD_BYTES:
                self._refuse_read_ahead(f"over {READ_AHEAD_BYTES} bytes of further requests")
                return
        else:
            head.ahead = 0
        if head.in_head:
            watch = self._watch
            if watch is not None:  # a head begins (or goes on): it has a deadline
                watch.wait_for_head(self, self.loop)
            room = MAX_REQUEST_HEAD_BYTES - head.seen
            if len(data) > room:
                # Fine only if the head ends (an empty line, RFC 9112 section 2.1) in the room.
                window = head.tail + data[: max(room, 0)]
                if b"\r\n\r\n" not in window and b"\n\n" not in window:
                    self._refuse_head()
                    return
            head.seen += len(data)
            head.tail = data[-3:]
        if self.parser is None:
            self.parser = _request_parser(self)
        super().data_received(data)
        cycle = self.cycle
        if (
            not head.in_message
            and cycle is not None
            and cycle.keep_alive
            and not cycle.more_body
            and not self.transport.is_closing()
        ):
            # Between requests of a keep-alive connection (after "Connection: close"
            # httptools would treat later bytes differently, so that parser stays).
            # (unused-ignore: the floor of httptools has no types, so there it is Any.)
            self.parser = None  # type: ignore[assignment, unused-ignore]

    def on_message_begin(self) -> None:
        self._head.in_message = True
        watch = self._watch
        if watch is not None:  # a pipelined request's head, begun in the same read
            watch.wait_for_head(self, self.loop)
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        if self._head.refused:  # the rest of a read that was refused: no more requests
            return
        cycle = self.cycle
        if (
            cycle is not None
            and not cycle.response_complete
            and len(self.pipeline) >= MAX_PIPELINED
        ):
            self._refuse_read_ahead(f"over {MAX_PIPELINED} further requests")
            return
        self._head.in_head = False
        watch = self._watch
        if watch is not None:
            watch.head_arrived(self)
        before = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not before and type(cycle.message_event) is asyncio.Event:
            # A new request, whose task has not run yet: nothing waits on its event.
            cycle.message_event = LeanEvent(cycle.message_event.is_set())  # type: ignore[assignment]
        if cycle is not before and cycle.scope["http_version"] == "1.0":
            # HTTP/1.0 has no chunked coding: its stream ends with the connection
            # (RFC 9112 sections 6.3 and 7). The same object, with that class's ``send``.
            cycle.__class__ = CloseDelimitedCycle

    def hold(self, held: Held) -> bool:
        """Take over a stream whose response has started, so that its endpoint can
        return (see ``Held``); False when this connection cannot tell its end alone:
        its request is not all read, or another one waits behind it."""
        cycle = held.cycle
        if (
            cycle is not self.cycle
            or cycle.more_body
            or cycle.body
            or cycle.disconnected
            or cycle.response_complete
            or self.pipeline
            or self.flow.read_paused
            or self.transport.is_closing()
            or self._head.held is not None
        ):
            return False
        self._head.held = held
        return True

    def _end_held(self) -> None:
        held, self._head.held = self._head.held, None
        if held is not None:
            # Soon, not now: the last chunk of a response is sent from inside the
            # player's write, which has yet to note that its client got it all (the
            # request's task, too, heard of the end only at its next step).
            self.loop.call_soon(held.finish)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        # Requests queued behind the response will never be answered: let them go now,
        # and the reference each has to this connection (uvicorn keeps them).
        for queued, _ in self.pipeline:
            queued.on_response = _nothing
        self.pipeline.clear()
        watch = self._watch
        if watch is not None:
            watch.gone(self)
        self._end_held()

    def on_response_complete(self) -> None:
        # Only the held stream's response can complete while it is held.
        self._end_held()
        super().on_response_complete()

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        # uvicorn's, running ``_run_asgi``.
        run = self._run_asgi(cycle, app)
        if getattr(self.config, "reset_contextvars", False):
            task = self.loop.create_task(run, context=contextvars.Context())
        else:
            task = self.loop.create_task(run)
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    async def _run_asgi(self, cycle: Any, app: Any) -> None:
        """uvicorn's ``RequestResponseCycle.run_asgi`` (0.54), except for a stream handed
        over to this connection: its response goes on when the application returns."""
        try:
            result = await app(cycle.scope, cycle.receive, cycle.send)
        except BaseException as exc:
            cycle.logger.error("Exception in ASGI application\n", exc_info=exc)
            if not cycle.response_started:
                await cycle.send_500_response()
            else:
                cycle.transport.close()
        else:
            held = self._head.held
            if held is not None and held.cycle is cycle:
                return  # on_response stays: the end of the response ends the stream
            if result is not None:
                msg = "ASGI callable should return None, but returned '%s'."
                cycle.logger.error(msg, result)
                cycle.transport.close()
            elif not cycle.response_started and not cycle.disconnected:
                cycle.logger.error("ASGI callable returned without starting response.")
                await cycle.send_500_response()
            elif not cycle.response_complete and not cycle.disconnected:
                cycle.logger.error(UNFINISHED)
                cycle.transport.close()
        finally:
            held = self._head.held
            if held is None or held.cycle is not cycle:
                cycle.on_response = _nothing

    def on_body(self, body: bytes) -> None:
        if self._head.refused:
            return
        if self.pipeline and len(self.cycle.body) + len(body) > READ_AHEAD_BYTES:
            # The body of a queued request, all in one read with the requests before it.
            self._refuse_read_ahead(f"over {READ_AHEAD_BYTES} bytes of further requests")
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        head = self._head
        if head.refused:
            return
        head.in_message = False
        head.in_head = True
        head.seen = 0
        head.tail = b""
        # When the whole request arrived: a recorded or shaped answer counts its timing
        # (time to first token, the recorded gaps) from here, as the upstream it stands
        # in for would, not from when its task got to run on a busy event loop.
        cast("dict[str, Any]", self.cycle.scope)[ARRIVED] = self.loop.time()
        super().on_message_complete()

    def _refuse_read_ahead(self, how_much: str) -> None:
        """Close a connection that sent too much ahead of its response (see
        ``MAX_PIPELINED``): at once, with whatever was still to be written to it."""
        self._head.refused = True
        host, port = self.client or ("?", 0)
        logger.warning(
            "%s:%s sent %s ahead of its response, still under way: closed",
            host,
            port,
            how_much,
        )
        self.transport.abort()

    def _refuse_head(self) -> None:
        self._head.refused = True
        host, port = self.client or ("?", 0)
        logger.warning(
            "%s:%s sent a request head over %d bytes: answered 431",
            host,
            port,
            MAX_REQUEST_HEAD_BYTES,
        )
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            message = b"Request header fields too large\n"
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                b"content-type: text/plain; charset=utf-8\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%b" % (len(message), message)
            )
        # else a response is under way on this connection (the head is a pipelined
        # request's): an answer now would land inside it, so the connection just closes.
        self.transport.close()


def transport_of(receive: Receive) -> asyncio.Transport | None:
    """The connection's transport, found the way ``DirectBody.of`` finds uvicorn's request
    cycle; None under another server."""
    cycle: Any = getattr(receive, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None or not callable(getattr(transport, "is_closing", None)):
        return None
    result: asyncio.Transport = transport
    return result
