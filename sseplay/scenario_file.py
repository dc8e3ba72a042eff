"""A scenario's file and structure, checked into ``sseplay.scenario`` rules: one line per
mistake, naming the rule (its index, method and path) and the field; then every file its
rules play loaded, so that nothing fails at the first request that reaches it."""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sseplay.config import StreamOptions, route_problem
from sseplay.errors import InputError, UsageError
from sseplay.eventfile import load_event_file
from sseplay.recordings import Recordings, is_recordings_source
from sseplay.replay import Replay
from sseplay.scenario import (
    ALL_KEYS,
    PARTS,
    RULE_KEYS,
    SHAPE_KEYS,
    THEN,
    Condition,
    Rule,
    Scenario,
)
from sseplay.schedule import Plan
from sseplay.spool import Spools

if TYPE_CHECKING:
    from sseplay.faults.spec import FaultSpec
    from sseplay.shaped import Turns

# A scenario file is a few rules; a bigger one is not a scenario.
MAX_FILE = 1 << 20


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
    spools = Spools()
    try:
        answers = tuple(_answers(rule, spools) for rule in rules)
    except BaseException:
        spools.close()
        raise
    return Scenario(label, rules, answers, spools)


def _replay(path: Path, options: Mapping[str, Any], spools: Spools) -> Replay:
    """An event file's replay with a rule's stream options (as ``Stream.from_file``)."""
    stream_options = StreamOptions.of(**options)
    location = spools.prepare(str(path), str(path))
    event_file = load_event_file(str(path), location, stream_options.mapping)
    plan = Plan(event_file.count, event_file.times, stream_options.timing)
    return Replay(event_file, plan, stream_options.retry, no_ids=stream_options.no_ids)


# What a recording of an exchange (``sseplay record``) takes of a rule's options: its
# timing. It is played as it was recorded, so any other option would do nothing.
RECORDING_KEYS = ("speed", "max_gap", "interval")


def _recording(path: Path, options: Mapping[str, Any]) -> Recordings:
    for key in options:
        if key not in RECORDING_KEYS:
            raise UsageError(
                f"{path} is a recording (sseplay record), played as it was recorded: "
                f"drop {key} from the rule, or play it in a rule of its own"
            )
    return Recordings(path, **options)


def _answers(rule: Rule, spools: Spools) -> tuple[Replay | Turns | Recordings, ...]:
    from sseplay.shaped import Turns

    answers: list[Replay | Turns | Recordings] = []
    options = dict(rule.options)
    for index, path in enumerate(rule.play):
        at = f"{rule.where}: play[{index}]"
        if not path.is_file():
            raise UsageError(f"{at}: no file {path} (play files are found beside the scenario)")
        try:
            if rule.shape is not None:
                answers.append(Turns(path, shape=rule.shape, route=rule.path, **options))
            elif is_recordings_source(path):
                answers.append(_recording(path, options))
            else:
                answers.append(_replay(path, options, spools))
        except UsageError as error:
            raise UsageError(f"{at}: {error}") from None
        except InputError as error:
            raise InputError(at, str(error)) from None
    return tuple(answers)
