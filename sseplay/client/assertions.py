"""tail as a CI assertion: ``--expect`` (a golden stream) and ``--schema``.

Plain objects that ``sseplay tail`` and the library share: ``ExpectedStream`` and
``SchemaSet`` are checked when the options are built and never change; ``Expectation``
(where a run is in the expected stream) is made per run by
``reconnect.reconnecting_stream`` (``--stats`` is sseplay.client.stats). Nothing here
does network I/O; jsonschema is imported only when a schema is given, so a plain tail
never pays for it.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

from sseplay.errors import InputError, Invalid, Mismatch, UsageError
from sseplay.exchange_model import is_exchange_header
from sseplay.model import DEFAULT_EVENT_TYPE, Event, visible
from sseplay.recording import is_header
from sseplay.records import iter_lines

SHOWN_CHARACTERS = 80  # of a value in a report, so that one line stays readable
WILDCARD = "*"

ExpectInput: TypeAlias = "str | os.PathLike[str] | Sequence[Event | Mapping[str, Any]]"
SchemaInput: TypeAlias = "str | os.PathLike[str] | Mapping[str, Any] | tuple[str, Any]"


# ---------------------------------------------------------------------------
# Reading expected events


def _event_of(item: Any) -> Event:
    """An expected event from a recording envelope ({"event", "id", "data"}) or a line of
    ``tail --format json`` ({"type", "id", "data"}); other keys (time, offset) are ignored."""
    if isinstance(item, Event):
        return item
    if not isinstance(item, Mapping):
        raise ValueError(f"an expected event must be an object, not {_shown(item)}")
    data = item.get("data")
    if not isinstance(data, str):
        raise ValueError('an expected event needs "data", a string')
    event_type = item.get("type", item.get("event", DEFAULT_EVENT_TYPE))
    event_id = item.get("id")
    if not isinstance(event_type, str) or not event_type:
        raise ValueError(f"the event type must be a non-empty string, not {_shown(event_type)}")
    if event_id is not None and not isinstance(event_id, str):
        raise ValueError(f"the id must be a string or null, not {_shown(event_id)}")
    return Event(data, event_type, event_id)


def read_expected(path: str | os.PathLike[str]) -> tuple[Event, ...]:
    """The events of an ``--expect`` file: a recording (``tail --record``), a JSON array
    or JSON Lines of events as ``tail --format json`` prints them."""
    where = f"--expect {path}"
    try:
        raw = Path(path).read_bytes()
        text = raw.decode("utf-8-sig")
    except OSError as error:
        raise InputError(where, f"cannot read it: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise InputError(where, f"not UTF-8 text ({error.reason} at byte {error.start})") from None
    items: list[tuple[str, Any]] = []  # (where in the file, decoded value)
    if text.lstrip().startswith("["):
        try:
            array = json.loads(text)
        except ValueError as error:
            raise InputError(where, f"invalid JSON: {error}") from None
        items = [(f"{where}: event {n}", item) for n, item in enumerate(array, 1)]
    else:
        # JSON Lines split as every reader of sseplay splits them: at LF only. Data may
        # hold U+0085, U+2028 or \x1c raw (tail --format json writes them so), which
        # str.splitlines() would take for line ends.
        lines = iter_lines(io.BytesIO(raw), max_record=len(raw))
        for _, number, line in lines:
            try:
                items.append((f"{where}: line {number}", json.loads(line)))
            except ValueError as error:
                raise InputError(f"{where}: line {number}", f"invalid JSON: {error}") from None
    if items and is_exchange_header(items[0][1]):
        return _recorded_events(Path(path), where)
    if items and is_header(items[0][1]):
        items = items[1:]
    events = []
    for at, item in items:
        try:
            events.append(_event_of(item))
        except ValueError as error:
            raise InputError(at, str(error)) from None
    if not events:
        raise InputError(where, "it holds no events: record one with 'sseplay tail --record'")
    return tuple(events)


def _recorded_events(path: Path, where: str) -> tuple[Event, ...]:
    """The events of a version 2 recording (``tail --record``, ``sseplay record``): its
    blocks parsed as a client parses the stream (WHATWG HTML 9.2.6), each with the last
    event ID in effect, as tail prints them. An unterminated last block is no event."""
    from sseplay.exchange import read_exchange
    from sseplay.parser import EventStreamParser

    exchange = read_exchange(path)
    parser = EventStreamParser(max_event_size=1 << 62)
    events: list[Event] = []
    for block in exchange.blocks:
        events.extend(parser.feed(block.raw))
    if not events:
        raise InputError(where, "it holds no events: record one with 'sseplay tail --record'")
    return tuple(events)


# ---------------------------------------------------------------------------
# Comparing


def parse_ignore(path: str) -> tuple[str, ...]:
    """``choices.*.delta.id`` -> its segments; ``*`` stands for any key or index."""
    if not isinstance(path, str) or not path:
        raise UsageError(f"--ignore: {path!r} is not a path: write it like created or a.*.b")
    segments = tuple(path.split("."))
    if "" in segments:
        raise UsageError(f"--ignore {path}: empty segment; write it like choices.*.delta.id")
    return segments


def dotted(path: Iterable[str | int]) -> str:
    """A path inside the data as ``--ignore`` takes it (``choices.0.delta``)."""
    return ".".join(str(part) for part in path)


def _shown(value: Any) -> str:
    """A JSON value for a one-line report: compact, shortened, control characters escaped."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    if len(text) > SHOWN_CHARACTERS:
        text = text[: SHOWN_CHARACTERS - 3] + "..."
    return visible(text)


