"""The gemini shape: ``POST /{v1,v1beta}/models/{model}:streamGenerateContent`` and
``:generateContent`` (llm-wire.md 4).

Each chunk is a whole ``GenerateContentResponse`` (camelCase) holding a delta of text;
``finishReason`` only on the last; a function call arrives whole, ``args`` an object. With
``?alt=sse``: ``data:`` lines only, no ``event:``, no ``[DONE]``; without it the same objects
as one JSON array, ``[{...},\\r\\n{...}]``, sent incrementally. Errors come before the body,
as an HTTP status with ``{"error": {"code", "message", "status"}}``.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, unquote

from sseplay.shapes.base import (
    Answering,
    Shaped,
    ShapeRequest,
    answering,
    read_json,
    status_of,
    streamed,
    whole,
)
from sseplay.shapes.pacing import Pacing
from sseplay.shapes.tokens import Chunking
from sseplay.shapes.turns import Turn

DEFAULT_MODEL = "gemini-2.5-flash"
SSE_HEADERS = ((b"content-type", b"text/event-stream"),)
JSON_HEADERS = ((b"content-type", b"application/json; charset=UTF-8"),)
# google.rpc canonical codes by HTTP status (llm-wire.md 4, Errors).
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
MID_STREAM = {"code": 500, "message": "An internal error has occurred.", "status": "INTERNAL"}


def dumps(value: Any) -> str:
    """Gemini's spacing as captured: ``": "`` after a key, ``,`` alone between items."""
    return json.dumps(value, separators=(",", ": "), ensure_ascii=False)


class Gemini:
    name = "gemini"
    routes: tuple[str, ...] = (
        "/v1/models/{model}:streamGenerateContent",
        "/v1beta/models/{model}:streamGenerateContent",
        "/v1/models/{model}:generateContent",
        "/v1beta/models/{model}:generateContent",
    )

    def request(self, path: str, query: str, body: bytes) -> ShapeRequest:
        read_json(body)  # the model is in the path, not the body
        tail = unquote(path.rpartition("/models/")[2])
        model, _, method = tail.partition(":")
        alt = parse_qs(query).get("alt", [""])[-1]
        return ShapeRequest(
            model=model or DEFAULT_MODEL,
            stream=method == "streamGenerateContent",
            sse=alt == "sse",
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
        sse = request.sse
        error_frame = _frame(dumps({"error": MID_STREAM}), sse, first=False, last=True)
        if turn.error is not None:
            status = status_of(turn)
            name = turn.error.type if turn.error.type.isupper() else _status_name(status)
            error = {"code": status, "message": turn.error.message, "status": name}
            body = json.dumps({"error": error}, indent=2, ensure_ascii=False)
            return whole(0.0, body.encode(), error_frame, status, JSON_HEADERS)
        chunks = _chunks(a)
        frames = a.frames()
        for index, (kind, value) in enumerate(chunks):
            frames.add(kind, _frame(dumps(value), sse, index == 0, index == len(chunks) - 1))
        if not request.stream:
            return whole(frames.end(), dumps(_whole(a)).encode(), error_frame, 200, JSON_HEADERS)
        return streamed(frames, SSE_HEADERS if sse else JSON_HEADERS, error_frame)


def _status_name(status: int) -> str:
    return STATUS_NAMES.get(status, "UNAVAILABLE" if status == 529 else "INTERNAL")


def _frame(data: str, sse: bool, first: bool, last: bool) -> bytes:
    if sse:
        return f"data: {data}\n\n".encode()
    return ("[" if first else ",\r\n").encode() + data.encode() + (b"]" if last else b"")


def _finish_reason(a: Answering) -> str:
    return a.turn.finish_reason or "STOP"


def _usage(a: Answering, last: bool) -> dict[str, int]:
    prompt = a.input_tokens()
    if not last:
        return {"promptTokenCount": prompt, "totalTokenCount": prompt}
    output = a.output_tokens()
    return {
        "promptTokenCount": prompt,
        "candidatesTokenCount": output,
        "totalTokenCount": prompt + output,
    }


def _response(a: Answering, parts: list[dict[str, Any]], last: bool) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
    if last:
        candidate["finishReason"] = _finish_reason(a)
    candidate["index"] = 0
    return {
        "candidates": [candidate],
        "usageMetadata": _usage(a, last),
        "modelVersion": a.model,
        "responseId": a.id("", "response", length=22),
    }


def _calls(a: Answering) -> list[dict[str, Any]]:
    return [{"functionCall": {"name": c.name, "args": c.arguments}} for c in a.turn.tool_calls]


def _chunks(a: Answering) -> list[tuple[Any, dict[str, Any]]]:
    """The chunks in order, each a token (a delta of thought or text) but for the function
    calls, which come whole in one chunk; the last one carries the finish reason."""
    parts: list[list[dict[str, Any]]] = [
        [{"text": t, "thought": True}] for t in a.thinking_tokens()
    ]
    parts += [[{"text": t}] for t in a.text_tokens()]
    if a.turn.tool_calls:
        parts.append(_calls(a))
    if not parts:
        parts.append([{"text": ""}])
    return [("token", _response(a, p, i == len(parts) - 1)) for i, p in enumerate(parts)]


def _whole(a: Answering) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    if a.turn.thinking is not None:
        parts.append({"text": a.turn.thinking, "thought": True})
    if a.turn.text is not None:
        parts.append({"text": a.text})
    return _response(a, parts + _calls(a), last=True)
