"""The control API (``--control``, issue 26): a test drives the server while its client
streams. Off unless asked for: without it every ``/_sseplay/`` path is sseplay's own 404
(``sseplay.http.app``). With it, only loopback clients may use it unless ``--token`` is
set, which then guards it as it guards every route (``sseplay.http.access``).

    POST   /_sseplay/publish      {"route", "data", "event", "to": "all" | id} -> {"id"}
    POST   /_sseplay/pause        {"route"?}
    POST   /_sseplay/resume       {"route"?}
    POST   /_sseplay/advance      {"count": N, "route"?}
    GET    /_sseplay/connections
    DELETE /_sseplay/connections/{id}
    POST   /_sseplay/fault        {"spec", "conn": "next" | id, "route"?}
    POST   /_sseplay/reset
    GET    /_sseplay/journal, /_sseplay/verdict   (``sseplay.http.journal``)

A published event goes into the route's live feed (``sseplay.gate.GatedFeed``, the one
``sseplay.feed.Feed`` that followed files and Redis use): it takes the route's next id
and is resumable with Last-Event-ID like any event. Pausing holds the route's ``Gate``.

Everything here runs on the server's event loop; ``call`` runs it there from another
thread (a test's, beside ``Server.start``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from sseplay.errors import UsageError
from sseplay.feed import LiveSubscriber
from sseplay.gate import Gate, GatedFeed
from sseplay.http.access import is_loopback
from sseplay.http.journal import ENTRY_KEY
from sseplay.http.request import client_of
from sseplay.model import DEFAULT_EVENT_TYPE, encode_body, field_problem, with_id
from sseplay.outlet import Listener, Outlet
from sseplay.player import Player

if TYPE_CHECKING:
    from sseplay.faults.spec import FaultSpec
    from sseplay.http.hub import Hub

logger = logging.getLogger("sseplay.server")

PREFIX = "/_sseplay/"
# A control request's body is a small JSON object; anything bigger is a mistake.
MAX_BODY = 1 << 20
# How long ``call`` from another thread waits for the loop to do it.
CALL_TIMEOUT = 10.0
# Where the endpoint finds the faults armed for the next connection (``pick_faults``).
ARMED_KEY = "sseplay.armed"

T = TypeVar("T")
COMPACT: dict[str, Any] = {"ensure_ascii": False, "separators": (",", ":")}


class ControlError(Exception):
    """A control request that cannot be done: its status and what to write instead."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(slots=True)
class Connection:
    """One open stream as the control API lists it."""

    id: int
    route: str
    client: str
    opened: float
    listener: Listener
    faults: list[str] = field(default_factory=list)


