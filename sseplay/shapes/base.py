"""What every shape is: a request read from the body, an answer as timed frames.

Shared by the providers: compact JSON as the providers send it, SSE framing without
``id:`` lines (no provider sends one), deterministic ids, the rule that places every event
at a token's offset, and the token counts a turn reports as usage.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from sseplay.shapes.pacing import Pacing, token_offsets
from sseplay.shapes.tokens import Chunking, split_arguments, split_text
from sseplay.shapes.turns import Turn


@dataclass(frozen=True, slots=True)
class ShapeRequest:
    model: str
    stream: bool
    include_usage: bool = False  # openai-chat: stream_options.include_usage
    sse: bool = True  # gemini: ?alt=sse; False -> a JSON array stream


@dataclass(frozen=True, slots=True)
class Shaped:
    """A whole answer, ready to play: sent as (offset, bytes) frames after the head."""

    status: int
    headers: tuple[tuple[bytes, bytes], ...]  # content-type etc. (no length headers)
    frames: tuple[tuple[float, bytes], ...]  # offsets from the request, in order
    error_frame: bytes  # this shape's own mid-stream error (fault error-event)
    terminal: int  # index of the frame that is the terminal event(s)

    @property
    def body(self) -> bytes:
        return b"".join(chunk for _, chunk in self.frames)


class Shape(Protocol):
    name: str
    routes: tuple[str, ...]

    def request(self, path: str, query: str, body: bytes) -> ShapeRequest: ...

    def answer(
        self,
        turn: Turn,
        request: ShapeRequest,
        chunking: Chunking,
        pacing: Pacing,
        seed: int,
        *,
        now: float = 0.0,
        number: int = 0,
    ) -> Shaped: ...


SHAPES: dict[str, Shape] = {}

SSE = ((b"content-type", b"text/event-stream; charset=utf-8"),)
JSON = ((b"content-type", b"application/json"),)

# The HTTP status a provider answers an error type with, when the turn names none:
# Anthropic's table (llm-wire.md 3), OpenAI's types, Gemini's canonical codes (4).
STATUS_OF: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "rate_limit_exceeded": 429,
    "insufficient_quota": 429,
    "requests": 429,
    "tokens": 429,
    "api_error": 500,
    "server_error": 500,
    "overloaded_error": 529,
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "RESOURCE_EXHAUSTED": 429,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}
DEFAULT_INPUT_TOKENS = 9


def dumps(value: Any) -> str:
    """Compact JSON, non-ASCII as UTF-8: as OpenAI and Anthropic send their events."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def sse(data: str, event: str | None = None) -> bytes:
    """One event (WHATWG HTML 9.2.6): ``event:`` only where the provider names events,
    never ``id:``, one blank line after it."""
    head = f"event: {event}\n" if event is not None else ""
    return f"{head}data: {data}\n\n".encode()


def json_body(data: str | None = None, value: Any = None) -> bytes:
    return (data if data is not None else dumps(value)).encode()


