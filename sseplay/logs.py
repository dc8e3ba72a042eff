"""``--log-format json``: every line sseplay writes on stderr as one JSON object.

``{"time": "2026-12-06T19:42:31.123Z", "level": "info", "logger": "sseplay.server",
"message": "...", ...}``, plus the fields of the event that a log call passes with
``extra=`` (``FIELDS``: the route, the client, the connection's number, its events, why
it ended...). The command's own error lines (``sseplay: error: ...``, ``interrupted``)
take the same shape through ``error_line``, so that a pipeline parses a start-up error
as it parses the rest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, Literal

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
FLAG = "--log-format"
# The event's fields a log call may pass with ``extra=``, written when present.
FIELDS = ("route", "client", "connection", "events", "reason", "kind", "source", "worker")

_json_lines = False


def use_json(on: bool = True) -> None:
    """From now on, ``error_line`` writes JSON (``--log-format json``)."""
    global _json_lines
    _json_lines = on


def json_lines() -> bool:
    """Whether stderr's lines are JSON: then nothing else is drawn there (no progress bar)."""
    return _json_lines


def wants_json(arguments: Sequence[str]) -> bool:
    """Whether a command line asks for JSON logs: read before its flags are parsed, so
    that a mistake in them is reported as JSON too."""
    for index, word in enumerate(arguments):
        if word == f"{FLAG}=json":
            return True
        if word == FLAG and index + 1 < len(arguments) and arguments[index + 1] == "json":
            return True
    return False


def error_line(message: str, level: str = "error", **fields: Any) -> str:
    """One line for stderr (newline included): ``sseplay: MESSAGE``, or its JSON object."""
    if not _json_lines:
        prefix = "error: " if level == "error" else ""
        return f"sseplay: {prefix}{message}\n"
    entry = {"time": _timestamp(time.time()), "level": level, "message": message, **fields}
    return _dumps(entry) + "\n"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    # Read by the --workers tag (``sseplay.workers``): the worker goes in a field.
    structured = True

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return _dumps(entry)


def _timestamp(seconds: float) -> str:
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{whole}.{int(seconds % 1 * 1000):03d}Z"


def _dumps(entry: dict[str, Any]) -> str:
    import json  # only when JSON is asked for

    # ensure_ascii: a line stays one line whatever a client sent; default=str: a field
    # that is not JSON (a path, an exception) is written as its text.
    return json.dumps(entry, default=str)
