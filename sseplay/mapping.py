"""Records to events: the field mapping (``--data-field``, ``--id-field``...) and time values.

``RecordMapper`` turns one decoded JSON record into a cue (its id and encoded body) and its
raw time; ``parse_time`` reads a time value in one of the forms ``TIME_FORMS`` names. Pure:
no I/O. Used by event files (``sseplay.eventfile``) and followed inputs
(``sseplay.sources.follow``).
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Any

import orjson

from sseplay.config import FieldMapping
from sseplay.model import DEFAULT_EVENT_TYPE, Cue, check_field, encode_body, encode_comment
from sseplay.recording import recorded_cue
from sseplay.records import TOO_DEEP

_MISSING = object()
# What ``lookup`` returns for a path that names nothing (a scenario's ``when`` tells it).
MISSING = _MISSING
_INDEX = re.compile(r"^-?[0-9]{1,18}$", re.ASCII)


def lookup(record: Any, path: str) -> Any:
    """The value at a dotted path (``a.b.0``; ``-1`` is a list's last item), or
    ``_MISSING``; an exact key wins over a path."""
    if isinstance(record, dict) and path in record:
        return record[path]
    value = record
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif (
            isinstance(value, list) and _INDEX.match(part) and -len(value) <= int(part) < len(value)
        ):
            value = value[int(part)]
        else:
            return _MISSING
    return value


# One nesting limit on every Python: json's C encoder stops where the interpreter's C
# recursion limit does (about 990 levels on 3.11, 1,500 on 3.12, 10,000 on 3.13), so
# without it the same file would load on one Python and fail on another.
MAX_DEPTH = 1000


def nested_deeper_than(value: Any, limit: int) -> bool:
    """Whether lists and objects in ``value`` nest more than ``limit`` levels (no recursion)."""
    level = [value] if isinstance(value, list | dict) else []
    for _ in range(limit):
        level = [
            child
            for node in level
            for child in (node.values() if isinstance(node, dict) else node)
            if isinstance(child, list | dict)
        ]
        if not level:
            return False
    return bool(level)


def compact_json(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # beyond 64 bits or 255 levels: orjson refuses what json accepts
        if nested_deeper_than(value, MAX_DEPTH):
            raise ValueError(TOO_DEEP) from None
        try:
            return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        except RecursionError:
            raise ValueError(TOO_DEEP) from None


def as_text(value: Any) -> str:
    """A JSON string is sent as its text (``"[DONE]"`` -> ``[DONE]``), anything else as JSON."""
    return value if isinstance(value, str) else compact_json(value)


_CLOCK = re.compile(r"^(\d+):([0-5]?\d)(?::([0-5]?\d))?(\.\d+)?$", re.ASCII)
# Seconds written as a string: plain decimal notation only. Python's float() would also
# take "nan", "inf", "1_000" and "1e400", none of which is a time a person writes.
_DECIMAL_SECONDS = re.compile(r"^-?\d+(\.\d+)?$", re.ASCII)
# The largest time value, in seconds either way of zero (about 31 million years): far
# beyond any timestamp, still exact to the microsecond as a 64-bit float.
MAX_TIME_SECONDS = 10**15
TIME_FORMS = (
    "write seconds as a number (12.5), a clock (00:05 or 01:02:03) or an ISO-8601 "
    "timestamp (2026-01-01T00:00:05Z)"
)


def _in_range(seconds: int | float) -> float:
    # Compared before float() so that a 400-digit integer is refused, not an OverflowError.
    if not -MAX_TIME_SECONDS <= seconds <= MAX_TIME_SECONDS:
        raise _out_of_range()
    return float(seconds)


def _out_of_range() -> ValueError:
    return ValueError(
        f"out of range: a time is at most {MAX_TIME_SECONDS:,} seconds either way of zero; "
        + TIME_FORMS
    )


def _integer(digits: str) -> int:
    # int() refuses more than 4,300 digits with advice about the interpreter; more
    # than 16 significant digits is out of range in any case.
    if len(digits.lstrip("-").lstrip("0")) > 16:
        raise _out_of_range()
    return int(digits)


def parse_time(value: Any) -> tuple[str, float]:
    """(kind, seconds) of a time value: a number, a clock string or an ISO-8601 timestamp.

    Every value is finite and within MAX_TIME_SECONDS; anything else raises ValueError
    saying which forms are accepted."""
    if isinstance(value, bool):
        raise ValueError(f"true/false is not a time: {TIME_FORMS}")
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"not a finite number: {TIME_FORMS}")
        return "number", _in_range(value)
    if not isinstance(value, str):
        raise ValueError(TIME_FORMS)
    text = value.strip()
    clock = _CLOCK.match(text)
    if clock:
        first, second, third, fraction = clock.groups()
        hours, minutes, seconds = (
            (_integer(first), int(second), int(third))
            if third is not None
            else (0, _integer(first), int(second))
        )
        whole = _in_range(hours * 3600 + minutes * 60 + seconds)
        return "clock", whole + float(fraction or 0)
    if _DECIMAL_SECONDS.match(text):
        _in_range(_integer(text.partition(".")[0]))  # before float()
        return "number", float(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(TIME_FORMS) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return "timestamp", moment.timestamp()


class RecordMapper:
    """Turns one decoded record into a cue (and its time), or says what is wrong with it."""

    def __init__(self, mapping: FieldMapping, recording: bool) -> None:
        self.mapping = mapping
        self.recording = recording

    def cue(self, record: Any) -> tuple[Cue, Any]:
        """(cue, raw time value or None)."""
        if self.recording:
            return recorded_cue(record)
        mapping = self.mapping
        comment = self._comment(record)
        if comment is not None:
            return comment
        data = record
        if mapping.data_field is not None:
            data = self._field(record, mapping.data_field, "--data-field")
        body = encode_body(as_text(data), self._event_type(record))
        event_id = self._event_id(record)
        raw_time = None
        if mapping.time_field is not None:
            raw_time = self._field(record, mapping.time_field, "--time-field")
        return Cue(event_id, body), raw_time

    def _comment(self, record: Any) -> tuple[Cue, Any] | None:
        """A record that is only ``{"comment": TEXT}`` (and its time field, if any) is sent
        as comment lines, ``: TEXT`` (each line of TEXT its own), which a client ignores
        (WHATWG HTML 9.2.6): keep-alives such as OpenRouter's ``: OPENROUTER PROCESSING``.
        A record with any other key is data as before, so no file changes meaning."""
        if not isinstance(record, dict) or "comment" not in record:
            return None
        time_field = self.mapping.time_field
        if any(key != "comment" and key != time_field for key in record):
            return None
        text = record["comment"]
        if not isinstance(text, str):
            raise ValueError(f'"comment" must be a string, the comment\'s text, not {text!r}')
        raw_time = None if time_field is None else self._field(record, time_field, "--time-field")
        return Cue(None, encode_comment(text), comment=True), raw_time

    def _field(self, record: Any, path: str, flag: str) -> Any:
        value = lookup(record, path)
        if value is _MISSING:
            raise ValueError(f'the record has no field "{path}" (check {flag}, or fix the record)')
        return value

    def _event_type(self, record: Any) -> str:
        if self.mapping.event_field is None:
            return self.mapping.event_type or DEFAULT_EVENT_TYPE
        value = self._field(record, self.mapping.event_field, "--event-field")
        if not isinstance(value, str) or not value:
            raise ValueError(f"the event type must be a non-empty string, not {value!r}")
        return check_field("event type", value)

    def _event_id(self, record: Any) -> str | None:
        if self.mapping.id_field is None:
            return None
        value = self._field(record, self.mapping.id_field, "--id-field")
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ValueError(f"the id must be a string or an integer, not {value!r}")
        return check_field("id", str(value))
