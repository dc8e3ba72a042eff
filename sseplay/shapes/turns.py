"""Turns: one model response each, as written in a TURNS.jsonl file (issue 25).

A line is one JSON object: ``{"text": ...}``, ``{"tool_calls": [{"name", "arguments"}]}``,
``{"thinking": ..., "text": ...}`` or ``{"error": {"type", "message"}}``, with optional
``usage``, ``finish_reason`` (``stop_reason`` is the same key), ``model`` and per-turn pacing
(``ttft``, ``tps``, ``jitter``). A mistake is reported as ``FILE:LINE: what, and how to fix``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from sseplay.errors import InputError


@dataclass(frozen=True, slots=True)
class ToolCall:
    name: str
    arguments: Any  # a JSON value (an object), as in the file


@dataclass(frozen=True, slots=True)
class TurnError:
    """The provider's error instead of a response: ``type`` in the provider's words
    (``overloaded_error``, ``rate_limit_error``...), ``status`` the HTTP status (None: the
    one the provider sends for that type)."""

    type: str
    message: str
    status: int | None = None


@dataclass(frozen=True, slots=True)
class Turn:
    text: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    thinking: str | None = None
    error: TurnError | None = None
    usage: Mapping[str, int] | None = None
    finish_reason: str | None = None  # "stop_reason" in the file is the same key
    model: str | None = None
    ttft: float | None = None
    tps: float | None = None
    jitter: float | None = None


KEYS = (
    "text",
    "tool_calls",
    "thinking",
    "error",
    "usage",
    "finish_reason",
    "stop_reason",
    "model",
    "ttft",
    "tps",
    "jitter",
)
_EXAMPLE = '{"text": "Hello!"}, {"tool_calls": [{"name": "f", "arguments": {}}]} or {"error": ...}'


def load_turns(path: Path) -> tuple[Turn, ...]:
    """The turns of a JSON Lines file, one a line; blank lines are skipped."""
    try:
        text = Path(path).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(str(path), f"cannot read the turns file ({error})") from error
    turns: list[Turn] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            raise InputError(
                where, f"not JSON ({error.msg}); write one JSON object a line"
            ) from None
        turns.append(_turn(value, where))
    if not turns:
        raise InputError(str(path), f"no turns; write one JSON object a line, such as {_EXAMPLE}")
    return tuple(turns)


def turns_from(values: Sequence[Mapping[str, Any]], label: str = "<turns>") -> tuple[Turn, ...]:
    """The turns of Python values, each as one line of a turns file (``label:N`` in errors)."""
    if isinstance(values, Mapping | str | bytes):
        raise InputError(label, "turns are a list of objects, one per model response")
    turns = tuple(_turn(value, f"{label}:{number}") for number, value in enumerate(values, 1))
    if not turns:
        raise InputError(label, f"no turns; give at least one, such as {_EXAMPLE}")
    return turns


def _turn(value: Any, where: str) -> Turn:
    if not isinstance(value, Mapping):
        raise InputError(where, f"a turn is a JSON object, such as {_EXAMPLE}")
    unknown = sorted(set(value) - set(KEYS))
    if unknown:
        raise InputError(where, f"unknown key {unknown[0]!r}; a turn's keys are {', '.join(KEYS)}")
    if "finish_reason" in value and "stop_reason" in value:
        raise InputError(where, "finish_reason and stop_reason are one key; write only one")
    text = _text(value, "text", where)
    thinking = _text(value, "thinking", where)
    tool_calls = _tool_calls(value.get("tool_calls"), where)
    error = _error(value.get("error"), where)
    if error is not None and (text is not None or thinking is not None or tool_calls):
        raise InputError(where, "a turn with an error has no text, thinking or tool_calls")
    if error is None and text is None and not tool_calls:
        raise InputError(where, f"a turn needs text, tool_calls or error, such as {_EXAMPLE}")
    reason = value.get("finish_reason", value.get("stop_reason"))
    if reason is not None and not isinstance(reason, str):
        raise InputError(where, f"finish_reason must be a string such as 'stop', not {reason!r}")
    model = _text(value, "model", where)
    return Turn(
        text=text,
        tool_calls=tool_calls,
        thinking=thinking,
        error=error,
        usage=_usage(value.get("usage"), where),
        finish_reason=reason,
        model=model,
        ttft=_seconds(value, "ttft", where),
        tps=_seconds(value, "tps", where),
        jitter=_seconds(value, "jitter", where, most=1.0),
    )


def _text(value: Mapping[str, Any], key: str, where: str) -> str | None:
    text = value.get(key)
    if text is not None and not isinstance(text, str):
        raise InputError(where, f"{key} must be a string, not {text!r}")
    return text


def _tool_calls(calls: Any, where: str) -> tuple[ToolCall, ...]:
    if calls is None:
        return ()
    if not isinstance(calls, list) or not calls:
        raise InputError(
            where, 'tool_calls must be a list such as [{"name": "f", "arguments": {}}]'
        )
    found = []
    for call in calls:
        if not isinstance(call, Mapping) or not isinstance(call.get("name"), str):
            raise InputError(
                where, f'a tool call is {{"name": "...", "arguments": {{...}}}}, not {call!r}'
            )
        extra = sorted(set(call) - {"name", "arguments"})
        if extra:
            raise InputError(where, f"unknown tool call key {extra[0]!r}; write name and arguments")
        arguments = call.get("arguments", {})
        if not isinstance(arguments, Mapping):
            raise InputError(where, f"tool call arguments are a JSON object, not {arguments!r}")
        found.append(ToolCall(call["name"], arguments))
    return tuple(found)


def _error(error: Any, where: str) -> TurnError | None:
    if error is None:
        return None
    if (
        not isinstance(error, Mapping)
        or not isinstance(error.get("type"), str)
        or not isinstance(error.get("message", ""), str)
    ):
        raise InputError(where, 'error is {"type": "overloaded_error", "message": "..."}')
    status = error.get("status")
    if status is not None and (
        isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599
    ):
        raise InputError(
            where, f"error status must be an HTTP error status (400-599), not {status!r}"
        )
    return TurnError(error["type"], error.get("message", ""), status)


def _usage(usage: Any, where: str) -> Mapping[str, int] | None:
    if usage is None:
        return None
    if not isinstance(usage, Mapping) or not all(
        isinstance(count, int) and not isinstance(count, bool) and count >= 0
        for count in usage.values()
    ):
        raise InputError(where, 'usage is an object of token counts, such as {"input_tokens": 9}')
    return MappingProxyType(dict(usage))


def _seconds(
    value: Mapping[str, Any], key: str, where: str, most: float = math.inf
) -> float | None:
    number = value.get(key)
    if number is None:
        return None
    if (
        isinstance(number, bool)
        or not isinstance(number, int | float)
        or not 0 <= number <= most
        or math.isnan(number)
    ):
        bound = "between 0 and 1" if most == 1.0 else "a number from 0"
        raise InputError(where, f"{key} must be {bound}, not {number!r}")
    return float(number)
