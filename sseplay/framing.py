"""Sans-IO splitters for the JSON streams that are not ``text/event-stream``: bytes in,
one event per JSON value out, with the ``feed``/``close``/``reset`` of ``EventStreamParser``
so the client's chunk loop drives any of them.

- ``ndjson``: one JSON value per line (NDJSON / JSON Lines; Ollama's ``application/x-ndjson``).
  Lines end at LF (a CR before it is whitespace to JSON); blank lines are skipped.
- ``json-array``: one JSON array streamed element by element (Gemini's
  ``streamGenerateContent`` without ``?alt=sse``: ``[{...},\\r\\n{...}]``). Each element is
  an event as soon as the comma or ``]`` after it arrives.

Each value becomes an ``Event`` of type ``message``, without id or retry (these streams
carry neither), whose data is the value as compact JSON (``separators=(",", ":")``, non-ASCII
kept). The stream is UTF-8 (RFC 8259 8.1), decoded with replacement of bad bytes as the
event-stream parser does; a leading BOM is ignored. A value that is not JSON raises
``FramingError``.
"""

from __future__ import annotations

import codecs
import json
import re
from typing import Any, Literal, Protocol

from sseplay.model import DEFAULT_EVENT_TYPE, Event
from sseplay.parser import DEFAULT_MAX_EVENT_SIZE, EventStreamParser, EventTooLarge

Framing = Literal["sse", "ndjson", "json-array"]
FRAMINGS: tuple[Framing, ...] = ("sse", "ndjson", "json-array")

# What tail sends as Accept, per framing.
ACCEPT: dict[Framing, str] = {
    "sse": "text/event-stream",
    "ndjson": "application/x-ndjson",
    "json-array": "application/json",
}
# The media types a JSON stream comes with (either JSON framing takes any of them: servers
# label NDJSON application/json too): JSON (RFC 8259 11) and its +json suffix (RFC 6839 3.1),
# and the names NDJSON and JSON Lines go by, none of them registered.
_JSON_STREAM_TYPES = frozenset(
    {
        "application/json",
        "application/x-ndjson",
        "application/ndjson",
        "application/jsonl",
        "application/x-jsonlines",
        "application/jsonlines",
        "application/json-lines",
    }
)


def is_json_stream_type(essence: str) -> bool:
    """Whether a response of this MIME type essence (lower case) can be a JSON stream."""
    return essence in _JSON_STREAM_TYPES or (
        essence.startswith("application/") and essence.endswith("+json")
    )


# RFC 8259 2: insignificant whitespace is space, tab, LF and CR.
_JSON_SPACE = " \t\n\r"
# Inside an array: the characters that change the scanner's state. Everything else
# (digits, letters of true/false/null, whitespace) is skipped at C speed by the regex.
_STRUCTURAL = re.compile(r'["\[\]{},]')
# The body of a JSON string after its opening quote: anything but a quote or backslash,
# or a backslash and the character it escapes. It stops at the closing quote, or at the
# end of the text, or before a backslash that ends the text (its escape is still to come).
_STRING_BODY = re.compile(r'[^"\\]*(?:\\.[^"\\]*)*', re.DOTALL)


class FramingError(Exception):
    """The body is not the JSON stream its framing says."""


class Splitter(Protocol):
    """What the client's chunk loop drives: ``EventStreamParser`` and the JSON splitters."""

    last_event_id: str
    retry: int | None

    def feed(self, chunk: bytes) -> list[Event]: ...
    def close(self) -> list[Event]: ...
    def reset(self) -> None: ...


def _event(text: str, where: str) -> Event:
    try:
        value: Any = json.loads(text)
    except ValueError as error:
        shown = text if len(text) <= 60 else text[:57] + "..."
        raise FramingError(f"{where} is not JSON ({error.args[0]}): {shown!r}") from None
    compact = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return Event(compact, DEFAULT_EVENT_TYPE, None, None)


class _JsonSplitter:
    """The state both JSON framings share: the UTF-8 decoder and the BOM."""

    def __init__(self, max_event_size: int = DEFAULT_MAX_EVENT_SIZE) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._max_event_size = max_event_size
        self._at_start = True
        # No ids and no reconnection time in these streams: what a reconnection sends as
        # Last-Event-ID stays what the caller set, and the client's default wait applies.
        self.last_event_id = ""
        self.retry: int | None = None

    def _text(self, chunk: bytes, final: bool = False) -> str:
        text = self._decoder.decode(chunk, final)
        if self._at_start and text:
            self._at_start = False
            if text[0] == "\ufeff":
                text = text[1:]
        return text

    def _check_size(self, size: int) -> None:
        if size > self._max_event_size:
            raise EventTooLarge(size, self._max_event_size)

    def _reset_text(self) -> None:
        self._decoder.reset()
        self._at_start = True


