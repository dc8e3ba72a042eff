"""The options of sseplay: one frozen object per concern, checked when it is built.

The CLI, the Python API and the pytest fixture all build these, so every rule lives
here once and every caller gets the same one-line ``UsageError`` (the message names the
CLI flag, which is also the keyword's name with ``_`` for ``-``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypedDict

from sseplay.epoch import check_epoch, parse_epoch
from sseplay.errors import UsageError
from sseplay.model import field_problem

if TYPE_CHECKING:
    from sseplay.faults.spec import FaultSpec
    from sseplay.verdict import Rule

DEFAULT_INTERVAL = 1.0
DEFAULT_PING = 15.0
# Pings more often than this only flood the client: a heartbeat keeps proxies from
# closing an idle connection, and those count idle time in seconds.
MIN_PING = 0.1
# A client that has not taken a chunk for this long is cut off, so that one
# frozen reader never holds memory or slows anyone else down.
DEFAULT_SEND_TIMEOUT = 10.0
# A connection whose request head (request line and headers, RFC 9112 section 2.1) has
# not all arrived this long after it began is closed: heads that never end would
# otherwise hold their connections (and open files) for good.
DEFAULT_HEADER_TIMEOUT = 10.0
# The largest reconnection delay a browser can wait: its timers hold a signed 32-bit
# count of milliseconds (HTML 8.6 "Timers"), and a longer one fires at once.
MAX_RETRY_MS = 2**31 - 1
DEFAULT_ROUTE = "/events"
# The journal (``sseplay.journal``): its default size, and the least it may be given.
DEFAULT_JOURNAL_BYTES = 4 << 20
MIN_JOURNAL_BYTES = 4096
# --workers: more processes than this on one port is a typo, not a plan.
MAX_WORKERS = 1024
# Routes sseplay answers itself: a stream there would hide them.
RESERVED_ROUTES = frozenset({"/", "/healthz", "/livez", "/readyz", "/metrics", "/favicon.ico"})
# A route is plain path segments: letters, digits and RFC 3986's unreserved marks.
# Nothing that a URL would need to escape, nothing Starlette reads as a parameter
# (``{name}``), no ``?`` or ``#`` that would end the path, no empty segment that turns
# ``//host`` into another origin in the viewer. A ``:`` is a path character (RFC 3986
# section 3.3, pchar), which a provider's route holds (``/v1/models/m:generateContent``).
_ROUTE_SEGMENT = re.compile(r"^[A-Za-z0-9._~:-]+$")
_URL_LIKE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(argument: str) -> bool:
    """Whether ``argument`` is written as a URL (``scheme://...``), of any scheme: a
    source that is not a file (``redis://``). Here, not in ``sseplay.sources.redis_reader``, so
    that telling files from URLs costs ``serve`` no import."""
    return bool(_URL_LIKE.match(argument))


def _finite(flag: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UsageError(f"{flag} must be a number of seconds, not {value!r}")
    if not math.isfinite(value):
        raise UsageError(f"{flag} must be a finite number, not {value}")
    return float(value)


def _at_least(flag: str, value: Any, minimum: float) -> None:
    if _finite(flag, value) < minimum:
        raise UsageError(f"{flag} must be {minimum:g} or more, not {value:g}")


def _more_than(flag: str, value: Any, minimum: float) -> None:
    if _finite(flag, value) <= minimum:
        raise UsageError(f"{flag} must be more than {minimum:g}, not {value:g}")


def _integer(flag: str, value: Any, minimum: int, maximum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{flag} must be a whole number, not {value!r}")
    if not minimum <= value <= maximum:
        raise UsageError(f"{flag} must be {minimum} to {maximum}, not {value}")


def route_problem(route: str) -> str | None:
    """Why ``route`` cannot be a stream's route, or None when it can."""
    segments = route.split("/")
    if not route.startswith("/") or len(route) == 1:
        return f"the route {route!r} must start with / and name a path, like /events"
    if any(not _ROUTE_SEGMENT.match(part) or part in (".", "..") for part in segments[1:]):
        return (
            f"the route {route!r} may hold only letters, digits and . _ ~ : - between single "
            "slashes: name it with ROUTE=FILE"
        )
    if route in RESERVED_ROUTES:
        return f"{route} is taken by sseplay itself: choose another route"
    return None


def check_route(route: str) -> str:
    problem = route_problem(route)
    if problem:
        raise UsageError(problem)
    return route


@dataclass(frozen=True, slots=True)
class FieldMapping:
    """How records become events; dotted paths reach into nested objects and lists."""

    data_field: str | None = None
    event_field: str | None = None
    id_field: str | None = None
    event_type: str | None = None
    time_field: str | None = None

    def __post_init__(self) -> None:
        for flag, path in (
            ("--data-field", self.data_field),
            ("--event-field", self.event_field),
            ("--id-field", self.id_field),
            ("--time-field", self.time_field),
        ):
            if path is not None and (not isinstance(path, str) or not path):
                raise UsageError(f"{flag} must name a field, like price or quote.price")
        if self.event_type is not None and self.event_field is not None:
            raise UsageError("use --event-type or --event-field, not both")
        if self.event_type is not None:
            if not isinstance(self.event_type, str) or not self.event_type:
                raise UsageError("--event-type must be a non-empty text")
            if problem := field_problem("event type", self.event_type):
                raise UsageError(f"--event-type: {problem}")

    def any_set(self) -> bool:
        return any(
            value is not None
            for value in (
                self.data_field,
                self.event_field,
                self.id_field,
                self.event_type,
                self.time_field,
            )
        )


@dataclass(frozen=True, slots=True)
class Timing:
    """When events are due; ``interval=None`` means "from the file's times, else 1 s"."""

    interval: float | None = None
    speed: float = 1.0
    max_gap: float | None = None
    loop: bool = False

    def __post_init__(self) -> None:
        if self.interval is not None:
            _at_least("--interval", self.interval, 0)
        _more_than("--speed", self.speed, 0)
        if self.max_gap is not None:
            _at_least("--max-gap", self.max_gap, 0)


@dataclass(frozen=True, slots=True)
class StreamOptions:
    """Everything that shapes one stream: field mapping, timing and the ``retry:`` it sends."""

    mapping: FieldMapping = field(default_factory=FieldMapping)
    timing: Timing = field(default_factory=Timing)
    retry: int | None = None
    # --follow: serve the records appended to the file (or arriving on a pipe) as they
    # come; --from-end: a client without Last-Event-ID starts at the live edge.
    follow: bool = False
    from_end: bool = False
    # --no-ids: no ``id:`` lines, as an LLM provider sends none (a client cannot resume:
    # every reconnection starts from the first event).
    no_ids: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.no_ids, bool):
            raise UsageError(f"--no-ids must be true or false, not {self.no_ids!r}")
        if self.no_ids and self.follow:
            raise UsageError(
                "--follow numbers events so that clients resume by them: drop --no-ids"
            )
        if self.retry is not None:
            _integer("--retry", self.retry, 0, MAX_RETRY_MS)
        for flag, value in (("--follow", self.follow), ("--from-end", self.from_end)):
            if not isinstance(value, bool):
                raise UsageError(f"{flag} must be true or false, not {value!r}")
        if self.from_end and not self.follow:
            raise UsageError(
                "--from-end starts clients at the live edge of a followed file: add --follow"
            )
        if self.follow and self.timing.loop:
            raise UsageError(
                "--follow and --loop cannot go together: a followed file has no end to start "
                "over from (drop --loop)"
            )
        if self.follow and self.mapping.id_field is not None:
            # Ids must be positions: a client resumes by them, even at a restarted server.
            raise UsageError(
                "--follow numbers events by their position in the file, so that clients "
                "resume across restarts: drop --id-field"
            )

    @classmethod
    def of(cls, **options: Any) -> StreamOptions:
        """From the keywords of ``Stream.from_file`` (``StreamKeywords``)."""
        unknown = sorted(set(options) - set(StreamKeywords.__annotations__))
        if unknown:
            known = ", ".join(StreamKeywords.__annotations__)
            raise TypeError(f"unknown stream option {unknown[0]!r}; the options are: {known}")
        mapping = {name: options[name] for name in MAPPING_KEYWORDS if name in options}
        timing = {name: options[name] for name in TIMING_KEYWORDS if name in options}
        return cls(
            FieldMapping(**mapping),
            Timing(**timing),
            options.get("retry"),
            options.get("follow", False),
            options.get("from_end", False),
            options.get("no_ids", False),
        )


class StreamKeywords(TypedDict, total=False):
    """The keyword options of ``Stream.from_file`` and ``Stream.from_records``: the flags of
    ``sseplay serve`` that shape one stream."""

    interval: float | None
    time_field: str | None
    speed: float
    max_gap: float | None
    loop: bool
    data_field: str | None
    event_field: str | None
    event_type: str | None
    id_field: str | None
    retry: int | None
    follow: bool
    from_end: bool
    no_ids: bool


MAPPING_KEYWORDS = ("data_field", "event_field", "id_field", "event_type", "time_field")
TIMING_KEYWORDS = ("interval", "speed", "max_gap", "loop")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """How the streams are served: where, to whom, and how each connection is looked after."""

    host: str = "127.0.0.1"
    port: int = 0
    broadcast: bool = False
    ping: float = DEFAULT_PING
    # Origins allowed to read the streams from a page; None = any origin.
    cors: tuple[str, ...] | None = None
    send_timeout: float = DEFAULT_SEND_TIMEOUT
    # --header-timeout: how long a request head may take to arrive, in seconds.
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    once: bool = False
    # HTTPS: a certificate and its key (the key may be in certfile), or a throwaway pair.
    certfile: str | None = None
    keyfile: str | None = None
    self_signed: bool = False
    # HTTP/2 beside HTTP/1.1, chosen by ALPN: needs TLS, browsers speak it only over TLS.
    http2: bool = False
    # The secret every request must carry; None = anyone who can connect reads the streams.
    token: str | None = None
    # Host names answered besides the loopback ones (DNS rebinding guard); "*" = any.
    allowed_hosts: tuple[str, ...] = ()
    # --epoch: when the broadcast timeline starts, in Unix seconds (an ISO-8601 text or a
    # timezone-aware datetime is converted); None = when the server starts.
    epoch: float | None = None
    # --workers: how many processes serve this port (0 = one per CPU); None = this one
    # process, without a supervisor. A ``Server`` is always one of them.
    workers: int | None = None

    # --fault (texts are parsed here, so a bad one is a UsageError at start-up), whether
    # a request may name its own (--fault-header), and the seed of p= (None: drawn once).
    faults: tuple[FaultSpec, ...] = ()
    fault_header: bool = False
    seed: int | None = None
    # --control: the control API under /_sseplay/ (publish, pause, connections...), for a
    # test that drives the server; off, every /_sseplay/ path is a 404 (issue 26).
    control: bool = False
    # --expect-client: the rules a client must keep (``sseplay.verdict``), texts parsed
    # here; --scenario-preset: a fault and rules named at once (``sseplay.presets``).
    expect_client: tuple[Rule, ...] = ()
    scenario_preset: str | None = None
    # --redact: more header and query parameter names whose values the journal hides.
    redact: tuple[str, ...] = ()
    # The journal's size in bytes (on with --control or --expect-client).
    journal_bytes: int = DEFAULT_JOURNAL_BYTES
    # --metrics: GET /metrics in the Prometheus text format (the metrics extra).
    metrics: bool = False

    def __post_init__(self) -> None:
        _check_journal(self)
        if self.faults:  # fault injection is imported only when there are faults to parse
            from sseplay.faults.spec import FaultSpec, parse_faults

            if isinstance(self.faults, str | FaultSpec):
                object.__setattr__(self, "faults", (self.faults,))
            object.__setattr__(self, "faults", parse_faults(self.faults))
        else:
            object.__setattr__(self, "faults", ())
        if not isinstance(self.fault_header, bool):
            raise UsageError(f"--fault-header must be true or false, not {self.fault_header!r}")
        if not isinstance(self.metrics, bool):
            raise UsageError(f"--metrics must be true or false, not {self.metrics!r}")
        if not isinstance(self.control, bool):
            raise UsageError(f"--control must be true or false, not {self.control!r}")
        if self.control and (self.broadcast or self.workers is not None):
            # One process holds the connections it is asked about, each with its own timeline.
            raise UsageError(
                "--control drives each connection of one process: drop --broadcast and --workers"
            )
        if self.control and self.once:
            raise UsageError(
                "--once stops after a whole replay, and with --control a route stays open for "
                "published events: drop --once (end the test's server with stop())"
            )
        if self.seed is not None:
            _integer("--seed", self.seed, 0, 2**63 - 1)
        if self.workers is not None and (self.faults or self.fault_header):
            # Each worker would number its own connections and count its own times=, so
            # conn=1 and times=1 would fire once per worker, not once in all.
            raise UsageError(
                "--fault and --fault-header count connections in one process: drop --workers "
                "to inject faults"
            )
        _check_tls_and_access(self)
        if not isinstance(self.host, str) or not self.host:
            raise UsageError("--host must name an address, like 127.0.0.1 or ::1")
        if self.epoch is not None:
            if isinstance(self.epoch, str):
                object.__setattr__(self, "epoch", parse_epoch(self.epoch))
            elif isinstance(self.epoch, datetime):
                object.__setattr__(self, "epoch", parse_epoch(self.epoch.isoformat()))
            else:
                object.__setattr__(self, "epoch", check_epoch(self.epoch))
            if not self.broadcast:
                raise UsageError(
                    "--epoch sets when a --broadcast timeline starts: add --broadcast "
                    "(a client's own replay starts when it connects)"
                )
        if self.workers is not None:
            _integer("--workers", self.workers, 0, MAX_WORKERS)
        _integer("--port", self.port, 0, 65535)
        if _finite("--ping", self.ping) != 0:
            _at_least("--ping", self.ping, MIN_PING)
        _more_than("--send-timeout", self.send_timeout, 0)
        _more_than("--header-timeout", self.header_timeout, 0)
        if self.cors is not None:
            if isinstance(self.cors, str):
                object.__setattr__(self, "cors", (self.cors,))
            else:
                object.__setattr__(self, "cors", tuple(self.cors))
            for origin in self.cors or ():
                if origin != "*" and not re.match(r"^[a-z][a-z0-9+.-]*://[^/\s]+$", origin):
                    raise UsageError(
                        f"--cors {origin!r} is not an origin: write it like "
                        "https://example.com or http://localhost:3000"
                    )

    @property
    def cors_origins(self) -> tuple[str, ...]:
        return self.cors if self.cors else ("*",)

    @property
    def journal(self) -> bool:
        """Whether requests are journaled: with the control API, or rules to judge."""
        return self.control or bool(self.expect_client)


def _check_journal(config: ServerConfig) -> None:
    """The rules of --expect-client, --scenario-preset, --redact and the journal's size;
    a preset adds its fault to --fault and its rules to --expect-client. The verdicts are
    imported only when there are rules to judge by."""
    if config.expect_client or config.scenario_preset is not None:
        from sseplay.verdict import Rule, parse_rules

        rules = config.expect_client
        if isinstance(rules, str | Rule):
            rules = (rules,)
        texts = [rule.text if isinstance(rule, Rule) else rule for rule in rules]
        if config.scenario_preset is not None:
            from sseplay.presets import preset_of

            preset = preset_of(config.scenario_preset)
            texts = [*preset.rules, *texts]
            faults: tuple[Any, ...] = config.faults
            if not isinstance(faults, tuple | list):
                faults = (faults,)
            object.__setattr__(config, "faults", (*preset.faults, *faults))
        object.__setattr__(config, "expect_client", parse_rules(texts))
    else:
        object.__setattr__(config, "expect_client", ())
    redact = (config.redact,) if isinstance(config.redact, str) else tuple(config.redact)
    for name in redact:
        if not isinstance(name, str) or not name.strip() or any(c.isspace() for c in name):
            raise UsageError(f"--redact {name!r}: name a header or query parameter, like X-Session")
    object.__setattr__(config, "redact", redact)
    _integer("--journal-bytes", config.journal_bytes, MIN_JOURNAL_BYTES, 2**40)
    if config.expect_client and config.workers is not None:
        raise UsageError("--expect-client judges the requests one process sees: drop --workers")


# RFC 3986 unreserved characters, a subset of RFC 6750's b64token: a token goes as it is
# into an Authorization header and into ?token= (where a "+" would read as a space).
_TOKEN = re.compile(r"^[A-Za-z0-9._~-]+$")


def _check_tls_and_access(config: ServerConfig) -> None:
    """The rules of --certfile, --keyfile, --self-signed, --http2, --token, --allowed-host."""
    for flag, path in (("--certfile", config.certfile), ("--keyfile", config.keyfile)):
        if path is not None and (not isinstance(path, str) or not path):
            raise UsageError(f"{flag} must name a PEM file")
    if config.keyfile is not None and config.certfile is None:
        raise UsageError("--keyfile needs --certfile: the certificate the key belongs to")
    if config.self_signed and config.certfile is not None:
        raise UsageError("use --self-signed or --certfile, not both")
    if config.workers is not None and (config.certfile is not None or config.self_signed):
        # Each worker would make its own --self-signed CA, and the supervisor prints http://.
        raise UsageError(
            "--workers serves plain HTTP for now: drop --workers, or put a TLS proxy in front"
        )
    if config.http2 and config.certfile is None and not config.self_signed:
        raise UsageError(
            "--http2 needs TLS (--certfile FILE --keyfile FILE, or --self-signed): "
            "browsers speak HTTP/2 only over TLS"
        )
    if config.token is not None and (
        not isinstance(config.token, str) or not _TOKEN.match(config.token)
    ):
        raise UsageError(
            "--token may hold only letters, digits and . _ ~ - (it goes in headers and URLs); "
            "make one with: python -c 'import secrets; print(secrets.token_urlsafe())'"
        )
    hosts = config.allowed_hosts
    hosts = (hosts,) if isinstance(hosts, str) else tuple(hosts)
    object.__setattr__(config, "allowed_hosts", hosts)
    for name in hosts:
        if not isinstance(name, str) or not re.match(
            r"^(\*|\[[0-9A-Fa-f:.]+\]|[^\s/:\[\]]+)$", name
        ):
            raise UsageError(
                f"--allowed-host {name!r} is not a host name: write it like myapp.test, "
                "192.168.1.5 or [fd00::1] (no scheme, no port), or * for any"
            )
