"""Redis Streams as a live source: one reader per stream key (the ``redis://`` URL it
reads is ``redis_target.RedisTarget``).

``sseplay serve redis://HOST:PORT/DB?stream=KEY`` serves a Redis stream live: one blocking
``XREAD`` loop per stream key and process (``StreamReader.run``) hands every batch of new
entries to the route's feed, which writes it to every local client. The SSE id of an event
is its Redis entry id (``1700000000000-0``), the same on every host, so a client can move
from one server to another and resume exactly (WHATWG HTML 9.2.4, Last-Event-ID):
``StreamReader.backfill`` reads what it missed with ``XRANGE``, exclusive of the id it
sent. Ids are compared as Redis compares them, (milliseconds, sequence) pairs.

An entry holds the fields ``sseplay publish`` writes: ``type`` (the event type), ``id``
(the event's own id in its file, for reference only) and ``data``. An entry that another
producer wrote without ``data`` is sent as the JSON object of its fields.

Redis lost while serving: the loop logs it once, reconnects with back-off (``Backoff``)
and reads on from the last id it read, so nothing is lost; clients keep their connections
meanwhile. Redis unreachable at start-up is ``RedisUnavailable`` (exit 4, as a server that
cannot start). The ``redis`` package (its asyncio client) is imported only here, and only
when a ``redis://`` URL is used: ``redis_asyncio()`` says how to install it when missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from sseplay.model import DEFAULT_EVENT_TYPE, encode_body, field_problem, with_id
from sseplay.records import MAX_RECORD_BYTES

# Where the stream is, and the errors of a Redis out of reach: in redis_target, named here
# too, where the command and the server have always taken them from.
from sseplay.sources.redis_target import RedisTarget as RedisTarget
from sseplay.sources.redis_target import RedisUnavailable as RedisUnavailable
from sseplay.sources.redis_target import check_redis_route as check_redis_route
from sseplay.sources.redis_target import connection_errors as connection_errors
from sseplay.sources.redis_target import redis_asyncio as redis_asyncio
from sseplay.sources.redis_target import unavailable as unavailable

if TYPE_CHECKING:
    import redis.asyncio

logger = logging.getLogger("sseplay.redis")

# How long one XREAD waits for new entries before it asks again; a lost Redis that
# closes nothing (a cable pulled) is noticed after this plus SOCKET_MARGIN.
BLOCK_SECONDS = 5.0
SOCKET_MARGIN = 5.0
# The most entries one XREAD or one page of a backfill brings in: a bound on memory.
BATCH_ENTRIES = 1000
# The ids read live since the stream was last seen to be the same one: when it turns out
# to have been made anew, those of its entries were sent already (see ``_check_reset``).
RECENT_IDS = 10 * BATCH_ENTRIES
# Backfills at once per stream (each holds a connection of the pool besides XREAD's).
CONCURRENT_BACKFILLS = 4
# A stream entry id: milliseconds and sequence number, both unsigned 64-bit (Redis
# "Streams introduction", entry IDs).
_ENTRY_ID = re.compile(r"([0-9]{1,20})-([0-9]{1,20})", re.ASCII)
_MAX_U64 = 2**64 - 1


def raise_if_cancelled() -> None:
    """Re-raise a cancellation of this task that arrived as a connection error. redis-py
    closes a connection whose read is cancelled, and what that close raises may replace
    the CancelledError; a loop that retries on connection errors would then swallow its
    own cancellation and never stop (a server that hangs at SIGTERM)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


# Entry ids.


def parse_entry_id(text: str) -> tuple[int, int] | None:
    """An entry id as Redis orders them, or None when ``text`` is not one."""
    match = _ENTRY_ID.fullmatch(text)
    if match is None:
        return None
    ms, seq = int(match[1]), int(match[2])
    if ms > _MAX_U64 or seq > _MAX_U64:
        return None
    return ms, seq


def _text(value: bytes | str) -> str:
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


class Entry(NamedTuple):
    """One stream entry as an event: its Redis id and its wire bytes (``id:`` line first);
    no bytes for an entry over the size limit, skipped (its id only, to read on after it)."""

    id: str
    wire: bytes


