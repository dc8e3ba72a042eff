"""The event that leaves the server and comes back out of the client, and its wire form."""

from __future__ import annotations

import re
from typing import NamedTuple

DEFAULT_EVENT_TYPE = "message"

# WHATWG HTML, 9.2.6 "Interpreting an event stream": lines end at CRLF, LF or CR,
# and at nothing else (not U+2028, not U+0085, unlike str.splitlines()).
LINE_BREAK = re.compile(r"\r\n|\r|\n")
FIELD_BREAKERS = re.compile(r"[\r\n]")


class Event(NamedTuple):
    """One dispatched event, as a browser's ``MessageEvent`` would show it.

    A NamedTuple rather than a frozen dataclass: the parser makes one per event and
    a tuple is several times cheaper to create."""

    data: str
    event: str = DEFAULT_EVENT_TYPE
    id: str | None = None
    retry: int | None = None


def encode_body(data: str, event: str = DEFAULT_EVENT_TYPE) -> bytes:
    """The ``event:`` and ``data:`` lines of one event and the blank line that dispatches it.

    The ``id:`` line is written separately (see ``encode_id``) because ids of a
    looped replay change from round to round while the body does not.
    """
    head = "" if event == DEFAULT_EVENT_TYPE else f"event: {event}\n"
    # One "data:" line per line of text: the browser joins them with LF (9.2.6,
    # "If the field name is data"), so event.data is the original text. A CR or
    # CRLF in the text can only arrive as LF: the stream format has no escape.
    if "\n" in data or "\r" in data:
        data = LINE_BREAK.sub("\ndata: ", data)
    return f"{head}data: {data}\n\n".encode()


def encode_id(event_id: str) -> bytes:
    return f"id: {event_id}\n".encode()


def encode_retry(milliseconds: int) -> bytes:
    return f"retry: {milliseconds}\n\n".encode()


def encode_comment(text: str) -> bytes:
    return "".join(f": {line}\n" for line in LINE_BREAK.split(text)).encode() + b"\n"


def encode(event: Event) -> bytes:
    """The whole event on the wire: optional ``id:`` and ``retry:``, then the body."""
    parts = []
    if event.id is not None:
        parts.append(encode_id(event.id))
    if event.retry is not None:
        parts.append(f"retry: {event.retry}\n".encode())
    parts.append(encode_body(event.data, event.event))
    return b"".join(parts)


def field_problem(name: str, value: str) -> str | None:
    """Why ``value`` cannot be sent as the ``event`` or ``id`` field, or None when it can."""
    if FIELD_BREAKERS.search(value):
        return f"the {name} {value!r} contains a line break, which would end the field early"
    # 9.2.6: "If the field value does not contain U+0000 NULL, then set the last
    # event ID buffer" -- an id with NUL would be ignored by every browser.
    if name == "id" and "\0" in value:
        return f"the id {value!r} contains NUL, which browsers ignore (WHATWG 9.2.6)"
    return None
