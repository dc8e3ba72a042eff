"""A Redis stream served at a route: one reader feeding one ``live.Feed``, and resumes.

``RedisStream`` is what a ``Server`` is given for a ``redis://`` source (the public side:
``Server({"/feed": RedisStream("redis://127.0.0.1:6379/0?stream=feed")})``). Each app
makes a ``RedisFeed`` of it: one ``StreamReader`` (one XREAD loop per stream key and
process) whose batches are published to a ``Feed``, which writes each batch once to every
connection at the live edge.

Resuming (WHATWG HTML 9.2.4): the SSE id of an event is its Redis entry id, so a client
that sends Last-Event-ID L gets the entries after L from Redis itself (``XRANGE (L``),
then the live ones, with no gap and no duplicate between the two: the connection is
registered with the feed at its live edge *before* the last page of the backfill is read
(events published meanwhile wait in the feed's history), and that page ends at the id of
the last entry the feed has published (``live.py``, "Resuming"). Pages before the last
are written as the client takes them (``drained``), so a long backfill never sits in
memory. A client whose L this server has not read yet (it comes from a server that reads
ahead of this one) waits until this one has, so that it gets nothing twice.

An L that has been trimmed away (``StreamReader.trimmed``) is never skipped silently: the
client gets a comment and an event of type ``sseplay.resync`` whose data (JSON) says
which id was lost and from which entry the stream goes on, then every entry from the
oldest. The resync event has no id, so a client that drops right after it still resumes
from L and is told again. An L that is no entry id, or newer than the stream's newest
entry, gets a comment and the live edge.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import orjson

from sseplay.errors import UsageError
from sseplay.feed import Feed, LiveSubscriber, Resume
from sseplay.model import encode_body, encode_comment
from sseplay.outlet import Outlet
from sseplay.records import MAX_RECORD_BYTES
from sseplay.replay import shown_id
from sseplay.sources.redis_reader import (
    BATCH_ENTRIES,
    Backoff,
    Entry,
    RedisTarget,
    RedisUnavailable,
    StreamReader,
    Trimmed,
    parse_entry_id,
    raise_if_cancelled,
)
from sseplay.timer import Timer

logger = logging.getLogger("sseplay.redis")

RESYNC_EVENT = "sseplay.resync"
# How long a resuming client waits for this server to read up to its Last-Event-ID, which
# another server read first: normally milliseconds (both block on the same stream).
CATCH_UP_WAIT = 10.0
# How often stopping a reader cancels it again while it has not stopped.
STOP_RETRY = 0.1
# How often a backfill looks whether its client has taken the last page.
DRAIN_POLL = 0.01
# A backfill's pages aim at this many bytes (the next page's count comes from the sizes
# of the last one's entries, BATCH_ENTRIES at most): a client that reads slowly holds
# about two pages, whatever its entries weigh. The first page, sizes unknown, is short.
PAGE_BYTES = 1 << 20
FIRST_PAGE_ENTRIES = 8


class RedisStream:
    """A Redis stream to serve live at a route; ``url`` as ``sseplay serve`` takes it."""

    def __init__(
        self,
        url: str | RedisTarget,
        *,
        retry: int | None = None,
        block: float | None = None,
        backoff: Backoff | None = None,
        max_entry_bytes: int = MAX_RECORD_BYTES,
    ) -> None:
        self.target = url if isinstance(url, RedisTarget) else RedisTarget.parse(url)
        if max_entry_bytes < 1:
            raise UsageError(f"max_entry_bytes={max_entry_bytes}: write a number of bytes >= 1")
        # An entry larger (its fields' bytes) is skipped and logged once, as a file's
        # record over the limit is.
        self.max_entry_bytes = max_entry_bytes
        self.retry = retry
        self.block = block
        self.backoff = backoff

    @property
    def label(self) -> str:
        """The URL without its password: for logs and ``/healthz``."""
        return self.target.shown

    def __repr__(self) -> str:
        return f"<RedisStream {self.label}>"

    async def check(self) -> None:
        """Connect once and read the live edge: ``RedisUnavailable`` when Redis cannot be
        reached, before the server starts."""
        reader = StreamReader(self.target, lambda entries: None)
        try:
            await reader.open()
        finally:
            await reader.close()


def resync_notice(last_event_id: str, trimmed: Trimmed) -> bytes:
    """The comment and the ``sseplay.resync`` event for a Last-Event-ID trimmed away."""
    shown = shown_id(last_event_id)
    if trimmed.oldest is None:
        goes_on = "the stream is empty now: from the live edge"
    else:
        goes_on = f"from the oldest entry left, {trimmed.oldest}"
    comment = encode_comment(
        f"Last-Event-ID {shown} was trimmed from the Redis stream: entries after it "
        f"are gone; {goes_on}"
    )
    data = orjson.dumps(
        {"reason": "trimmed", "last_event_id": last_event_id, "oldest": trimmed.oldest}
    ).decode()
    return comment + encode_body(data, RESYNC_EVENT)


def reset_notice(lost: str) -> bytes:
    """The comment and the ``sseplay.resync`` event for a stream made anew after ``lost``."""
    comment = encode_comment(
        f"the Redis stream was made anew after entry {lost} (its key deleted, or Redis "
        f"restarted without persistence): entries after it may be lost"
    )
    data = orjson.dumps({"reason": "reset", "last_event_id": lost, "oldest": None}).decode()
    return comment + encode_body(data, RESYNC_EVENT)


async def drained(outlet: Outlet) -> None:
    """Wait until the client has taken what was written to it (or is gone: a client that
    takes nothing is cut off by its outlet after the send timeout)."""
    while outlet.blocked and not outlet.closed:
        await asyncio.sleep(DRAIN_POLL)


class RedisFeed:
    """One app's live reading of one Redis stream (see the module docstring)."""

    def __init__(self, source: RedisStream) -> None:
        self.source = source
        self.target = source.target
        self.reader = StreamReader(
            source.target,
            self._publish,
            **({"block": source.block} if source.block is not None else {}),
            backoff=source.backoff,
            on_reset=self._reset,
            max_entry=source.max_entry_bytes,
        )
        self._feed: Feed | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._moved = asyncio.Event()
        # The id of the last entry the feed has (the live edge at start-up before any):
        # backfills end here, where the feed's own events begin.
        self.edge = "0-0"
        # --metrics: told how each Last-Event-ID was taken (``sseplay.metrics``).
        self.on_resume: Callable[[str], None] = _untold

    @property
    def feed(self) -> Feed:
        assert self._feed is not None, "start() the RedisFeed first"
        return self._feed

    @property
    def published(self) -> int:
        return 0 if self._feed is None else self._feed.position

    def start(self, timer: Timer, ping: float) -> None:
        """Start reading (the server is up); pings go to idle clients on ``timer``."""
        self._feed = Feed(timer, ping)
        self._feed.start()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        attempt = 0
        while True:
            try:
                await self.reader.open()
                break
            except RedisUnavailable as error:
                raise_if_cancelled()
                if attempt == 0:
                    logger.warning("%s: retrying", error)
                await asyncio.sleep(self.reader.backoff.delay(attempt))
                attempt += 1
        self.edge = self.reader.last_id
        self._ready.set()
        logger.info("reading %s live after entry %s", self.target.shown, self.reader.last_id)
        try:
            await self.reader.run()
        except asyncio.CancelledError:
            raise
        except Exception:  # never: the reader logs and retries; but the server goes on
            logger.exception("the reading of %s stopped", self.target.shown)

    def _publish(self, entries: list[Entry]) -> None:
        events = [(entry.id, entry.wire) for entry in entries if entry.wire]  # none: skipped
        if events:
            self.feed.publish(events)
        self.edge = entries[-1].id
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()

    def _reset(self, lost: str) -> None:
        """The stream was made anew after entry ``lost`` (``StreamReader._check_reset``):
        every live client is told, never left to wonder (a comment and an
        ``sseplay.resync`` event, without an id: a client's Last-Event-ID stays its own)."""
        self.edge = "0-0"
        self.feed.publish([(lost, reset_notice(lost))])

    async def stop(self) -> None:
        task, self._task = self._task, None
        while task is not None and not task.done():
            # Again while it runs: a cancellation can be taken in by redis-py, which
            # closes the connection of a cancelled read and may go on reading.
            task.cancel()
            await asyncio.wait((task,), timeout=STOP_RETRY)  # without its CancelledError
        await self.reader.close()
        if self._feed is not None:
            self._feed.closed = True

    async def _reach(self, wanted: tuple[int, int]) -> bool:
        """Wait until this server has read up to ``wanted``; False after CATCH_UP_WAIT."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CATCH_UP_WAIT
        while (parse_entry_id(self.edge) or (0, 0)) < wanted:
            left = deadline - loop.time()
            if left <= 0:
                return False
            try:
                await asyncio.wait_for(self._moved.wait(), left)
            except TimeoutError:
                return False
        return True

    async def join(
        self, outlet: Outlet, last_event_id: str | None, preamble: bytes
    ) -> LiveSubscriber | None:
        """Write ``preamble``, what the client missed, then follow the feed live; None
        when the client went while its backfill was read. Raises the redis client's
        connection errors when Redis is lost during the backfill."""
        await self._ready.wait()
        after, notice = await self._resume_point(last_event_id)
        if preamble or notice:
            outlet.write(preamble + notice)
        feed = self.feed
        if after is None:
            subscriber = feed.subscribe(outlet)
            feed.admit(subscriber)
            return subscriber
        sent = 0
        count = FIRST_PAGE_ENTRIES
        while True:
            await drained(outlet)
            if outlet.closed or outlet.completed:  # gone, or ended (the server stops)
                return None
            # Registered at the live edge first: what is published while the page is read
            # waits in the feed's history, and the page ends where the feed's events begin.
            subscriber = feed.subscribe(outlet, Resume(feed.position))
            edge = self.edge
            try:
                page = await self.reader.backfill(after, edge, pages=1, count=count)
            except BaseException:
                feed.unsubscribe(subscriber)
                raise
            backlog = b"".join(entry.wire for entry in page)
            if len(page) < count or outlet.closed:
                subscriber.sent = sent + sum(1 for entry in page if entry.wire)
                feed.admit(subscriber, backlog=backlog)
                return subscriber
            feed.unsubscribe(subscriber)
            if backlog:
                outlet.write(backlog)
            sent += sum(1 for entry in page if entry.wire)
            after = page[-1].id
            # A skipped entry weighs at least the limit it passed: pages of them stay short.
            weight = len(backlog) + self.reader.max_entry * sum(1 for e in page if not e.wire)
            average = max(1, weight // len(page))
            count = max(1, min(BATCH_ENTRIES, PAGE_BYTES // average))

    async def _resume_point(self, last_event_id: str | None) -> tuple[str | None, bytes]:
        """(the id to backfill after, or None for the live edge; what the client is told)."""
        if not last_event_id:
            return None, b""
        shown = shown_id(last_event_id)
        wanted = parse_entry_id(last_event_id)
        if wanted is None:
            logger.warning("a client resumed with %s, not a Redis entry id: live from now", shown)
            notice = f"unknown Last-Event-ID {shown}: not an entry id; from the live edge"
            self.on_resume("unknown")
            return None, encode_comment(notice)
        newest = await self.reader.newest()
        if newest is None or wanted > newest:
            logger.warning(
                "a client resumed with %s, newer than the newest entry of %s: live from now",
                shown,
                self.target.shown,
            )
            notice = f"Last-Event-ID {shown} is newer than the stream's newest entry: live"
            self.on_resume("unknown")
            return None, encode_comment(notice)
        if not await self._reach(wanted):
            logger.warning(
                "a client resumed with %s, which this server has not read within %g s",
                shown,
                CATCH_UP_WAIT,
            )
        trimmed = await self.reader.trimmed(last_event_id)
        if trimmed is not None:
            logger.warning(
                "a client resumed with %s, trimmed from %s: sent %s, from the oldest entry %s",
                shown,
                self.target.shown,
                RESYNC_EVENT,
                trimmed.oldest,
            )
            after = None if trimmed.oldest is None else "0-0"
            self.on_resume("trimmed")
            return after, resync_notice(last_event_id, trimmed)
        self.on_resume("exact")
        return last_event_id, b""


def _untold(result: str) -> None:
    pass
