"""The HTTP side of ``sseplay serve``: ``create_app`` and running it under uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import random
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from importlib import resources
from typing import TYPE_CHECKING, Any, TypeGuard
from urllib.parse import unquote_to_bytes

import httptools
import uvicorn
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sse_starlette import EventSourceResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from sseplay.broadcast import Broadcast
from sseplay.config import (
    DEFAULT_PING,
    DEFAULT_ROUTE,
    DEFAULT_SEND_TIMEOUT,
    ServerConfig,
    check_route,
)
from sseplay.errors import CannotServe, UsageError
from sseplay.faults.outlet import FaultyOutlet
from sseplay.feed import Feed, LiveSubscriber, Resume
from sseplay.http.access import AccessGuard, AccessRules, is_loopback
from sseplay.http.tls import TlsFiles, server_tls
from sseplay.http.uvicorn.direct import DirectBody, LeanEvent, LeanFlowControl, LeanPipeline
from sseplay.model import encode_comment, encode_retry
from sseplay.outlet import Listener, Outlet
from sseplay.player import Player
from sseplay.replay import (
    FROM_THE_START,
    UNKNOWN,
    Replay,
    Start,
    decode_id,
    positive_integer,
    shown_id,
)
from sseplay.stream import Stream as PublicStream
from sseplay.timer import Timer

if TYPE_CHECKING:
    from sseplay.faults.spec import Chosen, FaultCounters, FaultSpec

    # Imported where a followed file or a Redis stream is served: a server of plain
    # files starts without them (start-up time, issue 12).
    from sseplay.sources.follow import Follower, FollowInput
    from sseplay.sources.redis_feed import RedisFeed, RedisStream

logger = logging.getLogger("sseplay.server")
# How long a connection dropped at shutdown waits for uvicorn to see it gone.
DROP_WAIT = 0.5

# Ctrl-C and SIGTERM stop the server within a second even with streams open.
GRACEFUL_SHUTDOWN_SECONDS = 0.5
# How long a stopping HTTPS server waits for the TLS close of its idle connections.
TLS_CLOSE_SECONDS = 0.2
# What uvicorn logs when an application returns with its response unfinished: that
# is how a client cut off for not reading is dropped (ASGI has no other way).
_UNFINISHED = "ASGI callable returned without completing response."
# The most bytes a request line and its headers may take; beyond, the answer is 431
# Request Header Fields Too Large (RFC 6585 section 5) and the connection is closed. The
# same 16 KiB as uvicorn's h11 protocol (h11's default) and Node.js; uvicorn's httptools
# protocol, which sseplay runs on, has no limit of its own.
MAX_REQUEST_HEAD_BYTES = 16 << 10
# --once: after the first whole replay, how long the server waits for that client to
# reconnect and be told (204) that the replay is over. A client reconnects after the
# server's retry: time, or its own default: 3 s in Chromium and sseplay tail, 5 s in
# Firefox. Then a second more, and never more than ONCE_LONGEST_WAIT in all.
ONCE_DEFAULT_RECONNECT = 5.0
ONCE_MARGIN = 1.0
ONCE_LONGEST_WAIT = 30.0
# The page's icon, so that a browser's request for /favicon.ico is not a 404 every time.
FAVICON = (
    b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
    b'<rect width="16" height="16" rx="3" fill="#4fb3ff"/>'
    b'<path d="M6 4l6 4-6 4z" fill="#0f1419"/></svg>'
)


@dataclass(frozen=True, slots=True)
class Stream:
    route: str
    label: str
    # The records to replay; None for a followed input with none at start-up.
    replay: Replay | None
    # --follow: what is read for live events after the replay (``sseplay.sources.follow``).
    follow: FollowInput | None = None


@dataclass(frozen=True, slots=True)
class LiveRoute:
    """A route served live from a Redis stream (``sseplay.sources.redis_feed``)."""

    route: str
    label: str
    source: RedisStream


@dataclass(frozen=True, slots=True)
class AppOptions:
    broadcast: bool = False
    ping: float = DEFAULT_PING
    cors_origins: tuple[str, ...] = ("*",)
    send_timeout: float = DEFAULT_SEND_TIMEOUT
    # Body chunks straight to uvicorn's transport when it allows (see ``direct``).
    direct_writes: bool = True
    # --epoch: when the broadcast timelines start, in Unix seconds; None = at start-up.
    epoch: float | None = None
    # --workers: how many processes serve this port (for /healthz); None = just this one.
    workers: int | None = None
    # --token and the Host check (``sseplay.http.access``); None = every request is answered.
    access: AccessRules | None = None
    # --fault, --fault-header and the seed of their p= draws (see ``sseplay.faults.spec``).
    faults: tuple[FaultSpec, ...] = ()
    fault_header: bool = False
    seed: int = 0


class Hub:
    """The streams of one app: the shared timer, the broadcasts, every open connection."""

    def __init__(
        self,
        streams: Sequence[Stream],
        options: AppOptions,
        on_complete: Callable[[], None] | None,
        on_over: Callable[[], None] | None = None,
    ) -> None:
        self.options = options
        self.on_complete = on_complete
        # Runs after a client was answered 204 (the replay is over): --once stops then.
        self.on_over = on_over
        self.listeners: set[Listener] = set()
        self.headers = event_stream_headers()
        self.cut_off = 0
        self.stopping = False
        self._timer: Timer | None = None
        self._streams = streams
        self.broadcasts: dict[str, Broadcast] = {}
        # Redis routes: each one's reader and feed, started and stopped with the app.
        self.redis_feeds: dict[str, RedisFeed] = {}
        # --follow: each followed route's live feed, and the follower that feeds it.
        self.feeds: dict[str, Feed] = {}
        self.followers: dict[str, Follower] = {}
        self._following: list[asyncio.Task[None]] = []
        # Connections handed over from their replay to a feed: the old listener -> the new.
        self._moved: dict[Listener, Listener] = {}
        # Faults are looked at per connection only when there are any to look at.
        self.faulty = bool(options.faults) or options.fault_header
        # Fault injection is imported only by a server that has faults to inject.
        self.fault_counters: FaultCounters | None = None
        if self.faulty:
            from sseplay.faults.spec import FaultCounters

            self.fault_counters = FaultCounters()

    def fire(self, chosen: Chosen, route: str, number: int, where: str) -> bool:
        """Count and log one firing of a fault; False once its ``times=`` are used up."""
        assert self.fault_counters is not None
        if not self.fault_counters.fire(chosen):
            return False
        logger.info("fault %s fired on %s connection %d %s", chosen.spec.kind, route, number, where)
        return True

    @property
    def timer(self) -> Timer:
        if self._timer is None:
            self._timer = Timer(asyncio.get_running_loop())
        return self._timer

    def start(self) -> None:
        """Start the broadcasts' timelines (they run from the moment the server is up) and
        the followers of followed inputs."""
        loop = asyncio.get_running_loop()
        for stream in self._streams:
            if stream.follow is None:
                continue
            from sseplay.sources.follow import Follower, GrowingReplay, new_feed

            feed = new_feed(stream.follow, self.timer, self.options.ping, self._broadcast_ended)
            replay = stream.replay if isinstance(stream.replay, GrowingReplay) else None
            follower = Follower(stream.follow, feed, replay)
            self.feeds[stream.route] = feed
            self.followers[stream.route] = follower
            feed.start()
            self._following.append(loop.create_task(follower.run()))
        if self.options.broadcast:
            origin = None
            if self.options.epoch is not None:
                # The epoch is a wall-clock moment shared by hosts and workers; the timer
                # runs on the loop's monotonic clock, so it is mapped onto it once, here.
                origin = self.timer.time() + (self.options.epoch - time.time())
            for stream in self._streams:
                if stream.replay is None:
                    continue
                broadcast = Broadcast(
                    stream.replay, self.timer, self.options.ping, self._broadcast_ended
                )
                if stream.follow is not None:
                    broadcast.hand_over = self._broadcast_handed_over
                self.broadcasts[stream.route] = broadcast
                broadcast.begin(origin)

    async def stop_following(self) -> None:
        """Stop the followers (the server is stopping)."""
        tasks, self._following = self._following, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _broadcast_ended(self) -> None:
        if self.on_complete is not None:
            self.on_complete()

    def open(
        self, stream: Stream, outlet: Outlet, start: Start | Resume, preamble: bytes
    ) -> Listener:
        """Start a connection's stream; it is listed before its first write, so that a
        shutdown at any moment ends it. A ``Resume`` starts it in the route's live feed."""
        if isinstance(start, Resume):
            feed = self.feeds[stream.route]
            live = feed.subscribe(outlet, start)
            self.listeners.add(live)
            feed.admit(live, preamble)
            return live
        assert stream.replay is not None
        broadcast = self.broadcasts.get(stream.route)
        if broadcast is not None:
            # A first connection joins live; a resuming one catches up from the history.
            resume = start if start.n or not start.known else None
            subscriber = broadcast.subscribe(outlet, resume)
            self.listeners.add(subscriber)
            broadcast.admit(subscriber, preamble)
            return subscriber
        ping = self.options.ping
        player = Player(outlet, stream.replay, self.timer, start, ping, self.on_complete)
        if stream.follow is not None:
            player.hand_over = self._player_handed_over
        self.listeners.add(player)
        player.begin(preamble)
        return player

    def live_start(self, stream: Stream, last_event_id: str | None, known: bool) -> Start | Resume:
        """Where a connection to a route with a live feed (``self.feeds``) starts: for a
        followed file, a ``Start`` in the replay of its existing records (it goes on into
        the feed at their end) or a ``Resume`` in the feed; for any other feed, where its
        ``resume`` says. ``known`` is False for a Last-Event-ID that is not UTF-8."""
        route = stream.route
        feed, follower = self.feeds[route], self.followers.get(route)
        if follower is None:  # a feed of another source: its own resume rules
            resume = feed.resume(last_event_id if known else None)
            if known:
                return resume
            return Resume(resume.position, self._unknown(True, last_event_id, "the live edge"))
        source = follower.source
        broadcast = self.broadcasts.get(route)
        replaying = (
            stream.replay is not None
            and follower.reset_at is None
            and (broadcast is None or not broadcast.closed)
        )
        if last_event_id and known:
            number = positive_integer(last_event_id)
            if number is not None and number <= feed.position:
                if number < source.count and replaying:
                    return Start(number)
                return feed.resume(last_event_id)
        unknown = bool(last_event_id) or not known
        if source.from_end:
            return Resume(feed.position, self._unknown(unknown, last_event_id, "the live edge"))
        if replaying:
            return UNKNOWN if unknown else FROM_THE_START
        # No existing records to replay (none at start-up, or the file was truncated or
        # replaced since): the live part from its start, as far as the history reaches.
        if self.options.broadcast:
            first = feed.position  # a broadcast is joined live
        else:
            first = feed.first if follower.reset_at is None else follower.reset_at
        if first < feed.oldest:
            logger.warning(
                "%s: a new client starts at event %d: the %d before are no longer kept",
                route,
                feed.oldest + 1,
                feed.oldest - first,
            )
        notice = self._unknown(unknown, last_event_id, "the start")
        return Resume(max(first, feed.oldest), notice)

    @staticmethod
    def _unknown(unknown: bool, last_event_id: str | None, where: str) -> bytes:
        if not unknown:
            return b""
        return encode_comment(
            f"unknown Last-Event-ID {shown_id(last_event_id or '')}: from {where}"
        )

    def _player_handed_over(self, player: Player) -> None:
        """A connection's replay of the existing records is over: it goes on in the feed."""
        for stream in self._streams:
            if stream.replay is player.replay:
                feed = self.feeds[stream.route]
                subscriber = feed.subscribe(player.outlet, Resume(player.n))
                self._move(player, subscriber)
                feed.admit(subscriber)
                return

    def _broadcast_handed_over(
        self, broadcast: Broadcast, subscribers: list[LiveSubscriber]
    ) -> None:
        """The broadcast has played the existing records: its subscribers go on in the feed,
        which takes its history so that those that lag behind catch up (ids = positions)."""
        route = next(r for r, known in self.broadcasts.items() if known is broadcast)
        feed = self.feeds[route]
        history = broadcast.history()
        oldest = broadcast.position - len(history)
        feed.adopt([(str(oldest + i + 1), wire) for i, wire in enumerate(history)])
        for old in subscribers:
            new = feed.subscribe(old.outlet, Resume(old.seen_until))
            self._move(old, new)
            feed.admit(new)

    def _move(self, old: Listener, new: Listener) -> None:
        new.sent = old.sent
        self.listeners.discard(old)
        self.listeners.add(new)
        self._moved[old] = new

    def close(self, stream: Stream, listener: Listener) -> Listener:
        """The connection has ended; the listener that had it last (after a hand-over)."""
        listener = self._moved.pop(listener, listener)
        listener.outlet.close()
        self.listeners.discard(listener)
        feed = self.feeds.get(stream.route)
        if feed is not None and isinstance(listener, LiveSubscriber):
            feed.unsubscribe(listener)
        broadcast = self.broadcasts.get(stream.route)
        if broadcast is not None and isinstance(listener, LiveSubscriber):
            broadcast.unsubscribe(listener)
        return listener

    def cut_off_stream(self, outlet: Outlet) -> None:
        """A client took nothing for the send timeout: end its request (ASGI has no other
        way to drop a connection); uvicorn's complaint about that is filtered out."""
        self.cut_off += 1
        if outlet.task is not None:
            outlet.task.cancel()

    def close_all(self) -> None:
        """End every open stream: the server is stopping."""
        self.stopping = True
        for broadcast in self.broadcasts.values():
            broadcast.closed = True
        for feed in self.feeds.values():
            feed.closed = True
        for listener in list(self.listeners):
            outlet = listener.outlet
            if isinstance(listener, JoiningListener):
                # Mid-backfill: its request may wait on Redis (a page, a lost server) and
                # its transport may hold a page the client has not taken, so an end
                # written now could not go out. It is dropped and its request ended
                # (it resumes at the next server); left alone, it would hold the server
                # until uvicorn's graceful timeout cancels it, with a traceback.
                task, direct = outlet.task, outlet.direct
                if not outlet.closed:
                    outlet.cut()
                if direct and task is not None:  # else cut() has cancelled it
                    task.cancel()
            elif outlet.blocked:
                outlet.cut()
            elif not outlet.closed and not outlet.completed:
                outlet.write(b"", more_body=False)


