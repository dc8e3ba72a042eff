"""What ``sseplay tail`` (and ``tail()`` / ``atail()``) connects and stops by, checked once.

``TailOptions`` is built from the keywords the CLI and the library share and holds one
small frozen object per concern: the request (``RequestOptions``), how long and how often
to keep at it (``ReconnectOptions``), which events are shown and when the tail is done
(``SelectOptions``) and the CI checks (``CheckOptions``). Each checks itself when built: a
bad value raises ``UsageError`` with the line the CLI prints.
"""

from __future__ import annotations

import math
import os
import re
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import InitVar, dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast, overload

import httpx

from sseplay.client.defaults import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_CONTENT_TYPE,
    DEFAULT_MAX_EVENT_SIZE,
    DEFAULT_METHOD,
)
from sseplay.errors import UsageError
from sseplay.framing import FRAMINGS, Framing
from sseplay.model import field_problem
from sseplay.redaction import redact_url as redact_url  # re-exported: it moved

if TYPE_CHECKING:  # sseplay.client.assertions is imported only when its options are used
    from sseplay.client.assertions import ExpectedStream, SchemaSet

T = TypeVar("T")

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 5.6.2 token
_HEADER_LINE = re.compile(r"^([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*(.*)$")
# What h11 (under httpx) accepts as a header value: no NUL, and whitespace only as
# single runs of SP/HTAB between visible characters.
SENDABLE_VALUE = re.compile(r"^(?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?$")

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
        raise UsageError(f"malformed URL {redact_url(url)!r}: {error}") from None
    if parsed.scheme not in ("http", "https"):
        raise UsageError(f"unsupported URL scheme in {redact_url(url)!r}: use http:// or https://")
    if not parsed.host:
        raise UsageError(
            f"the URL {redact_url(url)!r} has no host: write it like http://127.0.0.1:8000/events"
        )
    if parsed.port is not None and not 0 < parsed.port <= 65535:
        raise UsageError(f"the port of {redact_url(url)} is {parsed.port}: ports are 1 to 65535")
    return parsed


# ---------------------------------------------------------------------------
# Checks of single values


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
        if not isinstance(value, str) or not SENDABLE_VALUE.match(value.strip(" \t")):
            raise UsageError(f"bad value for header {name}: {value!r} cannot be sent")
        pairs.append((name, value.strip(" \t")))
    return tuple(pairs)


def _authorization(token: str, pairs: tuple[tuple[str, str], ...]) -> tuple[str, str]:
    if not isinstance(token, str) or not token or not SENDABLE_VALUE.match(token):
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


# ---------------------------------------------------------------------------
# One object per concern (frozen, without slots=True: making a class with slots costs
# about half a millisecond of tail's start-up each)


@dataclass(frozen=True)
class RequestOptions:
    """What tail sends, and how it checks TLS.

    ``headers`` may be a mapping, ``(name, value)`` pairs or ``"Name: value"`` strings; it
    is kept as a tuple of pairs, with ``Authorization`` (from ``token``) and
    ``Content-Type`` (for ``body``, unless a header names one) added. ``body`` may be
    text (sent as UTF-8); it is kept as bytes.
    """

    url: str
    method: str = DEFAULT_METHOD
    headers: HeaderInput = ()
    body: bytes | str | None = None
    content_type: str = DEFAULT_CONTENT_TYPE
    last_event_id: str | None = None
    verify: bool = True
    # A PEM file of CA certificates to trust besides the system's (``--cacert``), e.g. the
    # one ``sseplay serve --self-signed`` prints.
    cacert: str | None = None
    # The server's ``--token``, sent as ``Authorization: Bearer TOKEN`` (RFC 6750 2.1).
    token: str | None = field(default=None, repr=False)
    tls_context: ssl.SSLContext | None = field(init=False, default=None, repr=False, compare=False)

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
        if self.cacert is not None:
            if not self.verify:
                raise UsageError("use --cacert or --insecure, not both")
            set_(self, "tls_context", _trusting(self.cacert))

    @property
    def header_pairs(self) -> tuple[tuple[str, str], ...]:
        assert isinstance(self.headers, tuple)
        return self.headers

    @property
    def request_body(self) -> bytes | None:
        assert not isinstance(self.body, str)
        return self.body


