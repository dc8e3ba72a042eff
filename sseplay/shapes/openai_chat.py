"""The openai-chat shape: ``POST /v1/chat/completions`` (llm-wire.md 1).

``data:`` lines of ``chat.completion.chunk`` objects, the same ``id`` and ``created`` on
each, ``role`` only on the first delta, ``finish_reason`` on a chunk with an empty delta,
then ``data: [DONE]``. ``stream_options.include_usage`` adds ``"usage":null`` to every
chunk and a last chunk with ``"choices":[]`` and the usage; without it, no chunk has a
``usage`` key at all.
"""

from __future__ import annotations

from typing import Any

from sseplay.shapes.base import (
    SSE,
    Answering,
    Frames,
    Shaped,
    ShapeRequest,
    answering,
    dumps,
    model_of,
    read_json,
    sse,
    status_of,
    streamed,
    whole,
)
from sseplay.shapes.pacing import Pacing
from sseplay.shapes.tokens import Chunking
from sseplay.shapes.turns import Turn

DEFAULT_MODEL = "gpt-4o-mini"
# The mid-stream error after a 200 (coder aibridge stream_error.txtar, a real capture):
# Python's json.dumps spacing, as OpenAI sends it; the openai SDK raises APIError on it.
ERROR_FRAME = sse(
    '{"error": {"message": "The server had an error while processing your request. '
    'Sorry about that!", "type": "server_error"}}'
)
DONE = b"data: [DONE]\n\n"


class OpenAIChat:
    name = "openai-chat"
    routes: tuple[str, ...] = ("/v1/chat/completions",)

    def request(self, path: str, query: str, body: bytes) -> ShapeRequest:
        fields = read_json(body)
        options = fields.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        return ShapeRequest(
            model=model_of(fields, DEFAULT_MODEL),
            stream=fields.get("stream") is True,
            include_usage=include_usage,
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
            return whole(0.0, error_body(turn).encode(), ERROR_FRAME, status_of(turn))
        if not request.stream:
            return whole(_frames(a).end(), dumps(_completion(a)).encode(), ERROR_FRAME)
        return streamed(_frames(a), SSE, ERROR_FRAME)


def error_body(turn: Turn) -> str:
    """OpenAI's error response: ``{"error": {message, type, param, code}}``."""
    assert turn.error is not None
    error = {"message": turn.error.message, "type": turn.error.type, "param": None, "code": None}
    return dumps({"error": error})


def _finish_reason(a: Answering) -> str:
    return a.turn.finish_reason or ("tool_calls" if a.turn.tool_calls else "stop")


def _envelope(a: Answering, obj: str) -> dict[str, Any]:
    return {
        "id": a.id("chatcmpl-", length=29),
        "object": obj,
        "created": int(a.now),
        "model": a.model,
        "service_tier": "default",
        "system_fingerprint": fingerprint(a),
    }


def fingerprint(a: Answering) -> str:
    return "fp_" + a.id("", "fingerprint", length=10)


def call_id(a: Answering, index: int) -> str:
    return a.id("call_", "call", index)


def _usage(a: Answering) -> dict[str, int]:
    prompt, completion = a.input_tokens(), a.output_tokens()
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _frames(a: Answering) -> Frames:
    frames = a.frames()
    envelope = _envelope(a, "chat.completion.chunk")
    usage: dict[str, Any] = {"usage": None} if a.request.include_usage else {}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return sse(dumps({**envelope, "choices": [choice], **usage}))

    role: dict[str, Any] = {"role": "assistant"}
    if a.turn.text is not None or not a.turn.tool_calls:
        frames.add("other", chunk({**role, "content": "", "refusal": None}))
        role = {}
        for token in a.text_tokens():
            frames.add("token", chunk({"content": token}))
    for index, call in enumerate(a.turn.tool_calls):
        opening = {
            "index": index,
            "id": call_id(a, index),
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        head = {**role, "content": None} if role else {}
        frames.add("other", chunk({**head, "tool_calls": [opening]}))
        role = {}
        for fragment in a.fragments(index):
            frames.add(
                "token",
                chunk({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}),
            )
    frames.add("other", chunk({}, _finish_reason(a)))
    if a.request.include_usage:
        frames.add("other", sse(dumps({**envelope, "choices": [], "usage": _usage(a)})))
    frames.add("other", DONE)
    return frames


def _completion(a: Answering) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": a.turn.text if a.turn.text is not None or not a.turn.tool_calls else None,
        "refusal": None,
        "annotations": [],
    }
    if a.turn.tool_calls:
        message["tool_calls"] = [
            {
                "id": call_id(a, index),
                "type": "function",
                "function": {"name": call.name, "arguments": a.arguments(index)},
            }
            for index, call in enumerate(a.turn.tool_calls)
        ]
    envelope = _envelope(a, "chat.completion")
    fingerprint_fields = {k: envelope.pop(k) for k in ("service_tier", "system_fingerprint")}
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": _finish_reason(a)}
    return {**envelope, "choices": [choice], "usage": _usage(a), **fingerprint_fields}
