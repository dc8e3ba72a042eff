"""Helpers of the shape tests: a shape answered through an httpx MockTransport, so that
the official SDKs parse the bytes offline (the HTTP proof is in tests/http/)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from sseplay.shapes import SHAPES, Chunking, Pacing, Shaped, Turn, turns_from

NOW = 1735689600.0


def shaped(
    shape: str,
    turn: Turn | dict[str, Any],
    body: dict[str, Any] | None = None,
    *,
    path: str = "",
    query: str = "",
    chunking: Chunking | None = None,
    pacing: Pacing | None = None,
    seed: int = 1,
    number: int = 0,
    now: float = NOW,
) -> Shaped:
    if isinstance(turn, dict):
        (turn,) = turns_from([turn])
    the_shape = SHAPES[shape]
    request = the_shape.request(path or the_shape.routes[0], query, json.dumps(body or {}).encode())
    return the_shape.answer(
        turn,
        request,
        chunking or Chunking(),
        pacing or Pacing(),
        seed,
        now=now,
        number=number,
    )


def transport(
    shape: str, turns: Sequence[dict[str, Any]], http: Any = httpx, **options: Any
) -> Any:
    """Answers every POST with the shape: the nth request gets the nth turn, then the last."""
    played = turns_from(turns)
    count = [0]

    def handle(request: Any) -> Any:
        the_shape = SHAPES[shape]
        asked = the_shape.request(request.url.path, request.url.query.decode(), request.content)
        turn = played[min(count[0], len(played) - 1)]
        count[0] += 1
        answer = the_shape.answer(
            turn,
            asked,
            options.get("chunking", Chunking()),
            Pacing(),
            1,
            now=NOW,
            number=count[0],
        )
        headers = [(name.decode(), value.decode()) for name, value in answer.headers]
        return http.Response(answer.status, headers=headers, content=answer.body)

    # ``http``: httpx, or httpx2 for the SDKs built on it (anthropic 2.x).
    return http.MockTransport(handle)


def events(body: bytes) -> list[bytes]:
    """The events of an SSE body, each with its blank line."""
    assert body.endswith(b"\n\n")
    return [part + b"\n\n" for part in body[:-2].split(b"\n\n")]


def wire(name: str) -> bytes:
    """An example of llm-wire.md, verbatim (tests/core/llm_wire/)."""
    return (Path(__file__).parent / "llm_wire" / f"{name}.txt").read_bytes()
