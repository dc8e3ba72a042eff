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

Pure: ``parse_scenario`` checks a structure into frozen rules, ``Scenario.match`` and
``Counters`` decide; ``load_scenario`` reads the file and loads what the rules play.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import tomllib
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from sseplay.config import StreamKeywords, StreamOptions, route_problem
from sseplay.errors import InputError, UsageError
from sseplay.exchange_model import is_json, json_value, query_pairs
from sseplay.mapping import MISSING, as_text, lookup

if TYPE_CHECKING:
    from sseplay.faults.spec import FaultSpec
    from sseplay.shaped import Turns
    from sseplay.stream import Stream

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
# A scenario file is a few rules; a bigger one is not a scenario.
MAX_FILE = 1 << 20
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
    # Per rule, per file of its ``play``: an event file's stream, or a turns file.
    answers: tuple[tuple[Stream | Turns, ...], ...] = ()

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


# Parsing and checking: one line naming the rule and the field for anything wrong.


def _unknown(where: str, key: object, known: Sequence[str]) -> UsageError:
    close = difflib.get_close_matches(str(key), known, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"the keys are {', '.join(known)}"
    return UsageError(f"{where}: unknown key {key!r}: {hint}")


def _json_only(value: Any) -> bool:
    """Whether ``value`` is made of JSON values only (TOML has dates too)."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and _json_only(v) for k, v in value.items())
    if isinstance(value, list):
        return all(map(_json_only, value))
    return value is None or isinstance(value, str | int | float | bool)


def _condition(where: str, key: Any, expected: Any) -> Condition:
    if not isinstance(key, str):
        raise UsageError(f"{where}: when: {key!r} must be a text like body.kind")
    at = f"{where}: when.{key}"
    part, _, name = key.partition(".")
    if part not in PARTS or (not name and part != "body"):
        raise UsageError(
            f"{at}: name a request field: body.PATH (dotted, as --data-field), "
            "header.NAME or query.NAME"
        )
    if not _json_only(expected):
        raise UsageError(f"{at}: {expected!r} is not a JSON value: quote it")
    if isinstance(expected, str) and expected.startswith("~"):
        try:
            return Condition(key, part, name, expected, re.compile(expected[1:]))
        except re.error as error:
            raise UsageError(
                f"{at}: bad regular expression {expected[1:]!r} ({error}); "
                "a text starting with ~ is a regular expression, =~ for the text ~..."
            ) from None
    if isinstance(expected, str) and expected.startswith("="):
        expected = expected[1:]
    return Condition(key, part, name, expected)


def _play(where: str, value: Any, base: Path) -> tuple[Path, ...]:
    files = [value] if isinstance(value, str) else value
    if not isinstance(files, list) or not files:
        raise UsageError(f'{where}: play: list the files it plays, like "play": ["a.jsonl"]')
    for index, name in enumerate(files):
        if not isinstance(name, str) or not name:
            raise UsageError(f"{where}: play[{index}]: {name!r} must name a file")
    return tuple(base / name for name in files)


def _then(where: str, value: Any) -> int | None:
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str) or text not in THEN:
        choices = ", ".join(f'"{name}"' for name in THEN)
        raise UsageError(f"{where}: then: {value!r} is not one of {choices}")
    return THEN[text]


def _faults(where: str, value: Any) -> tuple[FaultSpec, ...]:
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not all(isinstance(text, str) for text in texts):
        raise UsageError(f'{where}: faults: write fault texts, like ["drop:after=2"]')
    from sseplay.faults.spec import parse_faults

    try:
        return parse_faults(texts)
    except UsageError as error:
        raise UsageError(f"{where}: faults: {error}") from None


def _options(where: str, rule: Mapping[str, Any]) -> tuple[str | None, tuple[tuple[str, Any], ...]]:
    """The rule's shape (or None) and the options of what it plays, checked."""
    shape = rule.get("shape")
    options = {k: v for k, v in rule.items() if k not in RULE_KEYS and k != "shape"}
    if shape is None:
        for key in options:
            if key in SHAPE_KEYS:
                raise UsageError(f"{where}: {key} applies to turns files: add shape")
        try:
            StreamOptions.of(**options)
        except UsageError as error:
            raise UsageError(f"{where}: {error}") from None
        return None, tuple(options.items())
    from sseplay.shaped import shape_named

    try:
        shape_named(shape if isinstance(shape, str) else repr(shape))
    except UsageError as error:
        raise UsageError(f"{where}: shape: {error}") from None
    for key in options:
        if key not in SHAPE_KEYS:
            raise UsageError(
                f"{where}: {key} applies to event files, and a rule with shape plays turns "
                "files: use ttft, tps, chunk, jitter"
            )
    return shape, tuple(options.items())


def _rule(index: int, value: Any, label: str, base: Path) -> Rule:
    where = f"{label}: routes[{index}]"
    if not isinstance(value, Mapping):
        raise UsageError(f"{where}: a rule is an object with path, play and perhaps when")
    for key in value:
        if key not in ALL_KEYS:
            raise _unknown(where, key, ALL_KEYS)
    path = value.get("path")
    if not isinstance(path, str):
        raise UsageError(f'{where}: path: name the path it answers, like "path": "/chat"')
    if problem := route_problem(path):
        raise UsageError(f"{where}: path: {problem}")
    if path == "/_sseplay" or path.startswith("/_sseplay/"):
        raise UsageError(f"{where}: path: /_sseplay/ is sseplay's control API: choose another")
    method = value.get("method")
    if method is not None:
        if not isinstance(method, str) or not re.match(r"^[A-Za-z]+$", method):
            raise UsageError(f"{where}: method: {method!r} is not an HTTP method, like POST")
        method = method.upper()
    where = f"{where} ({method or '*'} {path})"
    when = value.get("when", {})
    if not isinstance(when, Mapping):
        raise UsageError(f'{where}: when: write an object, like {{"body.kind": "x"}}')
    if "play" not in value:
        raise UsageError(f'{where}: play: list the files it plays, like "play": ["a.jsonl"]')
    shape, options = _options(where, value)
    return Rule(
        index=index,
        where=where,
        method=method,
        path=path,
        when=tuple(_condition(where, key, expected) for key, expected in when.items()),
        play=_play(where, value["play"], base),
        then=_then(where, value.get("then", "repeat-last")),
        options=options,
        shape=shape,
        faults=_faults(where, value["faults"]) if "faults" in value else (),
    )


def parse_scenario(value: Any, label: str = "scenario", base: Path = Path()) -> tuple[Rule, ...]:
    """The rules of a scenario, checked; ``play`` files are resolved against ``base``."""
    if not isinstance(value, Mapping) or not isinstance(value.get("routes"), list):
        raise UsageError(f'{label}: a scenario is {{"routes": [RULE, ...]}}')
    for key in value:
        if key != "routes":
            raise _unknown(label, key, ["routes"])
    if not value["routes"]:
        raise UsageError(f"{label}: routes: list at least one rule")
    return tuple(_rule(index, rule, label, base) for index, rule in enumerate(value["routes"]))


def read_scenario_file(path: Path) -> Any:
    """The structure of a scenario file: TOML for ``.toml``, else JSON."""
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_FILE + 1)
    except OSError as error:
        raise UsageError(f"{path}: cannot read the scenario ({error.strerror})") from None
    if len(raw) > MAX_FILE:
        raise UsageError(f"{path}: a scenario is at most {MAX_FILE >> 20} MiB of rules")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text: write the scenario as JSON or TOML") from None
    if path.suffix.lower() == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise UsageError(f"{path}: not TOML: {error}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise UsageError(
            f"{path}:{error.lineno}: not JSON ({error.msg}); name a .toml file for TOML"
        ) from None


