"""Recorded exchanges over HTTP: every request that sseplay's own routes do not answer
is matched to a recording (``sseplay.recordings``) and answered as the upstream did;
one that matches none is a 404 that says what was recorded and what differed, or, with
``--record-missing UPSTREAM``, is forwarded there by the recording proxy's code
(``sseplay.http.proxy``), recorded into the directory and matched from then on."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from sseplay.errors import InputError
from sseplay.exchange import Exchange, read_exchange
from sseplay.http.endpoint import played_ended, played_started
from sseplay.http.request import BODY_KEY, client_of, disconnect, raw_last_event_id
from sseplay.http.uvicorn.direct import DirectBody
from sseplay.http.uvicorn.protocol import arrived_at
from sseplay.outlet import Listener, Outlet
from sseplay.recordings import Answer, Recordings
from sseplay.timed import TimedPlayer

if TYPE_CHECKING:
    from sseplay.http.hub import Hub
    from sseplay.http.proxy import ProxyApp

logger = logging.getLogger("sseplay.server")


class BodyTooLarge(Exception):
    """A request body beyond the ``limit`` of ``read_body``."""


async def read_body(receive: Receive, limit: int | None = None) -> bytes | None:
    """The request's whole body; None when the client left before sending it.
    ``BodyTooLarge`` past ``limit`` bytes (the rest is not read)."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        parts.append(message.get("body", b""))
        size += len(parts[-1])
        if limit is not None and size > limit:
            raise BodyTooLarge(f"a request body is at most {limit} bytes here")
        if not message.get("more_body", False):
            return b"".join(parts)


