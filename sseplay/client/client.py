"""Tailing an SSE stream: the options, the reconnect loop, and the library API.

WHATWG HTML 9.2.3 "Processing model": on a dropped connection or a clean end
of stream, wait the reconnection time and reconnect with ``Last-Event-ID``; a
``204 No Content`` means "stop"; any other status, or a content type other
than ``text/event-stream``, fails the connection for good. Redirects are
followed as ``fetch`` follows them (Fetch 4.4 "HTTP-redirect fetch").

``sseplay tail`` and the library share everything here: ``TailOptions`` is
checked when it is built, ``follow`` applies ``count``, ``until``, the type
filter and the time limits, and ``tail`` / ``atail`` wrap it for callers. This
module never imports the server stack (FastAPI, uvicorn, sse-starlette).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import re
import ssl
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Mapping,
)
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from httpx._decoders import SUPPORTED_DECODERS

from sseplay.errors import (
    AssertionFailed,
    ExitCode,
    GaveUp,
    IdleTimedOut,
    SseplayError,
    StreamError,
    TimedOut,
    UsageError,
)
from sseplay.model import Event, field_problem, visible
from sseplay.parser import DEFAULT_MAX_EVENT_SIZE, EventStreamParser, EventTooLarge

if TYPE_CHECKING:  # sseplay.client.assertions is imported only when its options are used
    from sseplay.client.assertions import Expectation, ExpectedStream, SchemaSet, TailStats

logger = logging.getLogger("sseplay.client")

T = TypeVar("T")

DEFAULT_RETRY_MS = 3000  # what browsers use before a server sends retry:
MAX_BACKOFF_SECONDS = 30.0
# The shortest wait before a reconnection, whatever retry: says. A server that sends
# "retry: 0" and ends would otherwise be hammered (600 reconnections a second were seen).
# Firefox floors the reconnection time at 500 ms; 100 ms keeps tests and local servers
# quick, and the back-off below takes over when connections keep bringing nothing.
MIN_RECONNECT_SECONDS = 0.1
BODY_PREVIEW_BYTES = 200
# Fetch 4.4 "HTTP-redirect fetch": a request's redirect count past 20 is a network error.
MAX_REDIRECTS = 20
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# What a proxy in front of a server that is not up yet answers (RFC 9110 15.6.3-15.6.5):
# --wait retries them on the first connection, as it retries a refused one.
NOT_UP_YET_STATUSES = frozenset({502, 503, 504})
# --wait: the first retry comes after this long, doubling up to the ceiling, so a server
# that comes up is found within half a second without a busy loop.
WAIT_FIRST_DELAY = 0.05
WAIT_MAX_DELAY = 0.5
# Headers about a request body, dropped with the body when a redirect turns it into
# a GET (Fetch 4.4 step 12, "request-body-header name").
_BODY_HEADERS = frozenset(
    {"content-encoding", "content-language", "content-location", "content-type", "content-length"}
)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 5.6.2 token
_HEADER_LINE = re.compile(r"^([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*(.*)$")
# What h11 (under httpx) accepts as a header value: no NUL, and whitespace only as
# single runs of SP/HTAB between visible characters.
_SENDABLE_VALUE = re.compile(r"^(?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?$")

HeaderInput = Mapping[str, str] | Iterable[str | tuple[str, str]]


# ---------------------------------------------------------------------------
# URLs


def normalize_url(url: str) -> str:
    """A URL with no scheme gets ``http://``, as curl and HTTPie assume."""
    url = url.strip()
    return url if _SCHEME.match(url) else "http://" + url


