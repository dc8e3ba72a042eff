"""ONE stream endpoint for every route: the request's life cycle (where it starts, faults,
the 204 at the end, the response start, HEAD, the outlet, the log lines and how it
ended) is written here once; what differs between a replayed (or followed) file and a
Redis stream is its ``RouteSource`` (``sseplay.http.route_sources``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, NamedTuple, Protocol, TypeVar

from fastapi.responses import Response
from starlette.types import Receive, Scope, Send

from sseplay.errors import UsageError
from sseplay.faults.outlet import FaultyOutlet
from sseplay.http.request import (
    client_of,
    disconnect,
    header,
    query_parameter,
    raw_last_event_id,
)
from sseplay.http.uvicorn.direct import DirectBody
from sseplay.http.uvicorn.protocol import Held, holder_of, transport_of
from sseplay.outlet import Listener, Outlet

if TYPE_CHECKING:
    from sseplay.faults.spec import Chosen
    from sseplay.http.hub import Hub
    from sseplay.shaped import ShapedResponse

logger = logging.getLogger("sseplay.server")
# How long a connection dropped at shutdown waits for uvicorn to see it gone.
DROP_WAIT = 0.5
# Where a scenario's rule puts its own faults for the stream it plays (``pick_faults``).
RULE_FAULTS_KEY = "sseplay.rule_faults"
# Where ``pick_faults`` leaves the fault that answered instead of the stream (the journal).
ANSWERED_KEY = "sseplay.answered"

Position = TypeVar("Position")


@dataclass(slots=True)
class Opening(Generic[Position]):
    """Where one connection starts, as its route's source works it out, and how the log
    tells of it."""

    # Where in the route it starts (a file's ``Start`` or ``Resume``, a Redis entry id).
    at: Position
    # The Last-Event-ID as logged (cut short, bytes that are not UTF-8 escaped).
    shown: str
    # What the log says after "connected to ROUTE", e.g. " (resuming at event 5)".
    said: str = ""
    # Said as a warning (an unknown Last-Event-ID, replayed from the start).
    warn: bool = False
    # Why its source ended it while it opened (Redis lost during its backfill).
    ended: str | None = None
    # How a Last-Event-ID was taken (``sseplay.metrics.RESUME_RESULTS``); None when the
    # source counts it itself (Redis: once its backfill is looked up).
    resumed: str | None = "exact"


class RouteSource(Protocol[Position]):
    """What a route's connections are served from: the few steps that differ between
    a replayed file and a Redis stream."""

    route: str
    # Whether --fault acts on this route (on replayed files, not on redis:// streams).
    faults_apply: bool
    # Whether a stream can be handed over to its connection (``Held``).
    holdable: bool
    # Whether a stream cut while the server stops is ended quietly, after uvicorn has
    # seen its connection go (``wait_for_loss``).
    dropped_at_stop: bool

    def opening(self, raw_id: bytes | None) -> Opening[Position]:
        """Where a client with this Last-Event-ID (as sent, or None) starts."""
        ...

    def is_over(self, opening: Opening[Position]) -> bool:
        """Whether it has nothing more to get: it is answered 204."""
        ...

    async def open(
        self,
        outlet: Outlet,
        opening: Opening[Position],
        receive: Receive,
        direct: DirectBody | None,
    ) -> Listener | None:
        """Start the connection's stream; None when it ended while it opened."""
        ...

    def close(self, listener: Listener) -> Listener:
        """Let go of an ended stream; returns the listener that had it last."""
        ...

    def broken(self) -> str | None:
        """Why no stream of this route can go on (its file cannot be read any more)."""
        ...


async def wait_for_loss(
    hub: Hub, receive: Receive, outlet: Outlet, direct: DirectBody | None
) -> None:
    """A connection dropped as the server stops (``Hub.close_all`` aborted its
    transport): wait until uvicorn has seen the loss, which it would otherwise report
    as a response the app left unfinished (an error line)."""
    if hub.stopping and outlet.cut_off and direct is not None and direct.fast:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(disconnect(receive), DROP_WAIT)


