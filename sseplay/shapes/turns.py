"""Turns: one model response each, as written in a TURNS.jsonl file (issue 25)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


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


def load_turns(path: Path) -> tuple[Turn, ...]:
    raise NotImplementedError


def turns_from(values: Sequence[Mapping[str, Any]], label: str = "<turns>") -> tuple[Turn, ...]:
    raise NotImplementedError