class Control:
    """The control API's state: the open connections by id, the faults armed for the
    next connection, and the operations (on the server's loop)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.loop: asyncio.AbstractEventLoop | None = None
        self.connections: dict[int, Connection] = {}
        self._by_outlet: dict[Outlet, Connection] = {}
        self._next_id = 1
        self._kicked: dict[Outlet, bool] = {}
        # Faults armed with conn=next, per route ("" for any route), taken in order.
        self.armed: list[tuple[str, FaultSpec]] = []

    # ---- what the hub and the endpoint tell it ----

    def register(self, listener: Listener, scope: Scope, route: str) -> None:
        armed = [spec.text for spec in scope.get(ARMED_KEY, ())]
        # The journal's id for it, so that its entries and this listing agree.
        entry = scope.get(ENTRY_KEY)
        number = entry.connection if entry is not None else self._next_id
        connection = Connection(number, route, client_of(scope), time.monotonic(), listener, armed)
        self._next_id = max(self._next_id, number) + 1
        self.connections[connection.id] = connection
        self._by_outlet[listener.outlet] = connection

    def moved(self, new: Listener) -> None:
        """The connection goes on with another listener (a replay handed over to a feed)."""
        connection = self._by_outlet.get(new.outlet)
        if connection is not None:
            connection.listener = new

    def forget(self, outlet: Outlet) -> bool:
        """The connection has ended; whether ``kick`` ended it."""
        connection = self._by_outlet.pop(outlet, None)
        if connection is not None:
            self.connections.pop(connection.id, None)
        return self._kicked.pop(outlet, False)

    def take_armed(self, route: str) -> tuple[FaultSpec, ...]:
        """The faults armed for the next connection of ``route``, taken."""
        taken = tuple(spec for where, spec in self.armed if where in ("", route))
        self.armed = [(where, spec) for where, spec in self.armed if where not in ("", route)]
        return taken

    # ---- the operations ----

    def publish(
        self, route: str, data: object, event: str | None = None, to: object = "all"
    ) -> str | None:
        """Send an event to the route's clients (or to one connection); its id, or None
        for one sent to a single connection (no ``id:`` field, so that connection's
        Last-Event-ID still names an event of the route, WHATWG HTML 9.2.6)."""
        path = self._route(route)
        feed = self._feed(path)
        # JSON as a file's records go out: compact, and not ASCII-escaped.
        text = data if isinstance(data, str) else json.dumps(data, **COMPACT)
        event = event or DEFAULT_EVENT_TYPE
        if not isinstance(event, str) or (problem := field_problem("event", event)):
            raise ControlError(400, f"bad event type: {problem or 'not a text'}")
        body = encode_body(text, event)
        if to == "all" or to is None:
            event_id = feed.next_id()
            feed.publish([(event_id, with_id(event_id, body))])
            return event_id
        connection = self._connection(to)
        if connection.route != path:
            raise ControlError(400, f"connection {connection.id} is on {connection.route}")
        outlet = connection.listener.outlet
        if outlet.blocked or outlet.closed or outlet.completed:
            raise ControlError(409, f"connection {connection.id} is not taking events now")
        # Not counted in its ``sent``: what a paused route's ``advance`` releases to it
        # is counted in the route's own events.
        outlet.write(body)
        return None

    def pause(self, route: str | None = None) -> None:
        sent = self._sent_of()
        for gate in self._gates(route):
            gate.pause(lambda outlet: sent.get(outlet, 0))

    def resume(self, route: str | None = None) -> None:
        for gate in self._gates(route):
            gate.resume()

    def advance(self, count: int, route: str | None = None) -> None:
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise ControlError(400, f"count must be a whole number of events, not {count!r}")
        sent = self._sent_of()
        for gate in self._gates(route):
            gate.advance(count, lambda outlet: sent.get(outlet, 0))

    def listing(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        return [
            {
                "id": connection.id,
                "route": connection.route,
                "client": connection.client,
                "age": round(now - connection.opened, 3),
                "events": connection.listener.sent,
                "last_id": self._last_id(connection),
                "faults": connection.faults,
            }
            for connection in self.connections.values()
        ]

    def kick(self, connection_id: object) -> None:
        """End one connection's response (its client sees the stream end, and may
        reconnect); one that does not read is dropped."""
        outlet = self._connection(connection_id).listener.outlet
        self._kicked[outlet] = True
        if outlet.blocked:
            outlet.cut()
        elif not outlet.closed and not outlet.completed:
            outlet.write(b"", more_body=False)

    def arm(
        self, spec_text: object, conn: object = "next", route: str | None = None
    ) -> dict[str, Any]:
        """Arm a fault for the next connection (of ``route``, or of any route), or on an
        open one, ``conn`` naming its id: there its ``after=`` and ``at=`` count from the
        events it was already sent (``"events"`` in the answer)."""
        from sseplay.faults.outlet import FaultyOutlet
        from sseplay.faults.spec import parse_request_faults

        if not isinstance(spec_text, str):
            raise ControlError(400, "spec must be a fault text like 'drop:after=5'")
        try:
            specs = parse_request_faults(spec_text)
        except UsageError as error:
            raise ControlError(400, str(error)) from None
        if conn == "next":
            where = "" if route is None else self._route(route)
            self.armed.extend((where, spec) for spec in specs)
            return {"armed": spec_text}
        connection = self._connection(conn)
        if route is not None and self._route(route) != connection.route:
            raise ControlError(400, f"connection {connection.id} is on {connection.route}")
        for spec in specs:
            if spec.before_stream:
                raise ControlError(
                    409,
                    f"{spec.kind} acts before a stream, and connection {connection.id} has "
                    'one: arm it with "conn": "next" for the next connection',
                )
            if spec.p is not None or not spec.conn.every:
                choose = f"{spec.text!r}: conn= and p= choose connections: drop them"
                raise ControlError(400, f"{choose} when naming one ({connection.id})")
        outlet = connection.listener.outlet
        if not isinstance(outlet, FaultyOutlet):  # not a stream connection
            raise ControlError(409, f"connection {connection.id} takes no faults")
        if outlet.closed or outlet.completed or outlet.fault_end is not None:
            raise ControlError(409, f"connection {connection.id} is ending")
        events = outlet.arm(specs)
        connection.faults.extend(spec.text for spec in specs)
        return {"armed": spec_text, "conn": connection.id, "events": events}

    def reset(self) -> None:
        """Counters from zero: the shaped routes' turns, the faults' (conn=N, times=)."""
        hub = self.hub
        hub.turn_counts.clear()
        for reset in hub.on_reset:  # a scenario's counts
            reset()
        if hub.fault_counters is not None:
            from sseplay.faults.spec import FaultCounters

            hub.fault_counters = FaultCounters()
        self.armed.clear()
        if hub.journal is not None:
            hub.journal.clear()

    def call(self, operation: Callable[..., T], *args: Any) -> T:
        """Run an operation on the server's loop, from any thread, and return its result."""
        loop = self.loop
        if loop is None:
            raise RuntimeError("the server is not running: start it first")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            return operation(*args)

        async def run() -> T:
            return operation(*args)

        return asyncio.run_coroutine_threadsafe(run(), loop).result(CALL_TIMEOUT)

    # ---- inside ----

    def _route(self, route: object) -> str:
        if not isinstance(route, str):
            raise ControlError(400, "route must be a path like /events")
        path = "/" + route.strip("/")
        if path not in self.hub.gates:
            known = sorted(self.hub.gates)
            raise ControlError(404, f"no route {path} to control; the routes are {known}")
        return path

    def _feed(self, route: object) -> GatedFeed:
        path = self._route(route)
        feed = self.hub.feeds.get(path)
        if not isinstance(feed, GatedFeed) or path in self.hub.followers:
            raise ControlError(
                409,
                f"{path} takes no published events: a followed input's events come from "
                "it (append to it), and a looped replay never reaches a live part",
            )
        return feed

    def _gates(self, route: object) -> list[Gate]:
        if route is None:
            return list(self.hub.gates.values())
        return [self.hub.gates[self._route(route)]]

    def _connection(self, connection_id: object) -> Connection:
        try:
            number = int(connection_id)  # type: ignore[call-overload]
        except (TypeError, ValueError):
            number = -1
        connection = self.connections.get(number)
        if connection is None:
            raise ControlError(404, f"no open connection {connection_id!r}")
        return connection

    def _sent_of(self) -> dict[Outlet, int]:
        return {listener.outlet: listener.sent for listener in self.hub.listeners}

    def _last_id(self, connection: Connection) -> str | None:
        """The id of the last event the connection was sent (as it would resume with)."""
        listener = connection.listener
        if isinstance(listener, LiveSubscriber):
            feed = self.hub.feeds.get(connection.route)
            if isinstance(feed, GatedFeed) and listener.seen_until > 0:
                return str(listener.seen_until)  # positional ids
            return None
        if isinstance(listener, Player) and listener.n > 0:
            wire, _ = listener.replay.chunk(listener.n - 1, listener.n)
            for line in wire.split(b"\n"):
                if line.startswith(b"id: "):
                    return line[4:].decode("utf-8", "replace")
        return None