class StreamEndpoint(Generic[Position]):
    """A stream route as a plain ASGI endpoint: the hub's headers, worked out once, and a
    body written by the hub's shared timer (or a feed) instead of a task group of four
    tasks and a cancel scope per send. Starlette routes it without FastAPI's
    per-request wrapper, and it is one frame: every frame and object here is held for
    as long as the stream is open, thousands of times over."""

    def __init__(self, source: RouteSource[Position], hub: Hub) -> None:
        self.source = source
        self.hub = hub
        self._cut_off = hub.cut_off_stream  # one bound method, not one per connection
        # For the journal: the retry: every connection gets first, and whether a live
        # part's ids are its positions (a file's route; a Redis stream's are its own).
        self.retry = _retry_of(source)
        stream = getattr(source, "stream", None)
        self.positional = stream is not None
        self.replay = stream.replay if stream is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hub, source = self.hub, self.source
        journal = hub.journal
        if journal is not None:  # --control, --expect-client: each request is journaled
            await journal.started(scope, receive, source.route)
        raw_id = raw_last_event_id(scope)
        opening = source.opening(raw_id)
        number, during = 0, None
        if hub.faulty and source.faults_apply:
            picked = await self._pick_faults(scope, receive, send, raw_id)
            if picked is None:  # answered instead of the stream
                if journal is not None:
                    journal.answered(scope)
                return
            number, during = picked
        # 204 tells a browser to stop reconnecting (WHATWG 9.2.3): the replay is over.
        if source.is_over(opening):
            await Response(status_code=204)(scope, receive, send)
            logger.info(
                "%s asked %s for more after its end (Last-Event-ID %s): 204 No Content",
                client_of(scope),
                source.route,
                opening.shown,
                extra={"route": source.route, "client": client_of(scope), "reason": "over"},
            )
            if journal is not None:
                journal.ended(scope, "204", 204)
            if hub.metrics is not None:
                hub.metrics.answered_over(source.route, bool(raw_id))
            if hub.on_over is not None:
                hub.on_over()
            return
        await send({"type": "http.response.start", "status": 200, "headers": hub.headers})
        if scope["method"] == "HEAD":  # the headers a GET would get, and no stream
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            if journal is not None:
                journal.ended(scope, "end", 200)
            return
        task = asyncio.current_task()
        assert task is not None
        direct = DirectBody.of(scope, receive, fast=hub.options.direct_writes)
        # A stream on the fast path of our own protocol is handed over to the connection
        # (``HeadLimitedHttpToolsProtocol.hold``) and its request ends; see ``Held``.
        fast = source.holdable and direct is not None and direct.fast
        holder = holder_of(receive) if fast and not during else None
        if during or hub.control is not None:  # --control: faults can be armed on it later
            if not number:  # a route no --fault acts on still numbers its connections
                assert hub.fault_counters is not None
                number = hub.fault_counters.next_connection(source.route)
            outlet: Outlet = self._faulty_outlet(send, receive, direct, task, number, during or [])
        else:
            outlet = Outlet(send, hub.options.config.send_timeout, self._cut_off, direct, task)
        client = client_of(scope)
        logger.log(
            logging.WARNING if opening.warn else logging.INFO,
            "%s connected to %s%s",
            client,
            source.route,
            opening.said,
            extra={"route": source.route, "client": client},
        )
        if hub.metrics is not None:
            hub.metrics.opened(outlet, source.route)
            if raw_id and opening.resumed is not None:
                hub.metrics.resumed(source.route, opening.resumed)
        listener: Listener | None = None
        held = False
        try:
            listener = await source.open(outlet, opening, receive, direct)
            if listener is None:
                return
            if hub.control is not None:  # listed by the control API (--control)
                hub.control.register(listener, scope, source.route)
            if journal is not None:  # its entry tells what it was sent so far
                journal.streaming(scope, listener, self.positional, self.replay)
            if holder is not None and not (outlet.closed or outlet.completed):
                held = holder.hold(Held(self, scope, listener, getattr(receive, "__self__", None)))
                if held:
                    outlet.held_by_connection()
                    return
            # The request's own task waits here: a disconnect, or the end of the
            # response written by the timer, wakes it (uvicorn answers http.disconnect).
            await disconnect(receive)
        except asyncio.CancelledError:
            # Ended on purpose: cut off for not reading, or a write to it failed (or,
            # for a source dropped at stop, the server is stopping).
            stopped = source.dropped_at_stop and hub.stopping
            if not (outlet.cut_off or outlet.failure or stopped):
                raise
            task.uncancel()
            if source.dropped_at_stop:
                await wait_for_loss(hub, receive, outlet, direct)
        finally:
            if not held:
                ended = opening.ended
                self.left(scope, listener if listener is not None else Listener(outlet), ended)

    def left(self, scope: Scope, listener: Listener, ended: str | None = None) -> None:
        """The stream has ended, however it did: let go of it, and say so (``ended``: why
        its source ended it, if it did)."""
        # The listener that had the connection last (a replay hands over to a live feed).
        listener = self.source.close(listener)
        otherwise = ended or self.source.broken() or "disconnected"
        ended_how = ending(self.hub, listener, "got the whole replay", otherwise)
        how = ended_how.how
        route, client, sent = self.source.route, client_of(scope), listener.sent
        journal = self.hub.journal
        if journal is not None:
            journal.ended(
                scope, ended_how.journal, 200, listener, self.retry, self.positional, self.replay
            )
        if self.hub.metrics is not None:
            self.hub.metrics.ended(listener.outlet, route, ended_how.outcome, sent)
        logger.info(
            "%s left %s after %d events (%s)",
            client,
            route,
            sent,
            how,
            extra={"route": route, "client": client, "events": sent, "reason": how},
        )

    async def _pick_faults(
        self, scope: Scope, receive: Receive, send: Send, raw_id: bytes | None
    ) -> tuple[int, list[Chosen]] | None:
        return await pick_faults(self.hub, self.source.route, scope, receive, send, raw_id)

    def _faulty_outlet(
        self,
        send: Send,
        receive: Receive,
        direct: DirectBody | None,
        task: asyncio.Task[None],
        number: int,
        during: list[Chosen],
    ) -> FaultyOutlet:
        return faulty_outlet(
            self.hub, self.source.route, send, receive, direct, task, number, during
        )


