"""Writing and reading recordings of exchanges (version 2, issue 24), one file each.

The writer puts every line down with one ``os.write`` as soon as it is known, nothing
buffered, so a ``kill -9`` of the proxy leaves whole lines: a valid prefix that ``serve``
plays (without the ``end`` line it is partial). Imported through ``sseplay.exchange``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import math
import os
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, cast

import orjson

from sseplay import records
from sseplay.errors import InputError, OutputFailed
from sseplay.exchange_model import (
    EXCHANGE_VERSION,
    Block,
    Exchange,
    Read,
    RecordedRequest,
    RecordedResponse,
    is_exchange_header,
    is_stream_type,
    unique_path,
)
from sseplay.recording import RECORDING_KEY, RECORDING_MARK, is_header, json_line
from sseplay.redaction import redact_headers, redact_query

_GZIP_MAGIC = b"\x1f\x8b"


def _text(key: str, data: bytes) -> dict[str, str]:
    """``{key: text}`` for UTF-8 bytes, else ``{key_b64: base64}``: JSON holds text only."""
    try:
        return {key: data.decode("utf-8")}
    except UnicodeDecodeError:
        return {f"{key}_b64": base64.b64encode(data).decode("ascii")}


def _at(at: float, key: str, data: bytes) -> dict[str, float | str]:
    """The line of a block or a piece of body read at ``at``: ``_text`` in one dict, made
    straight (the proxy makes one for every read)."""
    try:
        return {"offset": at, key: data.decode("utf-8")}
    except UnicodeDecodeError:
        return {"offset": at, f"{key}_b64": base64.b64encode(data).decode("ascii")}


def _seconds(offset: float) -> float:
    return round(offset, 6)


class ExchangeWriter:
    """Writes one recording as the exchange goes: each call writes whole lines and flushes.

    The file is created (never an existing one overwritten: ``path`` is where it went),
    unless ``replace`` is given. ``held``: lines wait in memory until ``flush`` (or the
    end), which writes them with one ``os.write``: the proxy writes a read and its blocks
    at once, still whole lines only.
    Secrets are redacted here too, whatever the caller did (the default names; the
    caller's ``--redact`` names are its own to apply). A call after ``end`` or ``close``
    does nothing; a write that fails raises OutputFailed, and the file keeps whole lines.
    """

    def __init__(
        self,
        path: Path,
        upstream: str,
        request: RecordedRequest,
        *,
        replace: bool = False,
        held: bool = False,
    ) -> None:
        self.path = path
        self._held: list[bytes] | None = [] if held else None
        # ``replace``: the file named is the one written, emptied first (``tail --record
        # FILE``, which may name a device: never unlinked, never renamed).
        exclusive = os.O_TRUNC if replace else os.O_EXCL
        while True:
            try:
                self._fd: int | None = os.open(
                    self.path, os.O_WRONLY | os.O_CREAT | exclusive | os.O_APPEND, 0o666
                )
                break
            except FileExistsError:  # another exchange took the name since it was chosen
                self.path = unique_path(path.parent, path.name)
            except OSError as error:
                raise OutputFailed(f"{path}: cannot write: {error.strerror or error}") from None
        self._written = 0  # bytes of whole lines in the file
        header = {
            RECORDING_KEY: RECORDING_MARK,
            "version": EXCHANGE_VERSION,
            "upstream": upstream,
            "started": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "request": {
                "method": request.method.upper(),
                "path": request.path,
                "query": redact_query(request.query),
                "headers": [list(pair) for pair in redact_headers(request.headers)],
                **_text("body", request.body),
            },
        }
        self._line(header)

    def response(self, offset: float, status: int, headers: Sequence[tuple[str, str]]) -> None:
        pairs = [list(pair) for pair in redact_headers(headers)]
        self._line({"offset": _seconds(offset), "response": {"status": status, "headers": pairs}})

    def read(self, offset: float, size: int, blocks: Sequence[bytes] = ()) -> None:
        """A network read of ``size`` bytes, and the blocks it completed (their lines
        follow its line, with its offset): the proxy's call for every read, so it makes
        its lines with as little as it can."""
        at = _seconds(offset)
        lines = [json_line({"offset": at, "read": size})]
        for raw in blocks:  # most reads hold one block: no comprehension to set up
            lines.append(json_line(_at(at, "block", raw)))
        self._put("".join(lines).encode())

    def block(self, offset: float, raw: bytes) -> None:
        self._line(_at(_seconds(offset), "block", raw))

    def body(self, offset: float, data: bytes) -> None:
        self._line(_at(_seconds(offset), "body", data))

    def end(self, offset: float, how: str = "complete") -> None:
        """The last line; closes the file."""
        self._line({"offset": _seconds(offset), "end": how})
        self.close()

    def flush(self) -> None:
        """Writes the lines held (``held``), with one ``os.write``."""
        held = self._held
        if held:
            data = held[0] if len(held) == 1 else b"".join(held)
            held.clear()
            self._write(data)

    def close(self) -> None:
        """Idempotent; writes no end line (the recording stays partial). Lines held are
        written first."""
        if self._fd is not None:
            self.flush()
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def _line(self, item: dict[str, Any]) -> None:
        self._put(json_line(item).encode())

    def _put(self, data: bytes) -> None:
        """Whole lines: held for ``flush`` (``held``), else written now."""
        if self._fd is None:
            return
        if self._held is not None:
            self._held.append(data)
            return
        self._write(data)

    def _write(self, data: bytes) -> None:
        assert self._fd is not None
        done = 0
        try:
            while done < len(data):  # one write; a short one (a full disk) goes on
                done += os.write(self._fd, data[done:])
        except OSError as error:
            with contextlib.suppress(OSError):  # a device cannot be truncated
                os.ftruncate(self._fd, self._written)
            self.close()
            raise OutputFailed(
                f"{self.path}: {error.strerror or error}; the recording stops there, partial"
            ) from None
        self._written += done


# ---- reading --------------------------------------------------------------------------

_KINDS = ("response", "read", "block", "block_b64", "body", "body_b64", "end")


def _open(path: Path) -> IO[bytes]:
    with path.open("rb") as stream:
        compressed = stream.read(2) == _GZIP_MAGIC
    if not compressed:
        return path.open("rb")
    import gzip  # only for a compressed recording

    return cast(IO[bytes], gzip.open(path, "rb"))


def _lines(path: Path, stream: IO[bytes]) -> Iterator[tuple[int, Any]]:
    """(line number, decoded line) of each line; a last line cut short (no newline, not
    JSON) is left out: the recording is partial."""
    lines = records.iter_lines(stream, max_record=records.MAX_RECORD_BYTES)
    while True:
        try:
            _, number, line = next(lines)
        except StopIteration:
            return
        except records.RecordTooLong as error:
            raise InputError(f"{path}:{error.line}", "a line too long for a recording") from None
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as error:
            if not line.endswith(b"\n"):
                return  # written halfway: the prefix before it is the recording
            raise InputError(f"{path}:{number}", f"not a JSON line: {error}") from None
        yield number, record


def _decoded(record: dict[str, Any], key: str) -> bytes:
    if key in record:
        if not isinstance(record[key], str):
            raise ValueError(f'"{key}" must be a string')
        return cast(str, record[key]).encode("utf-8")
    try:
        return base64.b64decode(record[f"{key}_b64"], validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise ValueError(f'"{key}_b64" must be base64') from None


def _headers(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, list) or not all(
        isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)
        for pair in value
    ):
        raise ValueError('"headers" must be a list of [name, value] strings')
    return tuple((name.lower(), text) for name, text in value)


def _request(header: dict[str, Any]) -> RecordedRequest:
    request = header.get("request")
    if not isinstance(request, dict):
        raise ValueError('the header has no "request" object')
    method, path, query = request.get("method"), request.get("path"), request.get("query", "")
    if not isinstance(method, str) or not isinstance(path, str) or not path.startswith("/"):
        raise ValueError('the request needs a "method" and a "path" starting with /')
    if not isinstance(query, str):
        raise ValueError('the request\'s "query" must be a string')
    has_body = "body" in request or "body_b64" in request
    body = _decoded(request, "body") if has_body else b""
    return RecordedRequest(method.upper(), path, query, _headers(request.get("headers", [])), body)


def _offset(record: dict[str, Any]) -> float:
    offset = record.get("offset")
    if isinstance(offset, bool) or not isinstance(offset, int | float):
        raise ValueError(f"the offset {offset!r} is not a number of seconds")
    if not math.isfinite(offset) or offset < 0:
        raise ValueError(f"the offset {offset!r} is not a time since the request was sent")
    return float(offset)


class _Reading:
    """The state of one file being read, line after line."""

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self.path = path
        upstream, started = header.get("upstream", ""), header.get("started", "")
        if not isinstance(upstream, str) or not isinstance(started, str):
            raise ValueError('"upstream" and "started" must be strings')
        self.upstream, self.started = upstream, started
        self.request = _request(header)
        self.response: RecordedResponse | None = None
        self.response_offset = 0.0
        self.blocks: list[Block] = []
        self.body: list[Block] = []
        self.reads: list[Read] = []
        self.end: str | None = None
        self.is_stream = False  # an event stream, once the response line says so

    def add(self, record: Any) -> None:
        if self.end is not None:
            raise ValueError("a line after the end line: the recording ends there")
        if not isinstance(record, dict):
            raise ValueError("a line of a recording is a JSON object")
        kinds = [kind for kind in _KINDS if kind in record]
        if len(kinds) != 1:
            raise ValueError(f"a line holds one of {', '.join(_KINDS)} with its offset")
        kind, offset = kinds[0], _offset(record)
        if kind == "response":
            self._response(offset, record["response"])
        elif kind == "read":
            size = record["read"]
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise ValueError('"read" is a number of bytes')
            self.reads.append(Read(offset, size))
        elif kind == "end":
            if not isinstance(record["end"], str):
                raise ValueError('"end" is a string: "complete" or why the exchange ended')
            self.end = record["end"]
        else:
            name = kind.removesuffix("_b64")
            if self.response is None:
                raise ValueError(f'a "{name}" line before the "response" line')
            if (name == "block") != self.is_stream:
                raise ValueError(
                    '"block" lines are for a text/event-stream response, "body" lines for any other'
                )
            (self.blocks if name == "block" else self.body).append(
                Block(offset, _decoded(record, name))
            )

    def _response(self, offset: float, response: Any) -> None:
        if self.response is not None:
            raise ValueError('a second "response" line: an exchange has one')
        status = response.get("status") if isinstance(response, dict) else None
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 999:
            raise ValueError('"response" needs a "status" (a three-digit number)')
        self.response = RecordedResponse(status, _headers(response.get("headers", [])))
        self.response_offset = offset
        # Worked out once: every block line is checked against it.
        types = [value for name, value in self.response.headers if name == "content-type"]
        self.is_stream = is_stream_type(types[0] if types else None)

    def exchange(self) -> Exchange:
        return Exchange(
            self.path,
            self.upstream,
            self.started,
            self.request,
            self.response,
            self.response_offset,
            self.is_stream,
            tuple(self.blocks),
            tuple(self.body),
            tuple(self.reads),
            self.end,
        )


def read_exchange(path: Path) -> Exchange:
    """One recording. InputError ``FILE:LINE`` for a broken line; a truncated final line
    (no newline) is ignored; no end line: ``end`` is None (partial)."""
    reading: _Reading | None = None
    try:
        with _open(path) as stream:
            for number, record in _lines(path, stream):
                try:
                    if reading is None:
                        reading = _Reading(path, _header(record))
                    else:
                        reading.add(record)
                except ValueError as error:
                    raise InputError(f"{path}:{number}", str(error)) from None
    except OSError as error:
        raise InputError(str(path), f"cannot be read: {error.strerror or error}") from None
    except EOFError as error:  # a gzip stream that breaks off
        raise InputError(str(path), f"cannot be read to its end: {error}") from None
    if reading is None:
        raise InputError(str(path), "the file is empty: a recording starts with its header line")
    return reading.exchange()


def _header(record: Any) -> dict[str, Any]:
    if is_exchange_header(record):
        return cast(dict[str, Any], record)
    if is_header(record):
        raise ValueError(
            f"a version {record.get('version')} recording (written by 'sseplay tail --record'),"
            " not an exchange: serve it as a file, 'sseplay serve FILE'"
        )
    raise ValueError(
        "not a recording of an exchange: its first line is the header "
        '{"sseplay":"recording","version":2,...} that \'sseplay record\' writes'
    )


def _first_line(path: Path) -> Any:
    """The decoded first line of a file, or None when it is empty or not JSON."""
    try:
        with _open(path) as stream:
            for _, record in _lines(path, stream):
                return record
    except (InputError, OSError, EOFError):
        return None
    return None


def load_exchanges(source: Path) -> list[Exchange]:
    """Every recording of a directory (each ``*.jsonl`` that is a version 2 recording, by
    file name; other files are left alone, but a version 1 recording there is an
    InputError: it is served as a file), or the one recording ``source`` is."""
    if not source.is_dir():
        return [read_exchange(source)]
    exchanges = []
    for path in sorted(source.glob("*.jsonl")):
        if not path.is_file():
            continue
        first = _first_line(path)
        if is_exchange_header(first):
            exchanges.append(read_exchange(path))
        elif is_header(first):
            raise InputError(
                str(path),
                f"a version {first.get('version')} recording (written by 'sseplay tail "
                "--record') in a directory of exchanges: serve it as a file, "
                f"'sseplay serve {path}', or move it out of {source}",
            )
    return exchanges
