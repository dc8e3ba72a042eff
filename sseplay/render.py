"""Showing events: pretty (rich, for people), json (a line each, for scripts), raw, data-only.

Event data is untrusted: it is written as plain text, never as rich markup.
Every event is flushed as soon as it is written.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import IO, Any, Literal, Protocol

import orjson

from sseplay.model import Event
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


class PrettyRenderer:
    """A header line per event (time, type, id), then the data: JSON pretty-printed and
    highlighted, anything else as plain text."""

    def __init__(self, console: Any) -> None:
        self.console = console

    def event(self, event: Event, arrived: datetime) -> None:
        from rich.json import JSON
        from rich.text import Text

        header = Text()
        header.append(arrived.astimezone().strftime("%H:%M:%S.%f")[:-3], style="dim")
        header.append("  ")
        header.append(event.event, style="bold cyan")
        if event.id is not None:
            header.append(f"  id={event.id}", style="magenta")
        if event.retry is not None:
            header.append(f"  retry={event.retry}", style="dim")
        self.console.print(header)
        body: Any
        try:
            json.loads(event.data)
            body = JSON(event.data)
        except (ValueError, RecursionError):  # not JSON, or nested past what json handles
            body = Text(event.data)
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
    ``sseplay serve`` replays with the original types, ids and timing."""

    def __init__(self, out: IO[str], url: str, started: float) -> None:
        self.out = out
        self.started = started
        self.out.write(json_line(recording_header(url)))
        self.out.flush()

    def event(self, event: Event, monotonic_now: float) -> None:
        envelope: dict[str, Any] = {
            "offset": round(monotonic_now - self.started, 6),
            "event": event.event,
            "id": event.id,
            "data": event.data,
        }
        if event.retry is not None:
            envelope["retry"] = event.retry
        self.out.write(json_line(envelope))

    def flush(self) -> None:
        self.out.flush()


def now() -> datetime:
    return datetime.now(UTC)
