"""Showing events: pretty (rich, for people), json (a line each, for scripts), raw, data-only.

Event data is untrusted: it is written as plain text, never as rich markup, and on a
terminal every format but raw shows control characters escaped.
Every event is flushed as soon as it is written.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime
from typing import IO, Any, Protocol

from sseplay.client.defaults import FORMATS as FORMATS  # re-exported: the choices moved
from sseplay.client.defaults import Format as Format
from sseplay.model import Event, visible
from sseplay.recording import Recorder as Recorder  # re-exported: the writer moved
from sseplay.recording import json_line


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


# Controls that json.dumps and orjson leave raw in a string (they escape only U+0000 to
# U+001F), and that a terminal may act on: DEL, C1 (0x9B is a one-byte CSI on some
# terminals) and the bidirectional controls.
_RAW_IN_JSON_DUMPS = re.compile("[\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


class JsonRenderer(_EventLines):
    """One JSON object per event and line: time, type, id, data, and retry when set.

    With ``escape`` (stdout is a terminal), the controls JSON leaves raw are written as
    ``\\uXXXX`` escapes too: the same JSON (RFC 8259 7), never obeyed by the terminal."""

    def __init__(self, out: IO[str], escape: bool = False) -> None:
        super().__init__(out)
        self._arrived: datetime | None = None
        self._time = ""
        self._escape = escape

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
        line = json_line(item)
        # Such a control can only stand inside a JSON string, where \uXXXX means it.
        return _RAW_IN_JSON_DUMPS.sub(_json_escape, line) if self._escape else line


class DataRenderer(_EventLines):
    """Just the data of each event, one event per line.

    With ``escape`` (stdout is a terminal), control characters are shown escaped as
    ``pretty`` shows them (``\\x1b``); into a pipe or a file the data is written exactly
    as it came, for scripts."""

    def __init__(self, out: IO[str], escape: bool = False) -> None:
        super().__init__(out)
        self._escape = escape

    def line(self, event: Event, arrived: datetime) -> str:
        data = visible(event.data, multiline=True) if self._escape else event.data
        return data + "\n"


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
    highlighted, anything else as plain text.

    The stream is untrusted and this goes to a terminal: every control character in the
    type, id and data is shown as an escape (``\\x1b``), never sent to the terminal raw,
    and nothing is read as rich markup. (``--format raw`` writes the bytes as they came;
    ``json`` and ``data`` escape them too when stdout is a terminal.)"""

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


def make_renderer(kind: Format, width: int | None = None, terminal: bool | None = None) -> Renderer:
    """The renderer of ``kind`` on stdout. ``terminal`` (by default: whether stdout is
    one) makes ``json`` and ``data`` escape control characters; ``raw`` never does."""
    if terminal is None:
        terminal = sys.stdout.isatty()
    if kind == "json":
        return JsonRenderer(sys.stdout, escape=terminal)
    if kind == "data":
        return DataRenderer(sys.stdout, escape=terminal)
    if kind == "raw":
        return RawRenderer(sys.stdout.buffer)
    from rich.console import Console

    return PrettyRenderer(Console(highlight=False, markup=False, emoji=False, width=width))


def now() -> datetime:
    return datetime.now(UTC)
