"""Shaped routes over HTTP: each route of a ``Turns`` (``sseplay.shaped``) answers POST
with the next turn, in its provider's shape, played on the shared timer."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from starlette.types import Receive, Scope, Send

from sseplay.faults.outlet import FaultyOutlet
from sseplay.http.endpoint import played_ended, played_started
from sseplay.http.recorded import read_body
from sseplay.http.request import BODY_KEY, client_of, disconnect
from sseplay.http.uvicorn.direct import DirectBody
from sseplay.http.uvicorn.protocol import arrived_at
from sseplay.outlet import Outlet
from sseplay.timed import TimedPlayer

if TYPE_CHECKING:
    from sseplay.http.hub import Hub
    from sseplay.shaped import Turns

logger = logging.getLogger("sseplay.server")


class ShapedEndpoint:
    """One route of a ``Turns``: the nth request gets the nth turn (then the last), as
    its provider sends it. The count is the hub's (``Hub.turn_counts``), per route."""

    def __init__(self, turns: Turns, route: str, hub: Hub) -> None:
        self.turns = turns
        self.route = route
        self.hub = hub

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hub, route = self.hub, self.route
        body = await read_body(receive)
        if body is None:
            return
        origin = arrived_at(scope, hub.timer.time)  # the frames' offsets count from the request
        if hub.journal is not None:  # --control, --expect-client: each request is journaled
            scope[BODY_KEY] = body
            await hub.journal.started(scope, receive, route)
        number = hub.turn_counts[route] = hub.turn_counts.get(route, 0) + 1
        await self.answer(scope, receive, send, body, number, origin)

    async def answer(
        self, scope: Scope, receive: Receive, send: Send, body: bytes, number: int, origin: float
    ) -> None:
        """Play turn ``number`` (then the last) to a request whose ``body`` is read,
        which came at ``origin`` on the hub's timer (a scenario's rules pick it too)."""
        hub, turns, route = self.hub, self.turns, self.route
        timer = hub.timer
        query = bytes(scope["query_string"]).decode("latin-1")
        response = turns.respond(number, scope["path"], query, body)
        index = turns.index(number)
        shown = f"turn {index + 1} of {turns.label}"
        logger.info("%s POST %s: %s (%s)", client_of(scope), scope["path"], shown, turns.shape.name)
        number_on_route, during = 0, None
        if hub.faulty and response.is_stream:
            from sseplay.http.endpoint import pick_faults

            picked = await pick_faults(hub, route, scope, receive, send, None)
            if picked is None:  # answered instead of the stream
                if hub.journal is not None:
                    hub.journal.answered(scope)
                return
            number_on_route, during = picked
        await send(
            {"type": "http.response.start", "status": response.status, "headers": response.headers}
        )
        task = asyncio.current_task()
        assert task is not None
        direct = DirectBody.of(scope, receive, fast=hub.options.direct_writes)
        # Under --control a fault may be armed on this connection while it streams.
        if during or (hub.control is not None and response.is_stream):
            from sseplay.http.endpoint import faulty_outlet

            outlet: Outlet = faulty_outlet(
                hub, route, send, receive, direct, task, number_on_route, during or [], response
            )
        else:
            config = hub.options.config
            outlet = Outlet(send, config.send_timeout, hub.cut_off_stream, direct, task)
        one_by_one = isinstance(outlet, FaultyOutlet) and not response.sse
        player = TimedPlayer(outlet, response, timer, origin, turns.ping, one_by_one=one_by_one)
        hub.listeners.add(player)
        played_started(hub, scope, player, route)
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
            outlet.close()
            hub.listeners.discard(player)
            how = played_ended(hub, scope, player, route, response.status, "got the whole turn")
            logger.info(
                "%s left %s after %d frames (%s)", client_of(scope), route, player.sent, how
            )
