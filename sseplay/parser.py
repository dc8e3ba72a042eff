"""A sans-IO parser for ``text/event-stream``: bytes in, dispatched events out.

It implements WHATWG HTML, 9.2.6 "Interpreting an event stream" and the
dispatch steps of 9.2.6 as a browser's ``EventSource`` runs them, literally.
No I/O happens here; ``client.py`` feeds it whatever the network delivers.
"""

from __future__ import annotations

import codecs
import re

from sseplay.model import DEFAULT_EVENT_TYPE, Event

# 9.2.5 "Parsing an event stream": end-of-line = CRLF / LF / CR, and nothing else.
_LINE_END = re.compile(r"\r\n|\r|\n")
# The block almost every server sends, LF-terminated: an optional id (without NUL, which
# would make it ignored), an optional type, one data line, the blank line. One optional
# space after each colon is not part of the value (9.2.6). Matched whole at C speed; any
# other block goes through the line-by-line steps. "." is "anything but LF" here (no
# DOTALL; this text has no CR) and runs a quarter faster in ``re`` than ``[^\n]``.
_SIMPLE_BLOCK = re.compile(r"(?:id:[ ]?([^\n\0]*)\n)?(?:event:[ ]?(.*)\n)?data:[ ]?(.*)\n\n")
DEFAULT_MAX_EVENT_SIZE = 16 << 20
MAX_RETRY_MS = (1 << 64) - 1
MAX_RETRY_DIGITS = len(str(MAX_RETRY_MS))


class EventTooLarge(Exception):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"an event grew past {limit} characters ({size} buffered)")
        self.size = size
        self.limit = limit


