"""Which recording answers a request (``sseplay serve DIR``, issue 24). Pure: no I/O.

A request matches a recording by method, path, query (its parameters sorted, the redacted
ones left out) and body; a JSON body is compared as JSON (key order and spacing do not
matter) without the ``--match-ignore`` paths.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from sseplay.exchange import Exchange


class MatchKey(NamedTuple):
    """A request, normalised for matching."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...]  # sorted, the redacted names left out
    body: bytes  # canonical JSON (sorted keys, compact), else the raw bytes
    is_json: bool


def match_key(
    method: str,
    path: str,
    query: str,
    body: bytes,
    ignore: Sequence[str] = (),
    redacted: Iterable[str] = (),
) -> MatchKey:
    """The key of a request: ``ignore`` holds dotted paths (``*`` is any one key or
    index) left out of a JSON body; ``redacted`` adds query names to leave out."""
    raise NotImplementedError


class Matcher:
    """Finds the recording for a request; the nth request with one key gets the nth
    recording with it (in file name order), then the last one again."""

    def __init__(self, exchanges: Sequence[Exchange], ignore: Sequence[str] = ()) -> None:
        raise NotImplementedError

    def find(self, method: str, path: str, query: str, body: bytes) -> Exchange | None:
        raise NotImplementedError

    def explain(self, method: str, path: str, query: str, body: bytes) -> dict[str, Any]:
        """The body of the 404: what was recorded, the closest recording, what differs."""
        raise NotImplementedError
