"""Connecting to an SSE stream, reconnecting as ``EventSource`` does, feeding the parser.

WHATWG HTML 9.2.3 "Processing model": on a dropped connection or a clean end
of stream, wait the reconnection time and reconnect with ``Last-Event-ID``; a
``204 No Content`` means "stop"; any other status, or a content type other
than ``text/event-stream``, fails the connection for good.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx

from sseplay.errors import GaveUp, IdleTimedOut, StreamError, UsageError
from sseplay.model import Event
from sseplay.parser import DEFAULT_MAX_EVENT_SIZE, EventStreamParser, EventTooLarge

logger = logging.getLogger("sseplay.client")

DEFAULT_RETRY_MS = 3000  # what browsers use before a server sends retry:
MAX_BACKOFF_SECONDS = 30.0
BODY_PREVIEW_BYTES = 200


@dataclass(frozen=True, slots=True)
class ConnectOptions:
    url: str
    method: str = "GET"
    body: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()
    last_event_id: str | None = None
    connect_timeout: float = 10.0
    idle_timeout: float | None = None
    verify_tls: bool = True
    reconnect: bool = True
    max_retries: int | None = None
    max_event_size: int = DEFAULT_MAX_EVENT_SIZE
    default_retry_ms: int = DEFAULT_RETRY_MS


def check_url(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as error:
        raise UsageError(f"malformed URL {url!r}: {error}") from None
    if parsed.scheme not in ("http", "https"):
        raise UsageError(f"unsupported URL scheme in {url!r}: use http:// or https://")
    if not parsed.host:
        raise UsageError(f"the URL {url!r} has no host: write it like http://127.0.0.1:8000/events")
    return parsed


def _tls_settings(options: ConnectOptions) -> ssl.SSLContext | bool:
    """What httpx checks TLS with. Its default loads the whole CA bundle when the client is
    made (about 20 ms of tail's start-up here). A plain http:// URL never uses TLS,
    since the client follows no redirects: it gets an empty context, which would refuse
    any certificate rather than accept one."""
    if httpx.URL(options.url).scheme != "https":
        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    return options.verify_tls


class Stop(Exception):
    """Raised by a sink to end the tail successfully."""


@dataclass(slots=True)
class Sink:
    """What the tail does with what arrives; ``event`` may raise ``Stop``."""

    event: Callable[[Event], None]
    raw: Callable[[bytes], None] = lambda chunk: None
    status: Callable[[str], None] = lambda text: None
    # After the events of each chunk: they arrived together, so they are shown together.
    flush: Callable[[], None] = lambda: None


class StreamEnded(Exception):
    """The stream ended and will not be reconnected (204, or --no-reconnect)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _backoff(base_seconds: float, failures: int) -> float:
    """The server's retry time first, then exponential back-off with full jitter."""
    if failures <= 1:
        return base_seconds
    ceiling = min(MAX_BACKOFF_SECONDS, base_seconds * 2 ** (failures - 1))
    return max(base_seconds, random.uniform(ceiling / 2, ceiling))


def _describe(error: httpx.HTTPError, url: str) -> str:
    cause = error.__cause__ or error.__context__
    if isinstance(error, httpx.ConnectTimeout):
        return f"could not connect to {url}: timed out"
    if isinstance(cause, ssl.SSLError) or "SSL" in str(error) or "certificate" in str(error):
        return f"TLS failed for {url}: {error} (--insecure skips certificate checks)"
    if isinstance(error, httpx.ConnectError):
        text = str(error)
        if "Name or service not known" in text or "nodename nor servname" in text:
            return f"cannot resolve the host of {url}: {text}"
        return f"cannot connect to {url}: {text or type(error).__name__}"
    if isinstance(error, httpx.RemoteProtocolError):
        return f"{url} broke the HTTP protocol: {error}"
    return f"{url}: {type(error).__name__}: {error}"


async def _chunks(response: httpx.Response, idle_timeout: float | None) -> AsyncIterator[bytes]:
    iterator = response.aiter_raw().__aiter__()
    while True:
        try:
            chunk = await asyncio.wait_for(iterator.__anext__(), idle_timeout)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise IdleTimedOut(f"no data for {idle_timeout:g} s (--idle-timeout)") from None
        yield chunk


async def tail_stream(options: ConnectOptions, sink: Sink) -> str:
    """Follow the stream until the sink stops it or it ends for good; the reason why.

    Raises StreamError for fatal answers, GaveUp after --max-retries.
    """
    parser = EventStreamParser(options.max_event_size)
    parser.last_event_id = options.last_event_id or ""
    timeout = httpx.Timeout(options.connect_timeout, read=None)
    failures = 0  # in a row, for the back-off
    reconnections = 0  # in all, for --max-retries
    connected_once = False
    async with httpx.AsyncClient(verify=_tls_settings(options), timeout=timeout) as client:
        while True:
            headers = [(b"Accept", b"text/event-stream"), (b"Cache-Control", b"no-store")]
            headers.extend((name.encode(), value.encode()) for name, value in options.headers)
            if parser.last_event_id:
                # Header values are bytes; an id is sent UTF-8 encoded, as browsers do.
                headers.append((b"Last-Event-ID", parser.last_event_id.encode()))
            failure: str | None = None
            try:
                request = client.build_request(
                    options.method, options.url, headers=headers, content=options.body
                )
                response = await client.send(request, stream=True)
                try:
                    await _check_response(response, options.url)
                    connected_once = True
                    failures = 0
                    sink.status(f"connected to {options.url}")
                    parser.reset()
                    async for chunk in _chunks(response, options.idle_timeout):
                        sink.raw(chunk)
                        for event in parser.feed(chunk):
                            sink.event(event)
                        sink.flush()
                    parser.close()
                finally:
                    await response.aclose()
            except EventTooLarge as error:
                raise StreamError(f"{error}: raise --max-event-size if that is expected") from None
            except httpx.HTTPError as error:
                if not connected_once:
                    raise StreamError(_describe(error, options.url)) from None
                failure = _describe(error, options.url)
            if not options.reconnect:
                raise StreamEnded(failure or "the stream ended")
            failures += 1 if failure else 0
            reconnections += 1
            if options.max_retries is not None and reconnections > options.max_retries:
                raise GaveUp(
                    f"gave up after {options.max_retries} reconnection attempts"
                    + (f": {failure}" if failure else "")
                )
            retry_ms = parser.retry if parser.retry is not None else options.default_retry_ms
            delay = _backoff(retry_ms / 1000, max(failures, 1))
            sink.status(f"{failure or 'the stream ended'}; reconnecting in {delay:.2f} s")
            await asyncio.sleep(delay)


async def _check_response(response: httpx.Response, url: str) -> None:
    if response.status_code == 204:
        # 9.2.3: a 204 tells the client to stop reconnecting; the stream is over.
        raise StreamEnded("the server answered 204 No Content: the stream is over")
    content_type = response.headers.get("content-type", "")
    if response.status_code == 200 and content_type.split(";")[0].strip() == "text/event-stream":
        return
    preview = b""
    try:
        async for chunk in response.aiter_raw():
            preview += chunk
            if len(preview) >= BODY_PREVIEW_BYTES:
                break
    except httpx.HTTPError:
        pass  # the status says enough; the preview is a courtesy
    text = preview[:BODY_PREVIEW_BYTES].decode("utf-8", "replace")
    text = " ".join(text.split())
    if response.status_code != 200:
        problem = f"{url} answered {response.status_code} {response.reason_phrase}"
    else:
        problem = f"{url} is not an event stream (Content-Type: {content_type or 'none'})"
    raise StreamError(f"{problem}; the body starts: {text!r}" if text else problem)
