"""``Turns``: model responses served as an LLM provider streams them (issue 25).

A turns file (``TURNS.jsonl``, one model response a line) or the same values in Python,
with the shape of one provider (``sseplay.shapes.SHAPES``): each of the shape's routes
answers POST, the nth request to a route with the nth turn, then the last one again.
The request body says what a provider would read from it (the model, ``stream``,
``stream_options.include_usage``, Gemini's ``?alt=sse``).

A turn is expanded and encoded once per request shape (the turn, ``ShapeRequest``), not
per token and per client: the answer is a ``TimedResponse`` (``sseplay.timed``), frames
with their offsets from the request, which every client that asks the same gets as it
is. Its ``created`` and ids are those of the first request that asked for it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sseplay.errors import InputError, UsageError
from sseplay.shapes import (
    SHAPES,
    Chunking,
    Pacing,
    Shape,
    ShapeRequest,
    Turn,
    load_turns,
    turns_from,
)
from sseplay.timed import TimedResponse

TURNS_LABEL = "<turns>"
# One token a word (``--chunk words:1``).
DEFAULT_CHUNKING = Chunking()


@dataclass(frozen=True, slots=True)
class ShapedResponse(TimedResponse):
    """A turn as one request shape gets it: its frames as the pieces of the body, and the
    shape's own mid-stream error (the ``error-event`` fault sends it)."""

    error_frame: bytes = b""
    # Whether the body is SSE, whose events a fault counts by their blank lines; other
    # bodies (NDJSON, a JSON array) are counted frame by frame.
    sse: bool = True


def shape_named(name: str) -> Shape:
    """The shape called ``name``; a usage error listing them otherwise."""
    shape = SHAPES.get(name)
    if shape is None:
        raise UsageError(f"--shape {name!r} is not a shape: use one of {', '.join(SHAPES)}")
    return shape


def _number(flag: str, value: object, *, fraction: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise UsageError(f"{flag} must be a number, 0 or more, not {value!r}")
    if fraction and value > 1:
        raise UsageError(f"{flag} is a fraction of each gap, from 0 to 1, not {value!r}")
    return float(value)


class Turns:
    """Model responses in a provider's shape, served by ``Server`` (and ``sse_server``).

    ``source``: a turns file (JSON Lines: ``{"text": ...}``, ``{"tool_calls": [...]}``,
    ``{"error": {...}}``...) or the same values (or ``Turn`` objects) as a list. ``shape``: one of
    ``sseplay.shapes.SHAPES`` (``openai-chat``, ``openai-responses``, ``anthropic``,
    ``gemini``, ``ollama``). ``chunk``: ``words:N`` or ``chars:N``, how the text is split
    into tokens. ``ttft``: seconds before the first token; ``tps``: tokens per second (0:
    as fast as the client reads); ``jitter``: a fraction of each gap, drawn from ``seed``.
    ``route``: serve at this route instead of the provider's own. ``ping``: seconds of
    silence before a ``: ping`` comment in an SSE answer, 0 (the default) for none, as a
    provider sends none."""

    def __init__(
        self,
        source: str | os.PathLike[str] | Sequence[Mapping[str, Any] | Turn],
        *,
        shape: str,
        chunk: str | Chunking = DEFAULT_CHUNKING,
        ttft: float = 0.0,
        tps: float = 0.0,
        jitter: float = 0.0,
        seed: int = 0,
        route: str | None = None,
        ping: float = 0.0,
    ) -> None:
        self.shape = shape_named(shape)
        self.chunking = chunk if isinstance(chunk, Chunking) else Chunking.parse(chunk)
        self.pacing = Pacing(
            ttft=_number("--ttft", ttft),
            tps=_number("--tps", tps),
            jitter=_number("--jitter", jitter, fraction=True),
        )
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise UsageError(f"--seed must be a whole number, 0 or more, not {seed!r}")
        self.seed = seed
        self.ping = _number("--ping", ping)
        if isinstance(source, str | os.PathLike):
            self.label = str(source)
            self.turns = load_turns(Path(source))
        elif isinstance(source, Mapping | bytes):
            raise UsageError("give turns as a list of values (one per turn), or a file")
        else:
            self.label = TURNS_LABEL
            values = list(source)
            if all(isinstance(value, Turn) for value in values):
                self.turns = tuple(value for value in values if isinstance(value, Turn))
            else:
                self.turns = turns_from(
                    [value for value in values if not isinstance(value, Turn)], TURNS_LABEL
                )
        if not self.turns:
            raise InputError(self.label, "holds no turns: write one model response a line")
        if route is not None:
            from sseplay.config import check_route

            route = check_route("/" + route.strip("/"))
        self.routes: tuple[str, ...] = (route,) if route is not None else self.shape.routes
        self._cache: dict[tuple[int, ShapeRequest], ShapedResponse] = {}

    def __repr__(self) -> str:
        return f"<Turns {self.label} ({len(self.turns)} turns, {self.shape.name})>"

    def index(self, number: int) -> int:
        """The turn the ``number``th request (from 1) to a route gets: the nth, then the
        last one again."""
        return min(max(number, 1), len(self.turns)) - 1

    def respond(self, number: int, path: str, query: str, body: bytes) -> ShapedResponse:
        """The answer to request ``number`` of its route, worked out once per turn and
        request shape."""
        index = self.index(number)
        request = self.shape.request(path, query, body)
        key = (index, request)
        cached = self._cache.get(key)
        if cached is None:
            cached = self._cache[key] = self._encode(index, request)
        return cached

    def _encode(self, index: int, request: ShapeRequest) -> ShapedResponse:
        turn = self.turns[index]
        shaped = self.shape.answer(
            turn,
            request,
            self.chunking,
            _pacing_of(turn, self.pacing),
            self.seed,
            now=time.time(),
            number=index,
        )
        headers = shaped.headers
        is_stream = request.stream and shaped.status < 300
        if not is_stream:  # one body: its length (RFC 9110 section 8.6)
            size = sum(len(data) for _, data in shaped.frames)
            headers += ((b"content-length", str(size).encode()),)
        content_type = dict(headers).get(b"content-type", b"")
        return ShapedResponse(
            status=shaped.status,
            headers=headers,
            head_at=0.0,
            pieces=shaped.frames,
            is_stream=is_stream,
            error_frame=shaped.error_frame,
            sse=content_type.startswith(b"text/event-stream"),
        )

    def listing(self) -> dict[str, Any]:
        """What ``/healthz`` tells of them."""
        return {
            "shape": self.shape.name,
            "routes": list(self.routes),
            "file": self.label,
            "turns": len(self.turns),
        }


def _pacing_of(turn: Turn, pacing: Pacing) -> Pacing:
    """The server's pacing, with what the turn sets for itself."""
    return Pacing(
        ttft=pacing.ttft if turn.ttft is None else turn.ttft,
        tps=pacing.tps if turn.tps is None else turn.tps,
        jitter=pacing.jitter if turn.jitter is None else turn.jitter,
    )