class ControlEndpoint:
    """``/_sseplay/{rest}`` as a plain ASGI endpoint: the operations over HTTP."""

    def __init__(self, hub: Hub) -> None:
        self.control = hub.control
        self.journal = hub.journal
        self.config = hub.options.config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        config = self.config
        host = (scope.get("client") or ("", 0))[0]
        if config.token is None and not is_loopback(host):
            # The token (checked by ``AccessGuard`` before any route) is what lets another
            # machine drive the server; without one, only this machine may.
            logger.warning("%s used the control API: answered 403 (not loopback)", client_of(scope))
            await JSONResponse(
                {
                    "error": "the control API answers loopback clients only; start the server "
                    "with --token to drive it from elsewhere"
                },
                status_code=403,
            )(scope, receive, send)
            return
        if self.journal is not None and await self.journal.answer(scope, receive, send):
            return
        try:
            answer = await self._answer(scope, receive)
            response = JSONResponse(answer)
        except ControlError as error:
            response = JSONResponse({"error": str(error)}, status_code=error.status)
        await response(scope, receive, send)

    async def _answer(self, scope: Scope, receive: Receive) -> Any:
        control = self.control
        method, path = scope["method"], scope["path"][len(PREFIX) :]
        if control is None:  # --expect-client alone: the journal and the verdict
            raise ControlError(
                404,
                f"no operation {method} {scope['path']}: GET /_sseplay/journal and "
                "/_sseplay/verdict answer; start the server with --control for the others",
            )
        if method == "GET" and path == "connections":
            return {"connections": control.listing()}
        if method == "DELETE" and path.startswith("connections/"):
            control.kick(path.removeprefix("connections/"))
            return {"ended": True}
        if method != "POST" or path not in OPERATIONS:
            raise ControlError(
                404, f"no control operation {method} {scope['path']}; see {sorted(OPERATIONS)}"
            )
        body = await _json_body(receive)
        return OPERATIONS[path](control, body)


