"""One HTTP exchange of ``sseplay tail``: send the request, follow redirects, check the
response, and read its body chunk by chunk.

Redirects are followed as ``fetch`` follows them (Fetch 4.4 "HTTP-redirect fetch"). A
``204 No Content`` means "stop" (WHATWG HTML 9.2.3); any other status, or a content type
other than ``text/event-stream``, fails the connection. Every wait is bounded by its own
limit and by what is left of ``--timeout`` (``Clock``).
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import httpx
from httpx._decoders import SUPPORTED_DECODERS  # see sseplay/client/CONTRACT.md

from sseplay.client.defaults import USER_AGENT
from sseplay.client.hooks import Hooks
from sseplay.client.options import SENDABLE_VALUE, ReconnectOptions, RequestOptions
from sseplay.errors import IdleTimedOut, StreamError, TimedOut
from sseplay.framing import ACCEPT, Framing, is_json_stream_type
from sseplay.model import visible
from sseplay.redaction import redact_url

T = TypeVar("T")

BODY_PREVIEW_BYTES = 200
# Fetch 4.4 "HTTP-redirect fetch": a request's redirect count past 20 is a network error.
MAX_REDIRECTS = 20
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# What a proxy in front of a server that is not up yet answers (RFC 9110 15.6.3-15.6.5):
# --wait retries them on the first connection, as it retries a refused one.
NOT_UP_YET_STATUSES = frozenset({502, 503, 504})
# Headers about a request body, dropped with the body when a redirect turns it into
# a GET (Fetch 4.4 step 12, "request-body-header name").
_BODY_HEADERS = frozenset(
    {"content-encoding", "content-language", "content-location", "content-type", "content-length"}
)
# Credentials that do not follow a redirect to another origin. Fetch 4.4 step 13 deletes
# only Authorization there, because the other credentials a browser sends are Cookie and
# Proxy-Authorization, forbidden request-headers a page cannot set (Fetch 2.2.2) that the
# browser adds per origin itself. tail's -H headers are all set by hand, so each one that
# carries a credential goes with Authorization (as curl drops Cookie with Authorization
# unless told --location-trusted): the cookie and proxy headers, API keys (X-Api-Key,
# Api-Key, Ocp-Apim-Subscription-Key: any name ending in -Key) and any name that says
# auth, token, secret, password, session or credential.
_CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "cookie2"})
_CREDENTIAL_NAME = re.compile(
    r"auth|token|secret|passw|session|credential|cookie|signature|(?:^|-)(?:api-?)?key$"
)


def is_credential(name: str) -> bool:
    """Whether a request header carries a credential (it is not sent across origins)."""
    lowered = name.lower()
    return lowered in _CREDENTIAL_HEADERS or _CREDENTIAL_NAME.search(lowered) is not None


class StreamOver(Exception):
    """The stream ended and will not be reconnected (204, or no reconnecting)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NoResponse(Exception):
    """The server accepted the connection and sent no response headers in time."""


class NotUpYet(StreamError):
    """A 502, 503 or 504 on the first connection: --wait retries it."""


class Clock:
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


def tls_settings(
    url: str, verify: bool, context: ssl.SSLContext | None = None
) -> ssl.SSLContext | bool:
    """What httpx checks TLS with. Its default loads the whole CA bundle when the client is
    made (about 20 ms of tail's start-up here). A plain http:// URL never uses TLS: it
    gets an empty context, which would refuse any certificate rather than accept one."""
    if httpx.URL(url).scheme != "https":
        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    return context if context is not None and verify else verify


class Clients:
    """One httpx client per scheme, made when first needed: a redirect from http:// to
    https:// gets a client that verifies certificates."""

    def __init__(self, request: RequestOptions, limits: ReconnectOptions) -> None:
        self._request = request
        self._connect_timeout = limits.connect_timeout
        self._clients: dict[str, httpx.AsyncClient] = {}

    def get(self, url: httpx.URL) -> httpx.AsyncClient:
        client = self._clients.get(url.scheme)
        if client is None:
            timeout = httpx.Timeout(self._connect_timeout, read=None)
            client = httpx.AsyncClient(
                verify=tls_settings(str(url), self._request.verify, self._request.tls_context),
                timeout=timeout,
            )
            self._clients[url.scheme] = client
        return client

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()


def describe(error: httpx.HTTPError, url: str) -> str:
    """One line for a failed exchange: what failed, and what to do when that is known."""
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


def request_headers(
    request: RequestOptions, last_event_id: str, hooks: Hooks, framing: Framing = "sse"
) -> list[tuple[str, str]]:
    headers = [("Accept", ACCEPT[framing]), ("Cache-Control", "no-store")]
    if not any(name.lower() == "user-agent" for name, _ in request.header_pairs):
        # Not httpx's python-httpx/VERSION: a server's logs should name the client.
        headers.append(("User-Agent", USER_AGENT))
    headers.extend(request.header_pairs)
    if last_event_id:
        # 9.2.3: the id goes back as Last-Event-ID, UTF-8 encoded. A header value loses its
        # leading and trailing whitespace on the way (RFC 9110 5.5), so a server sees from a
        # browser what it sees from this: the id without it.
        value = last_event_id.strip(" \t")
        if SENDABLE_VALUE.match(value):
            headers.append(("Last-Event-ID", value))
        else:
            hooks.status(
                f"the id {visible(last_event_id)!r} cannot be sent as Last-Event-ID; "
                "reconnecting without it"
            )
    return headers


def _say_nothing(text: str) -> None:
    pass


