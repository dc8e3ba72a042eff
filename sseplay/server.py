"""The public ``Server``: streams served over HTTP from a library, a test or the
``sseplay serve`` command."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeGuard

from sseplay.canary import Canary
from sseplay.config import DEFAULT_ROUTE, ServerConfig, check_route
from sseplay.errors import UsageError
from sseplay.http.access import AccessRules, is_loopback
from sseplay.http.app import create_app, hub_of
from sseplay.http.canary import CanaryRoute
from sseplay.http.control_methods import ControlMethods, OpenConnections
from sseplay.http.hub import AppOptions, Hub, LiveRoute, Route
from sseplay.http.listen import bind, stream_urls, tls_settings
from sseplay.http.running import Running
from sseplay.http.tls import TlsFiles, server_tls
from sseplay.http.uvicorn.server import StreamingServer, streaming_server
from sseplay.recordings import Recordings
from sseplay.scenario import Scenario
from sseplay.shaped import Turns
from sseplay.stream import Stream

if TYPE_CHECKING:
    from sseplay.faults.spec import FaultSpec
    from sseplay.sources.redis_feed import RedisStream

logger = logging.getLogger("sseplay.server")
# --once: after the first whole replay, how long the server waits for that client to
# reconnect and be told (204) that the replay is over. A client reconnects after the
# server's retry: time, or its own default: 3 s in Chromium and sseplay tail, 5 s in
# Firefox. Then a second more, and never more than ONCE_LONGEST_WAIT in all.
ONCE_DEFAULT_RECONNECT = 5.0
ONCE_MARGIN = 1.0
ONCE_LONGEST_WAIT = 30.0


def once_wait(streams: Sequence[Route]) -> float:
    """How long ``--once`` waits for the client's reconnect (see ONCE_DEFAULT_RECONNECT)."""
    retries = [s.replay.retry / 1000 for s in streams if s.replay and s.replay.retry is not None]
    reconnect = max(retries) if retries else ONCE_DEFAULT_RECONNECT
    return min(reconnect + ONCE_MARGIN, ONCE_LONGEST_WAIT)


def _warn_of_faults_that_cannot_fire(faults: Sequence[FaultSpec], routes: Sequence[Route]) -> None:
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


# The server's root, as ``stream_urls`` reads a route: the base URL of recordings.
_BASE = Route("/", "recordings", None)


def _check_recordings_config(config: ServerConfig) -> None:
    """Server settings that recordings cannot honour, said at once rather than ignored."""
    if config.workers is not None:
        raise UsageError(
            "recordings are matched in one process (the nth request gets the nth "
            "recording): drop --workers"
        )


def _check_turns_config(config: ServerConfig) -> None:
    """Server settings that shaped routes cannot honour, said at once rather than ignored."""
    if config.broadcast:
        raise UsageError(
            "--broadcast shares one timeline of a file: each request to a shaped route gets "
            "its own turn; drop --broadcast"
        )
    if config.workers is not None:
        raise UsageError(
            "turns are counted in one process (the nth request gets the nth turn): drop --workers"
        )


def _check_scenario(config: ServerConfig, scenario: Scenario, taken: Sequence[str]) -> None:
    """Server settings a scenario cannot honour, and paths served twice."""
    if config.broadcast or config.workers is not None:
        raise UsageError(
            "a scenario counts requests in one process and plays each its own file: "
            "drop --broadcast and --workers"
        )
    for rule in scenario.rules:
        if rule.path in taken:
            raise UsageError(f"{rule.where}: path: {rule.path} is served by a stream already")


def _is_redis_stream(value: object) -> TypeGuard[RedisStream]:
    """Whether ``value`` is a ``RedisStream``, without importing Redis support: while
    its module is not imported, no value can be one."""
    module = sys.modules.get("sseplay.sources.redis_feed")
    return module is not None and isinstance(value, module.RedisStream)


