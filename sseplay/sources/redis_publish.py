"""``sseplay publish``: a stream's schedule played into a Redis stream with ``XADD``.

The events are due exactly as ``sseplay serve`` would send them to a client that connects
at start-up (the same ``Plan``: --interval, --time-field, --speed, --max-gap, --loop), and
events due together go in one round trip (a pipeline of XADDs). Each entry holds the
fields ``type`` (the event type), ``id`` (the id ``serve`` would give the event: its
position, or its own id with --id-field; absent when the event has none) and ``data``
(the event's data, lines joined with LF as a browser sees it, WHATWG HTML 9.2.6).
Redis gives each entry its own id, which ``sseplay serve redis://`` sends as the SSE id.

``maxlen`` trims the stream approximately (``XADD MAXLEN ~ N``): Redis removes whole
macro nodes only, which is much cheaper than an exact trim, so the stream may hold a
little more than N entries.

A Redis lost while publishing is logged once and retried with back-off; events that
fell due meanwhile go out when it is back, in order. A connection lost after Redis took a
batch but before its answer arrived means that batch is written twice (at least once).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from sseplay.config import StreamOptions
from sseplay.errors import StreamError, UsageError
from sseplay.eventfile import EventFile
from sseplay.feed import Feed, LiveEvent
from sseplay.model import DEFAULT_EVENT_TYPE, Cue
from sseplay.replay import ROUND_SEPARATOR
from sseplay.schedule import DEFAULT_BATCH_LIMIT, Plan
from sseplay.sources.redis_reader import (
    Backoff,
    RedisTarget,
    connection_errors,
    raise_if_cancelled,
    unavailable,
)
from sseplay.timer import Timer

if TYPE_CHECKING:
    from sseplay.sources.follow_input import FollowInput

logger = logging.getLogger("sseplay.publish")

# At most this many events per pipeline: a backlog (interval 0) goes out in bounded
# round trips, and records read from disk come in pages this long.
PUBLISH_BATCH = 512
# publish --follow: the most bytes of records read but not yet in Redis (waiting for a
# Redis that is lost, or slower than the input). Beyond it the input is not read until
# Redis has taken some: a followed file waits, a pipe blocks its writer. One read (at
# most ``follow.READ_BYTES``) may go past it.
MAX_QUEUED_BYTES = 16 << 20
MAX_MAXLEN = 2**63 - 1


@dataclass(frozen=True, slots=True)
class PublishOptions:
    """Where ``sseplay publish`` writes and how the stream is kept short."""

    target: RedisTarget
    maxlen: int | None = None

    def __post_init__(self) -> None:
        if self.maxlen is not None and (
            isinstance(self.maxlen, bool)
            or not isinstance(self.maxlen, int)
            or not 1 <= self.maxlen <= MAX_MAXLEN
        ):
            raise UsageError(
                f"--maxlen must be a whole number of entries, 1 or more, not {self.maxlen!r}"
            )


def entry_fields(body: bytes, event_id: str | None) -> dict[str, str]:
    """The fields of one entry: ``type``, ``id`` (when the event has one) and ``data``,
    read back from an event's wire lines (``encode_body``/``encode_without_id``; an
    ``id:`` line in front is skipped: the id is given)."""
    event_type = DEFAULT_EVENT_TYPE
    data: list[str] = []
    for line in body.decode().split("\n"):
        if line.startswith("data: "):
            data.append(line[6:])
        elif line.startswith("event: "):
            event_type = line[7:]
    fields = {"type": event_type}
    if event_id is not None:
        fields["id"] = event_id
    fields["data"] = "\n".join(data)
    return fields


def event_id_of(file: EventFile, n: int, cue: Cue) -> str | None:
    """The id ``sseplay serve`` sends for event ``n`` (see ``Replay._encode``)."""
    if file.positional_ids:
        return str(n + 1)
    if cue.id is None:
        return None
    round_number = n // file.count
    return cue.id if round_number == 0 else f"{cue.id}{ROUND_SEPARATOR}{round_number}"


class Publisher:
    """Plays ``file`` on its plan into ``options.target``; ``run()`` returns how many
    events it wrote (it returns only when the plan ends: never with --loop)."""

    def __init__(
        self,
        file: EventFile | None,
        stream_options: StreamOptions,
        options: PublishOptions,
        *,
        backoff: Backoff | None = None,
        on_published: Callable[[int], None] | None = None,
    ) -> None:
        # None: no existing records (a followed file with none yet, or standard input).
        self.file = file
        self.timing = stream_options.timing
        self.options = options
        self.backoff = backoff or Backoff()
        self.on_published = on_published
        self.published = 0
        self.max_queued_bytes = MAX_QUEUED_BYTES
        self._client: Any = None

    async def connect(self) -> None:
        """Connect now, so that an unreachable Redis is one error before anything is played."""
        target = self.options.target
        self._client = target.client(socket_timeout=10.0)
        try:
            await self._client.ping()
        except Exception as error:  # refused, AUTH refused, no such database...
            await self.close()
            raise unavailable(target, error) from None

    async def run(self, follow: FollowInput | None = None) -> int:
        """Play the file on its plan; then, with ``follow``, every record appended to it
        (or arriving on standard input) as it is read, until the input closes."""
        if self._client is None:
            await self.connect()
        if self.file is not None:
            await self._play(self.file)
        if follow is not None:
            await self._follow(follow)
        return self.published

    async def _play(self, file: EventFile) -> None:
        plan = Plan(file.count, file.times, self.timing)
        loop = asyncio.get_running_loop()
        origin = loop.time()
        n = 0
        while n < plan.total:
            delay = origin + plan.offset(n) - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            stop = plan.due_stop(n, loop.time() - origin, min(PUBLISH_BATCH, DEFAULT_BATCH_LIMIT))
            stop = max(stop, n + 1)
            cues = await self._cues(file, n, stop)
            await self._add(
                [
                    entry_fields(cue.body, event_id_of(file, n + i, cue))
                    for i, cue in enumerate(cues)
                ]
            )
            n += len(cues)
            self._count(len(cues))

    def _count(self, added: int) -> None:
        self.published += added
        if self.on_published is not None:
            self.on_published(self.published)

    async def _follow(self, source: FollowInput) -> None:
        """The ``Follower`` of ``serve --follow`` reads the input from where its existing
        records end and publishes to a feed; here that feed is a queue of XADDs."""
        from sseplay.sources.follow import Follower

        class _HeldFollower(Follower):
            async def _room(self) -> None:
                await sink.room(source.label)

        loop = asyncio.get_running_loop()
        sink = _XaddQueue(Timer(loop), first=source.count, limit=self.max_queued_bytes)
        follower = loop.create_task(_HeldFollower(source, sink, None).run())
        logger.info("following %s: each record is published as it is read", source.label)
        try:
            while (batch := await sink.batches.get()) is not None:
                await self._add([entry_fields(wire, event_id) for event_id, wire in batch])
                self._count(len(batch))
                sink.taken(batch)
        finally:
            follower.cancel()
            await asyncio.wait((follower,))

    async def _cues(self, file: EventFile, first: int, stop: int) -> list[Cue]:
        """Events ``first`` to ``stop`` (one round at most); read in a thread from disk."""
        index = first % file.count
        end = min(index + (stop - first), file.count)
        if file.in_memory:
            return file.cues(index, end)
        cues: list[Cue] = await anyio.to_thread.run_sync(file.cues, index, end)
        return cues

    async def _add(self, entries: list[dict[str, str]]) -> None:
        from redis.exceptions import RedisError

        target = self.options.target
        attempt = 0
        lost = False
        while True:
            try:
                pipe = self._client.pipeline(transaction=False)
                for fields in entries:
                    pipe.xadd(target.stream, fields, maxlen=self.options.maxlen, approximate=True)
                await pipe.execute()
            except connection_errors() as error:
                raise_if_cancelled()
                if not lost:
                    lost = True
                    logger.warning(
                        "lost Redis at %s after %d events (%s): retrying",
                        target.shown,
                        self.published,
                        error or type(error).__name__,
                    )
                await asyncio.sleep(self.backoff.delay(attempt))
                attempt += 1
                continue
            except RedisError as error:  # an answer instead of the entries: WRONGTYPE, OOM...
                raise StreamError(
                    f"Redis at {target.shown} refused the entries after {self.published} "
                    f"events: {error}"
                ) from None
            if lost:
                logger.warning("Redis at %s is back: publishing on", target.shown)
            return

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


class _XaddQueue(Feed):
    """The feed a ``Follower`` publishes to, for ``publish --follow``: its batches wait
    here for their XADDs (the positions count on, as the follower's ids expect); ``None``
    says the input closed. No history, no subscribers. At most ``limit`` bytes wait (see
    ``MAX_QUEUED_BYTES``): the follower waits in ``room`` before each read until the
    XADDs have taken them below it (``taken``)."""

    def __init__(self, timer: Timer, first: int, limit: int) -> None:
        super().__init__(timer, 0, first=first)
        self.batches: asyncio.Queue[list[LiveEvent] | None] = asyncio.Queue()
        self.limit = limit
        self.queued_bytes = 0
        self._room = asyncio.Event()
        self._room.set()

    def publish(self, events: Sequence[LiveEvent]) -> None:
        if not events or self.ended:
            return
        self.position += len(events)
        self.last_id = events[-1][0]
        self.queued_bytes += sum(len(wire) for _, wire in events)
        if self.queued_bytes >= self.limit:
            self._room.clear()
        self.batches.put_nowait(list(events))

    def taken(self, events: Sequence[LiveEvent]) -> None:
        """``events`` are in Redis: their bytes make room."""
        self.queued_bytes -= sum(len(wire) for _, wire in events)
        if self.queued_bytes < self.limit:
            self._room.set()

    async def room(self, label: str) -> None:
        """Return when fewer than ``limit`` bytes wait; said in the log when it waits."""
        if self._room.is_set():
            return
        logger.warning(
            "%s bytes of %s wait for Redis (at most %s are held): reading it is paused "
            "until Redis takes them",
            f"{self.queued_bytes:,}",
            label,
            f"{self.limit:,}",
        )
        await self._room.wait()
        logger.warning("Redis took what waited: reading %s on", label)

    def end(self) -> None:
        if not self.ended:
            self.ended = self.closed = True
            self.batches.put_nowait(None)