@dataclass(frozen=True)
class SelectOptions:
    """Which events are shown (``event_types``) and when the tail is done: after
    ``count`` events, or at the first whose data matches the regular expression ``until``."""

    event_types: Iterable[str] = frozenset()
    count: int | None = None
    until: str | None = None
    pattern: re.Pattern[str] | None = field(init=False, default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        types = (self.event_types,) if isinstance(self.event_types, str) else self.event_types
        set_(self, "event_types", frozenset(types))
        _whole("--count", self.count, 1)
        if self.until is not None:
            try:
                set_(self, "pattern", re.compile(self.until))
            except re.error as error:
                raise UsageError(f"--until: bad regular expression: {error}") from None

    @property
    def types(self) -> frozenset[str]:
        assert isinstance(self.event_types, frozenset)
        return self.event_types


@dataclass(frozen=True)
class ReconnectOptions:
    """How long and how often tail keeps at it: the time limits (in all, without a byte,
    to connect), reconnecting and its retries, ``wait`` (seconds to retry a refused or
    502/503/504 first connection) and the largest event it accepts."""

    timeout: float | None = None
    idle_timeout: float | None = None
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    reconnect: bool = True
    max_retries: int | None = None
    max_event_size: int = DEFAULT_MAX_EVENT_SIZE
    wait: float | None = None
    # How the body is split into events: "sse" (text/event-stream), "ndjson" (one JSON
    # value per line) or "json-array" (a streamed JSON array); see sseplay.framing.
    framing: Framing = "sse"

    def __post_init__(self) -> None:
        if self.framing not in FRAMINGS:
            raise UsageError(
                f"--framing must be {', '.join(FRAMINGS[:-1])} or {FRAMINGS[-1]}, "
                f"not {self.framing!r}"
            )
        _whole("--max-retries", self.max_retries, 0)
        _whole("--max-event-size", self.max_event_size, 1)
        _finite_seconds("--timeout", self.timeout)
        _finite_seconds("--idle-timeout", self.idle_timeout)
        _finite_seconds("--connect-timeout", self.connect_timeout)
        _finite_seconds("--wait", self.wait)


@dataclass(frozen=True)
class CheckOptions:
    """tail as a CI assertion (sseplay.client.assertions): a golden stream, JSON Schemas,
    figures. ``for_types`` is the selection's ``event_types``, which filters the expected
    stream as it filters the real one."""

    # a file (recording, JSON array or JSON Lines) or a list of events; compared as loaded
    expect: Any = field(default=None, compare=False)
    ignore: Iterable[str] = ()  # dotted paths in the data left out of --expect
    ignore_id: bool = False
    exact: bool = False  # events after the expected ones are a mismatch
    # a file, TYPE=FILE, a dict, a (type, schema) pair, or a list of them
    schema: Any = field(default=None, compare=False)
    stats: Any = field(default=False, compare=False)  # True, a file, or a TailStats
    for_types: InitVar[frozenset[str]] = frozenset()
    expected: ExpectedStream | None = field(init=False, default=None, repr=False)
    schemas: SchemaSet | None = field(init=False, default=None, repr=False, compare=False)

    def __post_init__(self, for_types: frozenset[str]) -> None:
        set_ = object.__setattr__
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
                self.expect, ignore, bool(self.ignore_id), bool(self.exact), for_types
            )
            set_(self, "expected", expected)
        if self.schema is not None:
            from sseplay.client.assertions import SchemaSet, schema_items

            set_(self, "schemas", SchemaSet(schema_items(self.schema)))
        if not isinstance(self.stats, bool | str | os.PathLike):
            from sseplay.client.stats import TailStats

            if not isinstance(self.stats, TailStats):
                raise UsageError(f"stats must be True, a file or a TailStats, not {self.stats!r}")


# ---------------------------------------------------------------------------
# All of them


class _Part(Generic[T]):
    """A field of one of TailOptions' parts, readable as ``options.NAME``: the flat names
    TailOptions had before it was made of parts, kept for callers that read them."""

    def __init__(self, part: str, name: str | None = None) -> None:
        self._part = part
        self._name = name or ""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = self._name or name

    @overload
    def __get__(self, instance: None, owner: type) -> _Part[T]: ...

    @overload
    def __get__(self, instance: object, owner: type) -> T: ...

    def __get__(self, instance: object | None, owner: type) -> _Part[T] | T:
        if instance is None:
            return self
        return cast(T, getattr(getattr(instance, self._part), self._name))


