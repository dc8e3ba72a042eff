"""What every shape is: a request read from the body, an answer as timed frames."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sseplay.shapes.pacing import Pacing
from sseplay.shapes.tokens import Chunking
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
