"""The proof of issue 24 with the official SDKs: ``openai`` and ``anthropic`` stream from a
local upstream that speaks their providers' wire format, through ``RecordingProxy``; then,
pointed at ``Server(Recordings(DIR))`` with the upstream stopped, they get the same result.
No API key reaches any file under DIR."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from sseplay import RecordingProxy, Recordings, Server, Stream
from sseplay.exchange import read_exchange
from tests.support import wait_until

OPENAI_KEY = "sk-SECRET-openai-0123456789"
ANTHROPIC_KEY = "sk-ant-SECRET-anthropic-9876543210"


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    """One OpenAI chat completion chunk (/work/shared/llm-wire.md section 1)."""
    return {
        "id": "chatcmpl-7x1",
        "object": "chat.completion.chunk",
        "created": 1735689600,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_51e1070cf2",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


OPENAI_RECORDS: list[Any] = [
    _chunk({"role": "assistant", "content": "", "refusal": None}),
    _chunk({"content": "Hel"}),
    _chunk({"content": "lo from "}),
    _chunk({"content": "the upstream!"}),
    _chunk({}, "stop"),
    "[DONE]",
]


def _event(kind: str, **data: Any) -> dict[str, Any]:
    """One Anthropic Messages event (llm-wire.md section 3): ``event:`` is its type."""
    return {"event": kind, "data": {"type": kind, **data}}


ANTHROPIC_RECORDS = [
    _event(
        "message_start",
        message={
            "id": "msg_01QC4g3H",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 12, "output_tokens": 1},
        },
    ),
    _event("content_block_start", index=0, content_block={"type": "text", "text": ""}),
    _event("ping"),
    _event("content_block_delta", index=0, delta={"type": "text_delta", "text": "Hello"}),
    _event("content_block_delta", index=0, delta={"type": "text_delta", "text": " from Claude!"}),
    _event("content_block_stop", index=0),
    _event(
        "message_delta",
        delta={"stop_reason": "end_turn", "stop_sequence": None},
        usage={"output_tokens": 15},
    ),
    _event("message_stop"),
]

MESSAGES = [{"role": "user", "content": "Say hello"}]


@pytest.fixture
def upstream() -> Iterator[tuple[Server, str]]:
    """Both providers' streams, at their paths, answering POST (the ids sseplay adds are
    tolerated by both SDKs)."""
    chat = Stream.from_records(OPENAI_RECORDS, interval=0.01)
    messages = Stream.from_records(
        ANTHROPIC_RECORDS, interval=0.01, event_field="event", data_field="data"
    )
    with Server({"/v1/chat/completions": chat, "/v1/messages": messages}, ping=0) as server:
        yield server, server.url_for("/v1/messages").removesuffix("/v1/messages")


def _openai_text(base_url: str) -> str:
    client = openai.OpenAI(base_url=base_url + "/v1", api_key=OPENAI_KEY, max_retries=0)
    with client:
        stream = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,  # type: ignore[arg-type]
        )
        return "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)


def _anthropic_text(base_url: str) -> str:
    client = anthropic.Anthropic(base_url=base_url, api_key=ANTHROPIC_KEY, max_retries=0)
    with (
        client,
        client.messages.stream(
            model="claude-sonnet-4-5",
            max_tokens=64,
            messages=MESSAGES,  # type: ignore[arg-type]
        ) as stream,
    ):
        message = stream.get_final_message()
    return "".join(block.text for block in message.content if block.type == "text")


def _all_ended(directory: Path, count: int) -> bool:
    files = sorted(directory.glob("*.jsonl"))
    return len(files) == count and all(read_exchange(path).end is not None for path in files)


def test_the_sdks_get_the_same_text_from_the_recording_and_no_key_is_on_disk(
    upstream: tuple[Server, str], tmp_path: Path
) -> None:
    server, base = upstream
    recorded = tmp_path / "rec"
    with RecordingProxy(base, recorded) as proxy:
        live_openai = _openai_text(proxy.url)
        live_anthropic = _anthropic_text(proxy.url)
        wait_until(lambda: _all_ended(recorded, 2), timeout=10)
    server.stop()
    assert live_openai == "Hello from the upstream!"
    assert live_anthropic == "Hello from Claude!"
    names = sorted(path.name for path in recorded.glob("*.jsonl"))
    assert [name.rsplit("-", 1)[0] for name in names] == [
        "POST-v1-chat-completions",
        "POST-v1-messages",
    ]
    assert all(read_exchange(path).complete for path in recorded.glob("*.jsonl"))
    # The keys went upstream (the SDKs sent them) and nowhere under DIR.
    for path in recorded.rglob("*"):
        if path.is_file():
            text = path.read_bytes()
            for secret in (OPENAI_KEY, ANTHROPIC_KEY, b"SECRET"):
                assert (secret.encode() if isinstance(secret, str) else secret) not in text

    with Server(Recordings(recorded)) as replay:
        assert _openai_text(replay.url) == live_openai
        assert _anthropic_text(replay.url) == live_anthropic
        # The SDK's JSON body with its keys in another order and other spacing: the same
        # bytes; another model: the 404 names the difference.
        body = read_exchange(sorted(recorded.glob("POST-v1-chat-*.jsonl"))[0]).request.body
        value = json.loads(body)
        reordered = json.dumps(dict(reversed(list(value.items()))), indent=2).encode()
        url = replay.url + "/v1/chat/completions"
        first = httpx.post(url, content=body, timeout=10)
        again = httpx.post(url, content=reordered, timeout=10)
        assert first.status_code == again.status_code == 200
        assert again.content == first.content
        other = httpx.post(url, json={**value, "model": "gpt-5"}, timeout=10)
        assert other.status_code == 404
        assert "model" in other.json()["differs"]
