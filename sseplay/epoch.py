"""``--epoch TIME``: the wall-clock moment a ``--broadcast`` timeline starts.

Every host and every worker given the same epoch and the same file plays the same
timeline: event ``n`` is due at the epoch plus its offset in the plan, and its id is its
position, so a client can resume on any of them. The moment must therefore mean the same
instant everywhere: Unix seconds, or ISO-8601 with a time zone (a local time would be
read differently by hosts in different zones).
"""

from __future__ import annotations

import math
import re
from datetime import datetime

from sseplay.errors import UsageError

_UNIX_SECONDS = re.compile(r"^\d+(\.\d*)?$")
# Unix seconds past this (the year 5138) are surely milliseconds (JavaScript's Date.now()).
_LATEST_SECONDS = 1e11
_EXAMPLES = "ISO-8601 with a zone, like 2025-06-01T12:00:00Z, or Unix seconds, like 1748779200"


def parse_epoch(text: str) -> float:
    """The moment ``text`` names, in Unix seconds; a one-line ``UsageError`` otherwise."""
    value = text.strip()
    if _UNIX_SECONDS.match(value):
        return check_epoch(float(value))
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(f"--epoch {text!r} is not a moment: write it as {_EXAMPLES}") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise UsageError(
            f"--epoch {text!r} has no time zone: add Z (UTC) or an offset like +02:00, "
            "so that every host reads the same moment"
        )
    return check_epoch(moment.timestamp())


def check_epoch(seconds: float) -> float:
    """``seconds`` as an epoch, checked: finite, not before 1970, not milliseconds."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise UsageError(f"--epoch must be a moment: {_EXAMPLES}, not {seconds!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise UsageError(f"--epoch must be a moment after 1970, not {seconds}")
    if seconds > _LATEST_SECONDS:
        raise UsageError(
            f"--epoch {seconds:.0f} looks like milliseconds: give seconds (divide by 1000)"
        )
    return float(seconds)