# Faults (see ``sseplay.faults.spec``); only a server with faults configured comes here.
# Shared by the stream routes and the shaped ones (``sseplay.http.shaped``).


async def pick_faults(
    hub: Hub, route: str, scope: Scope, receive: Receive, send: Send, raw_id: bytes | None
) -> tuple[int, list[Chosen]] | None:
    """This connection's number and the faults that act on its stream; None when a
    fault (or a bad fault in the request) answered instead of the stream."""
    options = hub.options
    from sseplay.faults.spec import choose, parse_request_faults, seeded

    assert hub.fault_counters is not None
    number = hub.fault_counters.next_connection(route)
    resuming = bool(raw_id)
    chosen = choose(options.config.faults, options.seed, route, number, resuming)
    if hub.control is not None and hub.control.armed:  # armed at run time (--control)
        from sseplay.http.control import ARMED_KEY

        armed = hub.control.take_armed(route)
        scope[ARMED_KEY] = armed
        chosen += choose(armed, options.seed, route, number, resuming, scope="request")
    if rule_faults := scope.get(RULE_FAULTS_KEY):  # ``sseplay.http.scenario``
        chosen += choose(rule_faults, options.seed, route, number, resuming, scope="scenario")
    if options.config.fault_header:
        named = (
            header(scope, b"sseplay-fault"),
            query_parameter(scope["query_string"], b"fault"),
        )
        for raw in named:
            if not raw:
                continue
            try:
                specs = parse_request_faults(raw.decode("utf-8"))
            except (UsageError, UnicodeDecodeError) as error:
                problem = str(error) if isinstance(error, UsageError) else "not UTF-8"
                logger.warning("%s named a bad fault: %s", client_of(scope), problem)
                body = f"sseplay: bad Sseplay-Fault or ?fault=: {problem}\n"
                await Response(body, 400, media_type="text/plain")(scope, receive, send)
                return None
            if not hub.seed_named and (drawn := seeded(specs)):
                hub.seed_named = True  # once: the same seed draws every request's faults
                logger.info(
                    "a request's faults with %s drawn with --seed %d (give it to repeat them)",
                    drawn,
                    options.seed,
                )
            chosen += choose(specs, options.seed, route, number, resuming, scope="request")
    for fault in chosen:
        spec = fault.spec
        if not spec.before_stream:
            continue
        where = f"before the stream ({spec.code})" if spec.kind == "status" else spec.where
        if hub.fire(fault, route, number, where):
            from sseplay.http.fault_answers import answer_instead

            scope[ANSWERED_KEY] = spec
            await answer_instead(spec, scope, receive, send, hub.headers)
            return None
    return number, [fault for fault in chosen if not fault.spec.before_stream]


