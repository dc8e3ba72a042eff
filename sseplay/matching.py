"""Which recording answers a request (``sseplay serve DIR``, issue 24). Pure: no I/O.

A request matches a recording by method, path, query (its parameters sorted, the redacted
ones left out: the recording holds ``***`` where the request holds the secret) and body;
a JSON body is compared as JSON (key order and spacing do not matter) without the
``--match-ignore`` paths (dotted; ``*`` is any one key or index: ``user``,
``metadata.*``, ``messages.*.id``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import orjson

from sseplay.exchange import Exchange
from sseplay.exchange_model import is_json, json_value, query_pairs
from sseplay.redaction import REDACTED, SECRET_QUERY

_EXCERPT = 80  # characters of a recorded body shown in the 404
_SHOWN = 100  # recordings listed in the 404 at most


class MatchKey(NamedTuple):
    """A request, normalised for matching."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...]  # sorted, the redacted names left out
    body: bytes  # canonical JSON (sorted keys, compact), else the raw bytes
    is_json: bool


def _pruned(value: Any, parts: Sequence[str]) -> Any:
    """``value`` without what the dotted path ``parts`` names (a copy where it changes)."""
    if not parts:
        return value
    head, rest = parts[0], parts[1:]
    if isinstance(value, dict):
        chosen = value.keys() if head == "*" else [head] if head in value else []
        if not chosen:
            return value
        copy = dict(value)
        for key in list(chosen):
            if rest:
                copy[key] = _pruned(copy[key], rest)
            else:
                del copy[key]
        return copy
    if isinstance(value, list):
        if head == "*":
            indexes = set(range(len(value)))
        elif head.isdigit() and int(head) < len(value):
            indexes = {int(head)}
        else:
            return value
        if not rest:
            return [item for index, item in enumerate(value) if index not in indexes]
        return [_pruned(item, rest) if i in indexes else item for i, item in enumerate(value)]
    return value


def _without(value: Any, ignore: Sequence[str]) -> Any:
    for path in ignore:
        value = _pruned(value, path.split("."))
    return value


def _query(query: str, redacted: frozenset[str]) -> tuple[tuple[str, str], ...]:
    pairs = query_pairs(query)
    return tuple(sorted((n, v) for n, v in pairs if n.strip().lower() not in redacted))


def match_key(
    method: str,
    path: str,
    query: str,
    body: bytes,
    ignore: Sequence[str] = (),
    redacted: Iterable[str] = (),
) -> MatchKey:
    """The key of a request: ``ignore`` holds dotted paths (``*`` is any one key or
    index) left out of a JSON body; ``redacted`` adds query names (any case) to leave
    out to the default secret ones."""
    names = SECRET_QUERY | {name.strip().lower() for name in redacted}
    value = json_value(body)
    if not is_json(value):
        return MatchKey(method.upper(), path, _query(query, names), body, False)
    canonical = orjson.dumps(_without(value, ignore), option=orjson.OPT_SORT_KEYS)
    return MatchKey(method.upper(), path, _query(query, names), canonical, True)


def _shown(value: Any) -> str:
    text = repr(value) if not isinstance(value, dict | list) else orjson.dumps(value).decode()
    return text if len(text) <= 60 else text[:57] + "..."


_MISSING: Any = object()


def _json_difference(request: Any, recorded: Any, where: str) -> str | None:
    """Where two JSON values first differ, as ``messages.0.content: 'hi' != 'hello'``
    (this request's value first), or None when they are equal."""
    if type(request) is type(recorded) and isinstance(request, dict):
        for key in sorted(request.keys() | recorded.keys()):
            found = _json_difference(
                request.get(key, _MISSING), recorded.get(key, _MISSING), f"{where}.{key}"
            )
            if found:
                return found
        return None
    if type(request) is type(recorded) and isinstance(request, list):
        for index in range(max(len(request), len(recorded))):
            found = _json_difference(
                request[index] if index < len(request) else _MISSING,
                recorded[index] if index < len(recorded) else _MISSING,
                f"{where}.{index}",
            )
            if found:
                return found
        return None
    if type(request) is type(recorded) and request == recorded:
        return None
    mine = "missing" if request is _MISSING else _shown(request)
    theirs = "missing" if recorded is _MISSING else _shown(recorded)
    return f"{where.lstrip('.') or '(the whole body)'}: {mine} != {theirs}"


