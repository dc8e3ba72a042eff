"""The ollama shape: ``POST /api/chat``, NDJSON, not SSE (llm-wire.md 5).

``application/x-ndjson``: one JSON object a line, each a delta of the message, the last with
``"done": true``, the done reason and the counts. Tool calls and thinking come in the
``message`` (``tool_calls[].function.arguments`` whole objects). Ollama streams unless the
body says ``"stream": false``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sseplay.shapes.base import (
    JSON,
    Answering,
    Shaped,
    ShapeRequest,
    answering,
    dumps,
    model_of,
    read_json,
    status_of,
    streamed,
    whole,
)
from sseplay.shapes.pacing import Pacing, token_offsets
from sseplay.shapes.tokens import Chunking
from sseplay.shapes.turns import Turn

DEFAULT_MODEL = "llama3.2"
NDJSON = ((b"content-type", b"application/x-ndjson"),)
# A failure while the model runs: a line with an error, which the ollama client raises as
# ResponseError.
ERROR_FRAME = b'{"error":"an error was encountered while running the model"}\n'


class Ollama:
    name = "ollama"
    routes: tuple[str, ...] = ("/api/chat",)

    def request(self, path: str, query: str, body: bytes) -> ShapeRequest:
        fields = read_json(body)
        return ShapeRequest(
            model=model_of(fields, DEFAULT_MODEL), stream=fields.get("stream") is not False
        )

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
        a = answering(self.name, turn, request, chunking, pacing, seed, now, number)
        if turn.error is not None:
            return whole(
                0.0,
                dumps({"error": turn.error.message}).encode(),
                ERROR_FRAME,
                status_of(turn),
                JSON,
            )
        messages = _messages(a)
        offsets = token_offsets(len(messages), a.pacing, a.seed)
        end = offsets[-1] if offsets else a.pacing.ttft
        if not request.stream:
            return whole(end, dumps(_done(a, _message(a), end)).encode(), ERROR_FRAME, 200, JSON)
        frames = a.frames()
        for message, offset in zip(messages, offsets, strict=True):
            line = {
                "model": a.model,
                "created_at": _time(a.now + offset),
                "message": message,
                "done": False,
            }
            frames.add("token", _line(line))
        frames.add("other", _line(_done(a, {"role": "assistant", "content": ""}, end)))
        return streamed(frames, NDJSON, ERROR_FRAME)


def _line(value: dict[str, Any]) -> bytes:
    return dumps(value).encode() + b"\n"


def _time(moment: float) -> str:
    """RFC 3339 in UTC with microseconds, as Ollama writes ``created_at``."""
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _calls(a: Answering) -> list[dict[str, Any]]:
    return [{"function": {"name": c.name, "arguments": c.arguments}} for c in a.turn.tool_calls]


def _messages(a: Answering) -> list[dict[str, Any]]:
    """The deltas, one a line: thinking, then text, then the tool calls whole."""
    role = {"role": "assistant"}
    found: list[dict[str, Any]] = [
        {**role, "content": "", "thinking": t} for t in a.thinking_tokens()
    ]
    found += [{**role, "content": t} for t in a.text_tokens()]
    if a.turn.tool_calls:
        found.append({**role, "content": "", "tool_calls": _calls(a)})
    return found


def _message(a: Answering) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": a.text}
    if a.turn.thinking is not None:
        message["thinking"] = a.turn.thinking
    if a.turn.tool_calls:
        message["tool_calls"] = _calls(a)
    return message


def _done(a: Answering, message: dict[str, Any], end: float) -> dict[str, Any]:
    return {
        "model": a.model,
        "created_at": _time(a.now + end),
        "message": message,
        "done": True,
        "done_reason": a.turn.finish_reason or "stop",
        "total_duration": round(end * 1e9),
        "prompt_eval_count": a.input_tokens(),
        "eval_count": a.output_tokens(),
    }