class Server(ControlMethods, Running):
    """Serves streams over HTTP: ``with Server(...)`` in a background thread, ``async with``
    on the running event loop, or ``run()`` in the foreground until stopped.

    ``streams`` is one ``Stream``, served at ``/events``, or a mapping of route to
    ``Stream``. A library server leaves the process alone (no signal handlers, no
    collector tuning, no open-file limit): those are the ``sseplay serve`` command's.
    """

    def __init__(
        self,
        streams: Stream
        | RedisStream
        | Recordings
        | Turns
        | Scenario
        | Mapping[str, Stream | RedisStream | Canary | None]
        | None = None,
        *,
        recordings: Recordings | None = None,
        turns: Turns | Sequence[Turns] = (),
        scenario: Scenario | Mapping[str, Any] | str | os.PathLike[str] | None = None,
        config: ServerConfig | None = None,
        **settings: Any,
    ) -> None:
        """``settings`` are the fields of ``ServerConfig`` (``host``, ``port=0``,
        ``broadcast``, ``ping``, ``cors``, ``send_timeout``, ``once``, ``faults``,
        ``certfile``, ``token``, ``epoch``, ``metrics``...), checked as it checks them; or pass a
        ready ``config``. ``Recordings`` (alone, or as ``recordings=`` beside streams)
        answer every request that no stream route or sseplay's own routes serve.
        ``Turns`` (alone, or as ``turns=`` beside streams) answer POST at their shape's
        routes (``/v1/chat/completions``...), as an LLM provider would. ``scenario``
        (a JSON or TOML file, or the same structure as a dict; ``sseplay.scenario``)
        answers its paths by its rules, the nth matching request with the nth file.
        A ``Canary`` at a route serves events that carry when they were written
        (``sseplay.canary``)."""
        if config is None:
            try:
                config = ServerConfig(**settings)
            except TypeError as error:  # a keyword ServerConfig does not have
                raise TypeError(f"Server: {error}") from None
        elif settings:
            raise TypeError("give Server either config= or its settings, not both")
        self.config = config
        if streams is None:
            streams = {}
        elif isinstance(streams, Scenario):  # alone: ``sseplay serve --scenario FILE``
            if scenario is not None:
                raise UsageError("give Server one scenario, not two")
            scenario, streams = streams, {}
        self.scenario: Scenario | None = None
        if scenario is not None:
            from sseplay.scenario_file import load_scenario

            self.scenario = load_scenario(scenario)
        if config.metrics:  # one line naming the extra, before any port opens
            from sseplay.metrics import require_prometheus

            require_prometheus()
        if isinstance(turns, Turns):
            turns = (turns,)
        if isinstance(streams, Turns):
            turns, streams = (*turns, streams), {}
        for shaped in turns:
            if not isinstance(shaped, Turns):
                raise UsageError(f"turns= expects Turns, not {type(shaped).__name__}")
        self.turns: tuple[Turns, ...] = tuple(turns)
        if self.turns:
            _check_turns_config(config)
        if isinstance(streams, Recordings):
            if recordings is not None:
                raise UsageError("give Server one Recordings, not two")
            recordings, streams = streams, {}
        elif recordings is not None and not isinstance(recordings, Recordings):
            raise UsageError(f"recordings= expects Recordings, not {type(recordings).__name__}")
        self.recordings = recordings
        if recordings is not None:
            _check_recordings_config(config)
        if not isinstance(streams, Mapping):  # one stream: at /events
            streams = {DEFAULT_ROUTE: streams}
        if not streams and recordings is None and not self.turns and self.scenario is None:
            raise UsageError("a server needs at least one stream")
        routes: list[Route] = []
        # In the order given: ``urls`` lists them so.
        every: list[Route | LiveRoute | CanaryRoute] = []
        for route, stream in streams.items():
            path = check_route("/" + route.strip("/"))
            if any(known.route == path for known in every):  # "feed" and "/feed/" too
                raise UsageError(f"two streams would be served at {path}: give each its route")
            if _is_redis_stream(stream):
                from sseplay.sources.redis_reader import check_redis_route

                check_redis_route(config)
                every.append(LiveRoute(path, stream.label, stream))
                continue
            if isinstance(stream, Canary):  # --canary: events that say when they were sent
                every.append(CanaryRoute(path, stream.label, stream))
                continue
            if stream is None and config.control:  # an empty live route: published to
                routes.append(Route(path, "published events", None))
                every.append(routes[-1])
                continue
            if not isinstance(stream, Stream):
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
            routes.append(Route(path, stream.label, replay, stream.follow))
            every.append(routes[-1])
        self.routes: tuple[Route, ...] = tuple(routes)
        self.live_routes = tuple(r for r in every if isinstance(r, LiveRoute))
        self.canary_routes = tuple(r for r in every if isinstance(r, CanaryRoute))
        self.all_routes = tuple(every)
        if self.scenario is not None:
            taken = [r.route for r in every] + [r for shaped in self.turns for r in shaped.routes]
            _check_scenario(config, self.scenario, taken)
        # Held for as long as the server: a stream's temporary copy (records, .gz, a pipe)
        # is removed when the stream goes, and a replay too big to cache reads it back.
        self._streams = tuple(streams.values())
        _warn_of_faults_that_cannot_fire(config.faults, self.routes)
        self._sock: socket.socket | None = None
        self._server: StreamingServer | None = None
        self._hub: Hub | None = None
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None
        self._tls: TlsFiles | None = None

    # What a running server tells.

    @property
    def urls(self) -> list[str]:
        """Every stream's URL, in the order the streams were given."""
        if self._sock is None:
            raise RuntimeError("the server is not running: start it first")
        scheme = "https" if self._tls else "http"
        urls = stream_urls(self._sock, self.all_routes, scheme)
        if self.recordings is not None or self.turns or self.scenario is not None:
            # The base URL a client of the upstream (or an SDK) is given.
            urls.append(stream_urls(self._sock, [_BASE], scheme)[0].rstrip("/"))
        return urls

    @property
    def ca_file(self) -> str | None:
        """With ``self_signed``: the CA file that a client trusts (``tail --cacert``)."""
        ca = self._tls.ca_file if self._tls is not None else None
        return str(ca) if ca is not None else None

    @property
    def url(self) -> str:
        """The URL of ``/events``, or of the only stream; with recordings alone, the
        server's base URL (``http://127.0.0.1:PORT``), which stands for the upstream (or
        the provider, with turns alone)."""
        if not self.all_routes:
            return self.urls[0]
        only = self.all_routes[0].route
        return self.url_for(DEFAULT_ROUTE if len(self.all_routes) > 1 else only)

    @property
    def base_url(self) -> str:
        """The server's root, ``http://127.0.0.1:PORT``: the base URL an SDK is given for
        shaped routes (``Turns``), or a client of the upstream for recordings."""
        if self._sock is None:
            raise RuntimeError("the server is not running: start it first")
        scheme = "https" if self._tls else "http"
        return stream_urls(self._sock, [_BASE], scheme)[0].rstrip("/")

    def url_for(self, route: str) -> str:
        """The URL of a stream's route, or of a shaped route (``Turns``)."""
        wanted = "/" + route.strip("/")
        streams = self.urls[: len(self.all_routes)]
        for stream, url in zip(self.all_routes, streams, strict=True):
            if stream.route == wanted:
                return url
        shaped = [shaped for turns in self.turns for shaped in turns.routes]
        shaped += self.scenario.paths if self.scenario is not None else ()
        if wanted in shaped:
            return self.base_url + wanted
        known = [s.route for s in self.all_routes] + shaped
        raise KeyError(f"no stream at {wanted}; the routes are {known}")

    @property
    def connections(self) -> OpenConnections:
        """How many streams are open now (an int); with ``control=True``, called,
        ``server.connections()`` lists them (id, route, client, age, events, last id,
        armed faults), as ``GET /_sseplay/connections`` does."""
        count = len(self._hub.listeners) if self._hub is not None else 0
        return OpenConnections(count, self._control_call)

    def __repr__(self) -> str:
        where = self.urls[0] if self._sock is not None else "not running"
        recorded = f", {len(self.recordings.exchanges)} recordings" if self.recordings else ""
        return f"<Server {where} ({len(self.all_routes)} streams{recorded})>"

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
                # Recordings alone: no event-stream client is waiting to be told its
                # replay is over; every recording has been played, so stop now.
                wait = once_wait(self.routes) if self.all_routes else 0.0
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
        # A seed drawn here is logged, so a run can be repeated, but only when a fault draws
        # from it; a request's own faults (--fault-header) have it logged when one of them
        # first does (sseplay.http.endpoint), unless it was given or is logged already.
        seed_named = seed is not None
        if seed is None:
            seed = random.randrange(1 << 32)
            if config.faults:
                from sseplay.faults.spec import seeded

                if drawn := seeded(config.faults):
                    seed_named = True
                    logger.info(
                        "faults with %s drawn with --seed %d (give it to repeat them)", drawn, seed
                    )
        app = create_app(
            self.routes,
            AppOptions(
                config,
                access=access if access.token or access.allowed_hosts is not None else None,
                seed=seed,
                seed_named=seed_named,
            ),
            complete,
            over,
            live=self.live_routes,
            recordings=self.recordings,
            turns=self.turns,
            scenario=self.scenario,
            canaries=self.canary_routes,
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
        self._server = streaming_server(
            app, self._hub, header_timeout=config.header_timeout, **extra
        )
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
        if self._hub is not None and self._hub.journal is not None:
            self._hub.journal.report()  # a line for each rule a client broke
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

    def _thread_name(self) -> str:
        return f"sseplay {self.urls[0]}"
