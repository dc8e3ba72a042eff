"""Scenarios (issue 26): the answer picked by the request, so that a test can have its
client's second request answered otherwise than its first, or a body pick its own file.

A scenario is a list of rules (a JSON or TOML file, or the same structure as a dict),
tried in order::

    {"routes": [{"method": "POST", "path": "/chat",
                 "when": {"body.kind": "x", "header.x-mode": "~^fast", "query.user": "7"},
                 "play": ["a.jsonl", "b.jsonl"], "then": "repeat-last", "interval": 0}]}

``when`` names request fields by the dotted paths of ``--data-field`` after ``body.``
(``body.messages.-1.role``: ``-1`` is a list's last item), or ``header.NAME`` and
``query.NAME``. A plain value is compared as JSON; a text starting with ``~`` is a
regular expression searched in the field's text; one starting with ``=`` is compared as
the text after it. The nth request a rule matches gets the nth file of ``play``, then
``then``: the last file again (``repeat-last``, the default), or a 404 or a 503. Counts
are kept per scenario key (``Sseplay-Scenario`` header or ``?scenario=``): parallel tests
do not share them.

Pure: ``Scenario.match``, ``Rule.pick`` and ``Counters`` decide. ``sseplay.scenario_file``
checks a structure into these frozen rules and loads what they play.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from sseplay.config import StreamKeywords
from sseplay.exchange_model import is_json, json_value, query_pairs
from sseplay.mapping import MISSING, as_text, lookup

if TYPE_CHECKING:
    from sseplay.faults.spec import FaultSpec
    from sseplay.recordings import Recordings
    from sseplay.replay import Replay
    from sseplay.shaped import Turns
    from sseplay.spool import Spools

# What a rule answers once it has played every file: the last one again, or a status.
THEN: dict[str, int | None] = {"repeat-last": None, "404": 404, "503": 503}
# The parts of a request that ``when`` reads: ``body.PATH``, ``header.NAME``, ``query.NAME``.
PARTS = ("body", "header", "query")
# A rule's own keys, beside the options of what it plays.
RULE_KEYS = ("method", "path", "when", "play", "then", "faults")
# The options of an event file (``Stream.from_file``), every one but following a file:
# each request gets its own replay of a file that is read once.
STREAM_KEYS = tuple(k for k in StreamKeywords.__annotations__ if k not in ("follow", "from_end"))
# A rule with ``shape`` plays turns files (``sseplay.shaped.Turns``), with their options.
SHAPE_KEYS = ("shape", "chunk", "ttft", "tps", "jitter", "seed", "ping")
ALL_KEYS = RULE_KEYS + STREAM_KEYS + SHAPE_KEYS
# Where a request names its scenario key: parallel tests count apart.
SCENARIO_HEADER = b"sseplay-scenario"
SCENARIO_QUERY = b"scenario"
# Scenario keys whose counts are kept at most: the least recently used is forgotten
# first (and counts from 1 again), so that clients naming new keys cannot grow memory.
MAX_KEYS = 10_000
# A longer scenario key is counted under its digest.
_LONGEST_KEY = 128
# The rules a 404 lists at most.
_SHOWN = 100


class Pick(NamedTuple):
    """What one matching request gets: a file of ``play`` (and, for a turns file, which
    turn, from 1), or a status."""

    file: int | None
    turn: int
    status: int | None


class ScenarioRequest:
    """A request as the rules read it; its body is decoded (as JSON) once, when asked."""

    __slots__ = ("_json", "_query", "body", "headers", "method", "path", "query")

    def __init__(
        self,
        method: str,
        path: str,
        query: str = "",
        headers: Sequence[tuple[bytes, bytes]] = (),
        body: bytes = b"",
    ) -> None:
        self.method = method.upper()
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self._json: Any = None
        self._query: list[tuple[str, str]] | None = None

    @property
    def json(self) -> Any:
        """The decoded body, or ``MISSING`` when it is not JSON."""
        if self._json is None:
            value = json_value(self.body)
            self._json = value if is_json(value) else MISSING
        return self._json

    def value(self, part: str, name: str) -> Any:
        """The field ``name`` of ``part``, or ``MISSING``: a header's or a parameter's
        first value as text, a JSON value of the body (``name`` "" for all of it)."""
        if part == "header":
            wanted = name.lower().encode("latin-1", "replace")
            for key, raw in self.headers:
                if bytes(key).lower() == wanted:
                    return bytes(raw).decode("utf-8", "replace")
            return MISSING
        if part == "query":
            if self._query is None:
                self._query = query_pairs(self.query)
            return next((value for key, value in self._query if key == name), MISSING)
        body = self.json
        if body is MISSING or not name:
            return body
        return lookup(body, name)


def json_equal(left: Any, right: Any) -> bool:
    """Equal as JSON values: ``1 == 1.0``, but ``true`` is not ``1``."""
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    if isinstance(left, int | float) and isinstance(right, int | float):
        return left == right
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(json_equal(left[k], right[k]) for k in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(json_equal, left, right))
    return type(left) is type(right) and left == right


def _shown(value: Any) -> str:
    text = orjson.dumps(value).decode() if isinstance(value, dict | list) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True, slots=True)
class Condition:
    """One entry of ``when``: ``key`` as written (``body.kind``), and what it expects."""

    key: str
    part: str
    name: str
    expected: Any
    pattern: re.Pattern[str] | None = None

    def differs(self, request: ScenarioRequest) -> str | None:
        """How the request differs from it (``body.kind: 'y' != 'x'``), or None."""
        value = request.value(self.part, self.name)
        if value is MISSING:
            not_json = self.part == "body" and request.json is MISSING
            return f"{self.key}: missing" + (" (the body is not JSON)" if not_json else "")
        if self.pattern is not None:
            try:
                text = as_text(value)
            except ValueError:  # nested too deep to be written back as text
                return f"{self.key}: too deep to match ~{self.pattern.pattern}"
            if self.pattern.search(text):
                return None
            return f"{self.key}: {_shown(text)} does not match ~{self.pattern.pattern}"
        if self.part != "body" and not isinstance(self.expected, str):
            # A header or a parameter is text: 7 expects the text 7, as JSON.
            decoded = json_value(value.encode())
            value = decoded if is_json(decoded) else value
        if json_equal(value, self.expected):
            return None
        return f"{self.key}: {_shown(value)} != {_shown(self.expected)}"


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule of a scenario, checked; ``where`` names it in errors and logs."""

    index: int
    where: str
    method: str | None  # None: any method
    path: str
    when: tuple[Condition, ...]
    play: tuple[Path, ...]
    then: int | None  # a status; None: the last file again
    options: tuple[tuple[str, Any], ...]  # of what it plays (stream or turns options)
    shape: str | None
    faults: tuple[FaultSpec, ...] = ()

    @property
    def shown(self) -> str:
        return f"{self.method or '*'} {self.path}"

    def differs(self, request: ScenarioRequest) -> str | None:
        """The first part of the request that this rule does not accept, or None."""
        if request.path != self.path:
            return f"path: {request.path!r} != {self.path!r}"
        if self.method is not None and request.method != self.method:
            return f"method: {request.method!r} != {self.method!r}"
        for condition in self.when:
            found = condition.differs(request)
            if found:
                return found
        return None

    def pick(self, number: int) -> Pick:
        """What the ``number``th request (from 1) this rule matched gets. The last file,
        repeated, plays a turns file's turns in order (then its last one again)."""
        count = len(self.play)
        if number <= count:
            return Pick(number - 1, 1, None)
        if self.then is not None:
            return Pick(None, 0, self.then)
        return Pick(count - 1, number - count + 1, None)