async def _json_body(receive: Receive) -> dict[str, Any]:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > MAX_BODY:
            raise ControlError(413, f"a control request's body is at most {MAX_BODY} bytes")
        if not message.get("more_body", False):
            break
    raw = b"".join(chunks)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as error:
        raise ControlError(400, f"the body is not JSON: {error}") from None
    if not isinstance(body, dict):
        raise ControlError(400, "the body must be a JSON object")
    return body


def _publish(control: Control, body: dict[str, Any]) -> Any:
    if "route" not in body or "data" not in body:
        raise ControlError(400, 'publish needs {"route": "/events", "data": ...}')
    return {
        "id": control.publish(body["route"], body["data"], body.get("event"), body.get("to", "all"))
    }


def _pause(control: Control, body: dict[str, Any]) -> Any:
    control.pause(body.get("route"))
    return {"paused": True}


def _resume(control: Control, body: dict[str, Any]) -> Any:
    control.resume(body.get("route"))
    return {"paused": False}


def _advance(control: Control, body: dict[str, Any]) -> Any:
    control.advance(body.get("count", 1), body.get("route"))
    return {"advanced": body.get("count", 1)}


def _fault(control: Control, body: dict[str, Any]) -> Any:
    return control.arm(body.get("spec"), body.get("conn", "next"), body.get("route"))


def _reset(control: Control, body: dict[str, Any]) -> Any:
    control.reset()
    return {"reset": True}


OPERATIONS: dict[str, Callable[[Control, dict[str, Any]], Any]] = {
    "publish": _publish,
    "pause": _pause,
    "resume": _resume,
    "advance": _advance,
    "fault": _fault,
    "reset": _reset,
}
