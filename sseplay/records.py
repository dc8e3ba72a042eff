"""Splitting an event file into raw records: JSON arrays and JSON Lines, plain or gzip.

Files may be far larger than memory, so records are found by streaming and
decoded one at a time; a record is never kept longer than it takes to map it.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import re
from array import array
from collections import deque
from collections.abc import Callable, Iterator
from itertools import accumulate
from pathlib import Path
from typing import IO, Any, Literal, cast

import orjson

Layout = Literal["array", "lines"]

GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"
CHUNK_SIZE = 1 << 20
JSON_WHITESPACE = re.compile(r"[ \t\n\r]*")
# Bytes read to tell a JSON array from JSON Lines; a minified array can be one huge line.
SNIFF_LIMIT = 1 << 20

# The longest record sseplay reads: one line of JSON Lines, or one element of an array.
# A record is held in memory two or three times over while it is checked (its bytes,
# the text the decoder scans, the decoded value), so this bounds the memory of the
# check whatever the input: a file with no line break (``/dev/zero``), a gzip bomb.
MAX_RECORD_BYTES = 64 << 20

# Reported where the standard decoder would suggest sys.set_int_max_str_digits().
TOO_MANY_DIGITS = "an integer with more than 4,300 digits: write it as a string"


def _refuse_constant(name: str) -> Any:
    # RFC 8259 section 6: NaN and Infinity are not JSON; the standard decoder accepts
    # them by default and re-encoding them would send invalid JSON to clients.
    raise ValueError(f"{name} is not JSON (RFC 8259 section 6): write null or a string")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        # 1e400 becomes infinity: refused like orjson refuses it, for the same record
        # must not be accepted or refused depending on which decoder read it.
        raise ValueError(f"the number {text[:40]} is too large for a 64-bit float")
    return value


_STRICT_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)
# The standard decoder recurses once per level of nesting; orjson stops at 1,024 levels.
TOO_DEEP = "nested more than about 1,000 levels deep: flatten the record"


class Malformed(Exception):
    """A record or the layout around it is not valid JSON, at a byte position."""

    def __init__(self, position: int, problem: str) -> None:
        super().__init__(problem)
        self.position = position
        self.problem = problem


# orjson turns integers beyond 64 bits into floats, silently losing digits; a
# record with a run of 19 or more digits is decoded by the standard library.
_LONG_NUMBER = re.compile(rb"\d{19}")


def loads(raw: bytes) -> Any:
    """Decode one JSON value exactly: orjson for speed, json where orjson would lose digits."""
    if _LONG_NUMBER.search(raw):
        try:
            text = raw.decode()
        except UnicodeDecodeError as error:
            raise ValueError(f"invalid UTF-8 ({error.reason})") from None
        try:
            return _STRICT_DECODER.decode(text)
        except RecursionError:
            raise ValueError(TOO_DEEP) from None
        except json.JSONDecodeError:
            raise
        except ValueError as error:  # more digits than int() converts (CPython 3.11+)
            raise ValueError(_digits_problem(error)) from None
    return orjson.loads(raw)


def _digits_problem(error: ValueError) -> str:
    return TOO_MANY_DIGITS if "digits" in str(error) else str(error)


class RecordTooLong(Exception):
    """A record longer than the limit, starting at a byte position (and line, when known)."""

    def __init__(self, position: int, limit: int, line: int | None = None) -> None:
        super().__init__(f"a record longer than {limit} bytes")
        self.position = position
        self.limit = limit
        self.line = line


def is_gzip(path: Path) -> bool:
    with path.open("rb") as probe:
        return probe.read(2) == GZIP_MAGIC


class _Window(io.RawIOBase):
    """A raw file read through a window: only its first ``limit`` bytes (None: all of
    it), and ``on_read`` told how far reading has come, once per buffer refill (about a
    MiB), so the progress of a check costs nothing per record."""

    def __init__(
        self, raw: io.FileIO, on_read: Callable[[int], None] | None, limit: int | None
    ) -> None:
        super().__init__()
        self._raw = raw
        self._on_read = on_read
        self._limit = limit

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._limit is None:
            count = self._raw.readinto(buffer)
        else:
            left = self._limit - self._raw.tell()
            if left <= 0:
                return 0
            with memoryview(buffer) as view:
                count = self._raw.readinto(view[:left])
        if self._on_read is not None:
            self._on_read(self._raw.tell())
        return count or 0

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def close(self) -> None:
        self._raw.close()
        super().close()


def open_binary(
    path: Path,
    compressed: bool,
    on_read: Callable[[int], None] | None = None,
    limit: int | None = None,
) -> IO[bytes]:
    """The file's (decompressed) bytes; ``on_read(n)`` hears how far into the file on
    disk (compressed bytes for a gzip file) reading has come. ``limit``: only the first
    bytes of a plain file, as if it ended there (the complete lines of a followed file)."""
    if compressed:
        limit = None  # a followed file is never compressed, and a gzip prefix means nothing
    if on_read is None and limit is None:
        if compressed:
            return cast(IO[bytes], gzip.open(path, "rb"))
        return path.open("rb", buffering=CHUNK_SIZE)
    counted = io.BufferedReader(_Window(io.FileIO(path, "rb"), on_read, limit), CHUNK_SIZE)
    if compressed:
        # GzipFile leaves a file object it was given open: close it with the GzipFile.
        return cast(IO[bytes], _ClosingGzip(counted))
    return cast(IO[bytes], counted)


class _ClosingGzip(gzip.GzipFile):
    def __init__(self, inner: IO[bytes]) -> None:
        super().__init__(fileobj=inner, mode="rb")
        self._inner = inner

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._inner.close()


def sniff_layout(stream: IO[bytes]) -> Layout | None:
    """Tell the layout from the content: None when there is no content at all.

    A JSON array is one value: ``[`` first, and its first line either is not a
    complete value (pretty-printed) or is the only content (minified). A first
    line that is complete and followed by more is JSON Lines, even if it is an array.
    """
    head = stream.read(SNIFF_LIMIT)
    stripped = head.removeprefix(UTF8_BOM).lstrip()
    if not stripped:
        return None
    if not stripped.startswith(b"["):
        return "lines"
    first_line, newline, rest = stripped.partition(b"\n")
    if not newline and len(head) == SNIFF_LIMIT:
        return "array"  # one enormous line starting with "["
    try:
        orjson.loads(first_line)
    except orjson.JSONDecodeError:
        return "array"
    more = rest.strip() or stream.read(SNIFF_LIMIT).strip()
    return "lines" if more else "array"


def iter_lines(
    stream: IO[bytes], start: int = 0, max_record: int = MAX_RECORD_BYTES
) -> Iterator[tuple[int, int, bytes]]:
    """Yield (byte offset, line number, line) of every non-blank line from ``start``;
    raise RecordTooLong at a line longer than ``max_record`` bytes.

    Only LF ends a line: JSON forbids raw line breaks inside strings, and a CR
    before the LF is JSON whitespace.
    """
    position = start
    line_number = 0
    while line := stream.readline(max_record + 1):
        line_number += 1
        if len(line) - line.endswith(b"\n") > max_record:
            raise RecordTooLong(position, max_record, line_number)
        if line_number == 1 and start == 0 and line.startswith(UTF8_BOM):
            position += len(UTF8_BOM)
            line = line[len(UTF8_BOM) :]
        if line.strip():
            yield position, line_number, line
        position += len(line)


class ArrayScanner:
    """Find the elements of a top-level JSON array without decoding the whole file.

    The bytes are read as Latin-1 so that one character is one byte: the JSON
    structure is unchanged by that and the standard decoder finds where each
    element ends at C speed. Each element is then decoded again as real UTF-8.
    """

    def __init__(
        self, stream: IO[bytes], start: int = 0, max_record: int = MAX_RECORD_BYTES
    ) -> None:
        self._stream = stream
        self._max_record = max_record
        self._buffer = b""
        self._text = ""
        self._cursor = 0  # index into the buffer of the next unread byte
        self._base = start  # file offset of self._buffer[0]
        self._eof = False
        self._line = 1  # line number at self._counted, counted lazily for error messages
        self._counted = 0

    @property
    def position(self) -> int:
        return self._base + self._cursor

    def _fill(self) -> bool:
        """Read more, keeping the unread part; False at the end of the file."""
        if self._eof:
            return False
        chunk = self._stream.read(max(CHUNK_SIZE, len(self._buffer)))
        if not chunk:
            self._eof = True
            return False
        self.line()
        self._counted = 0
        self._buffer = self._buffer[self._cursor :] + chunk
        self._base += self._cursor
        self._cursor = 0
        self._text = self._buffer.decode("latin-1")
        return True

    def _skip_whitespace(self) -> str:
        """Move past whitespace; the next character, or "" at the end of the file."""
        while True:
            self._cursor = _skip_json_whitespace(self._text, self._cursor)
            if self._cursor < len(self._text):
                return self._text[self._cursor]
            if not self._fill():
                return ""

    def line(self) -> int:
        self._line += self._buffer.count(b"\n", self._counted, self._cursor)
        self._counted = self._cursor
        return self._line

    def open_array(self) -> None:
        self._fill()
        if self._buffer.startswith(UTF8_BOM):
            self._cursor = len(UTF8_BOM)
        if self._skip_whitespace() != "[":
            raise Malformed(self.position, "expected '[' to open the array")
        self._cursor += 1

    def elements(self, at_open: bool = True) -> Iterator[tuple[int, int, bytes]]:
        """Yield (byte offset, line number, element bytes) until the closing bracket.

        ``at_open`` is False when resuming at a checkpoint, the start of an element.
        """
        if at_open and self._skip_whitespace() == "]":
            self._cursor += 1
            return
        while True:
            if not self._skip_whitespace():
                raise Malformed(self.position, "the array is not closed: the file ends too early")
            end = self._decode_end()
            if end - self._cursor > self._max_record:
                raise RecordTooLong(self.position, self._max_record)
            yield self.position, self.line(), self._buffer[self._cursor : end]
            self._cursor = end
            separator = self._skip_whitespace()
            if not separator:
                raise Malformed(self.position, "the array is not closed: the file ends too early")
            if separator not in ",]":
                raise Malformed(self.position, "expected ',' or ']' after a record")
            self._cursor += 1
            if separator == "]":
                return

    def _decode_end(self) -> int:
        while True:
            try:
                _, end = _STRICT_DECODER.raw_decode(self._text, self._cursor)
            except json.JSONDecodeError as error:
                # The element may simply run past what has been read so far: read on
                # only then. An error inside what has been read is final, and reading
                # on would hold the rest of the file in memory just to report it.
                if self._ran_out(error) and self._fill_record():
                    continue
                raise Malformed(self._base + error.pos, error.msg) from None
            except RecursionError:
                raise Malformed(self.position, TOO_DEEP) from None
            except ValueError as error:  # more digits than int() converts
                raise Malformed(self.position, _digits_problem(error)) from None
            # A number at the very end of the buffer may continue in the next chunk.
            if end == len(self._text) and self._fill_record():
                continue
            return end

    def _ran_out(self, error: json.JSONDecodeError) -> bool:
        """Whether the decoder failed for want of input: it reached the end of the
        buffer, or within a literal's length of it (``-Infinity`` cut short is 9)."""
        return error.msg.startswith("Unterminated string") or error.pos >= len(self._text) - 16

    def _fill_record(self) -> bool:
        if len(self._buffer) - self._cursor > self._max_record:
            raise RecordTooLong(self.position, self._max_record)
        return self._fill()

    def trailing_content(self) -> bool:
        return bool(self._skip_whitespace())


def line_and_column(path: Path, compressed: bool, position: int) -> tuple[int, int]:
    """1-based line and column of a byte position, counted only when reporting an error."""
    line, last_newline, offset = 1, -1, 0
    with open_binary(path, compressed) as stream:
        while offset < position:
            chunk = stream.read(min(CHUNK_SIZE, position - offset))
            if not chunk:
                break
            count = chunk.count(b"\n")
            if count:
                line += count
                last_newline = offset + chunk.rfind(b"\n")
            offset += len(chunk)
    return line, position - last_newline


# What one pass of the fast JSON Lines check reads at a time.
BLOCK_SIZE = 4 << 20


class BadLine(Exception):
    """A JSON Lines record that is not valid JSON, at a 1-based line number."""

    def __init__(self, line: int, error: ValueError) -> None:
        super().__init__(str(error))
        self.line = line
        self.error = error


def index_lines(
    stream: IO[bytes], stride: int, max_record: int = MAX_RECORD_BYTES
) -> tuple[int, array[int]]:
    """Check every record of a JSON Lines stream and note the byte offset of every
    ``stride``-th: (record count, offsets). Raises BadLine at the first invalid record.

    The same records, offsets and errors as ``iter_lines`` with ``loads``, at C speed:
    each block of lines is decoded by one ``map`` over orjson, and only a block that
    fails (a bad record, a blank line, a number orjson cannot hold) is gone through
    line by line to find out what is wrong and where."""
    count = 0
    line_number = 0
    position = 0
    checkpoints: array[int] = array("q")
    pending = b""
    first_block = True
    while True:
        chunk = stream.read(BLOCK_SIZE)
        data = pending + chunk
        if not chunk:
            block, pending = data, b""
            if not block:
                break
            lines = [block]
        else:
            cut = data.rfind(b"\n") + 1
            if len(data) - cut > max_record:
                raise RecordTooLong(position + cut, max_record, line_number + data.count(b"\n") + 1)
            if cut == 0:
                pending = data
                continue
            block, pending = data[:cut], data[cut:]
            lines = block.split(b"\n")
            lines.pop()  # after the last LF
        if first_block and lines[0].startswith(UTF8_BOM):
            lines[0] = lines[0][len(UTF8_BOM) :]
            position += len(UTF8_BOM)
            block = block[len(UTF8_BOM) :]
        first_block = False
        if max(map(len, lines)) > max_record:
            _raise_too_long(lines, line_number, position, max_record)
        try:
            deque(map(orjson.loads, lines), maxlen=0)
        except orjson.JSONDecodeError:
            count = _index_slowly(lines, line_number, position, count, stride, checkpoints)
        else:
            starts = list(accumulate(map(len, lines), initial=0))
            first = -count % stride
            # A line starts after the lines before it and their LFs.
            checkpoints.extend(position + starts[i] + i for i in range(first, len(lines), stride))
            count += len(lines)
        line_number += len(lines)
        position += len(block)
        if not chunk:
            break
    return count, checkpoints


def _index_slowly(
    lines: list[bytes],
    line_number: int,
    position: int,
    count: int,
    stride: int,
    checkpoints: array[int],
) -> int:
    for line in lines:
        line_number += 1
        if line.strip():
            try:
                loads(line)
            except ValueError as error:
                raise BadLine(line_number, error) from None
            if count % stride == 0:
                checkpoints.append(position)
            count += 1
        position += len(line) + 1
    return count


# How far the fast array check reads without finding its separator before it gives up.
BLOCKS_WITHOUT_A_SEPARATOR = 16

# Replaces the comma of every separator the fast array check splits at. A raw NUL
# can never be part of valid JSON (RFC 8259 section 7: control characters in
# strings are escaped; section 2: it is not whitespace), so it cannot collide.
_SPLIT_MARK = b"\x00"


def _raise_too_long(lines: list[bytes], line_number: int, position: int, limit: int) -> None:
    for number, line in enumerate(lines, start=line_number + 1):
        if len(line) > limit:
            raise RecordTooLong(position, limit, number)
        position += len(line) + 1


def index_array(
    stream: IO[bytes], stride: int, max_record: int = MAX_RECORD_BYTES
) -> tuple[int, array[int]] | None:
    """Check every element of a JSON array stream and note the byte offset of every
    ``stride``-th, at C speed: (element count, offsets), the same as ``ArrayScanner``
    would find. None when this cannot be shown quickly: the caller then goes through
    the array element by element, which also says what is wrong and where.

    Arrays written by a program put the same bytes between every two elements: the
    last character of one, the comma with its whitespace, the first of the next
    (``"},\\n  {"``). That separator is learnt from the first two elements; each block
    is split at its occurrences (its comma swapped for a NUL, so offsets stay put)
    and every piece is decoded by one ``map`` over orjson. A piece that does not
    decode on its own (a separator inside a string, elements of different shapes,
    invalid JSON) ends the fast check. When every piece is one whole JSON value, the
    block is exactly those elements: JSON's grammar has one parse for it."""
    buffer = stream.read(BLOCK_SIZE)
    start = len(UTF8_BOM) if buffer.startswith(UTF8_BOM) else 0
    text = buffer.decode("latin-1")  # one character per byte; only the head is decoded
    start = _skip_json_whitespace(text, start)
    if not buffer.startswith(b"[", start):
        return None
    first = _skip_json_whitespace(text, start + 1)
    try:
        _, first_end = _STRICT_DECODER.raw_decode(text, first)
        if first_end - first > max_record:
            return None
    except (ValueError, RecursionError):  # invalid, too deep, too many digits, past a block
        return None
    comma = _skip_json_whitespace(text, first_end)
    if not buffer.startswith(b",", comma):
        return None  # one element, or something wrong: the slow check is quick then
    second = _skip_json_whitespace(text, comma + 1)
    if second >= len(buffer):
        return None
    separator = buffer[first_end - 1 : second + 1]
    marked = separator.replace(b",", _SPLIT_MARK, 1)
    lead = second - comma  # bytes from a separator's comma to the next element

    count = 0
    checkpoints: array[int] = array("q")
    base = first  # file offset of buffer[0], always the start of an element
    buffer = buffer[first:]
    while True:
        found = buffer.rfind(separator)
        if found < 0:
            if len(buffer) > BLOCKS_WITHOUT_A_SEPARATOR * BLOCK_SIZE:
                # The rest is laid out otherwise (or its elements are huge): reading on
                # would hold it all in memory. The element-by-element check streams it.
                return None
            more = stream.read(BLOCK_SIZE)
            if more:
                buffer += more
                continue
            # The last elements: what is left must close the array, then only whitespace.
            body = buffer.rstrip(b" \t\r\n")
            if not body.endswith(b"]"):
                return None
            region, rest = body[:-1], b""
        else:
            comma_at = found + len(separator) - lead - 1
            region, rest = buffer[:comma_at], buffer[comma_at + lead :]
        pieces = region.replace(separator, marked).split(_SPLIT_MARK)
        if max(map(len, pieces)) > max_record:
            return None  # the element-by-element check says which one, and where
        try:
            deque(map(orjson.loads, pieces), maxlen=0)
        except orjson.JSONDecodeError:
            return None
        # Piece i starts after the pieces before it and their marks; its element starts
        # ``lead - 1`` bytes further in (past the whitespace after the comma).
        starts = list(accumulate(map(len, pieces), initial=0))
        for i in range(-count % stride, len(pieces), stride):
            checkpoints.append(base + starts[i] + i + (lead - 1 if i else 0))
        count += len(pieces)
        if found < 0:
            return count, checkpoints
        base += comma_at + lead
        buffer = rest


def _skip_json_whitespace(text: str, position: int) -> int:
    match = JSON_WHITESPACE.match(text, position)
    return match.end() if match else position