class RecordedEndpoint:
    """The app's default answer when recordings are served: the recording that matches
    the request, played back; ``otherwise`` (Starlette's) for a WebSocket."""

    def __init__(self, recordings: Recordings, hub: Hub, otherwise: ASGIApp) -> None:
        self.recordings = recordings
        self.hub = hub
        self.otherwise = otherwise
        self.proxy: ProxyApp | None = None
        if recordings.record_missing is not None:
            from sseplay.http.proxy import ProxyApp

            self.proxy = ProxyApp(recordings.record_missing, recordings.source)
            hub.on_stop.append(self.proxy.close_all)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.otherwise(scope, receive, send)
            return
        hub, recordings = self.hub, self.recordings
        timer = hub.timer
        body = await read_body(receive)
        if body is None:
            return
        origin = arrived_at(scope, timer.time)  # the offsets count from the request
        method, path = scope["method"], scope["path"]
        journal = hub.journal
        if journal is not None:  # --control, --expect-client: each request is journaled
            scope[BODY_KEY] = body
            await journal.started(scope, receive, path)
        query = bytes(scope["query_string"]).decode("latin-1")
        exchange = recordings.matcher.find(method, path, query, body)
        if exchange is None and self.proxy is not None:
            await self._record_missing(scope, body, receive, send)
            if journal is not None:  # the proxy answered it, with the upstream's status
                journal.ended(scope, "end", None)
            return
        if exchange is None:
            explained = recordings.matcher.explain(method, path, query, body)
            logger.warning(
                "%s %s %s: no recording matches (%s)",
                client_of(scope),
                method,
                path,
                explained.get("differs", "nothing recorded"),
            )
            await JSONResponse(explained, status_code=404)(scope, receive, send)
            if journal is not None:
                journal.ended(scope, "error", 404)
            return
        await self.play(scope, receive, send, exchange, origin)

    async def play(
        self, scope: Scope, receive: Receive, send: Send, exchange: Exchange, origin: float
    ) -> None:
        """Play ``exchange`` back to a request whose body is read, which came at
        ``origin`` on the hub's timer (a scenario's rules pick it too)."""
        hub, recordings = self.hub, self.recordings
        timer = hub.timer
        method, path = scope["method"], scope["path"]
        raw_id = raw_last_event_id(scope)
        last_event_id = raw_id.decode("utf-8", "replace") if raw_id else None
        shared = hub.options.config.broadcast and exchange.is_stream
        if shared:
            # --broadcast: one timeline per recorded stream, from the server's start (or
            # --epoch), every client on it alike, as a broadcast file's.
            origin = hub.broadcast_origin
            answer = recordings.shared_answer(exchange, last_event_id, timer.time() - origin)
        else:
            answer = recordings.answer(exchange, last_event_id)
        shown = exchange.path.name if exchange.path is not None else recordings.label
        if answer is None:
            logger.info(
                "%s %s %s: %s: 204",
                client_of(scope),
                method,
                path,
                f"{shown} has no event left on its shared timeline (--broadcast)"
                if shared
                else f"resumed after the last event of {shown}",
            )
            if hub.metrics is not None:
                hub.metrics.answered_over(path, resumed=bool(last_event_id))
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            if hub.journal is not None:
                hub.journal.ended(scope, "204", 204)
            return
        logger.info("%s %s %s: playing %s", client_of(scope), method, path, shown)
        # Faults act on a recorded event stream as on any (--fault, --fault-header,
        # --control), event by event; with --chunks, read by read (the unit it plays: an
        # event may lie across two reads, and the reads go out as recorded). Not on
        # another body.
        faultable = hub.faulty and answer.is_stream
        number_on_route, during = 0, None
        if faultable:
            from sseplay.http.endpoint import pick_faults

            picked = await pick_faults(hub, path, scope, receive, send, raw_id)
            if picked is None:  # answered instead of the stream
                if hub.journal is not None:
                    hub.journal.answered(scope)
                return
            number_on_route, during = picked
        # The head when the upstream sent it: one wait, before the connection has a body.
        # On a shared timeline at once, as a broadcast file's (before a future --epoch
        # too: the client waits for the events, not for an answer).
        delay = 0.0 if shared else origin + answer.head_at - timer.time()
        if delay > 0 and not await _head_due(hub, delay):
            # The server stops first: answered now, not cancelled by uvicorn's graceful
            # timeout (a 500 and a traceback).
            await send({"type": "http.response.start", "status": 503, "headers": []})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            if hub.journal is not None:
                hub.journal.ended(scope, "end", 503)
            return
        await send(
            {"type": "http.response.start", "status": answer.status, "headers": answer.headers}
        )
        if method == "HEAD":  # the head a GET would get, and no body (RFC 9110 9.3.2)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            if hub.journal is not None:
                hub.journal.ended(scope, "end", answer.status)
            return
        task = asyncio.current_task()
        assert task is not None
        direct = DirectBody.of(scope, receive, fast=hub.options.direct_writes)
        # Reads that faults count go out one write each, even when due together.
        one_by_one = False
        if during or (faultable and hub.control is not None):  # armed now, or maybe later
            from sseplay.http.endpoint import faulty_outlet

            one_by_one = recordings.chunks
            outlet: Outlet = faulty_outlet(
                hub,
                path,
                send,
                receive,
                direct,
                task,
                number_on_route,
                during or [],
                by_write=recordings.chunks,
            )
        else:
            config = hub.options.config
            outlet = Outlet(send, config.send_timeout, hub.cut_off_stream, direct, task)
        player = TimedPlayer(
            outlet, answer, timer, origin, recordings.ping, self._ended, one_by_one=one_by_one
        )
        hub.listeners.add(player)
        played_started(hub, scope, player, path)  # by path: a recorded one, labels bounded
        try:
            player.begin()
            # The request's task waits here: a disconnect, or the end of the response
            # written by the timer, wakes it (uvicorn answers http.disconnect then).
            await disconnect(receive)
        except asyncio.CancelledError:
            if not (outlet.cut_off or outlet.failure):
                raise
            task.uncancel()
        finally:
            self._left(scope, player, shown, path, answer.status)

    async def _record_missing(
        self, scope: Scope, body: bytes, receive: Receive, send: Send
    ) -> None:
        """Forward a request no recording matches, and play its recording from now on
        (only a whole one: an upstream that failed, a client that left, leave none)."""
        proxy = self.proxy
        assert proxy is not None
        method, path = scope["method"], scope["path"]
        logger.info(
            "%s %s %s: no recording matches: forwarded to %s",
            client_of(scope),
            method,
            path,
            proxy.shown,
        )
        saved = await proxy.forward(scope, body, receive, send)
        if saved is None:
            return
        try:
            exchange = read_exchange(saved)
        except InputError as error:
            logger.error("%s: the new recording cannot be read back: %s", saved, error)
            return
        self.recordings.add(exchange)
        logger.info("%s %s: recorded in %s, played from now on", method, path, saved.name)

    def _ended(self, player: TimedPlayer) -> None:
        assert isinstance(player.response, Answer)
        if self.recordings.played(player.response.exchange) and self.hub.on_complete is not None:
            self.hub.on_complete()

    def _left(self, scope: Scope, listener: Listener, shown: str, path: str, status: int) -> None:
        listener.outlet.close()
        self.hub.listeners.discard(listener)
        how = played_ended(self.hub, scope, listener, path, status, "got the whole recording")
        logger.info("%s left %s after %d pieces (%s)", client_of(scope), shown, listener.sent, how)


async def _head_due(hub: Hub, delay: float) -> bool:
    """Wait ``delay`` seconds for a recorded head; False when the server stops first."""
    if hub.stopping:
        return False
    stopped = asyncio.get_running_loop().create_future()

    def stop() -> None:
        if not stopped.done():
            stopped.set_result(None)

    hub.on_stop.append(stop)
    try:
        await asyncio.wait_for(stopped, delay)
    except TimeoutError:
        return True
    finally:
        hub.on_stop.remove(stop)
    return False
