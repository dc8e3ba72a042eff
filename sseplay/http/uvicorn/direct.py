"""The fast path for a held stream's body: chunks written straight to uvicorn's transport.

At thousands of connections each event is one small write, and the four awaits
between the timer and the socket (three Starlette middleware wrappers, then
uvicorn's ``send``) cost more CPU than the write itself. When the server is
uvicorn's httptools protocol, a body chunk that may go out now is framed the way
uvicorn frames it (HTTP/1.1 chunked transfer coding, RFC 9112 section 7.1), or
unframed for an HTTP/1.0 request (``close_delimited``: its body ends with the
connection, RFC 9112 section 6.3), and handed to the transport directly.
Everything else goes through ASGI ``send``: the response start (so middleware
adds its headers), the last chunk (so uvicorn knows the response is complete), a
paused transport (back-pressure), a disconnected client, and any other server.
It also lets a client cut off for not reading be dropped at once (``abort``).
``DirectBody.of`` checks what it relies on and says None when anything is not as
expected.

It also tells a connection that has gone from one that has not (``gone``), on
either path. uvicorn marks a response disconnected when its connection is lost,
except when the client pipelined a second request behind it: the connection's
current request is then the second one, the first never hears of the loss, and
its writes go to a closed transport (uvloop raises, asyncio drops them quietly).
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.types import Receive, Scope

_HTTPTOOLS_CYCLE = ("uvicorn.protocols.http.httptools_impl", "RequestResponseCycle")
# sseplay's cycle of an HTTP/1.0 request (a subclass of uvicorn's, not imported here).
_CLOSE_DELIMITED_CYCLE = ("sseplay.http.uvicorn.close_delimited", "CloseDelimitedCycle")


# A chunk up to this size is framed into one new bytes object (one write, the fastest
# for the small events of a busy stream); a larger one is written with its framing apart,
# so that every connection sends the very same bytes object (a framed copy per
# connection was 40 copies of a 20 MiB event for 40 clients, issue 23).
FRAMED_COPY_BYTES = 16 << 10
# On a transport that copies what it cannot send at once (asyncio's: a bytearray buffer;
# TLS: the encrypted bytes), a chunk above this goes through ``send`` instead, which the
# outlet feeds in pieces of at most this size as the connection drains
# (``sseplay.outlet.PIECE_BYTES``).
COPYING_TRANSPORT_BYTES = 256 << 10


# The last chunk framed and its framing: a feed writes the same chunk to every connection,
# one after the other, so each one after the first sends these very bytes (a tuple, read
# and replaced whole: servers on other threads share it safely). It holds at most
# FRAMED_COPY_BYTES of a chunk and its copy.
_framed: tuple[bytes, bytes] = (b"", b"")


def _frame(chunk: bytes) -> tuple[bytes, bytes]:
    """``chunk`` as one HTTP/1.1 chunk (RFC 9112 section 7.1), remembered in ``_framed``."""
    global _framed
    _framed = (chunk, b"%x\r\n%b\r\n" % (len(chunk), chunk))
    return _framed


class DirectBody:
    __slots__ = ("_chunked", "_cycle", "_flow", "_shares", "_transport", "fast")

    def __init__(self, cycle: Any, fast: bool = True) -> None:
        self._cycle = cycle
        self._flow = cycle.flow
        self._transport = cycle.transport
        self._chunked = cycle.chunked_encoding is True
        # uvloop's TCP transport keeps a reference to each buffer it is given (a pending
        # write is a memoryview of it, never a copy: uvloop/handles/stream.pyx,
        # ``_buffer_write`` and ``_exec_write``) and its ``writelines`` writes them with
        # one writev. asyncio's (3.11: ``selector_events``) joins ``writelines`` and
        # copies the unsent rest of any write into its buffer; TLS encrypts a copy.
        kind = type(self._transport)
        self._shares = kind.__module__ == "uvloop.loop" and kind.__name__ == "TCPTransport"
        # False: body chunks go through ASGI ``send``; ``gone`` and ``abort`` still work.
        self.fast = fast

    @classmethod
    def of(cls, scope: Scope, receive: Receive, fast: bool = True) -> DirectBody | None:
        """The fast path for a response whose start has been sent, or None.

        The server's request cycle is found through ``receive``, which Starlette's
        middleware passes on untouched (they wrap ``send``); a middleware that wraps
        ``receive`` too simply leaves the response on ASGI ``send``."""
        cycle: Any = getattr(receive, "__self__", None)
        kind = type(cycle)
        if (kind.__module__, kind.__qualname__) not in (_HTTPTOOLS_CYCLE, _CLOSE_DELIMITED_CYCLE):
            return None
        try:
            ready = (
                cycle.scope is scope
                and cycle.response_started
                and (cycle.chunked_encoding is True or getattr(cycle, "close_delimited", False))
                and not cycle.response_complete
                and scope["method"] != "HEAD"
                and isinstance(cycle.flow.write_paused, bool)
                and callable(cycle.transport.write)
                and callable(cycle.transport.is_closing)
            )
        except AttributeError:  # another uvicorn than the one this was written against
            return None
        return cls(cycle, fast) if ready else None

    @property
    def gone(self) -> bool:
        """The connection is closed (or closing) while the response still expects writes."""
        return not self._cycle.disconnected and bool(self._transport.is_closing())

    def write(self, chunk: bytes) -> bool:
        """Write a non-empty, non-final chunk now; False when it must go through ``send``,
        or when the connection is ``gone`` (the outlet then asks). Raises what the
        transport raises (uvloop: RuntimeError once it is closed)."""
        cycle = self._cycle
        if (
            not self.fast
            or cycle.disconnected
            or cycle.response_complete
            or self._flow.write_paused
            or self._transport.is_closing()
        ):
            return False
        size = len(chunk)
        if size > FRAMED_COPY_BYTES:
            if not self._shares:
                if size > COPYING_TRANSPORT_BYTES:
                    return False
            elif self._chunked:
                # The chunk's size line and its CRLF apart (RFC 9112 section 7.1): the
                # event's bytes are shared by every connection that sends them.
                self._transport.writelines((b"%x\r\n" % size, chunk, b"\r\n"))
                return True
        if not self._chunked:
            self._transport.write(chunk)
        elif size <= FRAMED_COPY_BYTES:
            # One event published to every connection: framed once, for them all.
            framed = _framed
            if framed[0] is not chunk:
                framed = _frame(chunk)
            self._transport.write(framed[1])
        else:
            self._transport.write(b"%x\r\n%b\r\n" % (size, chunk))
        return True

    def abort(self) -> None:
        """Drop the connection now, with whatever is still buffered for it: a graceful
        close would wait for a client that has stopped reading to take it."""
        self._transport.abort()


# Lighter stand-ins for three objects uvicorn's httptools protocol keeps per connection
# (see ``HeadLimitedHttpToolsProtocol`` in protocol.py). Each of them holds a
# ``collections.deque``, which allocates a block of 64 slots (760 bytes with the deque)
# even when empty: three per connection, for a queue that is nearly always empty and at
# most one waiter. At thousands of held streams that was 2.2 KiB of the ~18 KiB each
# connection costs. These keep uvicorn's interface, and only it.


class LeanEvent:
    """``asyncio.Event``'s interface (what uvicorn calls: ``set``, ``clear``, ``is_set``,
    ``wait``) with a list of waiters made on the first wait instead of a deque."""

    __slots__ = ("_value", "_waiters")

    def __init__(self, value: bool = False) -> None:
        self._value = value
        self._waiters: list[asyncio.Future[bool]] | None = None

    def is_set(self) -> bool:
        return self._value

    def set(self) -> None:
        if not self._value:
            self._value = True
            for waiter in self._waiters or ():
                if not waiter.done():
                    waiter.set_result(True)

    def clear(self) -> None:
        self._value = False

    async def wait(self) -> bool:
        if self._value:
            return True
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
            return True
        finally:
            self._waiters.remove(waiter)


class LeanFlowControl:
    """uvicorn's ``FlowControl`` (``flow_control.py``), slotted and with a ``LeanEvent``."""

    __slots__ = ("_is_writable_event", "_transport", "read_paused", "write_paused")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self.read_paused = False
        self.write_paused = False
        self._is_writable_event = LeanEvent(True)

    async def drain(self) -> None:
        await self._is_writable_event.wait()

    def pause_reading(self) -> None:
        if not self.read_paused:
            self.read_paused = True
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused:
            self.read_paused = False
            self._transport.resume_reading()

    def pause_writing(self) -> None:
        if not self.write_paused:
            self.write_paused = True
            self._is_writable_event.clear()

    def resume_writing(self) -> None:
        if self.write_paused:
            self.write_paused = False
            self._is_writable_event.set()


class LeanPipeline(list[Any]):
    """uvicorn's queue of pipelined requests (a deque it uses through ``appendleft``,
    ``pop`` and its truth value) as a list: requests wait in it only behind a response
    that is still under way, and rarely more than one."""

    __slots__ = ()

    def appendleft(self, item: Any) -> None:
        self.insert(0, item)
