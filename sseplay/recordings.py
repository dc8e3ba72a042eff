"""``Recordings``: recorded exchanges (``sseplay record``, version 2 files) served back.

A request is matched to a recording (``sseplay.matching``) and answered with what the
upstream answered: its status and headers, then its body on the recorded timing. An
event stream goes out block by block, byte for byte, each block at its recorded offset;
with ``chunks`` the body goes out by the recorded network reads instead, so a client
sees the read boundaries (and the pauses between them) it saw upstream. Nothing is
added: no ``id:``, no ``: ping`` unless ``ping`` is asked for.

The deadlines are absolute from the moment the request came (the recording's offsets
count from the moment the request went upstream), scaled by ``speed`` and capped by
``max_gap`` as a file's are (``sseplay.schedule``), and played by the server's shared
``Timer`` into an ``Outlet`` (``sseplay.timed``): no task per connection.
"""

from __future__ import annotations

import bisect
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from sseplay.config import Timing
from sseplay.errors import InputError, UsageError
from sseplay.exchange import Block, Exchange, is_exchange_header, load_exchanges
from sseplay.matching import Matcher
from sseplay.timed import DEADLINE, TimedResponse

logger = logging.getLogger("sseplay.server")

# Response headers a replay never repeats. Hop-by-hop ones belong to the recorded
# connection, not to this one (RFC 9110 section 7.6.1); the length and the framing are
# the server's own (RFC 9112 section 6: content-length and transfer-encoding are worked
# out again for the bytes sent); the body was recorded decoded, so content-encoding no
# longer applies. uvicorn writes a current date and its own server header to every
# response: a recorded one beside them would be a second, conflicting copy.
DROPPED_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "content-encoding",
        "date",
        "server",
    }
)
# A value the recorder redacted (``sseplay.redaction.REDACTED``): the secret is not on
# disk, and a ``Set-Cookie: ***`` would only hand the client a cookie that never was.
REDACTED_VALUE = "***"


def is_recordings_source(argument: str | os.PathLike[str]) -> bool:
    """Whether ``argument`` names recordings: a directory, or a file whose first line is
    a version 2 recording header (``sseplay record`` wrote it)."""
    path = Path(argument)
    try:
        if path.is_dir():
            return True
        if not path.is_file():
            return False
        with path.open("rb") as file:
            first = file.readline(1 << 20)
    except OSError:
        return False
    import json

    try:
        return is_exchange_header(json.loads(first))
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Answer(TimedResponse):
    """One matched exchange as it is played back (``sseplay.timed``): the head, when it
    goes out, and the pieces of the body with their deadlines (seconds after the request
    came)."""

    exchange: Exchange