_ABSENT: Any = object()


@dataclass(frozen=True, slots=True)
class Difference:
    """The first differing value: where it is in the data, and the two sides."""

    path: tuple[str, ...]
    expected: Any  # _ABSENT: the actual data has a value the expected one lacks
    actual: Any  # _ABSENT: the value is missing

    def describe(self) -> str:
        where = f"data at {dotted(self.path)}" if self.path else "data"
        if self.actual is _ABSENT:
            return f"{where}: missing, expected {_shown(self.expected)}"
        if self.expected is _ABSENT:
            return f"{where}: unexpected value {_shown(self.actual)}"
        return f"{where}: expected {_shown(self.expected)}, got {_shown(self.actual)}"


def _ignored(path: tuple[str, ...], ignore: tuple[tuple[str, ...], ...]) -> bool:
    return any(
        len(pattern) == len(path)
        and all(want in (WILDCARD, have) for want, have in zip(pattern, path, strict=True))
        for pattern in ignore
    )


def _same_value(expected: Any, actual: Any) -> bool:
    """JSON equality of two scalars: ``1`` equals ``1.0`` (one JSON number), ``true`` is not
    ``1`` (which Python's ``True == 1`` would say)."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(expected) is type(actual) and expected == actual
    numbers = (int, float)
    if isinstance(expected, numbers) and isinstance(actual, numbers):
        both_nan = isinstance(expected, float) and isinstance(actual, float)
        return expected == actual or (both_nan and math.isnan(expected) and math.isnan(actual))
    return type(expected) is type(actual) and bool(expected == actual)


def first_difference(
    expected: Any,
    actual: Any,
    ignore: tuple[tuple[str, ...], ...] = (),
    path: tuple[str, ...] = (),
) -> Difference | None:
    """The first value where two decoded JSON documents differ, in the expected
    document's order, leaving out the paths in ``ignore`` (and all below them)."""
    if ignore and path and _ignored(path, ignore):
        return None
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key, value in expected.items():
            here = (*path, key)
            if key not in actual:
                if not (ignore and _ignored(here, ignore)):
                    return Difference(here, value, _ABSENT)
                continue
            found = first_difference(value, actual[key], ignore, here)
            if found is not None:
                return found
        for key, value in actual.items():
            here = (*path, key)
            if key not in expected and not (ignore and _ignored(here, ignore)):
                return Difference(here, _ABSENT, value)
        return None
    if isinstance(expected, list) and isinstance(actual, list):
        for index, (want, have) in enumerate(zip(expected, actual, strict=False)):
            found = first_difference(want, have, ignore, (*path, str(index)))
            if found is not None:
                return found
        shorter = min(len(expected), len(actual))
        for index in range(shorter, max(len(expected), len(actual))):
            here = (*path, str(index))
            if not (ignore and _ignored(here, ignore)):
                want = expected[index] if index < len(expected) else _ABSENT
                have = actual[index] if index < len(actual) else _ABSENT
                return Difference(here, want, have)
        return None
    if isinstance(expected, dict | list) or isinstance(actual, dict | list):
        return Difference(path, expected, actual)
    return None if _same_value(expected, actual) else Difference(path, expected, actual)


