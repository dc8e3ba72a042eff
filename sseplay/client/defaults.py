"""tail's defaults and choices, each written once: ``TailOptions``, the renderers and the
command line all read them from here. Nothing heavy is imported, so the command line can
use them in its flag definitions without slowing its start-up."""

from __future__ import annotations

from typing import Literal

from sseplay import __version__
from sseplay.parser import DEFAULT_MAX_EVENT_SIZE as DEFAULT_MAX_EVENT_SIZE

DEFAULT_METHOD = "GET"
DEFAULT_CONTENT_TYPE = "application/json"  # of a request body, unless a header names one
DEFAULT_CONNECT_TIMEOUT = 10.0  # seconds to connect and get the response headers
# What tail names itself as (RFC 9110 10.1.5: product/version), unless -H gives another.
USER_AGENT = f"sseplay/{__version__}"

Format = Literal["pretty", "json", "raw", "data"]
# Each output format and what it shows (sseplay.client.render draws them).
FORMAT_DESCRIPTIONS: dict[Format, str] = {
    "pretty": "a header line per event, then its data (rich, for people)",
    "json": "one JSON object a line per event: time, type, id, data, retry",
    "raw": "the bytes exactly as they arrived",
    "data": "only each event's data, a line per event",
}
FORMATS: tuple[Format, ...] = tuple(FORMAT_DESCRIPTIONS)
# What --format takes by name: every format ("data" is --data-only too).
FORMAT_FLAG_CHOICES: tuple[Format, ...] = FORMATS
# --format when none is given: pretty on a terminal, json when piped.
TERMINAL_FORMAT: Format = "pretty"
PIPED_FORMAT: Format = "json"