class NdjsonSplitter(_JsonSplitter):
    """One JSON value per line."""

    def __init__(self, max_event_size: int = DEFAULT_MAX_EVENT_SIZE) -> None:
        super().__init__(max_event_size)
        self._partial: list[str] = []
        self._partial_size = 0

    def feed(self, chunk: bytes) -> list[Event]:
        text = self._text(chunk)
        if "\n" not in text:
            if text:
                self._partial.append(text)
                self._partial_size += len(text)
                self._check_size(self._partial_size)
            return []
        lines = text.split("\n")
        if self._partial:
            lines[0] = "".join(self._partial) + lines[0]
        tail = lines.pop()
        self._partial, self._partial_size = ([tail], len(tail)) if tail else ([], 0)
        events = []
        for line in lines:
            self._check_size(len(line))
            if line.strip(_JSON_SPACE):
                events.append(_event(line, "a line"))
        self._check_size(self._partial_size)
        return events

    def close(self) -> list[Event]:
        """The stream ended: a last line without its LF is a value when it is whole JSON
        (JSON Lines lets the last line go without one); a cut-off one is dropped, as the
        event-stream parser drops an unterminated block."""
        rest = "".join(self._partial) + self._text(b"", final=True)
        self._partial, self._partial_size = [], 0
        if not rest.strip(_JSON_SPACE):
            return []
        try:
            return [_event(rest, "the last line")]
        except FramingError:
            return []

    def reset(self) -> None:
        self._reset_text()
        self._partial, self._partial_size = [], 0


class JsonArraySplitter(_JsonSplitter):
    """The elements of one JSON array, each as soon as it is complete."""

    def __init__(self, max_event_size: int = DEFAULT_MAX_EVENT_SIZE) -> None:
        super().__init__(max_event_size)
        self.reset()

    def reset(self) -> None:
        self._reset_text()
        self._state: Literal["before", "inside", "after"] = "before"
        self._buffer = ""  # text of the element being received (from its start)
        self._scanned = 0  # how far into _buffer the scan has gone
        self._depth = 0  # nesting inside the element
        self._in_string = False
        self._after_comma = False  # the last separator was a comma, not the '['

    def feed(self, chunk: bytes) -> list[Event]:
        return self._feed_text(self._text(chunk))

    def close(self) -> list[Event]:
        """The stream ended: an element cut off (no comma or ``]`` after it) is dropped."""
        events = self._feed_text(self._text(b"", final=True))
        self.reset()
        return events

    def _feed_text(self, text: str) -> list[Event]:
        events: list[Event] = []
        if self._state == "before":
            stripped = text.lstrip(_JSON_SPACE)
            if not stripped:
                return events
            if stripped[0] != "[":
                raise FramingError(f"the body does not start with '[': {stripped[:40]!r}")
            self._state, text = "inside", stripped[1:]
        if self._state == "after":
            if text.strip(_JSON_SPACE):
                raise FramingError(f"text after the array's ']': {text.strip()[:40]!r}")
            return events
        buffer = self._buffer + text
        position, start = self._scanned, 0
        depth, in_string = self._depth, self._in_string
        while position < len(buffer):
            if in_string:
                end = _STRING_BODY.match(buffer, position).end()  # type: ignore[union-attr]
                if end >= len(buffer) or buffer[end] != '"':
                    position = end  # the string goes on in the next chunk
                    break
                position, in_string = end + 1, False
                continue
            found = _STRUCTURAL.search(buffer, position)
            if found is None:
                position = len(buffer)
                break
            char, position = found.group(), found.end()
            if char == '"':
                in_string = True
            elif char in "[{":
                depth += 1
            elif depth > 0 and char in "]}":
                depth -= 1
            elif depth == 0 and char in ",]":
                element = buffer[start : position - 1]
                if element.strip(_JSON_SPACE):
                    events.append(_event(element, "an element of the array"))
                elif char == "," or self._after_comma:
                    # "[,", ",," and ",]" leave an element out; only "[]" is empty.
                    raise FramingError("an empty element in the array (',' with no value)")
                start, self._after_comma = position, char == ","
                if char == "]":
                    self._state = "after"
                    rest = buffer[position:]
                    self._buffer, self._scanned, self._depth, self._in_string = "", 0, 0, False
                    if rest.strip(_JSON_SPACE):
                        raise FramingError(f"text after the array's ']': {rest.strip()[:40]!r}")
                    return events
        self._buffer = buffer[start:]
        self._scanned = position - start
        self._depth, self._in_string = depth, in_string
        self._check_size(len(self._buffer))
        return events


def splitter(framing: Framing, max_event_size: int = DEFAULT_MAX_EVENT_SIZE) -> Splitter:
    """The splitter of ``framing``: the event-stream parser for ``sse``."""
    if framing == "ndjson":
        return NdjsonSplitter(max_event_size)
    if framing == "json-array":
        return JsonArraySplitter(max_event_size)
    return EventStreamParser(max_event_size)
