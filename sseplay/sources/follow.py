"""``--follow``: the records appended to a file, or arriving on a pipe, served as they come.

At start-up the file's complete lines are its existing records, checked and served as
any file is (ids 1 to n0, their positions). From there a ``Follower`` reads what is
appended, like ``tail -F``, and publishes each record to the route's ``Feed`` with the
next id (n0 + 1, n0 + 2...), as soon as its line end is read:

- only complete lines are records: a partial last line waits for its line end;
- each is checked with the same field mapping as the existing records; a bad one is one
  log line ``FILE:LINE: what`` and is skipped (it takes no id; everyone else goes on);
- a file that shrinks below what was read (truncated) or is replaced by another (a new
  file renamed over it, log rotation) is read again from its start; ids keep rising,
  never going back, so that a client's Last-Event-ID stays meaningful;
- standard input (``-``) is read as it arrives, without a copy: every record is live,
  and when the input closes the feed ends (clients get the end, then 204).

Timing flags (--interval, --time-field's times, --speed, --max-gap) shape the replay of
the existing records only: a live record is sent when it is read. A file is looked at
every ``POLL_SECONDS`` (the target is a record at its clients within 100 ms of its line
end). The pure part (``LineSplitter``, ``RecordChecker``) does no I/O; file reads go to
a worker thread, a pipe is read when the event loop says it is readable, and what is read
is checked ``TAKE_BYTES`` at a time with the loop running in between, so nothing holds
it (a pipe that always has more to read included). Memory is bounded: a line is held
only up to ``MAX_RECORD_BYTES``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sseplay.feed import Feed, LiveEvent
from sseplay.records import (
    MAX_RECORD_BYTES,
)
from sseplay.replay import Replay, Unreadable, positive_integer
from sseplay.sources.follow_input import READ_BYTES, SEEN_BYTES, FollowInput
from sseplay.sources.follow_lines import Line, LineSplitter, RecordChecker, TooLong
from sseplay.timer import Timer

logger = logging.getLogger("sseplay.follow")

# How often a followed file is looked at for appended bytes.
POLL_SECONDS = 0.02
# What is read is cut into lines and checked this many bytes at a time, the event loop
# running everything else in between: a few milliseconds of work, even for the smallest
# records (in a worker thread instead, the loop's thread waited for the GIL at each of
# its system calls, up to 5 ms each: a request took 100 ms during a big append).
TAKE_BYTES = 4 << 10
# Events checked are published once they reach this many bytes, or at the end of a read:
# one write to each client for many small records.
PUBLISH_BYTES = 64 << 10


class GrowingReplay(Replay):
    """The replay of a followed file's existing records, read back from disk: the file
    grows while they are served, which is no change to them (a plain ``Replay`` would end
    its streams at the first page read after an append). A file replaced or truncated
    ends them, as ever, once the follower has seen it (``retire``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._retired: str | None = None

    def retire(self, reason: str) -> None:
        self._retired = reason

    def _read_page(self, start: int, stop: int) -> list[Any]:
        checked = self._identity
        for attempt in range(3):
            if self._retired is not None or checked is None:
                break
            try:
                now = os.stat(self.file.path)
            except OSError:
                break
            if (now.st_dev, now.st_ino) != checked[:2] or now.st_size < checked[2]:
                break  # replaced or truncated: the plain check says so
            # Only grown: compare the next reads with the file as it is now.
            self._identity = (now.st_dev, now.st_ino, now.st_size, now.st_mtime_ns)
            try:
                return super()._read_page(start, stop)
            except Unreadable:
                if attempt == 2:
                    raise
                # Appended to between the looks before and after the read: look again.
        if self._retired is not None:
            raise Unreadable(f"{self.file.label} {self._retired}: the replay ends here")
        return super()._read_page(start, stop)


# ---- the I/O edge: reading, and publishing to the feed ----


class PositionalFeed(Feed):
    """A feed whose ids are positions in the file: id k is the event at position k - 1."""

    def position_of(self, event_id: str) -> int | None:
        number = positive_integer(event_id)
        if number is None or number > self.position:
            return None
        return number - 1


@dataclass(slots=True)
class _Look:
    data: bytes = b""
    reset: str | None = None  # why the file is read again from its start


class Follower:
    """Reads a followed input and publishes its records to ``feed``; run as a task."""

    def __init__(self, source: FollowInput, feed: Feed, replay: GrowingReplay | None) -> None:
        self.source = source
        self.feed = feed
        self.replay = replay
        self.checker = RecordChecker(source.mapping)
        self.splitter = LineSplitter(first_line=source.lines + 1)
        # The feed position where the content after the last truncation or replacement
        # starts (None: the existing records are still the file's).
        self.reset_at: int | None = None
        self.skipped = 0
        self._fd: int | None = None
        self._offset = source.offset
        self._seen = source.seen  # the file's SEEN_BYTES before ``_offset``
        self._checked = source.identity  # the file checked at start-up, until first opened
        self._missing = False
        # No file at the path when it was last opened (not said: it may come later).
        self._absent = False

    @property
    def live(self) -> bool:
        """Whether the followed file is there to read (standard input always is)."""
        return self.source.path is None or not (self._missing or self._absent)

    async def run(self) -> None:
        """Follow until cancelled (a file) or until the input closes (standard input). A
        failure is logged and ends the route's streams; it never stops the server."""
        try:
            if self.source.path is None:
                await self._read_stream(self.source.stdin_fd)
                await self._take(b"", last=True)
                logger.info("%s closed: the stream ends", self.source.label)
            else:
                await self._follow_file(self.source.path)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            logger.error(
                "%s cannot be followed any more (%s: %s): its streams end",
                self.source.label,
                type(error).__name__,
                error,
            )
        finally:
            self._close()
        self.feed.end()

    # -- a file --

    async def _follow_file(self, path: Path) -> None:
        while True:
            await self._room()
            look = await asyncio.to_thread(self._look, path)
            if look.reset is not None:
                self._reset(look.reset)
            if look.data:
                await self._take(look.data)
            if len(look.data) < READ_BYTES:
                await asyncio.sleep(POLL_SECONDS)

    def _look(self, path: Path) -> _Look:
        """One look at the file (in a worker thread): what was appended, or a reset."""
        if self._fd is None:
            self._fd = self._open(path)
            if self._fd is None:
                return _Look()
        status = os.fstat(self._fd)
        checked, self._checked = self._checked, None
        if checked is not None and checked != (status.st_dev, status.st_ino):
            self._offset, self._seen = 0, b""
            return _Look(reset="was replaced by another file")
        if status.st_size < self._offset:
            self._offset, self._seen = 0, b""
            return _Look(reset=f"was truncated (to {status.st_size:,} bytes)")
        keep = min(self._offset, SEEN_BYTES)
        data = os.pread(self._fd, READ_BYTES + keep, self._offset - keep)
        seen, data = data[:keep], data[keep:]
        if self._seen is None:  # the first look: what was read at start-up
            self._seen = seen
        if seen != self._seen:
            self._offset, self._seen = 0, b""
            return _Look(reset="was truncated and written again")
        if data:
            self._offset += len(data)
            self._seen = (self._seen + data)[-SEEN_BYTES:]
            self._note_back()
            return _Look(data)
        # At the end of the open file: is the path another file now (rotation)?
        try:
            current = os.stat(path)
        except FileNotFoundError:
            if not self._missing:
                self._missing = True
                logger.warning("%s is gone: waiting for it to come back", self.source.label)
            return _Look()
        except OSError as error:  # a parent directory replaced, or no longer searchable
            self._wait_for_it(f"cannot be looked up ({error.strerror})")
            return _Look()
        if (current.st_dev, current.st_ino) != (status.st_dev, status.st_ino):
            self._close()
            self._offset, self._seen = 0, b""
            self._note_back()
            return _Look(reset="was replaced by another file")
        self._note_back()
        return _Look()

    def _open(self, path: Path) -> int | None:
        """The path opened for reading, or None (said once) while it is not a regular file
        that can be read: like ``tail -F``, it is waited for, and the route's streams go on.
        O_NONBLOCK: opening a FIFO put in its place must not wait for a writer (a worker
        thread stuck there would hold the server's exit forever)."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            self._absent = True
            return None
        except OSError as error:
            self._wait_for_it(f"cannot be opened ({error.strerror})")
            return None
        self._absent = False
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            self._wait_for_it("is not a regular file")
            return None
        return fd

    def _wait_for_it(self, why: str) -> None:
        if not self._missing:
            self._missing = True
            logger.warning("%s %s: waiting for a file to read", self.source.label, why)

    def _note_back(self) -> None:
        if self._missing:
            self._missing = False
            logger.info("%s is back", self.source.label)

    def _close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _reset(self, how: str) -> None:
        partial = self.splitter.pending_bytes
        self.splitter.reset()
        self.reset_at = self.feed.position
        if self.replay is not None:
            self.replay.retire(how)
        logger.warning(
            "%s %s: following it from its start; ids go on from %d%s",
            self.source.label,
            how,
            self.feed.position + 1,
            f" (an unfinished last line of {partial:,} bytes was dropped)" if partial else "",
        )

    # -- a pipe --

    async def _read_stream(self, fd: int) -> None:
        loop = asyncio.get_running_loop()
        # O_NONBLOCK belongs to the open file, shared with every process that has it (the
        # shell's terminal, a program embedding the Server): it is put back on the way out.
        blocking = None
        with contextlib.suppress(OSError):
            blocking = os.get_blocking(fd)
            os.set_blocking(fd, False)
        try:
            while True:
                await self._room()
                try:
                    data = os.read(fd, READ_BYTES)
                except BlockingIOError:
                    await _readable(loop, fd)
                    continue
                if not data:
                    return
                # In slices, between which the event loop runs: a pipe that always has
                # more to read would otherwise never give it a turn.
                await self._take(data)
        finally:
            if blocking:
                with contextlib.suppress(OSError):
                    os.set_blocking(fd, True)

    # -- both --

    async def _room(self) -> None:
        """Back-pressure: wait here, before each read, while what was read cannot go out
        yet. A feed always takes its events at once; ``publish --follow`` overrides this
        to stop reading while its XADDs wait for Redis (a pipe then blocks its writer)."""

    async def _take(self, data: bytes, last: bool = False) -> None:
        """Check the lines ``data`` completes and publish their records, ``TAKE_BYTES`` at
        a time with the event loop running in between (``last``: the input is over)."""
        pending: list[LiveEvent] = []
        pending_bytes = 0
        for start in range(0, len(data) or 1, TAKE_BYTES):
            if start:
                await asyncio.sleep(0)
            lines = self.splitter.feed(data[start : start + TAKE_BYTES])
            if last and start + TAKE_BYTES >= len(data):
                lines += self.splitter.finish()
            for event in self._check(lines, self.feed.position + len(pending) + 1):
                pending.append(event)
                pending_bytes += len(event[1])
            if pending_bytes >= PUBLISH_BYTES:
                self._publish(pending)
                pending, pending_bytes = [], 0
        self._publish(pending)

    def _check(self, lines: list[Line | TooLong], first_id: int) -> list[LiveEvent]:
        """The records of ``lines``, checked, with their ids from ``first_id`` on."""
        events: list[LiveEvent] = []
        for line in lines:
            if isinstance(line, TooLong):
                self._skip(line.number, f"a record longer than {MAX_RECORD_BYTES >> 20} MiB")
                continue
            try:
                events.append(self.checker.event(line.data, first_id + len(events)))
            except ValueError as error:
                self._skip(line.number, str(error))
        return events

    def _publish(self, events: list[LiveEvent]) -> None:
        if events:
            self.feed.publish(events)
            logger.debug(
                "%s: %d new events, up to id %s", self.source.label, len(events), events[-1][0]
            )

    def _skip(self, line: int, problem: str) -> None:
        self.skipped += 1
        logger.warning("%s:%d: %s: the record is skipped", self.source.label, line, problem)


async def _readable(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    """Wait until ``fd`` (a pipe, a socket, a terminal) has something to read, or its end."""
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


def new_feed(source: FollowInput, timer: Timer, ping: float, on_end: Any = None) -> PositionalFeed:
    """The feed of a followed route: its first live event is the one after the existing ones."""
    return PositionalFeed(timer, ping, first=source.count, on_end=on_end)