def faulty_outlet(
    hub: Hub,
    route: str,
    send: Send,
    receive: Receive,
    direct: DirectBody | None,
    task: asyncio.Task[None],
    number: int,
    during: list[Chosen],
    shaped: ShapedResponse | None = None,
    by_write: bool = False,
) -> FaultyOutlet:
    """The outlet of a connection that faults act on; ``shaped``: a shaped answer, whose
    own mid-stream error ``error-event`` sends, and whose frames are its events when it
    is not SSE; ``by_write``: each write is what faults count and act on (a recording's
    network reads, ``--chunks``), not the events in it."""
    from sseplay.faults.spec import draw

    seed = hub.options.seed
    return FaultyOutlet(
        send,
        hub.options.config.send_timeout,
        hub.cut_off_stream,
        direct,
        task,
        chosen=during,
        fire=lambda fault, where: hub.fire(fault, route, number, where),
        transport=transport_of(receive),
        ping=hub.options.config.ping,
        jitter=lambda n: draw(seed, "jitter", route, number, n),
        error_frame=shaped.error_frame if shaped is not None else None,
        framed=by_write or (shaped is not None and not shaped.sse),
    )


class Ending(NamedTuple):
    """How a response ended, said three ways."""

    how: str  # for the line logged when its client leaves
    journal: str  # for the journal (``sseplay.journal.ENDINGS``)
    outcome: str  # for the metrics (``sseplay.metrics.OUTCOMES``)


def ending(hub: Hub, listener: Listener, whole: str, otherwise: str = "disconnected") -> Ending:
    """Why a response ended (every kind of route says it the same way): ``whole`` when the
    client got all of it, ``otherwise`` when nothing on the server's side ended it."""
    outlet = listener.outlet
    # Forgotten first, whatever the answer: the control API lists open connections only.
    kicked = hub.control is not None and hub.control.forget(outlet)
    if listener.complete:
        return Ending(whole, "end", "end")
    if kicked:
        return Ending("ended by the control API", "end", "control")
    if hub.stopping:
        return Ending("the server stopped", "end", "stopped")
    if isinstance(outlet, FaultyOutlet) and outlet.fault_end:
        kind = "fault:" + outlet.fault_end.removeprefix("fault ")
        return Ending(f"ended by {outlet.fault_end}", kind, "fault")
    if outlet.cut_off:
        timeout = hub.options.config.send_timeout
        return Ending(f"cut off: it read nothing for {timeout:g} s", "cut off", "cut_off")
    if outlet.gone:  # seen by a write before the request heard of it
        return Ending("disconnected", "client left", "client_left")
    if outlet.failure:
        return Ending(f"ended: {outlet.failure}", "error", "error")
    if otherwise == "disconnected":
        return Ending(otherwise, "client left", "client_left")
    return Ending(otherwise, "error", "error")


def _retry_of(source: object) -> int | None:
    """The retry: a route's connections get first (a file's, a followed input's, a Redis
    stream's), or None."""
    stream = getattr(source, "stream", None)
    if stream is not None:
        retry: int | None = stream.follow.retry if stream.follow is not None else None
        if retry is None and stream.replay is not None:
            retry = stream.replay.retry
        return retry
    live = getattr(source, "live", None)
    return None if live is None else live.source.retry


def played_started(hub: Hub, scope: Scope, listener: Listener, route: str) -> None:
    """A played response (a shaped turn, a recorded exchange) has begun streaming: counted,
    listed by the control API and journaled, as the stream endpoint does its own."""
    if hub.metrics is not None:
        hub.metrics.opened(listener.outlet, route)
    if hub.control is not None:
        hub.control.register(listener, scope, route)
    if hub.journal is not None:
        hub.journal.streaming(scope, listener, positional=False, replay=None)


def played_ended(
    hub: Hub, scope: Scope, listener: Listener, route: str, status: int, whole: str
) -> str:
    """A played response has ended: counted and journaled; how, for the line logged."""
    ended = ending(hub, listener, whole)
    if hub.metrics is not None:
        hub.metrics.ended(listener.outlet, route, ended.outcome, listener.sent)
    if hub.journal is not None:
        hub.journal.ended(scope, ended.journal, status, listener)
    return ended.how