def _difference(request: MatchKey, recorded: MatchKey) -> str | None:
    """The first part in which a request differs from a recording: method, path, query,
    or body (a JSON path in it), this request's side first; None when they match."""
    if request.method != recorded.method:
        return f"method: {request.method!r} != {recorded.method!r}"
    if request.path != recorded.path:
        return f"path: {request.path!r} != {recorded.path!r}"
    if request.query != recorded.query:
        mine, theirs = dict(request.query), dict(recorded.query)
        for name in sorted(mine.keys() | theirs.keys()):
            if mine.get(name) != theirs.get(name):
                left = "missing" if name not in mine else repr(mine[name])
                right = "missing" if name not in theirs else repr(theirs[name])
                return f"query: {name}: {left} != {right}"
        return "query: the order of repeated parameters"
    if request.body == recorded.body:
        return None
    if request.is_json and recorded.is_json:
        found = _json_difference(orjson.loads(request.body), orjson.loads(recorded.body), "")
        return f"body: {found}"
    if request.is_json != recorded.is_json:
        kind = "JSON" if request.is_json else "not JSON"
        return f"body: this request's is {kind}, the recorded one is not"
    same = next(
        (i for i, (a, b) in enumerate(zip(request.body, recorded.body, strict=False)) if a != b),
        min(len(request.body), len(recorded.body)),
    )
    return f"body: differs from byte {same} on ({len(request.body)} != {len(recorded.body)} bytes)"


def _closeness(request: MatchKey, recorded: MatchKey) -> tuple[int, ...]:
    return (
        request.method == recorded.method and request.path == recorded.path,
        request.path == recorded.path,
        request.method == recorded.method,
        request.query == recorded.query,
        request.body == recorded.body,
        request.is_json == recorded.is_json,
    )


class Matcher:
    """Finds the recording for a request; the nth request with one key gets the nth
    recording with it (in the order given: file name order), then the last one again."""

    def __init__(self, exchanges: Sequence[Exchange], ignore: Sequence[str] = ()) -> None:
        self.ignore = tuple(ignore)
        self._exchanges: list[Exchange] = []
        self._keys: list[MatchKey] = []
        self._by_key: defaultdict[MatchKey, list[Exchange]] = defaultdict(list)
        self._served: defaultdict[MatchKey, int] = defaultdict(int)
        # A query name the proxy redacted (--redact NAME) holds *** in the recording and
        # the secret in the request: it is left out of the keys on both sides.
        self._redacted = {
            name.strip().lower()
            for exchange in exchanges
            for name, value in query_pairs(exchange.request.query)
            if value == REDACTED
        }
        self._exchanges.extend(exchanges)
        self._rekey()

    def add(self, exchange: Exchange) -> None:
        """One more recording (``--record-missing``), after those there are."""
        self._redacted |= {
            name.strip().lower()
            for name, value in query_pairs(exchange.request.query)
            if value == REDACTED
        }
        self._exchanges.append(exchange)
        self._rekey()

    def _rekey(self) -> None:
        self._keys = [self._key_of(exchange) for exchange in self._exchanges]
        self._by_key.clear()
        for key, exchange in zip(self._keys, self._exchanges, strict=True):
            self._by_key[key].append(exchange)

    def _key_of(self, exchange: Exchange) -> MatchKey:
        request = exchange.request
        return self.key(request.method, request.path, request.query, request.body)

    def key(self, method: str, path: str, query: str, body: bytes) -> MatchKey:
        return match_key(method, path, query, body, self.ignore, self._redacted)

    def find(self, method: str, path: str, query: str, body: bytes) -> Exchange | None:
        key = self.key(method, path, query, body)
        found = self._by_key.get(key)
        if not found:
            return None
        turn = self._served[key]
        self._served[key] = turn + 1
        return found[min(turn, len(found) - 1)]

    def explain(self, method: str, path: str, query: str, body: bytes) -> dict[str, Any]:
        """The body of the 404: what was recorded, the closest recording, what differs."""
        key = self.key(method, path, query, body)
        answer: dict[str, Any] = {
            "error": f"no recording matches {method.upper()} {path}",
            "recorded": [
                {
                    "method": exchange.request.method,
                    "path": exchange.request.path,
                    "body": exchange.request.body.decode("utf-8", "replace")[:_EXCERPT],
                }
                for exchange in self._exchanges[:_SHOWN]
            ],
        }
        if not self._exchanges:
            answer["differs"] = "nothing is recorded"
            return answer
        best = max(range(len(self._keys)), key=lambda i: _closeness(key, self._keys[i]))
        closest = self._exchanges[best]
        answer["closest"] = closest.path.name if closest.path else "(not from a file)"
        answer["differs"] = _difference(key, self._keys[best]) or "nothing: it matches"
        return answer