def entry_event(entry_id: str, fields: dict[Any, Any]) -> Entry:
    """An entry's event: ``type`` and ``data`` from its fields (WHATWG 9.2.6 lines), its
    Redis id as the SSE id. Another producer's entry without ``data`` is sent as the JSON
    object of its fields; a type that cannot be sent is replaced by ``message``."""
    decoded = {_text(key): _text(value) for key, value in fields.items()}
    event_type = decoded.get("type") or DEFAULT_EVENT_TYPE
    if field_problem("event type", event_type):
        if _first_warning(entry_id):
            logger.warning(
                "entry %s: its type %r cannot be sent as an event type: sent as message",
                entry_id,
                event_type[:40],
            )
        event_type = DEFAULT_EVENT_TYPE
    data = decoded.get("data")
    if data is None:
        data = orjson.dumps(decoded).decode()
    return Entry(entry_id, with_id(entry_id, encode_body(data, event_type)))


def _first_warning(entry_id: str) -> bool:
    """Whether an entry's problem is to be logged: once per entry, not at every read of it
    (the live read, then each client's backfill); the newest ``_WARNED_IDS`` are kept."""
    if entry_id in _warned:
        return False
    _warned[entry_id] = None
    if len(_warned) > _WARNED_IDS:
        del _warned[next(iter(_warned))]
    return True


_WARNED_IDS = 1024
_warned: dict[str, None] = {}


def entry_size(fields: dict[Any, Any]) -> int:
    """The bytes of an entry's field names and values, as Redis sends them."""
    return sum(len(key) + len(value) for key, value in fields.items())


@dataclass(frozen=True, slots=True)
class Backoff:
    """Waits between reconnection attempts: ``first``, doubling up to ``longest``."""

    first: float = 0.1
    longest: float = 5.0

    def delay(self, attempt: int) -> float:
        return min(self.longest, self.first * 2.0 ** min(attempt, 30))


@dataclass(frozen=True, slots=True)
class Trimmed:
    """A resume point older than what the stream still holds: ``oldest`` is its first
    entry now (None: the stream is empty)."""

    oldest: str | None