class _NoBody:
    """An empty body for sse-starlette's constructor: ours is written by the timer."""

    def __aiter__(self) -> _NoBody:
        return self

    async def __anext__(self) -> bytes:
        raise StopAsyncIteration


def event_stream_headers() -> list[tuple[bytes, bytes]]:
    """The headers sse-starlette gives an event stream (``text/event-stream``, ``no-store``
    so no cache keeps it, ``X-Accel-Buffering: no`` so nginx does not buffer it)."""
    return EventSourceResponse(_NoBody(), ping=0, sep="\n").raw_headers


def create_app(
    streams: Sequence[Stream],
    options: AppOptions,
    on_complete: Callable[[], None] | None = None,
    on_over: Callable[[], None] | None = None,
    live: Sequence[LiveRoute] = (),
) -> FastAPI:
    """The whole server. ``on_complete`` runs when a client has received a whole replay
    (or, in broadcast mode, when the shared timeline has played to its end); ``on_over``
    after a client was answered 204 because the replay is over. The app's ``state.hub``
    holds its open streams: ``StreamingServer`` ends them when it stops."""
    hub = Hub(streams, options, on_complete, on_over)

    for live_route in live:
        from sseplay.sources.redis_feed import RedisFeed

        hub.redis_feeds[live_route.route] = RedisFeed(live_route.source)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        hub.start()
        for redis_feed in hub.redis_feeds.values():
            redis_feed.start(hub.timer, options.ping)
        try:
            yield
        finally:
            for redis_feed in hub.redis_feeds.values():
                await redis_feed.stop()
            await hub.stop_following()

    app = FastAPI(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)
    app.state.hub = hub
    if options.access is not None:  # added first: inside CORS, so a 401 carries its headers
        app.add_middleware(AccessGuard, rules=options.access)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(options.cors_origins),
        # Credentials (EventSource withCredentials) only for origins listed by name: with
        # "*" they are invalid (Fetch, CORS protocol), and Starlette would echo any origin.
        allow_credentials="*" not in options.cors_origins,
        allow_methods=["GET", "POST"],
        allow_headers=["*"],
    )

    for stream in streams:
        endpoint = _StreamEndpoint(stream, hub)
        app.router.routes.append(Route(stream.route, endpoint, methods=["GET", "POST"]))
    for live_route in live:
        redis_endpoint = _RedisEndpoint(live_route, hub.redis_feeds[live_route.route], hub)
        app.router.routes.append(Route(live_route.route, redis_endpoint, methods=["GET", "POST"]))

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        return JSONResponse(
            {
                "status": "ok",
                "connections": len(hub.listeners),
                # Which process answered, of how many on this port (--workers).
                "worker": os.getpid(),
                "workers": options.workers or 1,
                "faults": dict(sorted(hub.fault_counters.by_kind.items()))
                if hub.fault_counters is not None
                else {},
                "streams": [_stream_health(s, hub) for s in streams]
                + [
                    {
                        "route": r.route,
                        "file": r.label,
                        # Published since the server started; a live stream has no end.
                        "events": hub.redis_feeds[r.route].published,
                        "types": [],
                        "live": True,
                        "connected": hub.redis_feeds[r.route].reader.connected,
                    }
                    for r in live
                ],
            }
        )

    @app.get("/")
    async def viewer() -> HTMLResponse:
        page = resources.files("sseplay.http").joinpath("viewer.html").read_text("utf-8")
        return HTMLResponse(page)

    @app.get("/favicon.ico")
    async def favicon() -> Response:
        headers = {"Cache-Control": "max-age=86400"}
        return Response(FAVICON, media_type="image/svg+xml", headers=headers)

    return app


