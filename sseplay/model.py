"""The event that leaves the server and comes back out of the client, and its wire form."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, NamedTuple

DEFAULT_EVENT_TYPE = "message"

# WHATWG HTML, 9.2.6 "Interpreting an event stream": lines end at CRLF, LF or CR,
# and at nothing else (not U+2028, not U+0085, unlike str.splitlines()).
LINE_BREAK = re.compile(r"\r\n|\r|\n")
FIELD_BREAKERS = re.compile(r"[\r\n]")
# What a terminal would act on rather than show: C0 controls (ESC starts colour, title
# and OSC 52 clipboard sequences), DEL, C1 controls (0x9B is a one-byte CSI on some
# terminals), and the bidirectional overrides that reorder what is shown ("Trojan
# Source", CVE-2021-42574). Tab and line feed are kept in data, where they are text.
_UNSAFE_IN_DATA = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)
_UNSAFE_IN_FIELD = re.compile(
    "[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str, *, multiline: bool = False) -> str:
    """``text`` with every character a terminal would act on written as an escape
    (``\\x1b``, ``\\u202e``), so that it is shown, never obeyed. ``multiline`` keeps
    line feeds and tabs (event data); a type, id or header value escapes them too."""
    pattern = _UNSAFE_IN_DATA if multiline else _UNSAFE_IN_FIELD
    return pattern.sub(_escape, text)


class Event(NamedTuple):
    """One dispatched event, as a browser's ``MessageEvent`` would show it.

    A NamedTuple rather than a frozen dataclass: the parser makes one per event and
    a tuple is several times cheaper to create."""

    data: str
    event: str = DEFAULT_EVENT_TYPE
    id: str | None = None
    retry: int | None = None

    @property
    def type(self) -> str:
        """The event type, as ``MessageEvent.type`` names it (``message`` by default)."""
        return self.event

    def json(self) -> Any:
        """The data decoded as JSON (``json.JSONDecodeError``, a ValueError, if it is not)."""
        return json.loads(self.data)


@dataclass(frozen=True, slots=True)
class Cue:
    """One event ready to send: its own id (None = numbered by position) and its bytes
    without the ``id:`` line (``encode_without_id``). A ``comment`` cue is comment lines
    (``encode_comment``): it dispatches no event, so it is sent without an ``id:`` line."""

    id: str | None
    body: bytes
    comment: bool = False


# Why not sse-starlette's ServerSentEvent.encode(), the encoder the FastAPI world uses:
# it gives the same bytes for an event without retry (tests/core/test_model.py checks this
# over awkward data), but it writes ``retry:`` after the data, where sseplay has always
# written it first; it costs about 3.9 us an event against 0.6 us here (385 ms against
# 55 ms for 100,000 events, CPU time), a third more on the load of a 100k-record file;
# and importing it imports Starlette, which loading a file must not need.
def encode_body(data: str, event: str = DEFAULT_EVENT_TYPE) -> bytes:
    """The ``event:`` and ``data:`` lines of one event and the blank line that dispatches it.

    The ``id:`` line is written separately (see ``with_id``) because ids of a
    looped replay change from round to round while the body does not.
    """
    head = "" if event == DEFAULT_EVENT_TYPE else f"event: {event}\n"
    # One "data:" line per line of text: the browser joins them with LF (9.2.6,
    # "If the field name is data"), so event.data is the original text. A CR or
    # CRLF in the text can only arrive as LF: the stream format has no escape.
    if "\n" in data or "\r" in data:
        data = LINE_BREAK.sub("\ndata: ", data)
    return f"{head}data: {data}\n\n".encode()


def with_id(event_id: str | int, body: bytes) -> bytes:
    """``body`` with its ``id:`` line in front: a record's own id, or a sequence number."""
    if isinstance(event_id, int):
        return b"id: %d\n%b" % (event_id, body)
    return b"id: %b\n%b" % (event_id.encode(), body)


def _retry_field(milliseconds: int) -> bytes:
    return b"retry: %d\n" % milliseconds


def encode_retry(milliseconds: int) -> bytes:
    """A block of its own that sets the reconnection time and dispatches no event (9.2.6)."""
    return _retry_field(milliseconds) + b"\n"


def stream_tail(tail: bytes, written: bytes) -> bytes:
    """The last four bytes of an event stream that ended in ``tail`` once ``written``
    follows: what ``ends_block`` and ``retry_after`` look at, and no more (a written
    chunk may be megabytes)."""
    return (written if len(written) >= 4 else tail + written)[-4:]


def ends_block(tail: bytes) -> bool:
    """Whether an event stream whose last bytes are ``tail`` (four at least, or all of
    it) is between two blocks: its last two line ends (CRLF, LF or CR) are next to each
    other, a blank line."""
    at, ends = len(tail), 0
    while ends < 2:
        if tail.endswith(b"\r\n", 0, at):
            at -= 2
        elif tail.endswith((b"\n", b"\r"), 0, at):
            at -= 1
        else:
            return False
        ends += 1
    return True


def retry_after(tail: bytes, milliseconds: int) -> bytes:
    """A ``retry:`` field for an event stream whose last bytes are ``tail`` (see
    ``ends_block``): its own block between events; inside one (a stream cut in the middle
    of an event, as a recorded read may be) its line alone, after the line there ends,
    and no blank line, which would dispatch the half event (the end of the stream drops
    it, 9.2.6)."""
    if ends_block(tail):
        return encode_retry(milliseconds)
    at_line_start = tail.endswith((b"\n", b"\r"))
    return (b"" if at_line_start else b"\n") + _retry_field(milliseconds)


def encode_comment(text: str) -> bytes:
    return "".join(f": {line}\n" for line in LINE_BREAK.split(text)).encode() + b"\n"


# A comment, never an event (WHATWG 9.2.6: a line starting with U+003A COLON is ignored).
PING = encode_comment("ping")


def encode_without_id(event: Event) -> bytes:
    """The event on the wire but for its ``id:`` line: optional ``retry:``, then the body."""
    body = encode_body(event.data, event.event)
    if event.retry is None:
        return body
    return _retry_field(event.retry) + body


def encode(event: Event) -> bytes:
    """The whole event on the wire: optional ``id:`` and ``retry:``, then the body."""
    body = encode_without_id(event)
    return body if event.id is None else with_id(event.id, body)


def field_problem(name: str, value: str) -> str | None:
    """Why ``value`` cannot be sent as the ``event`` or ``id`` field, or None when it can."""
    if FIELD_BREAKERS.search(value):
        return f"the {name} {value!r} contains a line break, which would end the field early"
    # 9.2.6: "If the field value does not contain U+0000 NULL, then set the last
    # event ID buffer" -- an id with NUL would be ignored by every browser.
    if name == "id" and "\0" in value:
        return f"the id {value!r} contains NUL, which browsers ignore (WHATWG 9.2.6)"
    return None


def check_field(name: str, value: str) -> str:
    """``value`` when it can be sent as the ``event`` or ``id`` field; else ValueError."""
    problem = field_problem(name, value)
    if problem:
        raise ValueError(problem)
    return value


def event_type_of(body: bytes) -> str:
    """The type an encoded event dispatches: its ``event:`` line comes before the data
    (``encode_body``), after at most a ``retry:`` line (``encode_without_id``)."""
    for line in body.split(b"\n", 2)[:2]:
        if line.startswith(b"event: "):
            return line[7:].decode()
    return DEFAULT_EVENT_TYPE
