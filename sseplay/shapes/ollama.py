"""The ollama shape (/work/shared/llm-wire.md)."""

from __future__ import annotations

from sseplay.shapes.base import Shaped, ShapeRequest
from sseplay.shapes.pacing import Pacing
from sseplay.shapes.tokens import Chunking
from sseplay.shapes.turns import Turn


class Ollama:
    name = "ollama"
    routes: tuple[str, ...] = ("/api/chat",)

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