def check_url(url: str) -> httpx.URL:
    """The URL tail connects to, or a UsageError saying what is wrong with it."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as error:
        raise UsageError(f"malformed URL {url!r}: {error}") from None
    if parsed.scheme not in ("http", "https"):
        raise UsageError(f"unsupported URL scheme in {url!r}: use http:// or https://")
    if not parsed.host:
        raise UsageError(f"the URL {url!r} has no host: write it like http://127.0.0.1:8000/events")
    if parsed.port is not None and not 0 < parsed.port <= 65535:
        raise UsageError(f"the port of {redact_url(url)} is {parsed.port}: ports are 1 to 65535")
    return parsed


def redact_url(url: str | httpx.URL) -> str:
    """The URL without its password (recordings get committed as fixtures, status lines
    end up in CI logs). A user name alone may be a token, so it is hidden too."""
    try:
        parsed = httpx.URL(str(url))
    except httpx.InvalidURL:
        return str(url)
    if not parsed.userinfo:
        return str(url)
    username, _, password = parsed.userinfo.decode("ascii", "replace").partition(":")
    userinfo = f"{username}:***" if password else "***"
    return str(parsed.copy_with(userinfo=userinfo.encode()))


# ---------------------------------------------------------------------------
# Options


def _finite_seconds(flag: str, value: float | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UsageError(f"{flag} must be a number of seconds, not {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise UsageError(f"{flag} must be a finite number of seconds more than 0, not {value:g}")


def _whole(flag: str, value: int | None, minimum: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{flag} must be a whole number, not {value!r}")
    if value < minimum:
        raise UsageError(f"{flag} must be {minimum} or more, not {value}")


def parse_header(text: str) -> tuple[str, str]:
    """``Name: value``, as ``-H`` takes it."""
    match = _HEADER_LINE.match(text)
    if not match:
        raise UsageError(f"bad header {text!r}: write it as -H 'Name: value'")
    return match.group(1), match.group(2)


def _header_pairs(headers: HeaderInput) -> tuple[tuple[str, str], ...]:
    items: Iterable[str | tuple[str, str]] = (
        headers.items() if isinstance(headers, Mapping) else headers
    )
    pairs = []
    for item in items:
        name, value = parse_header(item) if isinstance(item, str) else item
        if not isinstance(name, str) or not _TOKEN.match(name):
            raise UsageError(f"bad header name {name!r}: write it as -H 'Name: value'")
        if not isinstance(value, str) or not _SENDABLE_VALUE.match(value.strip(" \t")):
            raise UsageError(f"bad value for header {name}: {value!r} cannot be sent")
        pairs.append((name, value.strip(" \t")))
    return tuple(pairs)


def _authorization(token: str, pairs: tuple[tuple[str, str], ...]) -> tuple[str, str]:
    if not isinstance(token, str) or not token or not _SENDABLE_VALUE.match(token):
        raise UsageError("--token must be the server's token, with no spaces or control characters")
    if any(name.lower() == "authorization" for name, _ in pairs):
        raise UsageError("use --token or -H 'Authorization: ...', not both")
    return ("Authorization", f"Bearer {token}")


def _trusting(cacert: str) -> ssl.SSLContext:
    """A TLS context that trusts the system's CAs and those in ``cacert``."""
    if not isinstance(cacert, str) or not cacert:
        raise UsageError("--cacert must name a PEM file of CA certificates")
    context = ssl.create_default_context()
    try:
        context.load_verify_locations(cafile=cacert)
    except ssl.SSLError:  # an OSError too: first
        raise UsageError(
            f"--cacert {cacert}: no PEM certificate in it (-----BEGIN CERTIFICATE-----)"
        ) from None
    except OSError as error:
        raise UsageError(f"--cacert {cacert}: cannot read it: {error.strerror}") from None
    return context


