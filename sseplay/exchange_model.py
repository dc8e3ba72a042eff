"""The parts of a recorded exchange (issue 24), and how one is cut and named.

Imported through ``sseplay.exchange``, the module the format is documented in; kept apart
from the reading and writing of files (``sseplay.exchange_io``) so each stays short.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import orjson

from sseplay.recording import RECORDING_KEY, RECORDING_MARK
from sseplay.records import MAX_RECORD_BYTES

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
    """Whether a Content-Type is ``text/event-stream``: the media type is compared
    case-insensitively and its parameters (``; charset=utf-8``) do not count (RFC 9110
    8.3.1)."""
    if content_type is None:
        return False
    return content_type.partition(";")[0].strip().lower() == "text/event-stream"


def is_exchange_header(record: object) -> bool:
    """Whether a decoded line is the first line of a version 2 recording."""
    return (
        isinstance(record, dict)
        and record.get(RECORDING_KEY) == RECORDING_MARK
        and record.get("version") == EXCHANGE_VERSION
    )


# ---- cutting an event stream into blocks ----------------------------------------------

# WHATWG HTML 9.2.6: a line ends at CRLF, at a lone LF or at a lone CR.
_LINE_END = re.compile(rb"\r\n?|\n")
_BOM = b"\xef\xbb\xbf"


# The most a block is held while it has not ended: the record limit of a file.
MAX_BLOCK_BYTES = MAX_RECORD_BYTES


class BlockSplitter:
    """Sans-IO: bytes in (any pieces), completed raw blocks out, byte-exact.

    A block ends at an empty line (WHATWG HTML 9.2.6 line ends: CRLF, LF, CR); a CR at the
    end of one piece may be the first half of a CRLF in the next: hold it until it is known.
    The concatenation of every block returned and ``rest()`` is the input, byte for byte.

    A block that grows past ``limit`` bytes without ending (an upstream that never sends an
    empty line) is given out as it stands, so what is held stays bounded: its bytes still
    follow each other exactly, only cut in two.
    """

    def __init__(self, limit: int = MAX_BLOCK_BYTES) -> None:
        self.limit = limit
        self._buffer = bytearray()  # the block being read
        self._scanned = 0  # where in it the next line end is looked for
        self._line = 0  # where in it the current line begins
        self._first_line = True  # a UTF-8 BOM there is not content (WHATWG 9.2.6)

    def feed(self, data: bytes) -> list[bytes]:
        if (
            not self._buffer
            and not self._first_line
            and data.endswith(b"\n\n")
            and not data.startswith(b"\n")
            and b"\r" not in data
            and b"\n\n\n" not in data
            and len(data) <= self.limit
        ):
            # The common piece, whole events with LF line ends after a block boundary:
            # each LF LF is a line end and an empty line, the end of a block.
            if data.find(b"\n\n") == len(data) - 2:
                return [bytes(data)]
            return [part + b"\n\n" for part in bytes(data[:-2]).split(b"\n\n")]
        buffer = self._buffer
        buffer += data
        blocks: list[bytes] = []
        block = 0  # where in the buffer the current block begins
        while match := _LINE_END.search(buffer, self._scanned):
            start, stop = match.span()
            if stop == len(buffer) and buffer[start] == 0x0D:
                # A CR last: the next piece may begin with the LF of a CRLF.
                self._scanned = start
                break
            line = buffer[self._line : start]
            empty = not line or (self._first_line and line == _BOM)
            self._first_line = False
            self._scanned = self._line = stop
            if empty:
                blocks.append(bytes(buffer[block:stop]))
                block = stop
        else:
            self._scanned = len(buffer)
        if block:
            del buffer[:block]
            self._scanned -= block
            self._line -= block
        if len(buffer) > self.limit:
            # Everything up to a CR held for its LF goes now; the line goes on after it.
            cut = self._scanned if self._scanned < len(buffer) else len(buffer)
            blocks.append(bytes(buffer[:cut]))
            del buffer[:cut]
            self._scanned = self._line = 0
        return blocks

    def rest(self) -> bytes:
        """The unterminated remainder (at the end of the stream); the splitter starts over."""
        rest = bytes(self._buffer)
        self._buffer.clear()
        self._scanned = self._line = 0
        return rest


# ---- naming a recording ---------------------------------------------------------------

_NOT_IN_NAMES = re.compile(r"[^A-Za-z0-9._-]+")
_SLUG_LENGTH = 60


def canonical_json(body: bytes) -> bytes | None:
    """A JSON body with sorted keys and no spacing, or None when it is not JSON."""
    value = json_value(body)
    if value is _NOT_JSON:
        return None
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


_NOT_JSON: Any = object()


def json_value(body: bytes) -> Any:
    """The decoded JSON body, or ``_NOT_JSON``."""
    if not body.strip():
        return _NOT_JSON
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return _NOT_JSON


def is_json(value: Any) -> bool:
    return value is not _NOT_JSON


def query_pairs(query: str) -> list[tuple[str, str]]:
    """The parameters of a raw query string, percent-decoded, in order."""
    return parse_qsl(query, keep_blank_values=True)


def recording_name(request: RecordedRequest) -> str:
    """``POST-v1-chat-completions-3f9a1c2b.jsonl``: the method, the path slugged
    (``[A-Za-z0-9._-]``, anything else ``-``, at most 60 characters), and 8 hex of the
    sha256 of the normalised request: method, path, query parameters sorted, a JSON body
    canonical (sorted keys, compact), else its raw bytes."""
    body = canonical_json(request.body)
    normalised = orjson.dumps(
        [
            request.method.upper(),
            request.path,
            sorted(query_pairs(request.query)),
            (body if body is not None else request.body).decode("latin-1"),
        ]
    )
    digest = hashlib.sha256(normalised).hexdigest()[:8]
    method = _NOT_IN_NAMES.sub("-", request.method.upper()).strip("-") or "REQUEST"
    slug = _NOT_IN_NAMES.sub("-", request.path).strip("-")[:_SLUG_LENGTH].strip("-")
    return "-".join(part for part in (method, slug, digest) if part) + ".jsonl"


def unique_path(directory: Path, name: str) -> Path:
    """``directory / name``, else ``NAME-2.jsonl``, ``NAME-3.jsonl`` ... whichever does
    not exist yet (two requests alike are two recordings, played in turn)."""
    path = directory / name
    stem, dot, suffix = name.rpartition(".")
    if not dot:
        stem, suffix = name, ""
    number = 2
    while path.exists():
        path = directory / f"{stem}-{number}{dot}{suffix}"
        number += 1
    return path