def _stream_health(stream: Stream, hub: Hub) -> dict[str, Any]:
    replay, feed = stream.replay, hub.feeds.get(stream.route)
    health: dict[str, Any] = {
        "route": stream.route,
        "file": stream.label,
        "events": replay.file.count if replay is not None else 0,
        "types": sorted(replay.file.event_types) if replay is not None else [],
    }
    if feed is not None:  # --follow: the events so far, and whether the input is over
        health.update(events=feed.position, live=not feed.ended)
    return health


class _StreamEndpoint:
    """A stream route as a plain ASGI endpoint: sse-starlette's headers, worked out once
    per app, and a body written by the hub's shared timer instead of a task group of
    four tasks and a cancel scope per send. Starlette routes it without FastAPI's
    per-request wrapper, and it is one frame: every frame and object here is held for
    as long as the stream is open, thousands of times over."""

    def __init__(self, stream: Stream, hub: Hub) -> None:
        self.stream = stream
        self.hub = hub
        self._cut_off = hub.cut_off_stream  # one bound method, not one per connection

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hub, replay, route = self.hub, self.stream.replay, self.stream.route
        raw_id = _raw_last_event_id(scope)
        last_event_id = None if raw_id is None else decode_id(raw_id)
        start: Start | Resume
        feed = hub.feeds.get(route)
        if raw_id and last_event_id is None:  # not UTF-8: no event has that id
            shown = shown_id(raw_id)
            start = UNKNOWN if feed is None else hub.live_start(self.stream, None, known=False)
        else:
            shown = shown_id(last_event_id or "")
            if feed is not None:
                start = hub.live_start(self.stream, last_event_id, known=True)
            else:
                assert replay is not None
                start = replay.start_after(last_event_id)
        number, during = 0, None
        if hub.faulty:
            picked = await self._pick_faults(scope, receive, send, raw_id)
            if picked is None:  # answered instead of the stream
                return
            number, during = picked
        # 204 tells a browser to stop reconnecting (WHATWG 9.2.3): the replay is over.
        if _over(self.stream, hub, start):
            await Response(status_code=204)(scope, receive, send)
            logger.info(
                "%s asked %s for more after its end (Last-Event-ID %s): 204 No Content",
                _client(scope),
                route,
                shown,
            )
            if hub.on_over is not None:
                hub.on_over()
            return
        await send({"type": "http.response.start", "status": 200, "headers": hub.headers})
        if scope["method"] == "HEAD":  # the headers a GET would get, and no stream
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        task = asyncio.current_task()
        assert task is not None
        direct = DirectBody.of(scope, receive, fast=hub.options.direct_writes)
        # A stream on the fast path of our own protocol is handed over to the connection
        # (``HeadLimitedHttpToolsProtocol.hold``) and its request ends; see ``_Held``.
        holder = _holder(receive) if direct is not None and direct.fast and not during else None
        if during:
            outlet: Outlet = self._faulty_outlet(send, receive, direct, task, number, during)
        else:
            outlet = Outlet(send, hub.options.send_timeout, self._cut_off, direct, task)
        if isinstance(start, Resume):
            preamble = start.notice
            if self.stream.follow is not None and self.stream.follow.retry is not None:
                preamble = encode_retry(self.stream.follow.retry) + preamble
            how = f"at live event {start.position + 1}" if raw_id else "live"
            logger.info("%s connected to %s (%s)", _client(scope), route, how)
        elif not start.known:
            logger.warning(
                "%s connected to %s with an unknown Last-Event-ID %s: replaying from the start",
                _client(scope),
                route,
                shown,
            )
        elif start.n:
            logger.info(
                "%s connected to %s (resuming at event %d)", _client(scope), route, start.n + 1
            )
        else:
            logger.info("%s connected to %s", _client(scope), route)
        if not isinstance(start, Resume):
            assert replay is not None
            preamble = replay.preamble(start, shown)
        listener = hub.open(self.stream, outlet, start, preamble)
        if holder is not None and not (outlet.closed or outlet.completed):
            held = _Held(self, scope, listener, getattr(receive, "__self__", None))
            if holder.hold(held):
                outlet.held_by_connection()
                return
        try:
            # The request's own task waits here: a disconnect, or the end of the
            # response written by the timer, wakes it (uvicorn answers http.disconnect).
            await _disconnect(receive)
        except asyncio.CancelledError:
            # Ended on purpose: cut off for not reading, or a write to it failed.
            if not (outlet.cut_off or outlet.failure):
                raise
            task.uncancel()
        finally:
            self.left(scope, listener)

    def left(self, scope: Scope, listener: Listener) -> None:
        """The stream has ended, however it did: let go of it, and say so."""
        hub, outlet, replay = self.hub, listener.outlet, self.stream.replay
        # The listener that had the connection last (a replay hands over to a live feed).
        listener = hub.close(self.stream, listener)
        if listener.complete:
            how = "got the whole replay"
        elif hub.stopping:
            how = "the server stopped"
        elif isinstance(outlet, FaultyOutlet) and outlet.fault_end:
            how = f"ended by {outlet.fault_end}"
        elif outlet.cut_off:
            how = f"cut off: it read nothing for {hub.options.send_timeout:g} s"
        elif outlet.failure:
            how = f"ended: {outlet.failure}"
        elif replay is not None and replay.failed:
            how = "its file cannot be read any more"
        else:
            how = "disconnected"
        logger.info(
            "%s left %s after %d events (%s)",
            _client(scope),
            self.stream.route,
            listener.sent,
            how,
        )

    # Faults (see ``sseplay.faults.spec``); only a server with faults configured comes here.

    async def _pick_faults(
        self, scope: Scope, receive: Receive, send: Send, raw_id: bytes | None
    ) -> tuple[int, list[Chosen]] | None:
        """This connection's number and the faults that act on its stream; None when a
        fault (or a bad fault in the request) answered instead of the stream."""
        hub, route = self.hub, self.stream.route
        options = hub.options
        from sseplay.faults.spec import choose, parse_request_faults

        assert hub.fault_counters is not None
        number = hub.fault_counters.next_connection(route)
        resuming = bool(raw_id)
        chosen = choose(options.faults, options.seed, route, number, resuming)
        if options.fault_header:
            named = (
                _header(scope, b"sseplay-fault"),
                _query_parameter(scope["query_string"], b"fault"),
            )
            for raw in named:
                if not raw:
                    continue
                try:
                    specs = parse_request_faults(raw.decode("utf-8"))
                except (UsageError, UnicodeDecodeError) as error:
                    problem = str(error) if isinstance(error, UsageError) else "not UTF-8"
                    logger.warning("%s named a bad fault: %s", _client(scope), problem)
                    body = f"sseplay: bad Sseplay-Fault or ?fault=: {problem}\n"
                    await Response(body, 400, media_type="text/plain")(scope, receive, send)
                    return None
                chosen += choose(specs, options.seed, route, number, resuming, scope="request")
        for fault in chosen:
            spec = fault.spec
            if not spec.before_stream:
                continue
            where = f"before the stream ({spec.code})" if spec.kind == "status" else spec.where
            if hub.fire(fault, route, number, where):
                await self._answer_instead(spec, scope, receive, send)
                return None
        return number, [fault for fault in chosen if not fault.spec.before_stream]

    async def _answer_instead(
        self, spec: FaultSpec, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """``status``, ``refuse`` or ``hang``: what the client gets instead of the stream."""
        if spec.kind == "status":
            headers = {}
            if spec.retry_after is not None:  # RFC 9110 section 10.2.3
                headers["Retry-After"] = str(spec.retry_after)
            if spec.code == 204:
                body = ""
            elif spec.body is not None:
                body = spec.body
            else:
                body = f"{spec.code} {HTTPStatus(spec.code).phrase}\n"
            response = Response(body, spec.code, headers, media_type="text/plain")
            await response(scope, receive, send)
            return
        if spec.kind == "refuse":
            transport = _transport(receive)
            if transport is None:  # not uvicorn's httptools: it answers 500 for us
                return
            transport.close()
        elif spec.headers:  # hang:headers=yes
            await send({"type": "http.response.start", "status": 200, "headers": self.hub.headers})
        # Until the client goes; then uvicorn knows the connection is lost and adds nothing.
        await _disconnect(receive)

    def _faulty_outlet(
        self,
        send: Send,
        receive: Receive,
        direct: DirectBody | None,
        task: asyncio.Task[None],
        number: int,
        during: list[Chosen],
    ) -> FaultyOutlet:
        from sseplay.faults.spec import draw

        hub, route = self.hub, self.stream.route
        seed = hub.options.seed
        return FaultyOutlet(
            send,
            hub.options.send_timeout,
            self._cut_off,
            direct,
            task,
            chosen=during,
            fire=lambda fault, where: hub.fire(fault, route, number, where),
            transport=_transport(receive),
            ping=hub.options.ping,
            jitter=lambda n: draw(seed, "jitter", route, number, n),
        )


def _over(stream: Stream, hub: Hub, start: Start | Resume) -> bool:
    """Whether a connection starting at ``start`` has nothing more to get: the stream is
    over for it (answered 204)."""
    if isinstance(start, Resume):
        feed = hub.feeds[stream.route]
        return feed.ended and start.position >= feed.position
    if stream.follow is not None:
        return False  # its replay goes on into the feed
    assert stream.replay is not None
    broadcast = hub.broadcasts.get(stream.route)
    return stream.replay.is_over(start.n) or (broadcast is not None and broadcast.ended)


class JoiningListener(Listener):
    """A connection to a Redis route while it is joining the feed (its backfill is read
    and written): the server stopping ends it, and cancels the join (``Hub.close_all``)."""

    __slots__ = ()


class _RedisEndpoint:
    """A Redis stream's route: each connection joins the route's ``RedisFeed`` (with a
    backfill when it resumes) and is then written to by the feed, as a broadcast's are."""

    def __init__(self, live: LiveRoute, redis_feed: RedisFeed, hub: Hub) -> None:
        self.live = live
        self.redis_feed = redis_feed
        self.hub = hub
        self._cut_off = hub.cut_off_stream

    async def _dropped(self, receive: Receive, outlet: Outlet, direct: DirectBody | None) -> None:
        """A joining connection dropped as the server stops (``Hub.close_all`` aborted its
        transport): wait until uvicorn has seen the loss, which it would otherwise report
        as a response the app left unfinished (an error line)."""
        if self.hub.stopping and outlet.cut_off and direct is not None and direct.fast:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_disconnect(receive), DROP_WAIT)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hub, route = self.hub, self.live.route
        raw_id = _raw_last_event_id(scope)
        last_event_id = None if raw_id is None else decode_id(raw_id)
        if raw_id and last_event_id is None:
            last_event_id = shown_id(raw_id)  # not UTF-8: no entry has that id
        await send({"type": "http.response.start", "status": 200, "headers": hub.headers})
        if scope["method"] == "HEAD":
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        task = asyncio.current_task()
        assert task is not None
        direct = DirectBody.of(scope, receive, fast=hub.options.direct_writes)
        outlet = Outlet(send, hub.options.send_timeout, self._cut_off, direct, task)
        retry = self.live.source.retry
        preamble = encode_retry(retry) if retry is not None else b""
        if last_event_id:
            logger.info(
                "%s connected to %s (resuming after %s)",
                _client(scope),
                route,
                shown_id(last_event_id),
            )
        else:
            logger.info("%s connected to %s", _client(scope), route)
        listener: Listener | None = None
        how = "disconnected"
        joining = JoiningListener(outlet)
        hub.listeners.add(joining)
        try:
            try:
                listener = await self.redis_feed.join(outlet, last_event_id, preamble)
            except Exception as error:  # Redis lost during the backfill: the client retries
                how = f"ended: Redis could not be read for its backfill ({error})"
                # The end goes out after the pages the client has not taken yet: closing
                # the outlet before would cancel it, and the client would see a broken
                # body (an incomplete chunked read) instead of an end to reconnect after.
                outlet.write(b"", more_body=False)
                from sseplay.sources.redis_feed import drained

                await drained(outlet)
                return
            finally:
                hub.listeners.discard(joining)
            if listener is None:
                await self._dropped(receive, outlet, direct)
                return
            hub.listeners.add(listener)
            if hub.stopping:
                outlet.write(b"", more_body=False)
            await _disconnect(receive)
        except asyncio.CancelledError:
            if not (outlet.cut_off or outlet.failure or hub.stopping):
                raise
            task.uncancel()
            await self._dropped(receive, outlet, direct)
        finally:
            outlet.close()
            if listener is not None:
                hub.listeners.discard(listener)
                self.redis_feed.feed.unsubscribe(listener)  # type: ignore[arg-type]
            if hub.stopping:
                how = "the server stopped"
            elif outlet.cut_off:
                how = f"cut off: it read nothing for {hub.options.send_timeout:g} s"
            elif outlet.failure:
                how = f"ended: {outlet.failure}"
            logger.info(
                "%s left %s after %d events (%s)",
                _client(scope),
                route,
                listener.sent if listener is not None else 0,
                how,
            )