def _same_origin(first: httpx.URL, second: httpx.URL) -> bool:
    return (first.scheme, first.host, first.port) == (second.scheme, second.host, second.port)


def _response_limit(
    limits: ReconnectOptions, url: httpx.URL
) -> tuple[float, Callable[[], Exception]]:
    """How long the response headers (or an error body) may take, and what it is when
    they take longer: the connect time, or the idle time when that is shorter. A server
    that accepts and never answers must not hang tail."""
    idle = limits.idle_timeout
    if idle is not None and idle < limits.connect_timeout:
        return idle, lambda: IdleTimedOut(f"no response for {idle:g} s (--idle-timeout)")
    limit = limits.connect_timeout
    return limit, lambda: NoResponse(
        f"{redact_url(url)} sent no response within {limit:g} s (--connect-timeout)"
    )


async def open_response(
    clients: Clients,
    request: RequestOptions,
    limits: ReconnectOptions,
    headers: list[tuple[str, str]],
    clock: Clock,
    tell: Callable[[str], None] = _say_nothing,
) -> httpx.Response:
    """Send the request and follow redirects (Fetch 4.4); the first other response.
    ``tell`` hears which credential headers a redirect to another origin left behind."""
    url = httpx.URL(request.url)
    method, body = request.method, request.request_body
    visited = [url]
    while True:
        client = clients.get(url)
        # Header values go out UTF-8 encoded, as browsers send a non-ASCII Last-Event-ID.
        wire = [(name.encode(), value.encode()) for name, value in headers]
        sent = client.build_request(method, url, headers=wire, content=body)
        limit, on_limit = _response_limit(limits, url)
        response = await clock.bound(client.send(sent, stream=True), limit, on_limit)
        location = response.headers.get("location")
        if response.status_code not in REDIRECT_STATUSES or location is None:
            return response
        await response.aclose()
        try:
            target = url.join(location)
        except httpx.InvalidURL:
            raise StreamError(
                f"{redact_url(url)} redirected to a malformed URL: "
                f"{visible(redact_url(location))!r}"
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
        # Fetch 4.4 step 13: credentials are not sent to another origin (every one of the
        # user's, see _CREDENTIAL_HEADERS).
        if not _same_origin(url, target):
            dropped = [name for name, _ in headers if is_credential(name)]
            if dropped:
                headers = [(name, value) for name, value in headers if not is_credential(name)]
                names = ", ".join(dict.fromkeys(dropped))
                tell(f"{names} not sent to another origin: {redact_url(target)}")
        visited.append(target)
        url = target


_WHAT: dict[Framing, str] = {
    "sse": "an event stream",
    "ndjson": "a JSON stream for --framing ndjson",
    "json-array": "a JSON stream for --framing json-array",
}


async def check_response(response: httpx.Response, limits: ReconnectOptions, clock: Clock) -> None:
    """Return for a 200 event stream in a coding tail decodes; raise otherwise."""
    url = redact_url(response.url)
    if response.status_code == 204:
        # 9.2.3: a 204 tells the client to stop reconnecting; the stream is over.
        raise StreamOver("the server answered 204 No Content: the stream is over")
    content_type = response.headers.get("content-type", "")
    # MIME Sniffing 4.4 "parse a MIME type": the essence is compared ASCII
    # case-insensitively, and parameters (charset=...) may follow.
    essence = content_type.split(";")[0].strip(" \t").lower()
    expected = (
        essence == "text/event-stream" if limits.framing == "sse" else is_json_stream_type(essence)
    )
    if response.status_code == 200 and expected:
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
    preview = await _preview(response, limits, clock)
    text = " ".join(preview[:BODY_PREVIEW_BYTES].decode("utf-8", "replace").split())
    if response.status_code != 200:
        problem = f"{url} answered {response.status_code} {visible(response.reason_phrase)}"
    else:
        shown_type = visible(content_type) or "none"
        problem = f"{url} is not {_WHAT[limits.framing]} (Content-Type: {shown_type})"
        if limits.framing == "sse" and is_json_stream_type(essence):
            problem += "; --framing ndjson or json-array reads a JSON stream"
    message = f"{problem}; the body starts: {text!r}" if text else problem
    if response.status_code in NOT_UP_YET_STATUSES:
        raise NotUpYet(message)
    raise StreamError(message)


async def _preview(response: httpx.Response, limits: ReconnectOptions, clock: Clock) -> bytes:
    """The start of an error body, for the message; a server that sends it slowly (or
    never) gets the connect time at most, in all."""

    async def read() -> bytes:
        preview = b""
        async for chunk in response.aiter_raw():
            preview += chunk
            if len(preview) >= BODY_PREVIEW_BYTES:
                break
        return preview

    limit, _ = _response_limit(limits, response.url)
    try:
        return await clock.bound(read(), limit, lambda: NoResponse("slow error body"))
    except (httpx.HTTPError, NoResponse):
        return b""  # the status says enough; the preview is a courtesy


async def chunks(
    response: httpx.Response, limits: ReconnectOptions, clock: Clock
) -> AsyncIterator[bytes]:
    """The body, decoded from every content coding httpx advertised (gzip, deflate, and br
    or zstd when their packages are installed), each chunk as it arrives."""
    iterator = response.aiter_bytes().__aiter__()
    idle = limits.idle_timeout

    def idle_timed_out() -> Exception:
        return IdleTimedOut(f"no data for {idle:g} s (--idle-timeout)")

    while True:
        try:
            chunk = await clock.bound(iterator.__anext__(), idle, idle_timed_out)
        except StopAsyncIteration:
            return
        yield chunk