def ident(*parts: object, length: int = 24) -> str:
    """A stable id from (shape, seed, request number, ...): one seed, the same bytes."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()
    return digest[:length]


def status_of(turn: Turn) -> int:
    assert turn.error is not None
    return turn.error.status or STATUS_OF.get(turn.error.type, 500)


def read_json(body: bytes) -> Mapping[str, Any]:
    """The request body as an object; anything else (a bad body) as an empty one, so that a
    shape answers with its defaults rather than failing the request."""
    try:
        value = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, Mapping) else {}


def model_of(body: Mapping[str, Any], default: str) -> str:
    model = body.get("model")
    return model if isinstance(model, str) and model else default


Kind = Literal["head", "token", "other"]


@dataclass
class Frames:
    """Events in order, each placed in time by its kind: a ``head`` event at 0 (sent as
    soon as the request is read), a ``token`` at the next token offset, any ``other`` at
    the offset of the token that follows it (or of the last one, after them all)."""

    pacing: Pacing
    seed: int
    events: list[tuple[Kind, bytes]] = field(default_factory=list)

    def add(self, kind: Kind, chunk: bytes) -> None:
        self.events.append((kind, chunk))

    def placed(self) -> tuple[tuple[float, bytes], ...]:
        count = sum(kind == "token" for kind, _ in self.events)
        offsets = token_offsets(count, self.pacing, self.seed)
        following: list[float] = []
        upcoming = offsets[-1] if offsets else self.pacing.ttft
        for kind, _ in reversed(self.events):
            if kind == "token":
                upcoming = offsets.pop()
            following.append(0.0 if kind == "head" else upcoming)
        following.reverse()
        return tuple(zip(following, (chunk for _, chunk in self.events), strict=True))

    def end(self) -> float:
        """When the answer is whole: its last token's offset (a non-streamed answer's)."""
        count = sum(kind == "token" for kind, _ in self.events)
        offsets = token_offsets(count, self.pacing, self.seed)
        return offsets[-1] if offsets else self.pacing.ttft


@dataclass(frozen=True)
class Answering:
    """One request being answered: the turn, split and counted once for every shape."""

    shape: str
    turn: Turn
    request: ShapeRequest
    chunking: Chunking
    pacing: Pacing
    seed: int
    now: float
    number: int

    @property
    def model(self) -> str:
        return self.turn.model or self.request.model

    def id(self, prefix: str, *salt: object, length: int = 24) -> str:
        return prefix + ident(self.shape, self.seed, self.number, *salt, length=length)

    @property
    def text(self) -> str:
        return self.turn.text or ""

    def text_tokens(self) -> list[str]:
        return split_text(self.text, self.chunking)

    def thinking_tokens(self) -> list[str]:
        return split_text(self.turn.thinking or "", self.chunking)

    def arguments(self, index: int) -> str:
        """A call's arguments as the JSON text a provider streams (compact, UTF-8)."""
        return dumps(self.turn.tool_calls[index].arguments)

    def fragments(self, index: int) -> list[str]:
        return split_arguments(self.arguments(index))

    def input_tokens(self) -> int:
        return self._count(
            ("input_tokens", "prompt_tokens", "promptTokenCount", "prompt_eval_count"),
            DEFAULT_INPUT_TOKENS,
        )

    def output_tokens(self) -> int:
        produced = len(self.text_tokens()) + len(self.thinking_tokens())
        produced += sum(len(self.fragments(i)) for i in range(len(self.turn.tool_calls)))
        return self._count(
            ("output_tokens", "completion_tokens", "candidatesTokenCount", "eval_count"),
            produced,
        )

    def _count(self, names: tuple[str, ...], default: int) -> int:
        usage = self.turn.usage or {}
        return next((usage[name] for name in names if name in usage), default)

    def frames(self) -> Frames:
        return Frames(self.pacing, self.seed)


def pacing_for(turn: Turn, pacing: Pacing) -> Pacing:
    """The serve-wide pacing with the turn's own keys over it."""
    return Pacing(
        ttft=pacing.ttft if turn.ttft is None else turn.ttft,
        tps=pacing.tps if turn.tps is None else turn.tps,
        jitter=pacing.jitter if turn.jitter is None else turn.jitter,
    )


def answering(
    shape: str,
    turn: Turn,
    request: ShapeRequest,
    chunking: Chunking,
    pacing: Pacing,
    seed: int,
    now: float,
    number: int,
) -> Answering:
    return Answering(shape, turn, request, chunking, pacing_for(turn, pacing), seed, now, number)


def streamed(
    frames: Frames, headers: tuple[tuple[bytes, bytes], ...], error_frame: bytes
) -> Shaped:
    """A stream whose last event is its terminal one (``[DONE]``, ``message_stop``...)."""
    placed = frames.placed()
    return Shaped(200, headers, placed, error_frame, len(placed) - 1)


def whole(
    at: float,
    body: bytes,
    error_frame: bytes,
    status: int = 200,
    headers: tuple[tuple[bytes, bytes], ...] = JSON,
) -> Shaped:
    """One JSON object, sent when the answer would be whole (``stream: false``), or an
    error response (at once)."""
    return Shaped(status, headers, ((at, body),), error_frame, 0)
