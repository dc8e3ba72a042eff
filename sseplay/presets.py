"""``--scenario-preset NAME[:retry=MS]`` (issue 26): a fault that provokes a reconnect and
the rules (``sseplay.verdict``) a client must keep through it, named at once. Each adds
its fault to ``--fault`` and its rules to ``--expect-client``; ``retry=`` changes the
retry: time it sends (a test makes it short).

    sse-retry         every connection is dropped after 3 events, with retry: 500 just
                      before; the client must resume from the last id and wait the retry
    resume-before-id  the second connection is cut in the middle of event 3, after its
                      id: line; the client must resume from event 2's id, the last event
                      it was given whole (WHATWG HTML 9.2.6: an id counts once its event
                      is dispatched); the first connection, dropped before any event,
                      sends retry: 500, which every reconnect must wait
    stop-on-204       the first connection gets retry: 500 and is dropped before any
                      event; the client reconnects, gets the whole stream, reconnects
                      with its last id and is answered 204: it must then stop
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sseplay.errors import UsageError

DEFAULT_PRESET_RETRY = 500


@dataclass(frozen=True, slots=True)
class Preset:
    """A preset's faults and rules, as ``--fault`` and ``--expect-client`` texts."""

    faults: tuple[str, ...]
    rules: tuple[str, ...]


# Each preset's faults, with {retry} for the retry: time, and its rules.
PRESETS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "sse-retry": (("drop:after=3,retry={retry}",), ("resumes", "honours-retry")),
    "resume-before-id": (
        ("drop:after=0,retry={retry},conn=1", "cut:after=2,conn=2"),
        ("resumes", "honours-retry"),
    ),
    "stop-on-204": (
        ("drop:after=0,retry={retry},conn=1",),
        ("resumes", "honours-retry", "stops-on-204"),
    ),
}
_PRESET = re.compile(r"^([a-z0-9-]+)(?::retry=([0-9]{1,9}))?$")


def preset_of(text: str) -> Preset:
    """The preset ``NAME`` or ``NAME:retry=MS``; a one-line ``UsageError`` otherwise."""
    names = ", ".join(PRESETS)
    match = _PRESET.match(text.strip()) if isinstance(text, str) else None
    if match is None or match.group(1) not in PRESETS:
        raise UsageError(
            f"--scenario-preset {text!r}: no such preset; the presets are {names} "
            "(each may end in :retry=MS)"
        )
    faults, rules = PRESETS[match.group(1)]
    retry = int(match.group(2)) if match.group(2) else DEFAULT_PRESET_RETRY
    return Preset(tuple(fault.format(retry=retry) for fault in faults), rules)
