"""The gemini shape (/work/shared/llm-wire.md)."""

from __future__ import annotations

from sseplay.shapes.base import Shaped, ShapeRequest
from sseplay.shapes.pacing import Pacing
from sseplay.shapes.tokens import Chunking
from sseplay.shapes.turns import Turn


class Gemini:
    name = "gemini"
    routes: tuple[str, ...] = (
        "/v1/models/{model}:streamGenerateContent",
        "/v1beta/models/{model}:streamGenerateContent",
        "/v1/models/{model}:generateContent",
        "/v1beta/models/{model}:generateContent",
    )

    def request(self, path: str, query: str, body: bytes) -> ShapeRequest:
        raise NotImplementedError

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
    ) -> Shaped:
        raise NotImplementedError
