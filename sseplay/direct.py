"""The fast path for a held stream's body: chunks written straight to uvicorn's transport.

At thousands of connections each event is one small write, and the four awaits
between the timer and the socket (three Starlette middleware wrappers, then
uvicorn's ``send``) cost more CPU than the write itself. When the server is
uvicorn's httptools protocol, a body chunk that may go out now is framed the way
uvicorn frames it (HTTP/1.1 chunked transfer coding, RFC 9112 section 7.1) and
handed to the transport directly. Everything else goes through ASGI ``send``:
the response start (so middleware adds its headers), the last chunk (so uvicorn
knows the response is complete), a paused transport (back-pressure), a
disconnected client, and any other server. It also lets a client cut off for not
reading be dropped at once (``abort``). ``DirectBody.of`` checks what it
relies on and says None when anything is not as expected.

It also tells a connection that has gone from one that has not (``gone``), on
either path. uvicorn marks a response disconnected when its connection is lost,
except when the client pipelined a second request behind it: the connection's
current request is then the second one, the first never hears of the loss, and
its writes go to a closed transport (uvloop raises, asyncio drops them quietly).
"""

from __future__ import annotations

from typing import Any

from starlette.types import Receive, Scope

_HTTPTOOLS_CYCLE = ("uvicorn.protocols.http.httptools_impl", "RequestResponseCycle")


class DirectBody:
    __slots__ = ("_cycle", "_flow", "_transport", "fast")

    def __init__(self, cycle: Any, fast: bool = True) -> None:
        self._cycle = cycle
        self._flow = cycle.flow
        self._transport = cycle.transport
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
        if (kind.__module__, kind.__qualname__) != _HTTPTOOLS_CYCLE:
            return None
        try:
            ready = (
                cycle.scope is scope
                and cycle.response_started
                and cycle.chunked_encoding is True
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
        """Write a non-empty, non-final chunk now; False when it must go through ``send``.
        Raises what the transport raises (uvloop: RuntimeError once it is closed)."""
        cycle = self._cycle
        if (
            not self.fast
            or cycle.disconnected
            or cycle.response_complete
            or self._flow.write_paused
        ):
            return False
        self._transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
        return True

    def abort(self) -> None:
        """Drop the connection now, with whatever is still buffered for it: a graceful
        close would wait for a client that has stopped reading to take it."""
        self._transport.abort()
