"""Showing events: pretty (rich, for people), json (a line each, for scripts), raw, data-only.

Event data is untrusted: it is written as plain text, never as rich markup.
Every event is flushed as soon as it is written.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal, Protocol

import orjson

from sseplay.errors import OutputFailed, UsageError
from sseplay.model import Event, visible
from sseplay.source import recording_header

Format = Literal["pretty", "json", "raw", "data"]
FORMATS: tuple[Format, ...] = ("pretty", "json", "raw", "data")


def json_line(item: dict[str, Any]) -> str:
    """One compact JSON object and a newline. U+2028 and U+2029 are escaped: JSON allows
    them raw, but line-splitting tools (and str.splitlines) treat them as line ends."""
    text = orjson.dumps(item).decode()
    if "\u2028" in text or "\u2029" in text:
        text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return text + "\n"


def timestamp(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Renderer(Protocol):
    def event(self, event: Event, arrived: datetime) -> None: ...

    def raw(self, chunk: bytes) -> None: ...

    def flush(self) -> None:
        """Show what has been written: after each chunk's events, which arrived together."""


class _EventLines:
    """Writes a line of text per event; the raw bytes are not shown."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def line(self, event: Event, arrived: datetime) -> str:
        raise NotImplementedError

    def event(self, event: Event, arrived: datetime) -> None:
        self.out.write(self.line(event, arrived))

    def raw(self, chunk: bytes) -> None:
        pass

    def flush(self) -> None:
        self.out.flush()


class JsonRenderer(_EventLines):
    """One JSON object per event and line: time, type, id, data, and retry when set."""

    def __init__(self, out: IO[str]) -> None:
        super().__init__(out)
        self._arrived: datetime | None = None
        self._time = ""

    def line(self, event: Event, arrived: datetime) -> str:
        if arrived is not self._arrived:  # the events of a chunk share their arrival
            self._arrived, self._time = arrived, timestamp(arrived)
        item: dict[str, Any] = {
            "time": self._time,
            "type": event.event,
            "id": event.id,
            "data": event.data,
        }
        if event.retry is not None:
            item["retry"] = event.retry
        return json_line(item)


class DataRenderer(_EventLines):
    """Just the data of each event, one event per line."""

    def line(self, event: Event, arrived: datetime) -> str:
        return event.data + "\n"


class RawRenderer:
    """The bytes exactly as they arrived."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out

    def event(self, event: Event, arrived: datetime) -> None:
        pass

    def raw(self, chunk: bytes) -> None:
        self.out.write(chunk)

    def flush(self) -> None:
        self.out.flush()


# Controls that json.dumps leaves raw in a string (it escapes only U+0000 to U+001F).
_RAW_IN_JSON_DUMPS = re.compile("[\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


class PrettyRenderer:
    """A header line per event (time, type, id), then the data: JSON pretty-printed and
    highlighted, anything else as plain text.

    The stream is untrusted and this goes to a terminal: every control character in the
    type, id and data is shown as an escape (``\\x1b``), never sent to the terminal raw,
    and nothing is read as rich markup. (``--format raw`` writes the bytes as they came;
    ``json`` escapes them as JSON does.)"""

    def __init__(self, console: Any) -> None:
        self.console = console

    def event(self, event: Event, arrived: datetime) -> None:
        from rich.json import JSON
        from rich.text import Text

        header = Text()
        header.append(arrived.astimezone().strftime("%H:%M:%S.%f")[:-3], style="dim")
        header.append("  ")
        header.append(visible(event.event), style="bold cyan")
        if event.id is not None:
            header.append(f"  id={visible(event.id)}", style="magenta")
        if event.retry is not None:
            header.append(f"  retry={event.retry}", style="dim")
        self.console.print(header)
        body: Any
        try:
            decoded = json.loads(event.data)
            # json.dumps escapes C0 controls in strings; DEL, C1 and the bidi controls it
            # leaves raw, so data holding them is shown with every non-ASCII escaped.
            unsafe = _RAW_IN_JSON_DUMPS.search(json.dumps(decoded, ensure_ascii=False))
            body = JSON(event.data, ensure_ascii=unsafe is not None)
        except (ValueError, RecursionError):  # not JSON, or nested past what json handles
            body = Text(visible(event.data, multiline=True))
        self.console.print(body)

    def raw(self, chunk: bytes) -> None:
        pass

    def flush(self) -> None:
        self.console.file.flush()


def make_renderer(kind: Format, width: int | None = None) -> Renderer:
    if kind == "json":
        return JsonRenderer(sys.stdout)
    if kind == "data":
        return DataRenderer(sys.stdout)
    if kind == "raw":
        return RawRenderer(sys.stdout.buffer)
    from rich.console import Console

    return PrettyRenderer(Console(highlight=False, markup=False, emoji=False, width=width))


class Recorder:
    """Writes ``--record`` files: a header line, then an envelope per event that
    ``sseplay serve`` replays with the original types, ids, retry and timing.

    The file only ever holds whole lines: each chunk's lines are written together, and a
    write that fails (disk full, file too large) is cut back to the last whole line
    before the error is raised."""

    def __init__(self, path: Path, url: str, started: float) -> None:
        self.path = path
        self.started = started
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        except OSError as error:
            raise UsageError(f"--record {path}: cannot write: {error.strerror}") from None
        self._pending: list[bytes] = [json_line(recording_header(url)).encode()]
        self._written = 0  # bytes of whole lines in the file
        self._events = 0  # events in the file
        self._pending_events = 0
        self._retry: int | None = None  # the reconnection time last written
        self.flush()

    def event(self, event: Event, stream_retry: int | None) -> None:
        envelope: dict[str, Any] = {
            "offset": round(time.monotonic() - self.started, 6),
            "event": event.event,
            "id": event.id,
            "data": event.data,
        }
        # A server usually sends retry: in a block of its own, which dispatches no event
        # (WHATWG 9.2.6); the stream's reconnection time goes with the next event instead.
        retry = event.retry if event.retry is not None else stream_retry
        if retry is not None and (event.retry is not None or retry != self._retry):
            envelope["retry"] = self._retry = retry
        self._pending.append(json_line(envelope).encode())
        self._pending_events += 1

    def flush(self) -> None:
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        done = 0
        try:
            while done < len(data):
                done += os.write(self._fd, data[done:])
        except OSError as error:
            with contextlib.suppress(OSError):  # a device (/dev/full) cannot be truncated
                os.ftruncate(self._fd, self._written)
            raise OutputFailed(
                f"--record {self.path}: {error.strerror or error}; "
                f"it holds the first {self._events} events, in whole lines"
            ) from None
        self._written += done
        self._events += self._pending_events
        self._pending_events = 0

    def close(self) -> None:
        os.close(self._fd)


def now() -> datetime:
    return datetime.now(UTC)
