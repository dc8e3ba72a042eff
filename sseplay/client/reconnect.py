"""The reconnect loop of ``sseplay tail`` and ``sseplay.tail()``.

WHATWG HTML 9.2.3 "Processing model": on a dropped connection or a clean end of stream,
wait the reconnection time and reconnect with ``Last-Event-ID``; a ``204 No Content``
means "stop"; any other status, or a content type other than ``text/event-stream``,
fails the connection for good (sseplay.client.exchange). ``reconnecting_stream`` applies
``count``, ``until``, the type filter and the time limits, and reports ``--stats``
however the tail ends.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import ssl
import time
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING

import httpx

from sseplay.client.exchange import (
    Clients,
    Clock,
    NoResponse,
    NotUpYet,
    StreamOver,
    check_response,
    chunks,
    describe,
    open_response,
    request_headers,
)
from sseplay.client.hooks import Hooks
from sseplay.client.options import TailOptions
from sseplay.client.selection import Selection
from sseplay.errors import ExitCode, GaveUp, IdleTimedOut, SseplayError, StreamError
from sseplay.framing import FramingError, splitter
from sseplay.model import Event
from sseplay.parser import EventTooLarge
from sseplay.redaction import redact_url

if TYPE_CHECKING:  # sseplay.client.assertions is imported only when its options are used
    from sseplay.client.stats import TailStats

logger = logging.getLogger("sseplay.client")

DEFAULT_RETRY_MS = 3000  # what browsers use before a server sends retry:
MAX_BACKOFF_SECONDS = 30.0
# The shortest wait before a reconnection, whatever retry: says. A server that sends
# "retry: 0" and ends would otherwise be hammered (600 reconnections a second were seen).
# Firefox floors the reconnection time at 500 ms; 100 ms keeps tests and local servers
# quick, and the back-off below takes over when connections keep bringing nothing.
MIN_RECONNECT_SECONDS = 0.1
# --wait: the first retry comes after this long, doubling up to the ceiling, so a server
# that comes up is found within half a second without a busy loop.
WAIT_FIRST_DELAY = 0.05
WAIT_MAX_DELAY = 0.5


def backoff(base_seconds: float, failures: int) -> float:
    """The server's retry time (never under the floor) first, then exponential
    back-off with full jitter."""
    base_seconds = max(base_seconds, MIN_RECONNECT_SECONDS)
    if failures <= 1:
        return base_seconds
    ceiling = min(MAX_BACKOFF_SECONDS, base_seconds * 2 ** (failures - 1))
    return max(base_seconds, random.uniform(ceiling / 2, ceiling))


def _worth_waiting(error: Exception) -> bool:
    """--wait retries a first connection that was refused (or timed out) and a proxy's
    502/503/504: what a server that is still starting gives. A TLS failure or a host
    that does not resolve will not get better by waiting a few seconds more."""
    if isinstance(error, NotUpYet):
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
    wanted = options.checks.stats
    if wanted is False:
        return None, False, None
    from sseplay.client.stats import TailStats

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
    from sseplay.client.stats import write_stats

    try:
        write_stats(stats.report(), destination)
    except SseplayError as error:
        if exit_code == ExitCode.OK:
            raise
        logger.warning("%s", error)  # the error already on its way says more


async def reconnecting_stream(
    options: TailOptions, hooks: Hooks | None = None
) -> AsyncGenerator[list[Event], None]:
    """The selected events of each chunk as it arrives (an empty list when a chunk
    brought none to show), reconnecting as ``EventSource`` does.

    Ends where ``sseplay tail`` exits 0; raises the SseplayError it would exit with.
    With ``options.stats``, the figures are reported however it ends.
    """
    hooks = hooks or Hooks()
    request, limits = options.request, options.reconnecting
    stats, write_report, destination = _stats_of(options)
    if stats is not None:
        stats.start()
    selection = Selection(options.selection, options.checks, hooks)
    clock = Clock(limits.timeout, lambda: selection.shown)
    # The SSE parser, or a JSON splitter (--framing): these carry no ids and no retry, so
    # a reconnection sends no Last-Event-ID of theirs and waits the default time.
    parser = splitter(limits.framing, limits.max_event_size)
    parser.last_event_id = request.last_event_id or ""
    shown_url = redact_url(request.url)
    failures = 0  # connections in a row that failed or brought nothing, for the back-off
    reconnections = 0  # in all, for --max-retries
    connected_once = False
    waiting = _Waiting(limits.wait, hooks)
    clients = Clients(request, limits)
    told: set[str] = set()

    def tell_once(text: str) -> None:
        """A redirect is followed again on every reconnection: say what it drops once."""
        if text not in told:
            told.add(text)
            hooks.status(text)

    exit_code = int(ExitCode.OK)
    try:
        while True:
            failure: str | None = None
            delivered = False
            try:
                headers = request_headers(request, parser.last_event_id, hooks, limits.framing)
                response = await open_response(clients, request, limits, headers, clock, tell_once)
                try:
                    await check_response(response, limits, clock)
                    connected_once = True
                    if stats is not None:
                        stats.connected()
                    hooks.status(f"connected to {shown_url}")
                    hooks.connected(response)
                    parser.reset()
                    async for chunk in chunks(response, limits, clock):
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
            except StreamOver as ended:
                selection.ended(ended.reason)
                return
            except IdleTimedOut:
                if not selection.silence_is_success:
                    raise
                selection.ended("no event after the expected ones within --idle-timeout")
                return
            except EventTooLarge as error:
                raise StreamError(f"{error}: raise --max-event-size if that is expected") from None
            except FramingError as error:
                raise StreamError(f"{shown_url}: {error} (--framing {limits.framing})") from None
            except httpx.DecodingError as error:
                # Bytes that the advertised coding cannot decode: the same bytes would come
                # again on every reconnection, so this is the end.
                raise StreamError(f"{shown_url}: the body cannot be decoded: {error}") from None
            except (httpx.HTTPError, NoResponse, NotUpYet) as error:
                if isinstance(error, httpx.HTTPError):
                    described = describe(error, shown_url)
                else:
                    described = str(error)
                if not connected_once:
                    delay = waiting.delay(error, described)
                    if delay is None:
                        raise waiting.final(described) from None
                    await clock.bound(asyncio.sleep(delay))
                    continue
                if isinstance(error, NotUpYet):
                    raise StreamError(described) from None
                failure = described
            if not limits.reconnect:
                selection.ended(failure or "the stream ended")
                return
            # A connection that brought no event counts as a failure for the back-off, so a
            # server that ends at once (with retry: 0 or not) gets ever longer waits.
            failures = 0 if delivered else failures + 1
            reconnections += 1
            if limits.max_retries is not None and reconnections > limits.max_retries:
                raise GaveUp(
                    f"gave up after {limits.max_retries} reconnection attempts"
                    + (f": {failure}" if failure else "")
                )
            if stats is not None:
                stats.reconnecting()
            retry_ms = parser.retry if parser.retry is not None else DEFAULT_RETRY_MS
            delay = backoff(retry_ms / 1000, max(failures, 1))
            hooks.status(f"{failure or 'the stream ended'}; reconnecting in {delay:.2f} s")
            await clock.bound(asyncio.sleep(delay))
    except BaseException as error:
        exit_code = _exit_code(error)
        raise
    finally:
        await clients.aclose()
        _report_stats(stats, write_report, destination, selection.shown, exit_code)
