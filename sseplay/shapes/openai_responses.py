"""The openai-responses shape: ``POST /v1/responses`` (llm-wire.md 2).

Every event has ``event:`` equal to its ``type`` and a ``sequence_number`` counting from 0:
``response.created``, ``response.in_progress``, then per output item its ``added`` event,
its deltas and ``done`` events, then ``response.completed`` with the whole output; no
``[DONE]``. Thinking is a ``reasoning`` item with a summary, before the message.
"""

from __future__ import annotations

from typing import Any

from sseplay.shapes.base import (
    JSON,
    SSE,
    Answering,
    Frames,
    Kind,
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
from sseplay.shapes.openai_chat import error_body
from sseplay.shapes.pacing import Pacing
from sseplay.shapes.tokens import Chunking
from sseplay.shapes.turns import Turn

DEFAULT_MODEL = "gpt-4o"
FAILURE = {
    "code": "server_error",
    "message": "The server had an error while processing your request.",
}


class OpenAIResponses:
    name = "openai-responses"
    routes: tuple[str, ...] = ("/v1/responses",)

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
        if turn.error is not None:
            return whole(0.0, error_body(turn).encode(), b"", status_of(turn), JSON)
        events = _Events(a)
        frames = events.frames()
        failed = {**_response(a, "failed", []), "error": FAILURE, "usage": None}
        # The sequence number of the terminal event it stands for: still increasing
        # wherever the fault sends it, with a gap (no SDK checks the numbers are dense).
        error_frame = _event(
            {"type": "response.failed", "sequence_number": events.count - 1, "response": failed}
        )
        if not request.stream:
            body = dumps(_response(a, "completed", events.output, usage=True)).encode()
            return whole(frames.end(), body, error_frame)
        return streamed(frames, SSE, error_frame)


def _event(value: dict[str, Any]) -> bytes:
    return sse(dumps(value), value["type"])


def _response(
    a: Answering, status: str, output: list[dict[str, Any]], usage: bool = False
) -> dict[str, Any]:
    response: dict[str, Any] = {
        "id": a.id("resp_", "response", length=48),
        "object": "response",
        "created_at": int(a.now),
        "status": status,
        "model": a.model,
        "output": output,
    }
    if usage:
        response["usage"] = {
            "input_tokens": a.input_tokens(),
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": a.output_tokens(),
            "output_tokens_details": {"reasoning_tokens": len(a.thinking_tokens())},
            "total_tokens": a.input_tokens() + a.output_tokens(),
        }
    return response


class _Events:
    """The events in order, numbered as they are added; the finished output items kept for
    ``response.completed`` (and the non-streamed response)."""

    def __init__(self, a: Answering) -> None:
        self.a = a
        self.count = 0
        self.output: list[dict[str, Any]] = []
        self._frames = a.frames()

    def add(self, kind: Kind, type_: str, **fields: Any) -> None:
        self._frames.add(kind, _event({"type": type_, "sequence_number": self.count, **fields}))
        self.count += 1

    def frames(self) -> Frames:
        a = self.a
        created = {
            **_response(a, "in_progress", []),
            "error": None,
            "incomplete_details": None,
            "usage": None,
        }
        self.add("head", "response.created", response=created)
        self.add(
            "head",
            "response.in_progress",
            response={**_response(a, "in_progress", []), "usage": None},
        )
        if a.turn.thinking is not None:
            self._reasoning(len(self.output))
        if a.turn.text is not None or not a.turn.tool_calls:
            self._message(len(self.output))
        for index in range(len(a.turn.tool_calls)):
            self._call(len(self.output), index)
        completed = _response(a, "completed", self.output, usage=True)
        self.add("other", "response.completed", response=completed)
        return self._frames

    def _reasoning(self, at: int) -> None:
        item_id = self.a.id("rs_", "reasoning", length=48)
        where = {"item_id": item_id, "output_index": at, "summary_index": 0}
        self.add(
            "other",
            "response.output_item.added",
            output_index=at,
            item={"id": item_id, "type": "reasoning", "summary": []},
        )
        self.add(
            "other",
            "response.reasoning_summary_part.added",
            **where,
            part={"type": "summary_text", "text": ""},
        )
        for token in self.a.thinking_tokens():
            self.add("token", "response.reasoning_summary_text.delta", **where, delta=token)
        text = self.a.turn.thinking or ""
        part = {"type": "summary_text", "text": text}
        self.add("other", "response.reasoning_summary_text.done", **where, text=text)
        self.add("other", "response.reasoning_summary_part.done", **where, part=part)
        item = {"id": item_id, "type": "reasoning", "summary": [part]}
        self.add("other", "response.output_item.done", output_index=at, item=item)
        self.output.append(item)

    def _message(self, at: int) -> None:
        item_id = self.a.id("msg_", "message", length=48)
        where = {"item_id": item_id, "output_index": at, "content_index": 0}
        item: dict[str, Any] = {
            "id": item_id,
            "type": "message",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        }
        self.add("other", "response.output_item.added", output_index=at, item=item)
        self.add(
            "other",
            "response.content_part.added",
            **where,
            part={"type": "output_text", "text": "", "annotations": []},
        )
        for token in self.a.text_tokens():
            self.add("token", "response.output_text.delta", **where, delta=token, logprobs=[])
        text = self.a.text
        part = {"type": "output_text", "text": text, "annotations": []}
        self.add("other", "response.output_text.done", **where, text=text, logprobs=[])
        self.add("other", "response.content_part.done", **where, part=part)
        item = {**item, "status": "completed", "content": [part]}
        self.add("other", "response.output_item.done", output_index=at, item=item)
        self.output.append(item)

    def _call(self, at: int, index: int) -> None:
        a = self.a
        call = a.turn.tool_calls[index]
        item_id = a.id("fc_", "function", index, length=48)
        item: dict[str, Any] = {
            "id": item_id,
            "type": "function_call",
            "status": "in_progress",
            "call_id": a.id("call_", "call", index),
            "name": call.name,
            "arguments": "",
        }
        self.add("other", "response.output_item.added", output_index=at, item=item)
        where = {"item_id": item_id, "output_index": at}
        for fragment in a.fragments(index):
            self.add("token", "response.function_call_arguments.delta", **where, delta=fragment)
        arguments = a.arguments(index)
        self.add("other", "response.function_call_arguments.done", **where, arguments=arguments)
        item = {**item, "status": "completed", "arguments": arguments}
        self.add("other", "response.output_item.done", output_index=at, item=item)
        self.output.append(item)