async def _disconnect(receive: Receive) -> None:
    """Wait for the client to go (uvicorn also answers http.disconnect once the response
    has ended)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def _raw_last_event_id(scope: Scope) -> bytes | None:
    """The id a client resumes after: the Last-Event-ID header a browser sends when it
    reconnects (WHATWG 9.2.4), else the lastEventId query parameter, which stands in for
    it on a first connection (that cannot set headers)."""
    raw_id = _header(scope, b"last-event-id")
    if raw_id is None:
        raw_id = _query_parameter(scope["query_string"], b"lastEventId")
    return raw_id


def _transport(receive: Receive) -> asyncio.Transport | None:
    """The connection's transport, found the way ``DirectBody.of`` finds uvicorn's request
    cycle; None under another server."""
    cycle: Any = getattr(receive, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None or not callable(getattr(transport, "is_closing", None)):
        return None
    result: asyncio.Transport = transport
    return result


def _header(scope: Scope, name: bytes) -> bytes | None:
    """A request header's first value, as sent; read in place, because Starlette's
    ``Headers`` copies the whole list into the scope, where it stays for the life of a
    stream. ASGI header names are lower-cased by the server."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def _query_parameter(query: bytes, name: bytes) -> bytes | None:
    """The first value of a query parameter, percent-decoded to bytes (URL Standard,
    application/x-www-form-urlencoded parsing: ``+`` is a space); the caller decodes it
    as UTF-8, so that bytes that are not UTF-8 are not silently replaced with U+FFFD."""
    for pair in query.split(b"&"):
        key, _, value = pair.partition(b"=")
        if unquote_to_bytes(key.replace(b"+", b" ")) == name:
            return unquote_to_bytes(value.replace(b"+", b" "))
    return None