def _as_json(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return _ABSENT


def data_difference(
    expected: str, actual: str, ignore: tuple[tuple[str, ...], ...] = ()
) -> str | None:
    """What differs between two events' data, or None: as JSON when both sides parse (key
    order and spacing do not matter), as text otherwise."""
    if expected == actual:
        return None
    want, have = _as_json(expected), _as_json(actual)
    if want is not _ABSENT and have is not _ABSENT:
        found = first_difference(want, have, ignore)
        return None if found is None else found.describe()
    at = next(
        (n for n, (a, b) in enumerate(zip(expected, actual, strict=False)) if a != b),
        min(len(expected), len(actual)),
    )
    start = max(at - 20, 0)
    return (
        f"data (text) differs at character {at + 1}: expected {_shown(expected[start:])}, "
        f"got {_shown(actual[start:])}"
    )


def describe_event(number: int, event: Event) -> str:
    shown_id = "none" if event.id is None else repr(visible(event.id))
    return f"event {number} (type {visible(event.event)!r}, id {shown_id})"


@dataclass(frozen=True, slots=True)
class ExpectedStream:
    """``--expect`` with its ``--ignore``, ``--ignore-id`` and ``--exact``, checked."""

    events: tuple[Event, ...]
    source: str  # the file, for messages
    ignore: tuple[tuple[str, ...], ...] = ()
    ignore_id: bool = False
    exact: bool = False

    @classmethod
    def build(
        cls,
        expect: ExpectInput,
        ignore: Iterable[str] = (),
        ignore_id: bool = False,
        exact: bool = False,
        event_types: frozenset[str] = frozenset(),
    ) -> ExpectedStream:
        if isinstance(expect, str | os.PathLike):
            events, source = read_expected(expect), f"--expect {os.fspath(expect)}"
        elif isinstance(expect, Sequence) and not isinstance(expect, bytes):
            try:
                events = tuple(_event_of(item) for item in expect)
            except ValueError as error:
                raise UsageError(f"expect: {error}") from None
            source = "the expected events"
        else:
            raise UsageError(f"expect must be a file or a list of events, not {expect!r}")
        if event_types:  # --event filters the expected stream as it filters the real one
            events = tuple(event for event in events if event.event in event_types)
            if not events:
                raise UsageError(f"{source}: no expected event is of the --event types")
        ignored = (ignore,) if isinstance(ignore, str) else ignore
        patterns = tuple(parse_ignore(path) for path in ignored)
        return cls(events, source, patterns, ignore_id, exact)


class Expectation:
    """One run's place in the expected stream: ``check`` each shown event, ``finish`` at
    the end. Raises ``Mismatch`` at the first difference."""

    def __init__(self, expected: ExpectedStream) -> None:
        self.expected = expected
        self.seen = 0

    @property
    def complete(self) -> bool:
        return self.seen >= len(self.expected.events)

    def check(self, event: Event) -> bool:
        """Compare the next event; True once every expected event has come (and, without
        ``--exact``, the tail can stop)."""
        number = self.seen + 1
        if self.complete:
            raise Mismatch(
                f"{describe_event(number, event)} is one more than the "
                f"{len(self.expected.events)} of {self.expected.source} (--exact): "
                f"data {_shown(event.data)}"
            )
        want = self.expected.events[self.seen]
        self.seen = number
        problem = None
        if want.event != event.event:
            problem = f"type: expected {want.event!r}, got {event.event!r}"
        elif not self.expected.ignore_id and want.id != event.id:
            problem = f"id: expected {want.id!r}, got {event.id!r} (--ignore-id leaves ids out)"
        else:
            problem = data_difference(want.data, event.data, self.expected.ignore)
        if problem is not None:
            raise Mismatch(
                f"{describe_event(number, event)} differs from {self.expected.source}: "
                + visible(problem)
            )
        return self.complete and not self.expected.exact

    def finish(self, why: str) -> None:
        """The tail is ending (``why``): a mismatch unless every expected event came."""
        if self.complete:
            return
        missing = self.expected.events[self.seen]
        raise Mismatch(
            f"{why} after {self.seen} of the {len(self.expected.events)} events of "
            f"{self.expected.source}; the next expected was "
            f"{describe_event(self.seen + 1, missing)} with data {_shown(missing.data)}"
        )


# ---------------------------------------------------------------------------
# Schemas


@dataclass(frozen=True, slots=True)
class _Schema:
    label: str  # the file, for messages
    event_type: str | None  # None: every event
    validator: Any  # a jsonschema Validator


def _load_schema(source: Any, label: str) -> Any:
    if isinstance(source, Mapping):
        return dict(source)
    try:
        return json.loads(Path(source).read_text(encoding="utf-8-sig"))
    except OSError as error:
        raise UsageError(f"{label}: cannot read it: {error.strerror or error}") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise UsageError(f"{label}: not a JSON schema: {error}") from None


def _schema_parts(item: Any) -> tuple[str | None, Any]:
    """(event type or None, schema file or dict) of ``FILE``, ``TYPE=FILE``, a dict, or a
    (type, file-or-dict) pair."""
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
        return item[0], item[1]
    if isinstance(item, str):
        name, equals, path = item.partition("=")
        if equals and name and path and not Path(item).exists():
            return name, path
    return None, item


class SchemaSet:
    """``--schema``: JSON Schemas (draft 2020-12 unless a schema's ``$schema`` names
    another draft) for every event's data, or for one event type's."""

    def __init__(self, items: Iterable[SchemaInput]) -> None:
        import jsonschema  # type: ignore[import-untyped]  # only here: it imports for ~0.2 s

        schemas: list[_Schema] = []
        for item in items:
            event_type, source = _schema_parts(item)
            shown = "a schema" if isinstance(source, Mapping) else os.fspath(source)
            label = f"--schema {event_type + '=' if event_type else ''}{shown}"
            schema = _load_schema(source, label)
            cls = jsonschema.validators.validator_for(
                schema, default=jsonschema.Draft202012Validator
            )
            try:
                cls.check_schema(schema)
            except jsonschema.SchemaError as error:
                where = dotted(error.absolute_path) or "the top"
                raise UsageError(f"{label}: invalid schema at {where}: {error.message}") from None
            schemas.append(_Schema(label, event_type, cls(schema)))
        self.schemas = tuple(schemas)
        self._best_match: Callable[..., Any] = jsonschema.exceptions.best_match

    def check(self, number: int, event: Event) -> None:
        """Raise ``Invalid`` if the event's data breaks a schema that applies to it.

        Data that is not JSON is checked as a JSON string, so a schema can allow a
        sentinel such as ``[DONE]`` (``{"anyOf": [{"const": "[DONE]"}, ...]}``)."""
        applicable = [s for s in self.schemas if s.event_type in (None, event.event)]
        if not applicable:
            return
        data = _as_json(event.data)
        text = data is _ABSENT
        if text:
            data = event.data
        for schema in applicable:
            error = self._best_match(schema.validator.iter_errors(data))
            if error is not None:
                where = f"data at {dotted(error.absolute_path)}" if error.absolute_path else "data"
                rule = "/".join(str(part) for part in error.absolute_schema_path)
                note = " (the data is not JSON, so it was checked as a string)" if text else ""
                raise Invalid(
                    f"{describe_event(number, event)}: {where} breaks {schema.label} "
                    f"(rule {rule}): {visible(error.message)}{note}"
                )


def schema_items(schema: Any) -> list[SchemaInput]:
    """``schema=`` as one schema (a file, ``TYPE=FILE``, a dict, a pair) or a list of them."""
    if isinstance(schema, str | os.PathLike | Mapping | tuple):
        return [schema]
    if isinstance(schema, Iterable):
        return list(schema)
    raise UsageError(f"schema must be a file, TYPE=FILE, a dict or a list of them: {schema!r}")