@dataclass(frozen=True, slots=True)
class TailOptions:
    """Everything ``sseplay tail`` (and ``tail()`` / ``atail()``) connects and stops by.

    Checked when built: a bad value raises ``UsageError`` with the line the CLI prints.
    ``headers`` may be a mapping, ``(name, value)`` pairs or ``"Name: value"`` strings;
    it is kept as a tuple of pairs. ``body`` may be text (sent as UTF-8).
    """

    url: str
    method: str = "GET"
    headers: HeaderInput = ()
    body: bytes | str | None = None
    content_type: str = "application/json"  # for ``body``, unless headers name one
    last_event_id: str | None = None
    event_types: Iterable[str] = frozenset()
    count: int | None = None
    until: str | None = None  # a regular expression searched in each event's data
    timeout: float | None = None
    idle_timeout: float | None = None
    connect_timeout: float = 10.0
    reconnect: bool = True
    max_retries: int | None = None
    max_event_size: int = DEFAULT_MAX_EVENT_SIZE
    verify: bool = True
    # A PEM file of CA certificates to trust besides the system's (``--cacert``), e.g. the
    # one ``sseplay serve --self-signed`` prints.
    cacert: str | None = None
    # The server's ``--token``, sent as ``Authorization: Bearer TOKEN`` (RFC 6750 2.1).
    token: str | None = field(default=None, repr=False)
    tls_context: ssl.SSLContext | None = field(init=False, default=None, repr=False, compare=False)
    # CI assertions (sseplay.client.assertions): a golden stream, JSON Schemas, figures, waiting.
    # a file (recording, JSON array or JSON Lines) or a list of events; compared as loaded
    expect: Any = field(default=None, compare=False)
    ignore: Iterable[str] = ()  # dotted paths in the data left out of --expect
    ignore_id: bool = False
    exact: bool = False  # events after the expected ones are a mismatch
    # a file, TYPE=FILE, a dict, a (type, schema) pair, or a list of them
    schema: Any = field(default=None, compare=False)
    stats: Any = field(default=False, compare=False)  # True, a file, or a TailStats
    wait: float | None = None  # seconds to retry a refused or 502/503/504 first connection
    pattern: re.Pattern[str] | None = field(init=False, default=None, repr=False, compare=False)
    expected: ExpectedStream | None = field(init=False, default=None, repr=False)
    schemas: SchemaSet | None = field(init=False, default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # a frozen dataclass normalises its own fields here
        if not isinstance(self.url, str):
            raise UsageError(f"the URL must be text, not {self.url!r}")
        url = normalize_url(self.url)
        check_url(url)
        set_(self, "url", url)
        if not isinstance(self.method, str) or not _TOKEN.match(self.method):
            raise UsageError(f"--method: {self.method!r} is not an HTTP method")
        set_(self, "method", self.method.upper())
        pairs = _header_pairs(self.headers)
        if self.token is not None:
            pairs += (_authorization(self.token, pairs),)
        body = self.body.encode() if isinstance(self.body, str) else self.body
        if body is not None and not any(name.lower() == "content-type" for name, _ in pairs):
            pairs += (("Content-Type", self.content_type),)
        set_(self, "headers", pairs)
        set_(self, "body", body)
        if self.last_event_id is not None:
            problem = field_problem("id", self.last_event_id)
            if problem:
                raise UsageError(f"--last-event-id: {problem}")
        types = (self.event_types,) if isinstance(self.event_types, str) else self.event_types
        set_(self, "event_types", frozenset(types))
        _whole("--count", self.count, 1)
        _whole("--max-retries", self.max_retries, 0)
        _whole("--max-event-size", self.max_event_size, 1)
        _finite_seconds("--timeout", self.timeout)
        _finite_seconds("--idle-timeout", self.idle_timeout)
        _finite_seconds("--connect-timeout", self.connect_timeout)
        if self.until is not None:
            try:
                set_(self, "pattern", re.compile(self.until))
            except re.error as error:
                raise UsageError(f"--until: bad regular expression: {error}") from None
        if self.cacert is not None:
            if not self.verify:
                raise UsageError("use --cacert or --insecure, not both")
            set_(self, "tls_context", _trusting(self.cacert))
        _finite_seconds("--wait", self.wait)
        self._check_assertions(set_)

    def _check_assertions(self, set_: Callable[[object, str, Any], None]) -> None:
        ignore = (self.ignore,) if isinstance(self.ignore, str) else tuple(self.ignore)
        set_(self, "ignore", ignore)
        if self.expect is None:
            for flag, value in (("--ignore", ignore), ("--ignore-id", self.ignore_id)):
                if value:
                    raise UsageError(f"{flag} works with --expect FILE, which is not given")
            if self.exact:
                raise UsageError("--exact works with --expect FILE, which is not given")
        else:
            from sseplay.client.assertions import ExpectedStream

            expected = ExpectedStream.build(
                self.expect, ignore, bool(self.ignore_id), bool(self.exact), self.types
            )
            set_(self, "expected", expected)
        if self.schema is not None:
            from sseplay.client.assertions import SchemaSet, schema_items

            set_(self, "schemas", SchemaSet(schema_items(self.schema)))
        if not isinstance(self.stats, bool | str | os.PathLike):
            from sseplay.client.assertions import TailStats

            if not isinstance(self.stats, TailStats):
                raise UsageError(f"stats must be True, a file or a TailStats, not {self.stats!r}")

    @property
    def types(self) -> frozenset[str]:
        assert isinstance(self.event_types, frozenset)
        return self.event_types

    @property
    def header_pairs(self) -> tuple[tuple[str, str], ...]:
        assert isinstance(self.headers, tuple)
        return self.headers

    @property
    def request_body(self) -> bytes | None:
        assert not isinstance(self.body, str)
        return self.body


# ---------------------------------------------------------------------------
# The reconnect loop


def _status_to_log(text: str) -> None:
    logger.info("%s", text)


def _ignore_event(event: Event, stream_retry: int | None) -> None:
    pass


def _ignore_raw(chunk: bytes) -> None:
    pass


@dataclass(frozen=True, slots=True)
class Hooks:
    """What a caller sees besides the selected events: each decoded chunk (``--format
    raw``), status lines, and every event before the type filter with the stream's
    reconnection time so far (``--record``)."""

    raw: Callable[[bytes], None] = _ignore_raw
    status: Callable[[str], None] = _status_to_log
    every_event: Callable[[Event, int | None], None] = _ignore_event


class _Ended(Exception):
    """The stream ended and will not be reconnected (204, or no reconnecting)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _NoResponse(Exception):
    """The server accepted the connection and sent no response headers in time."""


def _backoff(base_seconds: float, failures: int) -> float:
    """The server's retry time (never under the floor) first, then exponential
    back-off with full jitter."""
    base_seconds = max(base_seconds, MIN_RECONNECT_SECONDS)
    if failures <= 1:
        return base_seconds
    ceiling = min(MAX_BACKOFF_SECONDS, base_seconds * 2 ** (failures - 1))
    return max(base_seconds, random.uniform(ceiling / 2, ceiling))


def _describe(error: httpx.HTTPError, url: str) -> str:
    cause = error.__cause__ or error.__context__
    if isinstance(error, httpx.ConnectTimeout):
        return f"could not connect to {url}: timed out"
    if isinstance(cause, ssl.SSLError) or "SSL" in str(error) or "certificate" in str(error):
        return (
            f"TLS failed for {url}: {error} "
            "(--cacert FILE trusts the server's CA, --insecure skips the checks)"
        )
    if isinstance(error, httpx.ConnectError):
        text = str(error)
        if "Name or service not known" in text or "nodename nor servname" in text:
            return f"cannot resolve the host of {url}: {text}"
        return f"cannot connect to {url}: {text or type(error).__name__}"
    if isinstance(error, httpx.RemoteProtocolError):
        return f"{url} broke the HTTP protocol: {error}"
    return f"{url}: {type(error).__name__}: {error}"


def _tls_settings(
    url: str, verify: bool, context: ssl.SSLContext | None = None
) -> ssl.SSLContext | bool:
    """What httpx checks TLS with. Its default loads the whole CA bundle when the client is
    made (about 20 ms of tail's start-up here). A plain http:// URL never uses TLS: it
    gets an empty context, which would refuse any certificate rather than accept one."""
    if httpx.URL(url).scheme != "https":
        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    return context if context is not None and verify else verify


class _Clients:
    """One httpx client per scheme, made when first needed: a redirect from http:// to
    https:// gets a client that verifies certificates."""

    def __init__(self, options: TailOptions) -> None:
        self._options = options
        self._clients: dict[str, httpx.AsyncClient] = {}

    def get(self, url: httpx.URL) -> httpx.AsyncClient:
        client = self._clients.get(url.scheme)
        if client is None:
            timeout = httpx.Timeout(self._options.connect_timeout, read=None)
            client = httpx.AsyncClient(
                verify=_tls_settings(str(url), self._options.verify, self._options.tls_context),
                timeout=timeout,
            )
            self._clients[url.scheme] = client
        return client

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()


class _Clock:
    """Bounds each wait by its own limit and by what is left of ``timeout``."""

    def __init__(self, timeout: float | None, shown: Callable[[], int]) -> None:
        self._timeout = timeout
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._shown = shown

    def timed_out(self) -> TimedOut:
        return TimedOut(f"timed out after {self._timeout:g} s with {self._shown()} events shown")

    async def bound(
        self,
        awaitable: Awaitable[T],
        limit: float | None = None,
        on_limit: Callable[[], Exception] | None = None,
    ) -> T:
        if self._deadline is not None:
            remaining = max(self._deadline - time.monotonic(), 0.0)
            if limit is None or remaining <= limit:
                limit, on_limit = remaining, self.timed_out
        if limit is None:
            return await awaitable
        try:
            async with asyncio.timeout(limit):
                return await awaitable
        except TimeoutError:
            assert on_limit is not None
            raise on_limit() from None


class _Selection:
    """--event, --count and --until: which events are shown, and when the tail is done;
    --expect and --schema check each shown event."""

    def __init__(self, options: TailOptions, hooks: Hooks) -> None:
        self.types = options.types
        self.count = options.count
        self.pattern = options.pattern
        self.until = options.until
        self.hooks = hooks
        self.shown = 0
        self.schemas = options.schemas
        self.expectation: Expectation | None = None
        if options.expected is not None:
            from sseplay.client.assertions import Expectation

            self.expectation = Expectation(options.expected)
        # A failed check, raised once the events before it (and the one that failed) have
        # been shown, so that a CI log shows the event the error names.
        self.failure: SseplayError | None = None

    def take(self, events: list[Event], stream_retry: int | None) -> tuple[list[Event], bool]:
        """The events to show, and whether the tail is done after them (then ``failure``
        may say why it failed)."""
        batch: list[Event] = []
        for event in events:
            self.hooks.every_event(event, stream_retry)
            if self.types and event.event not in self.types:
                continue
            batch.append(event)
            self.shown += 1
            try:
                if self.schemas is not None:
                    self.schemas.check(self.shown, event)
                if self.expectation is not None and self.expectation.check(event):
                    return batch, True
                if self.pattern is not None and self.pattern.search(event.data):
                    self._stopping(f"--until {self.until!r} matched")
                    return batch, True
                if self.count is not None and self.shown >= self.count:
                    self._stopping(f"--count {self.count} was reached")
                    return batch, True
            except SseplayError as error:
                self.failure = error
                return batch, True
        return batch, False

    def _stopping(self, why: str) -> None:
        if self.expectation is not None:
            self.expectation.finish(f"the tail stopped ({why})")

    @property
    def silence_is_success(self) -> bool:
        """--exact after every expected event: an --idle-timeout means no extra event came."""
        return self.expectation is not None and self.expectation.complete

    def ended(self, reason: str) -> None:
        """The stream is over: fine, unless --expect, --count or --until still wait."""
        self.hooks.status(reason)
        if self.expectation is not None:
            self.expectation.finish("the stream ended")
        if self.count is None and self.pattern is None:
            return
        wanted = (
            f"{self.count} events" if self.count is not None else f"data matching {self.until!r}"
        )
        raise AssertionFailed(f"the stream ended after {self.shown} events without {wanted}")


def _request_headers(
    options: TailOptions, last_event_id: str, hooks: Hooks
) -> list[tuple[str, str]]:
    headers = [("Accept", "text/event-stream"), ("Cache-Control", "no-store")]
    headers.extend(options.header_pairs)
    if last_event_id:
        # 9.2.3: the id goes back as Last-Event-ID, UTF-8 encoded. A header value loses its
        # leading and trailing whitespace on the way (RFC 9110 5.5), so a server sees from a
        # browser what it sees from this: the id without it.
        value = last_event_id.strip(" \t")
        if _SENDABLE_VALUE.match(value):
            headers.append(("Last-Event-ID", value))
        else:
            hooks.status(
                f"the id {visible(last_event_id)!r} cannot be sent as Last-Event-ID; "
                "reconnecting without it"
            )
    return headers


def _same_origin(first: httpx.URL, second: httpx.URL) -> bool:
    return (first.scheme, first.host, first.port) == (second.scheme, second.host, second.port)


def _response_limit(options: TailOptions, url: httpx.URL) -> tuple[float, Callable[[], Exception]]:
    """How long the response headers (or an error body) may take, and what it is when
    they take longer: the connect time, or the idle time when that is shorter. A server
    that accepts and never answers must not hang tail."""
    idle = options.idle_timeout
    if idle is not None and idle < options.connect_timeout:
        return idle, lambda: IdleTimedOut(f"no response for {idle:g} s (--idle-timeout)")
    limit = options.connect_timeout
    return limit, lambda: _NoResponse(
        f"{redact_url(url)} sent no response within {limit:g} s (--connect-timeout)"
    )


async def _open(
    clients: _Clients,
    options: TailOptions,
    headers: list[tuple[str, str]],
    clock: _Clock,
) -> httpx.Response:
    """Send the request and follow redirects (Fetch 4.4); the first other response."""
    url = httpx.URL(options.url)
    method, body = options.method, options.request_body
    visited = [url]
    while True:
        client = clients.get(url)
        # Header values go out UTF-8 encoded, as browsers send a non-ASCII Last-Event-ID.
        wire = [(name.encode(), value.encode()) for name, value in headers]
        request = client.build_request(method, url, headers=wire, content=body)
        limit, on_limit = _response_limit(options, url)
        response = await clock.bound(client.send(request, stream=True), limit, on_limit)
        location = response.headers.get("location")
        if response.status_code not in REDIRECT_STATUSES or location is None:
            return response
        await response.aclose()
        try:
            target = url.join(location)
        except httpx.InvalidURL:
            raise StreamError(
                f"{redact_url(url)} redirected to a malformed URL: {visible(location)!r}"
            ) from None
        if target.scheme not in ("http", "https"):
            raise StreamError(f"{redact_url(url)} redirected to {redact_url(target)}: not http(s)")
        trail = " -> ".join(redact_url(hop) for hop in [*visited, target])
        if target in visited:
            raise StreamError(f"redirect loop: {trail}")
        if len(visited) > MAX_REDIRECTS:
            raise StreamError(f"more than {MAX_REDIRECTS} redirects: {trail}")
        status = response.status_code
        # Fetch 4.4 step 12: 301 and 302 turn a POST into a GET, 303 turns anything but
        # GET and HEAD into a GET; the body and the headers that describe it go.
        if (status in (301, 302) and method == "POST") or (
            status == 303 and method not in ("GET", "HEAD")
        ):
            method, body = "GET", None
            headers = [
                (name, value) for name, value in headers if name.lower() not in _BODY_HEADERS
            ]
        # Fetch 4.4 step 13: credentials are not sent to another origin.
        if not _same_origin(url, target):
            headers = [(name, value) for name, value in headers if name.lower() != "authorization"]
        visited.append(target)
        url = target


class _NotUpYet(StreamError):
    """A 502, 503 or 504 on the first connection: --wait retries it."""


async def _check_response(response: httpx.Response, options: TailOptions, clock: _Clock) -> None:
    url = redact_url(response.url)
    if response.status_code == 204:
        # 9.2.3: a 204 tells the client to stop reconnecting; the stream is over.
        raise _Ended("the server answered 204 No Content: the stream is over")
    content_type = response.headers.get("content-type", "")
    # MIME Sniffing 4.4 "parse a MIME type": the essence is compared ASCII
    # case-insensitively, and parameters (charset=...) may follow.
    essence = content_type.split(";")[0].strip(" \t").lower()
    if response.status_code == 200 and essence == "text/event-stream":
        codings = [
            coding.strip().lower()
            for coding in response.headers.get_list("content-encoding", split_commas=True)
        ]
        unknown = [c for c in codings if c and c not in SUPPORTED_DECODERS]
        if unknown:
            raise StreamError(
                f"{url} sent Content-Encoding: {visible(', '.join(unknown))}, "
                "which tail cannot decode"
            )
        return
    preview = await _preview(response, options, clock)
    text = " ".join(preview[:BODY_PREVIEW_BYTES].decode("utf-8", "replace").split())
    if response.status_code != 200:
        problem = f"{url} answered {response.status_code} {visible(response.reason_phrase)}"
    else:
        problem = f"{url} is not an event stream (Content-Type: {visible(content_type) or 'none'})"
    message = f"{problem}; the body starts: {text!r}" if text else problem
    if response.status_code in NOT_UP_YET_STATUSES:
        raise _NotUpYet(message)
    raise StreamError(message)


async def _preview(response: httpx.Response, options: TailOptions, clock: _Clock) -> bytes:
    """The start of an error body, for the message; a server that sends it slowly (or
    never) gets the connect time at most, in all."""

    async def read() -> bytes:
        preview = b""
        async for chunk in response.aiter_raw():
            preview += chunk
            if len(preview) >= BODY_PREVIEW_BYTES:
                break
        return preview

    limit, _ = _response_limit(options, response.url)
    try:
        return await clock.bound(read(), limit, lambda: _NoResponse("slow error body"))
    except (httpx.HTTPError, _NoResponse):
        return b""  # the status says enough; the preview is a courtesy


async def _chunks(
    response: httpx.Response, options: TailOptions, clock: _Clock
) -> AsyncIterator[bytes]:
    """The body, decoded from every content coding httpx advertised (gzip, deflate, and br
    or zstd when their packages are installed), each chunk as it arrives."""
    iterator = response.aiter_bytes().__aiter__()
    idle = options.idle_timeout

    def idle_timed_out() -> Exception:
        return IdleTimedOut(f"no data for {idle:g} s (--idle-timeout)")

    while True:
        try:
            chunk = await clock.bound(iterator.__anext__(), idle, idle_timed_out)
        except StopAsyncIteration:
            return
        yield chunk


def _worth_waiting(error: Exception) -> bool:
    """--wait retries a first connection that was refused (or timed out) and a proxy's
    502/503/504: what a server that is still starting gives. A TLS failure or a host
    that does not resolve will not get better by waiting a few seconds more."""
    if isinstance(error, _NotUpYet):
        return True
    if isinstance(error, httpx.ConnectTimeout):
        return True
    if not isinstance(error, httpx.ConnectError):
        return False
    cause = error.__cause__ or error.__context__
    return not isinstance(cause, ssl.SSLError) and "SSL" not in str(error)


class _Waiting:
    """--wait S: how long the first connection may still be retried."""

    def __init__(self, seconds: float | None, hooks: Hooks) -> None:
        self.seconds = seconds
        self.deadline = None if seconds is None else time.monotonic() + seconds
        self.hooks = hooks
        self.attempts = 0

    def delay(self, error: Exception, described: str) -> float | None:
        """Seconds to wait before retrying, or None when the failure is final."""
        if self.deadline is None or not _worth_waiting(error):
            return None
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            return None
        self.attempts += 1
        if self.attempts == 1:
            self.hooks.status(f"{described}; retrying for up to {self.seconds:g} s (--wait)")
        return min(WAIT_FIRST_DELAY * 2.0 ** (self.attempts - 1), WAIT_MAX_DELAY, remaining)

    def final(self, described: str) -> StreamError:
        if self.attempts and self.seconds is not None:
            described += f" (still, after --wait {self.seconds:g} s)"
        return StreamError(described)


def _stats_of(options: TailOptions) -> tuple[TailStats | None, bool, str | None]:
    """(the TailStats to fill, whether to write its report, and where: None = stderr)."""
    wanted = options.stats
    if wanted is False:
        return None, False, None
    from sseplay.client.assertions import TailStats

    if isinstance(wanted, TailStats):
        return wanted, False, None
    return TailStats(), True, None if wanted is True else os.fspath(wanted)


def _exit_code(error: BaseException) -> int:
    if isinstance(error, SseplayError):
        return int(error.exit_code)
    if isinstance(error, asyncio.CancelledError | KeyboardInterrupt):
        return int(ExitCode.INTERRUPTED)
    if isinstance(error, GeneratorExit):  # the caller stopped reading: not a failure
        return int(ExitCode.OK)
    return int(ExitCode.ERROR)


def _report_stats(
    stats: TailStats | None, write: bool, destination: str | None, shown: int, exit_code: int
) -> None:
    if stats is None:
        return
    stats.shown = shown
    stats.finish(exit_code)
    if not write:
        return
    from sseplay.client.assertions import write_stats

    try:
        write_stats(stats.report(), destination)
    except SseplayError as error:
        if exit_code == ExitCode.OK:
            raise
        logger.warning("%s", error)  # the error already on its way says more


async def follow(
    options: TailOptions, hooks: Hooks | None = None
) -> AsyncGenerator[list[Event], None]:
    """The selected events of each chunk as it arrives (an empty list when a chunk
    brought none to show), reconnecting as ``EventSource`` does.

    Ends where ``sseplay tail`` exits 0; raises the SseplayError it would exit with.
    With ``options.stats``, the figures are reported however it ends.
    """
    hooks = hooks or Hooks()
    stats, write_report, destination = _stats_of(options)
    if stats is not None:
        stats.start()
    selection = _Selection(options, hooks)
    clock = _Clock(options.timeout, lambda: selection.shown)
    parser = EventStreamParser(options.max_event_size)
    parser.last_event_id = options.last_event_id or ""
    shown_url = redact_url(options.url)
    failures = 0  # connections in a row that failed or brought nothing, for the back-off
    reconnections = 0  # in all, for --max-retries
    connected_once = False
    waiting = _Waiting(options.wait, hooks)
    clients = _Clients(options)
    exit_code = int(ExitCode.OK)
    try:
        while True:
            failure: str | None = None
            delivered = False
            try:
                headers = _request_headers(options, parser.last_event_id, hooks)
                response = await _open(clients, options, headers, clock)
                try:
                    await _check_response(response, options, clock)
                    connected_once = True
                    if stats is not None:
                        stats.connected()
                    hooks.status(f"connected to {shown_url}")
                    parser.reset()
                    async for chunk in _chunks(response, options, clock):
                        hooks.raw(chunk)
                        events = parser.feed(chunk)
                        if stats is not None:
                            stats.received(len(chunk), len(events))
                        delivered = delivered or bool(events)
                        batch, done = selection.take(events, parser.retry)
                        yield batch
                        if selection.failure is not None:
                            raise selection.failure
                        if done:
                            return
                    selection.take(parser.close(), parser.retry)
                    if selection.failure is not None:
                        raise selection.failure
                finally:
                    await response.aclose()
            except _Ended as ended:
                selection.ended(ended.reason)
                return
            except IdleTimedOut:
                if not selection.silence_is_success:
                    raise
                selection.ended("no event after the expected ones within --idle-timeout")
                return
            except EventTooLarge as error:
                raise StreamError(f"{error}: raise --max-event-size if that is expected") from None
            except httpx.DecodingError as error:
                # Bytes that the advertised coding cannot decode: the same bytes would come
                # again on every reconnection, so this is the end.
                raise StreamError(f"{shown_url}: the body cannot be decoded: {error}") from None
            except (httpx.HTTPError, _NoResponse, _NotUpYet) as error:
                if isinstance(error, httpx.HTTPError):
                    described = _describe(error, shown_url)
                else:
                    described = str(error)
                if not connected_once:
                    delay = waiting.delay(error, described)
                    if delay is None:
                        raise waiting.final(described) from None
                    await clock.bound(asyncio.sleep(delay))
                    continue
                if isinstance(error, _NotUpYet):
                    raise StreamError(described) from None
                failure = described
            if not options.reconnect:
                selection.ended(failure or "the stream ended")
                return
            # A connection that brought no event counts as a failure for the back-off, so a
            # server that ends at once (with retry: 0 or not) gets ever longer waits.
            failures = 0 if delivered else failures + 1
            reconnections += 1
            if options.max_retries is not None and reconnections > options.max_retries:
                raise GaveUp(
                    f"gave up after {options.max_retries} reconnection attempts"
                    + (f": {failure}" if failure else "")
                )
            if stats is not None:
                stats.reconnecting()
            retry_ms = parser.retry if parser.retry is not None else DEFAULT_RETRY_MS
            delay = _backoff(retry_ms / 1000, max(failures, 1))
            hooks.status(f"{failure or 'the stream ended'}; reconnecting in {delay:.2f} s")
            await clock.bound(asyncio.sleep(delay))
    except BaseException as error:
        exit_code = _exit_code(error)
        raise
    finally:
        await clients.aclose()
        _report_stats(stats, write_report, destination, selection.shown, exit_code)


# ---------------------------------------------------------------------------
# The library API


def _options(url: str | TailOptions, options: dict[str, Any]) -> TailOptions:
    if isinstance(url, TailOptions):
        if options:
            raise UsageError("pass either TailOptions or keyword options, not both")
        return url
    if "insecure" in options:
        options["verify"] = not options.pop("insecure")
    try:
        return TailOptions(url, **options)
    except TypeError as error:  # an unknown keyword
        raise UsageError(f"tail(): {error}") from None


def atail(url: str | TailOptions, **options: Any) -> AsyncGenerator[Event, None]:
    """The events of an SSE stream as they arrive, reconnecting as a browser does.

    ``options`` are the fields of ``TailOptions`` (``insecure=True`` is ``verify=False``),
    checked now (``UsageError``). The CI checks are options too: ``expect`` (a file or a
    list of events, with ``ignore``, ``ignore_id``, ``exact``) raises ``Mismatch``,
    ``schema`` raises ``Invalid``, ``stats`` (True: JSON on stderr; a file; or a
    ``sseplay.client.assertions.TailStats`` to read afterwards) reports however the tail ends,
    and ``wait`` retries a first connection that is refused. Ends where ``sseplay tail``
    exits 0 (``count`` reached, ``until`` matched, 204, or the end with
    ``reconnect=False``); raises the ``SseplayError`` subclass whose ``exit_code`` the CLI
    would exit with. To leave early and close the connection at once, iterate inside
    ``contextlib.aclosing(...)``.
    """
    return _events(_options(url, options))


async def _events(options: TailOptions) -> AsyncGenerator[Event, None]:
    batches = follow(options)
    try:
        async for batch in batches:
            for event in batch:
                yield event
    finally:
        await batches.aclose()


def tail(url: str | TailOptions, **options: Any) -> Generator[Event, None, None]:
    """``atail`` for code without an event loop: a blocking iterator of events.

    The options are checked now (``UsageError``). Breaking out of the loop, or calling
    ``close()``, closes the connection at once.
    """
    checked = _options(url, options)
    return _blocking(checked)


def _blocking(options: TailOptions) -> Generator[Event, None, None]:
    with asyncio.Runner() as runner:
        events = _events(options)

        async def next_event() -> Event:
            return await events.__anext__()

        try:
            while True:
                try:
                    event = runner.run(next_event())
                except StopAsyncIteration:
                    return
                yield event
        finally:
            runner.run(events.aclose())


__all__ = [
    "Event",
    "Hooks",
    "SseplayError",
    "TailOptions",
    "atail",
    "follow",
    "parse_header",
    "redact_url",
    "tail",
]
