"""The recording format of one HTTP exchange (version 2): written by the proxy
(``sseplay record``), served by ``sseplay serve DIR`` (issue 24).

A recording is JSON Lines, each line one compact JSON object (``json_line``), written as
the exchange goes, whole lines only, so a ``kill -9`` leaves a valid prefix::

    {"sseplay":"recording","version":2,"upstream":"http://...","started":"...","request":{...}}
    {"offset":0.0123,"response":{"status":200,"headers":[["content-type","text/event-stream"]]}}
    {"offset":0.0125,"read":57}
    {"offset":0.0125,"block":"data: {\\"n\\":1}\\n\\n"}
    {"offset":1.0001,"end":"complete"}

``block`` lines hold an event stream's blocks byte for byte (comments, field order, line
ends, ``id:`` present or absent); ``body`` lines the pieces of any other body; ``read``
lines the sizes of upstream's network reads; a file without its ``end`` line is partial.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sseplay.errors import InputError

EXCHANGE_VERSION = 2


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str  # upper case
    path: str  # starts with "/"
    query: str  # raw, redacted
    headers: tuple[tuple[str, str], ...]  # lower-case names, redacted
    body: bytes


@dataclass(frozen=True, slots=True)
class RecordedResponse:
    status: int
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Block:
    offset: float
    raw: bytes


@dataclass(frozen=True, slots=True)
class Read:
    offset: float
    size: int


@dataclass(frozen=True, slots=True)
class Exchange:
    path: Path | None  # the file it was read from
    upstream: str
    started: str
    request: RecordedRequest
    response: RecordedResponse | None  # None: the upstream never answered (partial)
    response_offset: float
    is_stream: bool  # content-type text/event-stream
    blocks: tuple[Block, ...]  # event streams
    body: tuple[Block, ...]  # other responses: pieces of the body with their offsets
    reads: tuple[Read, ...]
    end: str | None  # None = partial

    @property
    def complete(self) -> bool:
        return self.end == "complete"


def is_stream_type(content_type: str | None) -> bool:
    """Whether a Content-Type is ``text/event-stream`` (any case, any parameters)."""
    raise NotImplementedError


class BlockSplitter:
    """Sans-IO: bytes in (any pieces), completed raw blocks out, byte-exact.

    A block ends at an empty line (WHATWG HTML 9.2.6 line ends: CRLF, LF, CR); a CR at the
    end of one piece may be the first half of a CRLF in the next: hold it until it is known.
    """

    def feed(self, data: bytes) -> list[bytes]:
        raise NotImplementedError

    def rest(self) -> bytes:
        """The unterminated remainder (at the end of the stream)."""
        raise NotImplementedError


class ExchangeWriter:
    """Writes one recording as the exchange goes: each call writes whole lines and flushes."""

    def __init__(self, path: Path, upstream: str, request: RecordedRequest) -> None:
        raise NotImplementedError

    def response(self, offset: float, status: int, headers: Sequence[tuple[str, str]]) -> None:
        raise NotImplementedError

    def read(self, offset: float, size: int) -> None:
        raise NotImplementedError

    def block(self, offset: float, raw: bytes) -> None:
        raise NotImplementedError

    def body(self, offset: float, data: bytes) -> None:
        raise NotImplementedError

    def end(self, offset: float, how: str = "complete") -> None:
        """The last line; closes the file."""
        raise NotImplementedError

    def close(self) -> None:
        """Idempotent; writes no end line (the recording stays partial)."""
        raise NotImplementedError


def recording_name(request: RecordedRequest) -> str:
    """``POST-v1-chat-completions-3f9a1c2b.jsonl``: the method, the path slugged, and 8 hex
    of the sha256 of the normalised request."""
    raise NotImplementedError


def unique_path(directory: Path, name: str) -> Path:
    """``directory / name``, else ``name-2.jsonl``, ``-3`` ... whichever does not exist."""
    raise NotImplementedError


def read_exchange(path: Path) -> Exchange:
    """One recording. InputError ``FILE:LINE`` for a broken line; a truncated final line
    (no newline) is ignored; no end line: ``end`` is None (partial)."""
    raise InputError(str(path), "not implemented")


def is_exchange_header(record: object) -> bool:
    """Whether a decoded line is the first line of a version 2 recording."""
    raise NotImplementedError


def load_exchanges(source: Path) -> list[Exchange]:
    """Every recording of a directory (its ``*.jsonl`` files, by name), or one file."""
    raise NotImplementedError
