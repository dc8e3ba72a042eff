"""The anthropic shape: ``POST /v1/messages`` (llm-wire.md 3).

Named events, ``event:`` equal to the data's ``type``: ``message_start``, per content block
``content_block_start`` / ``content_block_delta``... / ``content_block_stop`` (a ``ping``
after the first block's start, where real captures have it), ``message_delta`` with the
stop reason and the cumulative ``output_tokens``, ``message_stop``; no ``[DONE]``.
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

DEFAULT_MODEL = "claude-sonnet-4-5"
# After a 200 the status cannot change: the error is an event (anthropic-sdk-python#1258);
# the SDK raises its status error for it.
ERROR_FRAME = sse(
    '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}', "error"
)
# The ping as captured: Python's json spacing, unlike every other event.
PING = sse('{"type": "ping"}', "ping")


class Anthropic:
    name = "anthropic"
    routes: tuple[str, ...] = ("/v1/messages",)

    def request(self, path: str, query: str, body: bytes) -> ShapeRequest:
        fields = read_json(body)
        return ShapeRequest(
            model=model_of(fields, DEFAULT_MODEL), stream=fields.get("stream") is True
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
        headers = (*SSE, (b"request-id", a.id("req_011", "request").encode()))
        if turn.error is not None:
            error = {
                "type": "error",
                "error": {"type": turn.error.type, "message": turn.error.message},
            }
            json_headers = ((b"content-type", b"application/json"), headers[1])
            return whole(0.0, dumps(error).encode(), ERROR_FRAME, status_of(turn), json_headers)
        if not request.stream:
            json_headers = ((b"content-type", b"application/json"), headers[1])
            return whole(
                _frames(a).end(), dumps(_message(a)).encode(), ERROR_FRAME, 200, json_headers
            )
        return streamed(_frames(a), headers, ERROR_FRAME)


def _stop_reason(a: Answering) -> str:
    return a.turn.finish_reason or ("tool_use" if a.turn.tool_calls else "end_turn")


def tool_id(a: Answering, index: int) -> str:
    return a.id("toolu_01", "tool", index)


def signature(a: Answering) -> str:
    return a.id("Eq", "signature", length=64)


def _event(value: dict[str, Any]) -> bytes:
    return sse(dumps(value), value["type"])


def _frames(a: Answering) -> Frames:
    frames = a.frames()
    start: dict[str, Any] = {
        "id": a.id("msg_01", "message"),
        "type": "message",
        "role": "assistant",
        "model": a.model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {
            "input_tokens": a.input_tokens(),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 1,
        },
    }
    frames.add("head", _event({"type": "message_start", "message": start}))
    blocks: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    if a.turn.thinking is not None:
        deltas = [{"type": "thinking_delta", "thinking": t} for t in a.thinking_tokens()]
        deltas.append({"type": "signature_delta", "signature": signature(a)})
        blocks.append(({"type": "thinking", "thinking": ""}, deltas))
    if a.turn.text is not None or not a.turn.tool_calls:
        deltas = [{"type": "text_delta", "text": t} for t in a.text_tokens()]
        blocks.append(({"type": "text", "text": ""}, deltas))
    for index, call in enumerate(a.turn.tool_calls):
        block = {"type": "tool_use", "id": tool_id(a, index), "name": call.name, "input": {}}
        # The first delta is empty, as captured; the input follows in fragments.
        parts = ["", *a.fragments(index)]
        blocks.append((block, [{"type": "input_json_delta", "partial_json": p} for p in parts]))
    for index, (block, deltas) in enumerate(blocks):
        frames.add(
            "other", _event({"type": "content_block_start", "index": index, "content_block": block})
        )
        if index == 0:
            frames.add("other", PING)
        for delta in deltas:
            empty = delta.get("partial_json") == "" or delta["type"] == "signature_delta"
            event = {"type": "content_block_delta", "index": index, "delta": delta}
            frames.add("other" if empty else "token", _event(event))
        frames.add("other", _event({"type": "content_block_stop", "index": index}))
    stop = {"stop_reason": _stop_reason(a), "stop_sequence": None}
    usage = {"output_tokens": a.output_tokens()}
    frames.add("other", _event({"type": "message_delta", "delta": stop, "usage": usage}))
    frames.add("other", _event({"type": "message_stop"}))
    return frames


def _message(a: Answering) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if a.turn.thinking is not None:
        content.append({"type": "thinking", "thinking": a.turn.thinking, "signature": signature(a)})
    if a.turn.text is not None or not a.turn.tool_calls:
        content.append({"type": "text", "text": a.text})
    for index, call in enumerate(a.turn.tool_calls):
        content.append(
            {
                "type": "tool_use",
                "id": tool_id(a, index),
                "name": call.name,
                "input": call.arguments,
            }
        )
    return {
        "id": a.id("msg_01", "message"),
        "type": "message",
        "role": "assistant",
        "model": a.model,
        "content": content,
        "stop_reason": _stop_reason(a),
        "stop_sequence": None,
        "usage": {
            "input_tokens": a.input_tokens(),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": a.output_tokens(),
        },
    }