def _client(scope: Scope) -> str:
    host, port = scope.get("client") or ("?", 0)
    return f"{host}:{port}"


class _Held:
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

    def __init__(self, endpoint: _StreamEndpoint, scope: Scope, listener: Listener, cycle: Any):
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


def _holder(receive: Receive) -> HeadLimitedHttpToolsProtocol | None:
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

    __slots__ = ("held", "in_head", "in_message", "refused", "seen", "tail")

    def __init__(self) -> None:
        self.held: _Held | None = None  # the stream handed over to this connection
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

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.flow = LeanFlowControl(transport)  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        head = self._head
        if head.refused:
            return
        if head.in_head:
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
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._head.in_head = False
        before = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not before and type(cycle.message_event) is asyncio.Event:
            # A new request, whose task has not run yet: nothing waits on its event.
            cycle.message_event = LeanEvent(cycle.message_event.is_set())  # type: ignore[assignment]

    def hold(self, held: _Held) -> bool:
        """Take over a stream whose response has started, so that its endpoint can
        return (see ``_Held``); False when this connection cannot tell its end alone:
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
                cycle.logger.error(_UNFINISHED)
                cycle.transport.close()
        finally:
            held = self._head.held
            if held is None or held.cycle is not cycle:
                cycle.on_response = _nothing

    def on_message_complete(self) -> None:
        head = self._head
        head.in_message = False
        head.in_head = True
        head.seen = 0
        head.tail = b""
        super().on_message_complete()

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


class StreamingServer(uvicorn.Server):
    """uvicorn's server, ending the open streams first when it stops; uvicorn alone would
    wait out its graceful timeout for them and then cancel them."""

    def __init__(self, config: uvicorn.Config, hub: Hub) -> None:
        super().__init__(config)
        self.hub = hub
        # Only the command handles Ctrl-C and SIGTERM: a library server leaves the
        # process's signal handlers to the program that embeds it.
        self.handle_signals = False

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if self.handle_signals:
            with super().capture_signals():
                yield
        else:
            yield

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        quiet_cut_offs = _CutOffFilter(self.hub)
        uvicorn_log = logging.getLogger("uvicorn.error")
        uvicorn_log.addFilter(quiet_cut_offs)
        try:
            await super().serve(sockets)
        finally:
            uvicorn_log.removeFilter(quiet_cut_offs)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.hub.close_all()
        if self.config.is_ssl:
            asyncio.get_running_loop().call_later(TLS_CLOSE_SECONDS, self._abort_closing)
        await super().shutdown(sockets)

    def _abort_closing(self) -> None:
        """Drop the TLS connections that are still closing: a TLS close waits for the
        client's close_notify (RFC 8446 section 6.1), which a browser holding an idle
        connection may never send; the server would wait out its graceful timeout for
        them, log an error, and leave their transports to a closed loop."""
        for connection in list(self.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None and transport.is_closing():
                transport.abort()


class _CutOffFilter(logging.Filter):
    """Drop uvicorn's error line for a response we ended on purpose (a client cut off
    for not reading); our own log line says what happened."""

    def __init__(self, hub: Hub) -> None:
        super().__init__()
        self.hub = hub

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage() == _UNFINISHED and self.hub.cut_off:
            self.hub.cut_off -= 1
            return False
        return True


def hub_of(app: FastAPI) -> Hub:
    """The open streams of an app made by ``create_app``."""
    hub: Hub = app.state.hub
    return hub


def streaming_server(app: ASGIApp, hub: Hub, **config: Any) -> StreamingServer:
    """A server for ``app`` (made by ``create_app``, or wrapping one), configured the way
    sseplay runs it."""
    settings: dict[str, Any] = {
        "log_config": None,
        "access_log": False,
        # Typed int, but uvicorn only passes it to a timeout, where half a second works.
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS,
        "lifespan": "on",
        # A local mock server has no proxy in front to trust X-Forwarded-For from.
        "proxy_headers": False,
        "http": HeadLimitedHttpToolsProtocol,
        # The same limit should uvicorn be told to use h11 instead (h11 then answers 400).
        "h11_max_incomplete_event_size": MAX_REQUEST_HEAD_BYTES,
    }
    settings.update(config)
    return StreamingServer(uvicorn.Config(app, **settings), hub)


def bind(host: str, port: int, *, reuse_port: bool = False, listen: bool = True) -> socket.socket:
    """Bind before serving, so a port in use is our own one-line error, and port 0 is known.
    ``reuse_port``: SO_REUSEPORT, so that each --workers process listens on the port with a
    socket of its own; ``listen=False`` only holds the port (it gets no connections)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise CannotServe(f"cannot listen on {host!r}: {error.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(address)
        if listen:
            sock.listen(2048)
    except OSError as error:
        sock.close()
        hint = " (pick another --port, or 0 for any free one)" if port else ""
        raise CannotServe(f"cannot listen on {host}:{port}: {error.strerror}{hint}") from None
    sock.setblocking(False)
    return sock


def stream_urls(
    sock: socket.socket, streams: Sequence[Stream | LiveRoute], scheme: str = "http"
) -> list[str]:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return [f"{scheme}://{shown}:{port}{s.route}" for s in streams]


def http2_settings() -> dict[str, Any]:
    """uvicorn's HTTP/2 (experimental in 0.54): its zttp protocols, HTTP/1.1 or HTTP/2 by
    ALPN (RFC 9113 section 3.2). The fast write path then stays off: it is httptools-only."""
    import inspect

    if "http2" not in inspect.signature(uvicorn.Config).parameters:
        raise CannotServe(
            f"--http2 needs uvicorn 0.54 or newer (this is {uvicorn.__version__}): "
            "pip install 'sseplay[http2]'"
        )
    try:
        import zttp  # noqa: F401
    except ImportError:
        raise CannotServe(
            "--http2 needs the zttp package, uvicorn's HTTP/2: pip install 'sseplay[http2]'"
        ) from None
    return {"http": "zttp", "http2": True}


def tls_settings(files: TlsFiles | None, http2: bool) -> dict[str, Any]:
    """The uvicorn settings for HTTPS with ``files`` (none for plain HTTP)."""
    if files is None:
        return {}
    settings: dict[str, Any] = {"ssl_certfile": str(files.certfile)}
    if files.keyfile is not None:
        settings["ssl_keyfile"] = str(files.keyfile)
    if http2:
        settings.update(http2_settings())
    return settings


def once_wait(streams: Sequence[Stream]) -> float:
    """How long ``--once`` waits for the client's reconnect (see ONCE_DEFAULT_RECONNECT)."""
    retries = [s.replay.retry / 1000 for s in streams if s.replay and s.replay.retry is not None]
    reconnect = max(retries) if retries else ONCE_DEFAULT_RECONNECT
    return min(reconnect + ONCE_MARGIN, ONCE_LONGEST_WAIT)


def _warn_of_faults_that_cannot_fire(faults: Sequence[FaultSpec], routes: Sequence[Stream]) -> None:
    """A fault at an event no stream reaches would pass a test that meant to see it fire."""
    if not routes or any(stream.replay is None or stream.replay.plan.loop for stream in routes):
        return
    if any(stream.follow is not None for stream in routes):
        return  # a followed stream has more events to come
    longest = max(stream.replay.plan.total for stream in routes if stream.replay is not None)
    for spec in faults:
        if spec.kind in ("duplicate", "skip", "malformed"):
            needs = spec.at
        elif spec.kind == "cut":
            needs = spec.after + 1
        elif spec.before_stream or spec.kind in ("delay", "slice"):
            continue
        else:
            needs = spec.after
        if needs > longest:
            logger.warning(
                "--fault %r can never fire: no stream has more than %d events", spec.text, longest
            )


def _is_redis_stream(value: object) -> TypeGuard[RedisStream]:
    """Whether ``value`` is a ``RedisStream``, without importing Redis support: while
    its module is not imported, no value can be one."""
    module = sys.modules.get("sseplay.sources.redis_feed")
    return module is not None and isinstance(value, module.RedisStream)


class Server:
    """Serves streams over HTTP: ``with Server(...)`` in a background thread, ``async with``
    on the running event loop, or ``run()`` in the foreground until stopped.

    ``streams`` is one ``Stream``, served at ``/events``, or a mapping of route to
    ``Stream``. A library server leaves the process alone (no signal handlers, no
    collector tuning, no open-file limit): those are the ``sseplay serve`` command's.
    """

    def __init__(
        self,
        streams: PublicStream | RedisStream | Mapping[str, PublicStream | RedisStream],
        *,
        config: ServerConfig | None = None,
        **settings: Any,
    ) -> None:
        """``settings`` are the fields of ``ServerConfig`` (``host``, ``port=0``,
        ``broadcast``, ``ping``, ``cors``, ``send_timeout``, ``once``, ``faults``,
        ``certfile``, ``token``, ``epoch``...), checked as it checks them; or pass a
        ready ``config``."""
        if config is None:
            try:
                config = ServerConfig(**settings)
            except TypeError as error:  # a keyword ServerConfig does not have
                raise TypeError(f"Server: {error}") from None
        elif settings:
            raise TypeError("give Server either config= or its settings, not both")
        self.config = config
        if not isinstance(streams, Mapping):  # one stream: at /events
            streams = {DEFAULT_ROUTE: streams}
        if not streams:
            raise UsageError("a server needs at least one stream")
        routes: list[Stream] = []
        # In the order given: ``urls`` lists them so.
        every: list[Stream | LiveRoute] = []
        for route, stream in streams.items():
            path = check_route("/" + route.strip("/"))
            if any(known.route == path for known in every):  # "feed" and "/feed/" too
                raise UsageError(f"two streams would be served at {path}: give each its route")
            if _is_redis_stream(stream):
                from sseplay.sources.redis_reader import check_redis_route

                check_redis_route(config)
                every.append(LiveRoute(path, stream.label, stream))
                continue
            if not isinstance(stream, PublicStream):
                raise UsageError(f"{route}: expected a Stream, not {type(stream).__name__}")
            replay = stream.replay
            if config.once and replay is not None and replay.plan.loop and not config.broadcast:
                raise UsageError("--once waits for the end of the replay, and --loop never ends")
            if config.once and stream.follow is not None and stream.follow.path is not None:
                # Only standard input ends (when it closes): the server would never stop.
                raise UsageError(
                    f"--once waits for the end of the stream, and a followed file never ends "
                    f"({stream.follow.label}): drop --once, or follow standard input "
                    "(sseplay serve - --follow --once stops once it closes)"
                )
            routes.append(Stream(path, stream.label, replay, stream.follow))
            every.append(routes[-1])
        self.routes: tuple[Stream, ...] = tuple(routes)
        self.live_routes = tuple(r for r in every if isinstance(r, LiveRoute))
        self.all_routes = tuple(every)
        # Held for as long as the server: a stream's temporary copy (records, .gz, a pipe)
        # is removed when the stream goes, and a replay too big to cache reads it back.
        self._streams = tuple(streams.values())
        _warn_of_faults_that_cannot_fire(config.faults, self.routes)
        self._sock: socket.socket | None = None
        self._server: StreamingServer | None = None
        self._hub: Hub | None = None
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None
        self._tls: TlsFiles | None = None

    # What a running server tells.

    @property
    def urls(self) -> list[str]:
        """Every stream's URL, in the order the streams were given."""
        if self._sock is None:
            raise RuntimeError("the server is not running: start it first")
        return stream_urls(self._sock, self.all_routes, "https" if self._tls else "http")

    @property
    def ca_file(self) -> str | None:
        """With ``self_signed``: the CA file that a client trusts (``tail --cacert``)."""
        ca = self._tls.ca_file if self._tls is not None else None
        return str(ca) if ca is not None else None

    @property
    def url(self) -> str:
        """The URL of ``/events``, or of the only stream."""
        only = self.all_routes[0].route
        return self.url_for(DEFAULT_ROUTE if len(self.all_routes) > 1 else only)

    def url_for(self, route: str) -> str:
        wanted = "/" + route.strip("/")
        for stream, url in zip(self.all_routes, self.urls, strict=True):
            if stream.route == wanted:
                return url
        known = [s.route for s in self.all_routes]
        raise KeyError(f"no stream at {wanted}; the routes are {known}")

    @property
    def connections(self) -> int:
        """How many streams are open now."""
        return len(self._hub.listeners) if self._hub is not None else 0

    def __repr__(self) -> str:
        where = self.urls[0] if self._sock is not None else "not running"
        return f"<Server {where} ({len(self.all_routes)} streams)>"

    # Running it.

    def _prepare(self, on_complete: Callable[[], None] | None = None) -> StreamingServer:
        if self._server is not None:
            raise RuntimeError("the server is already running")
        config = self.config
        # --once: after the first whole replay the server waits (``once_wait``) for that
        # client to reconnect and hear, with a 204, that the replay is over, so that it
        # stops for good (WHATWG 9.2.3); it stops once it has answered, or after the wait.
        completed = False

        def stop() -> None:
            if self._server is not None:
                self._server.should_exit = True

        def complete() -> None:
            nonlocal completed
            if on_complete is not None:
                on_complete()
            if config.once and self._server is not None and not completed:
                completed = True
                wait = once_wait(self.routes)
                logger.info(
                    "--once: a client got the whole replay; stopping once it is told so "
                    "(204), or in %g s",
                    wait,
                )
                asyncio.get_running_loop().call_later(wait, stop)

        def over() -> None:
            if completed:
                logger.info("--once: the replay is over for its client, stopping")
                stop()

        access = AccessRules.of(config.host, config.token, config.allowed_hosts)
        seed = config.seed
        if seed is None:
            seed = random.randrange(1 << 32)
            if any(spec.p is not None for spec in config.faults) or config.fault_header:
                logger.info("faults with p= drawn with --seed %d (give it to repeat them)", seed)
        app = create_app(
            self.routes,
            AppOptions(
                broadcast=config.broadcast,
                ping=config.ping,
                cors_origins=config.cors_origins,
                send_timeout=config.send_timeout,
                epoch=config.epoch,
                workers=config.workers,
                access=access if access.token or access.allowed_hosts is not None else None,
                faults=config.faults,
                fault_header=config.fault_header,
                seed=seed,
            ),
            complete,
            over,
            live=self.live_routes,
        )
        tls = server_tls(config.certfile, config.keyfile, config.self_signed, config.host)
        try:
            extra = tls_settings(tls, config.http2)
            self._sock = self._listen()
        except BaseException:
            if tls is not None:
                tls.remove()
            raise
        self._tls = tls
        self._warn_if_exposed()
        self._hub = hub_of(app)
        self._server = streaming_server(app, self._hub, **extra)
        return self._server

    def _listen(self) -> socket.socket:
        """The listening socket (a --workers process gets its own, or the shared one)."""
        return bind(self.config.host, self.config.port)

    def _warn_if_exposed(self) -> None:
        config = self.config
        if is_loopback(config.host):
            return
        if config.token is None:
            logger.warning(
                "listening on %s without --token: every stream is readable by anyone who "
                "can reach this port",
                config.host,
            )
        elif self._tls is None:
            logger.warning(
                "listening on %s with --token but without TLS: the token crosses the "
                "network in clear text (add --certfile/--keyfile or --self-signed)",
                config.host,
            )

    def _finish(self) -> None:
        # Forgotten, not only closed: a stopped server's urls, repr and ca_file say it is
        # not running rather than read a closed socket or name a removed CA file.
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._tls is not None:
            self._tls.remove()
            self._tls = None
        if self._hub is not None:
            # FastAPI keeps the endpoints of recent apps (a bounded lru_cache), and through
            # this hub's callbacks it would keep this server and its streams' temporary copies.
            self._hub.on_complete = self._hub.on_over = None
        self._server = None

    async def serve(
        self, on_ready: Callable[[], None] | None = None, *, handle_signals: bool = False
    ) -> None:
        """Serve on the running loop until ``stop()`` (or Ctrl-C and SIGTERM, when
        ``handle_signals``; only the ``sseplay serve`` command asks for that)."""
        server = self._server or self._prepare()
        server.handle_signals = handle_signals
        assert self._sock is not None
        try:
            task = asyncio.ensure_future(server.serve(sockets=[self._sock]))
            while not server.started and not task.done():
                await asyncio.sleep(0.005)
            if server.started and on_ready is not None:
                on_ready()
            await task
        finally:
            self._finish()

    def run(self, on_ready: Callable[[], None] | None = None) -> None:
        """Serve in this thread until Ctrl-C, SIGTERM or ``once``; the command's way."""
        server = self._prepare()
        # uvicorn's own loop choice (uvloop when installed), which asyncio.run would skip.
        with asyncio.Runner(loop_factory=server.config.get_loop_factory()) as runner:
            runner.run(self.serve(on_ready, handle_signals=True))

    def start(self) -> Server:
        """Serve in a background thread; returns once the server accepts connections."""
        server = self._prepare()
        ready = threading.Event()
        # A failed earlier start must not fail this one (and wait forever for its thread).
        self._failure = None

        def run() -> None:
            try:
                with asyncio.Runner(loop_factory=server.config.get_loop_factory()) as runner:
                    runner.run(self.serve(ready.set))
            except BaseException as error:  # reported to the thread that started it
                self._failure = error
            finally:
                ready.set()

        self._thread = threading.Thread(target=run, name=f"sseplay {self.urls[0]}", daemon=True)
        self._thread.start()
        ready.wait()
        if self._failure is not None or not server.started:
            self._thread.join()
            raise CannotServe(f"the server did not start: {self._failure}")
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving: open streams are ended, the port is closed. Idempotent."""
        server = self._server
        if server is not None:
            server.should_exit = True
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> Server:
        server = self._prepare()
        self._task = asyncio.ensure_future(self.serve())
        while not server.started and not self._task.done():
            await asyncio.sleep(0.005)
        if self._task.done():
            await self._task  # raises what stopped it
            raise CannotServe("the server did not start")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            await self._task
            self._task = None