class EventStreamParser:
    """Feed bytes with ``feed``; each call returns the events its bytes completed.

    ``last_event_id`` is the source's last event ID string (what a reconnect sends
    as ``Last-Event-ID``) and ``retry`` the reconnection time in ms, or None.
    """

    def __init__(self, max_event_size: int = DEFAULT_MAX_EVENT_SIZE) -> None:
        # 9.2.5: the stream is always UTF-8, decoded with replacement of bad bytes.
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._max_event_size = max_event_size
        self._at_start = True  # nothing decoded yet: a leading BOM is still to be stripped
        self._skip_lf = False  # the last text ended with CR: an LF next belongs to it
        self._partial: list[str] = []  # the current, unterminated line
        self._partial_size = 0
        self._data: list[str] = []  # the data buffer, one item per data line
        self._data_size = 0
        self._event_type = ""
        self._id_buffer = ""
        self._block_retry: int | None = None
        self.last_event_id = ""
        self.retry: int | None = None

    def feed(self, chunk: bytes) -> list[Event]:
        return self._feed_text(self._decoder.decode(chunk))

    def close(self) -> list[Event]:
        """The stream ended: an unterminated final block is never dispatched (9.2.6)."""
        events = self._feed_text(self._decoder.decode(b"", final=True))
        self._partial, self._partial_size = [], 0
        self._reset_block()
        return events

    def reset(self) -> None:
        """Prepare for a new connection: the last event ID and retry survive (9.2.3)."""
        self._decoder.reset()
        self._at_start = True
        self._skip_lf = False
        self._partial, self._partial_size = [], 0
        self._reset_block()

    @property
    def buffered(self) -> int:
        """Characters held for the event being received."""
        return self._partial_size + self._data_size

    def _reset_block(self) -> None:
        self._data, self._data_size = [], 0
        self._event_type = ""
        self._block_retry = None

    def _feed_text(self, text: str) -> list[Event]:
        if self._at_start:
            if not text:
                return []
            self._at_start = False
            # 9.2.5: one leading U+FEFF BOM is ignored, and only at the very start.
            if text[0] == "\ufeff":
                text = text[1:]
        if self._skip_lf and text:
            self._skip_lf = False
            if text[0] == "\n":
                text = text[1:]
        if "\n" not in text and "\r" not in text:
            if text:
                self._partial.append(text)
                self._partial_size += len(text)
                self._check_size()
            return []
        if "\r" in text:
            return self._lines_of(text)
        events: list[Event] = []
        if self._partial or self._data or self._event_type or self._block_retry is not None:
            # Finish the block already begun (a chunk rarely ends between blocks).
            end = text.find("\n\n")
            if end < 0:
                return self._lines_of(text)
            events = self._lines_of(text[: end + 2])
            text = text[end + 2 :]
        simple, text = self._simple_blocks(text)
        events.extend(simple)
        if text:
            events.extend(self._lines_of(text))
        return events

    def _simple_blocks(self, text: str) -> tuple[list[Event], str]:
        """Dispatch the simple blocks at the start of LF-only ``text`` (the parser is
        between blocks); the events, and the text from the first other block on."""
        events: list[Event] = []
        append = events.append
        position = 0
        # No data line can reach the limit when the whole text is shorter.
        limit = self._max_event_size if len(text) >= self._max_event_size else None
        last_id = self._id_buffer
        new = tuple.__new__  # builds the event in C; Event(...) and _make run Python code
        default = DEFAULT_EVENT_TYPE
        match = _SIMPLE_BLOCK.match
        while (found := match(text, position)) is not None:
            event_id, event_type, data = found.groups()
            if limit is not None and len(data) >= limit:
                break  # the line-by-line steps raise EventTooLarge for it
            if event_id is not None:
                last_id = event_id
            append(new(Event, (data, event_type or default, last_id or None, None)))
            position = found.end()
        if events:
            # Each block's blank line dispatched it and set the last event ID (9.2.6); an id
            # line of a block that is still open stays in the buffer, uncommitted.
            self._id_buffer = self.last_event_id = last_id
        return events, text[position:]

    def _lines_of(self, text: str) -> list[Event]:
        # Most streams use LF only, and str.split is several times faster than the regex.
        lines = _LINE_END.split(text) if "\r" in text else text.split("\n")
        if self._partial:
            lines[0] = "".join(self._partial) + lines[0]
            self._partial, self._partial_size = [], 0
        tail = lines.pop()
        if tail:
            self._partial.append(tail)
            self._partial_size = len(tail)
        elif text[-1] == "\r":
            self._skip_lf = True
        return self._lines(lines)

    def _lines(self, lines: list[str]) -> list[Event]:
        """Process complete lines (9.2.6). The hot loop of the client: fields are handled
        inline, with state in locals, because a method call per line doubles its cost."""
        events: list[Event] = []
        data, data_size = self._data, self._data_size
        limit = self._max_event_size
        for line in lines:
            if not line:
                # A blank line dispatches (9.2.6 "dispatch the event"). The last event ID
                # is set first, even for a block with no data.
                self.last_event_id = self._id_buffer
                if data:
                    events.append(
                        Event(
                            "\n".join(data),
                            self._event_type or DEFAULT_EVENT_TYPE,
                            self.last_event_id or None,
                            self._block_retry,
                        )
                    )
                    data, data_size = [], 0
                self._event_type = ""
                self._block_retry = None
                continue
            if line[0] == ":":
                continue  # a comment
            name, colon, value = line.partition(":")
            if colon and value[:1] == " ":
                value = value[1:]
            if name == "data":
                data.append(value)
                data_size += len(value) + 1
                if data_size + self._partial_size > limit:
                    raise EventTooLarge(data_size + self._partial_size, limit)
            elif name == "event":
                self._event_type = value
            elif name == "id" and "\0" not in value:
                self._id_buffer = value
            elif (
                name == "retry"
                and value.isascii()
                and value.isdigit()
                and len(value) <= MAX_RETRY_DIGITS
                and int(value) <= MAX_RETRY_MS
            ):
                # Only ASCII digits; anything else ("+5", "1.5", " 5", "") ignores the field.
                # A value past an unsigned 64-bit integer is ignored too, as Chrome does
                # (ToUInt64Strict fails): it is no time anyone meant, it cannot be written
                # as a JSON integer by most decoders, and int() of 4,300+ digits raises.
                self.retry = self._block_retry = int(value)
            # Any other field name, an id with NUL, a bad retry: ignored.
        self._data, self._data_size = data, data_size
        self._check_size()
        return events

    def _check_size(self) -> None:
        if self.buffered > self._max_event_size:
            raise EventTooLarge(self.buffered, self._max_event_size)
