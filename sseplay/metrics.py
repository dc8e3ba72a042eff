"""``serve --metrics``: the server's counters, kept in prometheus-client's objects.

The hot path never touches them. A connection's events are counted by the stream code
in ``Listener.sent`` already (once per write, however many events it holds); they reach
``sseplay_events_sent_total`` when the connection ends and, while it is open, at each
``sample`` (every ``SAMPLE_SECONDS`` and before each scrape), as the difference since
the last one. The send lag is observed once per timer round and millisecond tick, not
per connection. What is a state (open connections per route, Redis connected, a
followed file there) is read when sampled.

prometheus-client is imported only when ``metrics`` is asked for: ``sseplay --help`` and
a server without ``--metrics`` never load it. Under ``--workers`` the supervisor gives
the workers a directory (``MULTIPROC_ENV``): each worker's values go to files there,
and a scrape of any worker adds up every worker's (prometheus-client's multiprocess
mode).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Hashable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from sseplay.errors import CannotServe

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

EXTRA = "pip install 'sseplay[metrics]'"
# prometheus-client's multiprocess mode: set in the workers' environment by the supervisor.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# How often a server without a scrape of its own (a --workers worker) writes its counts.
SAMPLE_SECONDS = 1.0
# sseplay_send_lag_seconds: a timed stream is due at absolute deadlines (sseplay.timer).
LAG_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# How a connection ended (sseplay_connections_total's ``outcome``).
OUTCOMES = ("end", "204", "client_left", "cut_off", "fault", "error", "control", "stopped")
# How a Last-Event-ID was taken (sseplay_resumes_total's ``result``).
RESUME_RESULTS = ("exact", "unknown", "trimmed", "204")


class Counted(Protocol):
    """What ``sample`` reads of an open connection (an ``outlet.Listener``)."""

    @property
    def outlet(self) -> Hashable: ...

    @property
    def sent(self) -> int: ...


def require_prometheus() -> None:
    """Raise the one line that names the extra when prometheus-client is missing."""
    if importlib.util.find_spec("prometheus_client") is None:
        raise CannotServe(f"--metrics needs prometheus-client: {EXTRA}")


def multiprocess_directory() -> str | None:
    """The directory of the workers' values, when this process is one of them."""
    return os.environ.get(MULTIPROC_ENV) or None


class Metrics:
    """One server's counters. ``open``/``ended`` per connection, ``sample`` for what is
    read from the server's state; ``exposition`` is the text a scrape gets."""

    def __init__(self) -> None:
        require_prometheus()
        import prometheus_client as prom
        from prometheus_client import values

        self._directory = multiprocess_directory()
        if self._directory is not None:
            # Chosen when prometheus-client was first imported; a process that imported it
            # before its supervisor set the directory must write there all the same.
            values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
        # A registry of its own: two servers in one process (tests) must not collide.
        self.registry = prom.CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.connections = prom.Gauge(
            "sseplay_connections",
            "Streams open now",
            ["route"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        # Not "sseplay_connections_total": a counter named X owns X_total (OpenMetrics),
        # and prometheus-client refuses it beside the gauge sseplay_connections.
        self.connections_total = prom.Counter(
            "sseplay_connections_ended",
            "Stream connections ended, by how they ended",
            ["route", "outcome"],
            registry=registry,
        )
        self.events_sent = prom.Counter(
            "sseplay_events_sent", "Events written to clients", ["route"], registry=registry
        )
        self.send_lag = prom.Histogram(
            "sseplay_send_lag_seconds",
            "From an event's due time to its write, per timer round",
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        self.resumes = prom.Counter(
            "sseplay_resumes",
            "Connections with a Last-Event-ID, by how it was taken",
            ["route", "result"],
            registry=registry,
        )
        self.faults_fired = prom.Counter(
            "sseplay_faults_fired", "Faults fired (--fault)", ["kind"], registry=registry
        )
        self.redis_connected = prom.Gauge(
            "sseplay_redis_connected",
            "1 while the Redis stream of a route is read",
            ["source"],
            registry=registry,
            multiprocess_mode="livemin",
        )
        self.follow_live = prom.Gauge(
            "sseplay_follow_live",
            "1 while a followed file is there to read",
            ["route"],
            registry=registry,
            multiprocess_mode="livemin",
        )
        if self._directory is None:
            prom.ProcessCollector(registry=registry)
            prom.PlatformCollector(registry=registry)
            prom.GCCollector(registry=registry)
        # Per open connection (keyed by its outlet, which a hand-over keeps): its route
        # and how many of its events are counted already.
        self._counted: dict[Hashable, list[Any]] = {}

    # -- connections --

    def opened(self, key: Hashable, route: str) -> None:
        self.connections.labels(route).inc()
        self._counted[key] = [route, 0]

    def ended(self, key: Hashable, route: str, outcome: str, sent: int) -> None:
        entry = self._counted.pop(key, None)
        if entry is not None:
            self.connections.labels(route).dec()
            if sent > entry[1]:
                self.events_sent.labels(route).inc(sent - entry[1])
        self.connections_total.labels(route, outcome).inc()

    def answered_over(self, route: str, resumed: bool) -> None:
        """A client asked for more after the end: answered 204."""
        self.connections_total.labels(route, "204").inc()
        if resumed:
            self.resumes.labels(route, "204").inc()

    def resumed(self, route: str, result: str) -> None:
        self.resumes.labels(route, result).inc()

    def fault_fired(self, kind: str) -> None:
        self.faults_fired.labels(kind).inc()

    def lag(self, seconds: float) -> None:
        self.send_lag.observe(seconds)

    # -- sampled --

    def count_sent(self, listeners: Iterable[Counted]) -> None:
        """The events the open connections have had since the last sample: added up per
        route first, then one increment per route (a sample reads thousands of them)."""
        counted = self._counted
        new: dict[str, int] = {}
        for listener in listeners:
            entry = counted.get(listener.outlet)
            if entry is not None and listener.sent > entry[1]:
                new[entry[0]] = new.get(entry[0], 0) + listener.sent - entry[1]
                entry[1] = listener.sent
        for route, events in new.items():
            self.events_sent.labels(route).inc(events)

    def set_redis(self, source: str, connected: bool) -> None:
        self.redis_connected.labels(source).set(1 if connected else 0)

    def set_follow(self, route: str, live: bool) -> None:
        self.follow_live.labels(route).set(1 if live else 0)

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """The body and content type of a scrape (every worker's, added up), in the format
        the scraper's ``Accept`` asks for (OpenMetrics, or the text format 0.0.4)."""
        import prometheus_client as prom
        from prometheus_client.exposition import choose_encoder

        registry: CollectorRegistry = self.registry
        if self._directory is not None:
            from prometheus_client import multiprocess

            registry = prom.CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=self._directory)  # type: ignore[no-untyped-call]
        encoder, content_type = choose_encoder(accept or "")
        return encoder(registry), content_type


def worker_gone(directory: str, pid: int) -> None:
    """A worker has stopped: its live gauges no longer count (the supervisor's side)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]
