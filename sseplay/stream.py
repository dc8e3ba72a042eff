"""``Stream``: records checked and planned, ready to be served at a route.

A stream is built from a file or from Python values with the same options as the
flags of ``sseplay serve``; building it checks every record, so a bad record fails
here, with ``where: what``, and never halfway through a replay.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Unpack

from sseplay.config import StreamKeywords, StreamOptions
from sseplay.errors import InputError, UsageError
from sseplay.eventfile import EventFile, load_event_file
from sseplay.replay import Replay
from sseplay.schedule import Plan
from sseplay.spool import STDIN_NAME, Spools

if TYPE_CHECKING:  # the follower is imported when used: it needs the server's fan-out
    from sseplay.sources.follow_input import FollowInput

RECORDS_LABEL = "<records>"


class Stream:
    """A replay of one event file: what a route of a ``Server`` plays to its clients."""

    def __init__(
        self,
        event_file: EventFile | None,
        options: StreamOptions,
        spools: Spools | None = None,
        follow: FollowInput | None = None,
    ) -> None:
        self.options = options
        # Temporary copies the stream is served from, removed when the stream goes.
        self._spools = spools
        # --follow: what is read for live events after the existing records (if any).
        self.follow = follow
        self.replay: Replay | None = None
        if event_file is not None:
            kind = Replay
            if follow is not None:
                from sseplay.sources.follow import GrowingReplay

                kind = GrowingReplay
            plan = Plan(event_file.count, event_file.times, options.timing)
            self.replay = kind(event_file, plan, options.retry, no_ids=options.no_ids)
        elif follow is None:
            raise ValueError("a stream needs an event file, or an input to follow")

    @property
    def label(self) -> str:
        """Where the events come from, as errors and ``/healthz`` name it."""
        if self.replay is None:
            assert self.follow is not None
            return self.follow.label
        return self.replay.file.label

    @property
    def count(self) -> int:
        """How many events one round of the replay has (with ``follow``: at start-up)."""
        return 0 if self.replay is None else self.replay.file.count

    def __repr__(self) -> str:
        live = ", followed" if self.follow is not None else ""
        return f"<Stream {self.label} ({self.count} events{live})>"

    @classmethod
    def followed(cls, argument: str, label: str, options: StreamOptions) -> Stream:
        """``--follow``: the file's complete lines now, then every record appended later;
        ``-``: standard input, every record as it arrives (see ``sseplay.sources.follow``)."""
        from sseplay.sources.follow_input import prepare_file, prepare_stdin

        if argument == STDIN_NAME:
            return cls(
                None,
                options,
                follow=prepare_stdin(
                    options.mapping, from_end=options.from_end, retry=options.retry
                ),
            )
        event_file, source = prepare_file(
            label, Path(argument), options.mapping, from_end=options.from_end, retry=options.retry
        )
        return cls(event_file, options, follow=source)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **options: Unpack[StreamKeywords]) -> Stream:
        """A stream of the records in a JSON array or JSON Lines file (``.gz`` too), or of
        a recording made by ``sseplay tail --record``. A pipe is read to its end and a
        ``.gz`` file decompressed once, into a temporary copy removed with the stream.

        ``follow=True`` serves the file's records, then every record appended to it later,
        as it is written (``-``: standard input, as it arrives); ``from_end=True`` starts
        clients without a Last-Event-ID at the live edge."""
        stream_options = StreamOptions.of(**options)
        if stream_options.follow:
            return cls.followed(str(path), str(path), stream_options)
        spools = Spools()
        try:
            location = spools.prepare(str(path), str(path))
            event_file = load_event_file(str(path), location, stream_options.mapping)
        except BaseException:
            spools.close()
            raise
        return cls(event_file, stream_options, spools)

    @classmethod
    def from_records(cls, records: Iterable[Any], **options: Unpack[StreamKeywords]) -> Stream:
        """A stream of Python values, each one record as if read from a JSON file (dicts,
        lists, strings, numbers...: anything JSON can hold)."""
        stream_options = StreamOptions.of(**options)
        if stream_options.follow:
            raise UsageError("follow= follows a file or standard input: use Stream.from_file")
        # The records are written out as JSON Lines and checked like a file: the same
        # rules, the same errors, and memory bounded the same way however many there are.
        spools = Spools()
        try:
            path = spools.directory / "records.jsonl"
            with path.open("wb") as spool:
                for number, record in enumerate(records, 1):
                    spool.write(_json_line(record, number))
            event_file = load_event_file(RECORDS_LABEL, path, stream_options.mapping)
        except BaseException:
            spools.close()
            raise
        if event_file.in_memory:  # nothing is read back from the copy
            spools.close()
        return cls(event_file, stream_options, spools)


def _json_line(record: Any, number: int) -> bytes:
    # The standard library, not orjson: orjson writes NaN as null and refuses integers
    # beyond 64 bits, where a record must come out exactly or not at all.
    try:
        text = json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as error:
        raise InputError(
            f"{RECORDS_LABEL} record {number}",
            f"cannot be written as JSON ({error}): pass dicts, lists, strings, finite "
            "numbers, booleans or None",
        ) from None
    except RecursionError:
        raise InputError(
            f"{RECORDS_LABEL} record {number}", "nested too deep for JSON: flatten it"
        ) from None
    return text.encode() + b"\n"