class StreamReader:
    """One ``XREAD BLOCK`` loop on one stream key, and the ``XRANGE`` reads of resumes.

    ``open()`` connects (``RedisUnavailable`` if it cannot) and takes the id of the stream's
    last entry as the live edge: only entries after it are read live. ``run()`` then reads
    until cancelled and hands each batch to ``on_entries`` (on the event loop, in order);
    ``last_id`` is the id of the last entry handed over. A lost connection is logged once,
    retried with ``backoff``, and the reading resumes after ``last_id``."""

    def __init__(
        self,
        target: RedisTarget,
        on_entries: Callable[[list[Entry]], None],
        *,
        block: float = BLOCK_SECONDS,
        backoff: Backoff | None = None,
        on_reset: Callable[[str], None] | None = None,
        max_entry: int = MAX_RECORD_BYTES,
    ) -> None:
        self.target = target
        # The largest entry sent (its fields' bytes); a larger one is skipped and logged
        # once. The same bound as a file's record (``records.MAX_RECORD_BYTES``): an event
        # is copied while it is made and written, so one entry of 100 MiB cost gigabytes.
        self.max_entry = max_entry
        self.on_entries = on_entries
        self.block = block
        self.backoff = backoff or Backoff()
        self.last_id = "0-0"
        self.connected = False
        self.reconnects = 0
        # Told the id read up to when the stream turns out to have been made anew.
        self.on_reset = on_reset
        # ``entries-added`` as last seen plus the entries read since: a stream's count of
        # entries ever added never goes down (XTRIM and XDEL leave it), so a lower one is
        # another stream under the same key.
        self._added_floor = 0
        # The ids read since the stream was last found to be the same one, and, after it
        # was made anew, those of them not to send again (up to the id read when it was).
        self._recent: deque[str] = deque(maxlen=RECENT_IDS)
        self._sent: set[str] = set()
        self._sent_through: tuple[int, int] = (0, 0)
        self._client: redis.asyncio.Redis | None = None
        self._backfills = asyncio.Semaphore(CONCURRENT_BACKFILLS)

    @property
    def client(self) -> redis.asyncio.Redis:
        if self._client is None:
            self._client = self.target.client(self.block + SOCKET_MARGIN)
        return self._client

    async def newest(self) -> tuple[int, int] | None:
        """The id of the stream's newest entry now; None when it has none."""
        newest: Any = await self.client.xrevrange(self.target.stream, "+", "-", count=1)
        return parse_entry_id(_text(newest[0][0])) if newest else None

    async def open(self) -> None:
        """Connect, and start at the live edge (the stream's last entry, if any)."""
        try:
            newest: Any = await self.client.xrevrange(self.target.stream, "+", "-", count=1)
        except connection_errors() as error:
            await self.close()
            raise unavailable(self.target, error) from None
        except Exception as error:  # AUTH, WRONGTYPE, a database that does not exist...
            await self.close()
            raise RedisUnavailable(f"Redis at {self.target.shown} refused: {error}") from None
        if newest:
            self.last_id = _text(newest[0][0])
            with contextlib.suppress(Exception):  # only a floor: 0 when it cannot be read
                info: Any = await self.client.xinfo_stream(self.target.stream)
                self._added_floor = int(info.get("entries-added") or 0)
        self.connected = True
        logger.debug("connected to %s; its newest entry is %s", self.target.shown, self.last_id)

    async def run(self) -> None:
        """Read new entries until cancelled; never raises for a lost Redis."""
        attempt = 0
        refused = False
        check = False  # whether to look for a stream made anew before reading on
        key = self.target.stream
        errors = connection_errors()
        while True:
            raise_if_cancelled()  # one that redis-py took in and went on from
            try:
                if check:
                    check = False
                    await self._check_reset()
                reply: Any = await self.client.xread(
                    {key: self.last_id}, count=BATCH_ENTRIES, block=int(self.block * 1000)
                )
            except errors as error:
                raise_if_cancelled()
                if self.connected:
                    self.connected = False
                    logger.warning(
                        "lost Redis at %s (%s): reconnecting, then reading on after entry %s",
                        self.target.shown,
                        error or type(error).__name__,
                        self.last_id,
                        extra={"source": self.target.shown, "reason": str(error)},
                    )
                await asyncio.sleep(self.backoff.delay(attempt))
                attempt += 1
                check = True
                continue
            except Exception as error:  # a reply Redis gives instead (WRONGTYPE, ...)
                raise_if_cancelled()
                # Said once, not at every retry: a key that holds a string stays so for
                # as long as nobody fixes it, and the log must stay readable meanwhile.
                if not refused:
                    refused = True
                    logger.error(
                        "Redis at %s answered XREAD with: %s; asking again until it reads",
                        self.target.shown,
                        error,
                    )
                await asyncio.sleep(self.backoff.delay(attempt))
                attempt += 1
                continue
            if refused:
                refused = False
                logger.warning(
                    "Redis at %s reads the stream again: reading on after entry %s",
                    self.target.shown,
                    self.last_id,
                )
            if not self.connected:
                self.connected = True
                self.reconnects += 1
                logger.warning(
                    "Redis at %s is back after %d attempts: reading on after entry %s",
                    self.target.shown,
                    attempt,
                    self.last_id,
                    extra={"source": self.target.shown},
                )
            attempt = 0
            check = not reply  # idle for a whole BLOCK: was the key deleted meanwhile?
            for _key, raw in reply or ():
                if not raw:
                    continue
                entries = self._entries(raw)
                self.last_id = entries[-1].id
                self._added_floor += len(entries)
                self._recent.extend(entry.id for entry in entries)
                if self._sent:
                    entries = self._unsent(entries)
                if entries:
                    self.on_entries(entries)

    def _entries(self, raw: list[Any]) -> list[Entry]:
        entries = []
        for raw_id, raw_fields in raw:
            entry_id, fields = _text(raw_id), raw_fields or {}
            size = entry_size(fields)
            if size <= self.max_entry:
                entries.append(entry_event(entry_id, fields))
                continue
            if _first_warning(entry_id):  # read live, then by each client that resumes
                logger.warning(
                    "entry %s of %s is %d bytes, more than the %d of an event: skipped",
                    entry_id,
                    self.target.shown,
                    size,
                    self.max_entry,
                )
            entries.append(Entry(entry_id, b""))
        return entries

    def _unsent(self, entries: list[Entry]) -> list[Entry]:
        """``entries`` less those sent before the stream was found made anew."""
        kept = [entry for entry in entries if entry.id not in self._sent]
        if (parse_entry_id(entries[-1].id) or (0, 0)) >= self._sent_through:
            self._sent = set()  # past them all
        return kept

    async def _check_reset(self) -> None:
        """Whether the stream still is the one read up to ``last_id``: its key may have
        been deleted (and written again), or Redis restarted without persistence or lost
        its last writes. Then what was in it after ``last_id`` is gone: it is said (log,
        ``on_reset``), and the reading goes on from where the stream is now: from its
        start when its ids all came after ``last_id`` or it is gone (every entry is new),
        else after its last generated id (entries up to it may be the ones already sent,
        which must not all come again). Read from its start, the entries read live since
        the stream was last found the same are not sent again: a key deleted and written
        with an automatic id has its new entries read live before the check (XREAD after
        ``last_id`` finds them), and they must not come twice. Raises connection errors."""
        if self.last_id == "0-0":
            return
        from redis.exceptions import ResponseError

        try:
            info: Any = await self.client.xinfo_stream(self.target.stream)
        except ResponseError as error:
            if "no such key" not in str(error).lower():
                return  # WRONGTYPE and such: XREAD says so
            info = None
        read = parse_entry_id(self.last_id)
        resume = "0-0"
        if info is not None:
            generated_id = _text(info.get("last-generated-id") or b"0-0")
            generated = parse_entry_id(generated_id)
            added = int(info.get("entries-added") or 0)
            same_ids = generated is not None and read is not None and generated >= read
            if same_ids and (not info.get("entries-added") or added >= self._added_floor):
                self._added_floor = added
                self._recent.clear()  # all read from this very stream
                return
            if not same_ids:
                resume = generated_id
        lost = self.last_id
        self.last_id = resume
        self._added_floor = 0
        if resume == "0-0":
            self._sent = set(self._recent)
            self._sent_through = read or (0, 0)
        self._recent.clear()
        logger.warning(
            "the stream %s is not the one read up to entry %s any more (its key was "
            "deleted, or Redis restarted and lost it): entries after it may be lost; "
            "clients are told, and it is read on %s",
            self.target.shown,
            lost,
            "from its start" if resume == "0-0" else f"after its last entry {resume}",
        )
        if self.on_reset is not None:
            self.on_reset(lost)

    async def backfill(
        self, after: str, until: str, *, pages: int | None = None, count: int = BATCH_ENTRIES
    ) -> list[Entry]:
        """The entries after ``after`` (exclusive) up to ``until`` (inclusive), oldest
        first, read in pages of ``count`` (at most ``pages`` of them). Raises the
        client's connection errors."""
        out: list[Entry] = []
        start = f"({after}"
        read = 0
        async with self._backfills:
            while pages is None or read < pages:
                raw: Any = await self.client.xrange(self.target.stream, start, until, count=count)
                read += 1
                page = self._entries(raw)
                out.extend(page)
                if len(page) < count:
                    break
                start = f"({page[-1].id}"
        return out

    async def trimmed(self, after: str) -> Trimmed | None:
        """Whether entries after ``after`` may have been trimmed away before a client that
        read up to ``after`` could read them: ``after`` is older than the stream's first
        entry and the stream has lost entries (``entries-added`` beyond its length, Redis
        7). A client whose id merely precedes a stream that never lost an entry misses
        nothing. Redis keeps no record of what XTRIM removed (its ``max-deleted-entry-id``
        counts XDEL only), so a client at the very last entry trimmed is told too: better
        a resync too many than a silent gap."""
        wanted = parse_entry_id(after)
        assert wanted is not None
        try:
            info: Any = await self.client.xinfo_stream(self.target.stream)
        except connection_errors():
            raise
        except Exception:  # no such key: nothing was ever there to miss
            return None
        first = info.get("first-entry")
        oldest = _text(first[0]) if first else None
        oldest_id = parse_entry_id(oldest) if oldest else None
        if oldest_id is not None and wanted >= oldest_id:
            return None
        added = info.get("entries-added")
        if added is not None and int(added) <= int(info.get("length", 0)):
            return None  # nothing was ever removed
        if oldest_id is None:  # all removed: anything generated after ``after`` is gone
            newest = parse_entry_id(_text(info.get("last-generated-id") or b"0-0"))
            return Trimmed(None) if newest is not None and wanted < newest else None
        return Trimmed(oldest)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
