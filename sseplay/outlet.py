"""One response body, written from the timer without a task per write: the ``Outlet``.

A connection costs a task only while its client reads too slowly (back-pressure), and is
cut off when that lasts longer than the send timeout, so one frozen reader never holds
up the rest. Whatever writes to connections (``sseplay.player``, ``sseplay.feed``) holds
each one's outlet in a ``Listener``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol, cast

Send = Callable[[dict[str, Any]], Awaitable[None]]

# A chunk larger than this goes through ASGI ``send`` in pieces of at most this size, each
# once the connection has taken the one before: uvicorn frames each body message into a
# new bytes object (``b"".join`` in its httptools ``RequestResponseCycle.send``), and a
# whole 20 MiB event so framed for each of 40 clients was 800 MiB (issue 23). What a
# connection holds of its own is then about the transport's high-water mark (64 KiB) and
# one piece; the event's bytes are the broadcast's, the feed's or the replay's, held once.
PIECE_BYTES = 256 << 10
# ``_finish``: a write whose first step has not been taken yet.
_UNSTARTED = object()


class DirectWriter(Protocol):
    """What an outlet needs of the fast path that writes body chunks straight to the
    server's transport (``sseplay.http.uvicorn.direct.DirectBody`` is one): the core
    knows no HTTP server."""

    @property
    def fast(self) -> bool:
        """Whether body chunks go to the transport (else through ASGI ``send``)."""

    @property
    def gone(self) -> bool:
        """Whether the connection has been closed under the response."""

    def write(self, chunk: bytes) -> bool:
        """Write a body chunk; False when it must go through ``send`` instead, or when
        the connection is ``gone``."""

    def abort(self) -> None:
        """Drop the connection; the server tells the response it is lost."""


class Outlet:
    """One response body, written from the timer without a task per write.

    ``send`` is the ASGI server's coroutine function. Driving its coroutine by hand
    finishes it in one step unless the transport is paused (the client's buffers are
    full); only then does the rest of that write become a task, and ``on_drained``
    runs once it has gone out."""

    __slots__ = (
        "_direct",
        "_finisher",
        "_loop",
        "_on_cut_off",
        "_send",
        "_send_timeout",
        "_timeout",
        "blocked",
        "closed",
        "completed",
        "cut_off",
        "failure",
        "gone",
        "on_drained",
        "task",
    )

    def __init__(
        self,
        send: Send,
        send_timeout: float,
        on_cut_off: Callable[[Outlet], None],
        direct: DirectWriter | None = None,
        task: asyncio.Task[None] | None = None,
    ) -> None:
        self._send: Send | None = send
        # The request's task, which holds the connection open until it ends.
        self.task = task
        self._direct = direct
        self._loop = asyncio.get_running_loop()
        self._send_timeout = send_timeout
        self._on_cut_off = on_cut_off
        self._finisher: asyncio.Task[None] | None = None
        self._timeout: asyncio.TimerHandle | None = None
        self.on_drained: Callable[[], None] = _nothing
        self.blocked = False
        self.closed = False
        self.completed = False
        self.cut_off = False
        # Why a write to this connection failed (it is then closed), or None.
        self.failure: str | None = None
        # The client closed the connection, seen by a write before the request heard of
        # it: the connection ended because the client left, not because of an error.
        self.gone = False

    @property
    def direct(self) -> bool:
        """Whether chunks go straight to the server's transport (see
        ``sseplay.http.uvicorn.direct``)."""
        return self._direct is not None and self._direct.fast

    def write(self, chunk: bytes, more_body: bool = True) -> bool:
        """Send ``chunk`` (the last one when ``more_body`` is false); False when the client
        is not keeping up and the write finishes later, or when the write failed (the
        connection is then ended: ``failure`` says why). It never raises: one connection's
        failure must not reach the timer, the broadcast or the other connections."""
        send = self._send
        if self.completed or self.closed or send is None:
            return False
        direct = self._direct
        try:
            if direct is not None:
                # The fast path first: ``direct.write`` declines a connection that is gone.
                if more_body and chunk and direct.write(chunk):
                    return True
                if direct.gone:
                    self.gone = True
                    self.fail("its connection was closed under it")
                    return False
            if not more_body:
                self.completed = True
            if len(chunk) > PIECE_BYTES:
                return self._write_pieces(send, chunk, more_body)
            message = {"type": "http.response.body", "body": chunk, "more_body": more_body}
            # ASGI's send is a coroutine function; typed Awaitable by Starlette.
            coroutine = cast(Coroutine[Any, Any, None], send(message))
            try:
                blocker = coroutine.send(None)
            except StopIteration:
                return True
        except OSError:  # ASGI 2.4: the server may say so when the client has gone
            self.closed = True
            return False
        except Exception as error:  # uvloop's RuntimeError on a closed transport, and others
            self.fail(f"a write failed: {type(error).__name__}: {error}")
            return False
        self._block(coroutine, blocker, None)
        return False

    def _write_pieces(self, send: Send, chunk: bytes, more_body: bool) -> bool:
        """``write`` for a chunk larger than ``PIECE_BYTES``: its pieces go out while the
        connection takes them at once; the rest waits, in order, until it drains."""
        start = 0
        try:
            while start < len(chunk):
                body = chunk[start : start + PIECE_BYTES]
                start += PIECE_BYTES
                more = more_body or start < len(chunk)
                message = {"type": "http.response.body", "body": body, "more_body": more}
                coroutine = cast(Coroutine[Any, Any, None], send(message))
                try:
                    blocker = coroutine.send(None)
                except StopIteration:
                    continue
                rest = (chunk, start, more_body) if start < len(chunk) else None
                self._block(coroutine, blocker, rest)
                return False
        except OSError:
            self.closed = True
            return False
        except Exception as error:
            self.fail(f"a write failed: {type(error).__name__}: {error}")
            return False
        return True

    def _block(
        self,
        coroutine: Coroutine[Any, Any, None],
        blocker: object,
        rest: tuple[bytes, int, bool] | None,
    ) -> None:
        self.blocked = True
        self._finisher = self._loop.create_task(self._finish(coroutine, blocker, rest))
        self._timeout = self._loop.call_later(self._send_timeout, self.cut)

    async def _finish(
        self,
        coroutine: Coroutine[Any, Any, None],
        blocker: object,
        rest: tuple[bytes, int, bool] | None,
    ) -> None:
        """Drive a write the client's back-pressure held up to its end; then the ``rest``
        of a large chunk (the chunk, the offset reached, ``more_body``) a piece at a time."""
        try:
            while True:
                await _drive(coroutine, blocker)
                send = self._send
                if rest is None or send is None:
                    break
                chunk, start, more_body = rest
                body = chunk[start : start + PIECE_BYTES]
                start += PIECE_BYTES
                more = more_body or start < len(chunk)
                rest = (chunk, start, more_body) if start < len(chunk) else None
                # It took a piece: it reads, and has ``send_timeout`` for the next one.
                self._restart_timeout()
                message = {"type": "http.response.body", "body": body, "more_body": more}
                coroutine = cast(Coroutine[Any, Any, None], send(message))
                blocker = _UNSTARTED
        except asyncio.CancelledError:
            coroutine.close()
            raise
        except OSError:
            self.closed = True
        except Exception as error:
            self.blocked = False
            self._finisher = None
            self.fail(f"a write failed: {type(error).__name__}: {error}")
            return
        self.blocked = False
        self._finisher = None
        if self._timeout is not None:
            self._timeout.cancel()
            self._timeout = None
        if not self.closed:
            self.on_drained()

    def _restart_timeout(self) -> None:
        if self._timeout is not None:
            self._timeout.cancel()
            self._timeout = self._loop.call_later(self._send_timeout, self.cut)

    def cut(self) -> None:
        """The client took nothing for ``send_timeout`` seconds: stop writing to it and
        drop the connection (the server's ``send`` stays paused until it reads)."""
        self._timeout = None
        self.cut_off = True
        if self._direct is not None and self._direct.fast:
            # The server sees the connection lost and tells the response so.
            self._direct.abort()
        else:
            self._on_cut_off(self)
        self.close()

    def held_by_connection(self) -> None:
        """No request task waits on this response any more (its connection holds it, see
        ``HeadLimitedHttpToolsProtocol.hold``): a stream cut off, or whose write failed,
        is ended by dropping its connection, which then tells its end."""
        self.task = None
        self._on_cut_off = Outlet._drop

    def _drop(self) -> None:
        if self._direct is not None:
            self._direct.abort()

    def fail(self, reason: str) -> None:
        """A write to this connection failed: end it, and only it. Its request is ended
        the way a client cut off is (the server may never tell it of the loss)."""
        if self.closed:
            return
        self.failure = reason
        self._on_cut_off(self)
        self.close()

    def close(self) -> None:
        self.closed = True
        # A closed outlet lets go of the connection: its listener may wait in the timer's
        # table until its next deadline, and the listener's callback points back at it.
        # Without that cycle, and without the server's objects, what a connection leaves
        # goes at once, by reference counting, not at a collector pass (rare by design,
        # see server.py), so clients that come and go never grow the server.
        self.on_drained = _nothing
        self.task = None
        self._send = None
        self._direct = None
        if self._timeout is not None:
            self._timeout.cancel()
            self._timeout = None
        if self._finisher is not None:
            self._finisher.cancel()
            self._finisher = None


def _nothing() -> None:
    pass


async def _drive(coroutine: Coroutine[Any, Any, None], blocker: object) -> None:
    """Run ``coroutine`` (an ASGI ``send``) to its end, from where it stopped on
    ``blocker`` (or from its start: ``_UNSTARTED``)."""
    while True:
        if isinstance(blocker, asyncio.Future):
            # Wait without taking its result: the coroutine takes it (or its error).
            await asyncio.wait((blocker,))
        elif blocker is not _UNSTARTED:  # a bare yield, as asyncio.sleep(0) does
            await asyncio.sleep(0)
        try:
            blocker = coroutine.send(None)
        except StopIteration:
            return


class Listener:
    """What a connection's response holds: its outlet and how many events it got."""

    __slots__ = ("complete", "outlet", "sent")

    def __init__(self, outlet: Outlet) -> None:
        self.outlet = outlet
        self.sent = 0
        self.complete = False

    @property
    def closed(self) -> bool:
        return self.outlet.closed