@dataclass(frozen=True, slots=True)
class Scenario:
    """Rules tried in order, and what each one plays (``load_scenario`` loads it)."""

    label: str
    rules: tuple[Rule, ...]
    # Per rule, per file of its ``play``: an event file's replay, a turns file, or a
    # recording of an exchange (``sseplay record``).
    answers: tuple[tuple[Replay | Turns | Recordings, ...], ...] = ()
    # The temporary copies replays are read from (a .gz decompressed), removed with it.
    spools: Spools | None = field(default=None, compare=False)

    @property
    def paths(self) -> tuple[str, ...]:
        """The paths the rules answer, each once, in the order first named."""
        return tuple(dict.fromkeys(rule.path for rule in self.rules))

    @property
    def faulty(self) -> bool:
        return any(rule.faults for rule in self.rules)

    def match(self, request: ScenarioRequest) -> Rule | None:
        """The first rule that accepts the request."""
        return next((rule for rule in self.rules if rule.differs(request) is None), None)

    def explain(self, request: ScenarioRequest) -> dict[str, Any]:
        """The body of the 404 of a request no rule matches: each rule of its path, and
        what differed."""
        tried = [rule for rule in self.rules if rule.path == request.path] or self.rules
        return {
            "error": f"no scenario rule matches {request.method} {request.path}",
            "scenario": self.label,
            "rules": [
                {"rule": rule.index, "route": rule.shown, "differs": rule.differs(request)}
                for rule in tried[:_SHOWN]
            ],
        }

    def listing(self) -> dict[str, Any]:
        """What ``/healthz`` tells of it."""
        return {
            "file": self.label,
            "rules": [
                {
                    "rule": rule.index,
                    "route": rule.shown,
                    "play": [path.name for path in rule.play],
                    "then": "repeat-last" if rule.then is None else str(rule.then),
                }
                for rule in self.rules
            ],
        }


class Counters:
    """How many requests each rule has matched, per scenario key: at most ``limit``
    keys, the least recently used forgotten first."""

    def __init__(self, limit: int = MAX_KEYS) -> None:
        self.limit = limit
        self._counts: OrderedDict[str, dict[int, int]] = OrderedDict()

    def next(self, key: str, rule: int) -> int:
        """Count one more request of ``rule`` under ``key``: its number, from 1."""
        if len(key) > _LONGEST_KEY:  # kept as its digest: memory stays bounded
            key = "sha256:" + hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()
        counts = self._counts.get(key)
        if counts is None:
            counts = self._counts[key] = {}
            if len(self._counts) > self.limit:
                self._counts.popitem(last=False)
        else:
            self._counts.move_to_end(key)
        number = counts[rule] = counts.get(rule, 0) + 1
        return number

    def clear(self) -> None:
        self._counts.clear()

    def __len__(self) -> int:
        return len(self._counts)