class Recordings:
    """Recorded exchanges, served by ``Server`` for every request that its own routes
    (streams, ``/healthz``, the viewer) do not answer.

    ``source`` is a directory of recordings (every version 2 ``*.jsonl`` in it, in file
    name order) or one recording file. ``match_ignore``: dotted paths of JSON body fields
    left out of matching (``user``, ``metadata.*``). ``chunks``: replay the recorded
    network reads instead of the event blocks. ``speed``, ``max_gap`` and ``interval``
    shape the timing as they do a file's; ``ping``: seconds of silence before a ``: ping``
    comment in a replayed event stream, 0 (the default) for none. ``record_missing``: an
    upstream base URL; a request that matches no recording is forwarded there, and its
    exchange recorded into the directory and played from then on."""

    def __init__(
        self,
        source: str | os.PathLike[str],
        *,
        match_ignore: Sequence[str] = (),
        chunks: bool = False,
        speed: float = 1.0,
        max_gap: float | None = None,
        interval: float | None = None,
        ping: float = 0.0,
        record_missing: str | None = None,
    ) -> None:
        if isinstance(match_ignore, str):
            match_ignore = (match_ignore,)
        for path in match_ignore:
            if not isinstance(path, str) or not path or path.startswith(".") or ".." in path:
                raise UsageError(
                    f"--match-ignore {path!r} is not a dotted path: write it like user, "
                    "metadata.* or messages.*.id"
                )
        if not isinstance(chunks, bool):
            raise UsageError(f"--chunks must be true or false, not {chunks!r}")
        if isinstance(ping, bool) or not isinstance(ping, int | float) or ping < 0:
            raise UsageError(f"--ping must be a number of seconds, 0 or more, not {ping!r}")
        self.timing = Timing(interval=interval, speed=speed, max_gap=max_gap)
        self.source = Path(source)
        self.label = str(source)
        self.match_ignore = tuple(match_ignore)
        self.chunks = chunks
        self.ping = float(ping)
        self.record_missing = _upstream(record_missing, self.source)
        # --once: which recordings a client has had whole; all of them ends the run.
        self._played: set[int] = set()
        # Each exchange's answer from its start, made once (its pieces and deadlines are a
        # tuple every request of it shares, however many there are and however long the
        # recording: a request costs no more than one of a file's), by id of the exchange.
        self._whole: dict[int, Answer] = {}
        self.exchanges = load_exchanges(self.source)
        if not self.exchanges and self.record_missing is None:
            raise InputError(
                self.label,
                "is a directory with no recordings in it (the *.jsonl files that sseplay "
                "record --out DIR writes): record into it, or serve an event file",
            )
        for exchange in self.exchanges:
            if exchange.end is None:
                logger.warning(
                    "%s: partial recording (no end line): played as far as it goes",
                    exchange.path or self.label,
                )
        self.matcher = Matcher(self.exchanges, self.match_ignore)
        for exchange in self.exchanges:  # made at start, as a file's events are encoded
            self._whole_answer(exchange)

    def __repr__(self) -> str:
        return f"<Recordings {self.label} ({len(self.exchanges)} exchanges)>"

    def add(self, exchange: Exchange) -> None:
        """One more recording (``record_missing`` made it): matched from now on."""
        self.exchanges.append(exchange)
        self.matcher.add(exchange)

    def listing(self) -> list[dict[str, str]]:
        """What ``/healthz`` lists: each recording's method, path and file."""
        return [
            {
                "method": exchange.request.method,
                "path": exchange.request.path,
                "file": str(exchange.path) if exchange.path is not None else self.label,
            }
            for exchange in self.exchanges
        ]

    def played(self, exchange: Exchange) -> bool:
        """Note that a client had ``exchange`` whole; True once every one has been."""
        self._played.add(id(exchange))
        return all(id(known) in self._played for known in self.exchanges)

    def answer(self, exchange: Exchange, last_event_id: str | None = None) -> Answer | None:
        """How ``exchange`` is played back, on this object's timing; for an event stream
        resumed with ``last_event_id`` (WHATWG HTML 9.2.4), from the block after the one
        that set that id, or None when no event is left after it: the client is answered
        204, which tells it to stop reconnecting (9.2.3), as a replayed file does."""
        if last_event_id and exchange.is_stream:
            resumed = resumed_blocks(exchange, last_event_id)
            if resumed is not None:
                if not any(_dispatches(block.raw) for block in resumed[1:]):
                    return None
                return self._answer(exchange, [(b.offset, b.raw) for b in resumed[1:]])
        return self._whole_answer(exchange)

    def _whole_answer(self, exchange: Exchange) -> Answer:
        whole = self._whole.get(id(exchange))
        if whole is None or whole.exchange is not exchange:  # (an id is reused only if freed)
            whole = self._whole[id(exchange)] = self._answer(
                exchange, _pieces(exchange, self.chunks)
            )
        return whole

    def shared_answer(
        self, exchange: Exchange, last_event_id: str | None, elapsed: float
    ) -> Answer | None:
        """--broadcast: ``exchange``, an event stream, on its one timeline, which began
        ``elapsed`` seconds ago, for every client alike (deadlines from that beginning). A
        client that resumes with an id the recording set gets what follows it on the
        timeline (what is past at once, the rest when due); any other joins it where it is:
        the pieces still to come. None when nothing is left: 204, as for a broadcast file that
        has played out."""
        whole = self._whole_answer(exchange)
        resumed = resumed_blocks(exchange, last_event_id) if last_event_id else None
        if resumed is not None:
            if not any(_dispatches(block.raw) for block in resumed[1:]):
                return None
            # The timeline's own pieces from the byte after the id's block: blocks, or
            # with --chunks the rest of the read that block ends in, then the next reads.
            after = sum(len(block.raw) for block in exchange.blocks) - sum(
                len(block.raw) for block in resumed[1:]
            )
            return _from_byte(whole, after)
        first = bisect.bisect_right(whole.pieces, elapsed, key=DEADLINE)
        if first == len(whole.pieces):
            return None
        if not first:
            return whole
        if self.chunks and exchange.reads:
            # A read may end inside an event: a joiner starts at the first whole event
            # after what the timeline has sent (the tail of the one it is in the middle
            # of would be an event of its own, one the recording never had).
            played = sum(len(data) for _, data in whole.pieces[:first])
            boundary = 0
            for block in exchange.blocks:
                if boundary >= played:
                    break
                boundary += len(block.raw)
            return _from_byte(whole, boundary)
        return replace(whole, pieces=whole.pieces[first:])

    def _answer(self, exchange: Exchange, pieces: list[tuple[float, bytes]]) -> Answer:
        response = exchange.response
        status = response.status if response is not None else 502
        headers = tuple(
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in (response.headers if response is not None else ())
            if name.lower() not in DROPPED_HEADERS and value != REDACTED_VALUE
        )
        if not exchange.is_stream and pieces:
            # Not a stream: the whole body at once, when its last piece had come.
            pieces = [(pieces[-1][0], b"".join(data for _, data in pieces))]
        if not exchange.is_stream and status >= 200 and status not in (204, 304):
            # Its length, worked out again for the bytes sent (RFC 9110 section 8.6; none
            # in a 204 or a 304, which have no content).
            size = sum(len(data) for _, data in pieces)
            headers += ((b"content-length", str(size).encode()),)
        moments = [exchange.response_offset, *(offset for offset, _ in pieces)]
        deadlines = scaled(moments, self.timing)
        return Answer(
            status=status,
            headers=headers,
            head_at=deadlines[0],
            pieces=tuple(zip(deadlines[1:], (data for _, data in pieces), strict=True)),
            is_stream=exchange.is_stream,
            exchange=exchange,
        )