# Not slots=True: a frozen dataclass with slots refuses assignments only to its field names
# (Python 3.11), and `options.count = 3` must fail as it did when count was a field.
@dataclass(frozen=True, init=False)
class TailOptions:
    """Everything ``sseplay tail`` (and ``tail()`` / ``atail()``) connects and stops by.

    Built from the same keywords as the CLI's flags, and checked when built: a bad value
    raises ``UsageError`` with the line the CLI prints. The four parts are built and
    checked in turn; each field is also readable by its keyword (``options.count``).
    """

    request: RequestOptions
    selection: SelectOptions
    reconnecting: ReconnectOptions
    checks: CheckOptions

    def __init__(
        self,
        url: str,
        method: str = DEFAULT_METHOD,
        headers: HeaderInput = (),
        body: bytes | str | None = None,
        content_type: str = DEFAULT_CONTENT_TYPE,
        last_event_id: str | None = None,
        event_types: Iterable[str] = frozenset(),
        count: int | None = None,
        until: str | None = None,  # a regular expression searched in each event's data
        timeout: float | None = None,
        idle_timeout: float | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        reconnect: bool = True,
        max_retries: int | None = None,
        max_event_size: int = DEFAULT_MAX_EVENT_SIZE,
        verify: bool = True,
        cacert: str | None = None,
        token: str | None = None,
        expect: Any = None,
        ignore: Iterable[str] = (),
        ignore_id: bool = False,
        exact: bool = False,
        schema: Any = None,
        stats: Any = False,
        wait: float | None = None,
        framing: Framing = "sse",
    ) -> None:
        set_ = object.__setattr__  # frozen: the parts are set once, here
        request = RequestOptions(
            url, method, headers, body, content_type, last_event_id, verify, cacert, token
        )
        selection = SelectOptions(event_types, count, until)
        reconnecting = ReconnectOptions(
            timeout,
            idle_timeout,
            connect_timeout,
            reconnect,
            max_retries,
            max_event_size,
            wait,
            framing,
        )
        checks = CheckOptions(expect, ignore, ignore_id, exact, schema, stats, selection.types)
        set_(self, "request", request)
        set_(self, "selection", selection)
        set_(self, "reconnecting", reconnecting)
        set_(self, "checks", checks)

    url = _Part[str]("request")
    method = _Part[str]("request")
    headers = _Part[tuple[tuple[str, str], ...]]("request")
    header_pairs = _Part[tuple[tuple[str, str], ...]]("request", "headers")
    body = _Part[bytes | None]("request")
    request_body = _Part[bytes | None]("request", "body")
    content_type = _Part[str]("request")
    last_event_id = _Part[str | None]("request")
    verify = _Part[bool]("request")
    cacert = _Part[str | None]("request")
    token = _Part[str | None]("request")
    tls_context = _Part[ssl.SSLContext | None]("request")
    event_types = _Part[frozenset[str]]("selection")
    types = _Part[frozenset[str]]("selection", "event_types")
    count = _Part[int | None]("selection")
    until = _Part[str | None]("selection")
    pattern = _Part[re.Pattern[str] | None]("selection")
    timeout = _Part[float | None]("reconnecting")
    idle_timeout = _Part[float | None]("reconnecting")
    connect_timeout = _Part[float]("reconnecting")
    reconnect = _Part[bool]("reconnecting")
    max_retries = _Part[int | None]("reconnecting")
    max_event_size = _Part[int]("reconnecting")
    wait = _Part[float | None]("reconnecting")
    framing = _Part[Framing]("reconnecting")
    expect = _Part[Any]("checks")
    ignore = _Part[tuple[str, ...]]("checks")
    ignore_id = _Part[bool]("checks")
    exact = _Part[bool]("checks")
    schema = _Part[Any]("checks")
    stats = _Part[Any]("checks")
    expected = _Part["ExpectedStream | None"]("checks")
    schemas = _Part["SchemaSet | None"]("checks")
