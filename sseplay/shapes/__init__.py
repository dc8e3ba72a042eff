"""LLM provider streams (issue 25): a model's answer shaped as a provider sends it.

Pure core: a :class:`~sseplay.shapes.turns.Turn` in, the bytes and their offsets out
(:class:`~sseplay.shapes.base.Shaped`); serving them is ``sseplay.http``'s job.
"""

from __future__ import annotations

from sseplay.shapes.anthropic import Anthropic
from sseplay.shapes.base import SHAPES, Shape, Shaped, ShapeRequest
from sseplay.shapes.gemini import Gemini
from sseplay.shapes.ollama import Ollama
from sseplay.shapes.openai_chat import OpenAIChat
from sseplay.shapes.openai_responses import OpenAIResponses
from sseplay.shapes.pacing import Pacing, token_offsets
from sseplay.shapes.tokens import Chunking, split_arguments, split_text
from sseplay.shapes.turns import ToolCall, Turn, TurnError, load_turns, turns_from

# Filled here, once, so that importing any module of the package (base.SHAPES included)
# finds every shape: the package runs first.
for _shape in (OpenAIChat(), OpenAIResponses(), Anthropic(), Gemini(), Ollama()):
    SHAPES[_shape.name] = _shape

__all__ = [
    "SHAPES",
    "Chunking",
    "Pacing",
    "Shape",
    "ShapeRequest",
    "Shaped",
    "ToolCall",
    "Turn",
    "TurnError",
    "load_turns",
    "split_arguments",
    "split_text",
    "token_offsets",
    "turns_from",
]