def load_scenario(source: Scenario | str | os.PathLike[str] | Mapping[str, Any]) -> Scenario:
    """A scenario from its file (JSON, or TOML for ``.toml``; ``play`` files beside it)
    or from a dict (``play`` files from the current directory), every file it plays
    loaded and checked."""
    if isinstance(source, Scenario):
        return source
    if isinstance(source, Mapping):
        label, base, value = "scenario", Path(), source
    elif isinstance(source, str | os.PathLike):
        path = Path(source)
        label, base, value = str(path), path.parent, read_scenario_file(path)
    else:
        raise UsageError(
            f"scenario= takes a file (JSON or TOML) or a dict, not {type(source).__name__}"
        )
    rules = parse_scenario(value, label, base)
    return Scenario(label, rules, tuple(_answers(rule) for rule in rules))


def _answers(rule: Rule) -> tuple[Stream | Turns, ...]:
    from sseplay.shaped import Turns
    from sseplay.stream import Stream

    answers: list[Stream | Turns] = []
    options = dict(rule.options)
    for index, path in enumerate(rule.play):
        at = f"{rule.where}: play[{index}]"
        if not path.is_file():
            raise UsageError(f"{at}: no file {path} (play files are found beside the scenario)")
        try:
            if rule.shape is not None:
                answers.append(Turns(path, shape=rule.shape, route=rule.path, **options))
            else:
                answers.append(Stream.from_file(path, **options))
        except UsageError as error:
            raise UsageError(f"{at}: {error}") from None
        except InputError as error:
            raise InputError(at, str(error)) from None
    return tuple(answers)