def _from_byte(whole: Answer, after: int) -> Answer | None:
    """``whole`` from byte ``after`` of its body on (the piece it falls in cut there, at
    that piece's deadline), or None when nothing is left."""
    at = 0
    for index, (deadline, data) in enumerate(whole.pieces):
        if at + len(data) > after:
            rest = ((deadline, data[after - at :]), *whole.pieces[index + 1 :])
            return replace(whole, pieces=rest)
        at += len(data)
    return None


def _upstream(upstream: str | None, source: Path) -> str | None:
    """``record_missing``: an http(s) base URL, and recordings in a directory (where the
    new ones go: a file stands alone)."""
    if upstream is None:
        return None
    from urllib.parse import urlsplit

    parts = urlsplit(upstream) if isinstance(upstream, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(
            f"--record-missing {upstream!r} is not an http:// or https:// URL: write it "
            "like https://api.openai.com or http://127.0.0.1:9000"
        )
    if not source.is_dir():
        raise UsageError(
            f"--record-missing records into a directory, and {source} is not one: serve "
            "the directory of recordings (sseplay serve DIR --record-missing UPSTREAM)"
        )
    return upstream


def resumed_blocks(exchange: Exchange, last_event_id: str) -> list[Block] | None:
    """The blocks from the first one whose ``id`` field sets ``last_event_id`` on, or None
    when no block does (an unknown id: the recording is played from its start)."""
    for index, block in enumerate(exchange.blocks):
        if _block_id(block.raw) == last_event_id:
            return list(exchange.blocks[index:])
    return None


def _fields(raw: bytes) -> list[tuple[str, str]]:
    """A block's fields, as an EventSource reads them (WHATWG HTML 9.2.6): lines split at
    CRLF, LF or CR; the name up to the first colon, one space after it dropped."""
    text = raw.decode("utf-8", "replace")
    fields = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if not line or line.startswith(":"):
            continue
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        fields.append((name, value))
    return fields


def _block_id(raw: bytes) -> str | None:
    """The id a block sets (its last ``id`` field without a NULL), or None."""
    found = None
    for name, value in _fields(raw):
        if name == "id" and "\0" not in value:
            found = value
    return found


def _dispatches(raw: bytes) -> bool:
    """Whether a block is an event a client dispatches: it has a ``data`` field."""
    return any(name == "data" for name, _ in _fields(raw))


def _pieces(exchange: Exchange, chunks: bool) -> list[tuple[float, bytes]]:
    """The body as recorded: its blocks (an event stream) or pieces, or with ``chunks``
    the same bytes cut at the recorded network reads."""
    parts = exchange.blocks if exchange.is_stream else exchange.body
    pieces = [(part.offset, part.raw) for part in parts]
    if not chunks or not exchange.reads:
        return pieces
    body = b"".join(data for _, data in pieces)
    cut: list[tuple[float, bytes]] = []
    at = 0
    for read in exchange.reads:
        if at >= len(body):
            break
        cut.append((read.offset, body[at : at + read.size]))
        at += read.size
    if at < len(body):  # reads cut short (a partial recording): the rest at the end
        cut.append((pieces[-1][0], body[at:]))
    return cut


def scaled(moments: Sequence[float], timing: Timing) -> list[float]:
    """Recorded moments (seconds, in order) as deadlines: each gap divided by the speed
    and capped by ``max_gap``, or, with ``interval``, the head at once and every piece
    one interval after the one before (as ``sseplay.schedule.Plan`` times a file)."""
    deadlines: list[float] = []
    elapsed = previous = 0.0
    for index, moment in enumerate(moments):
        if timing.interval is not None:
            gap = timing.interval / timing.speed if index > 1 else 0.0
        else:
            gap = max(0.0, moment - previous) / timing.speed
            if timing.max_gap is not None:
                gap = min(gap, timing.max_gap)
        elapsed += gap
        deadlines.append(elapsed)
        previous = max(previous, moment)
    return deadlines
