"""``--no-ids`` (issue 25): any event file served without ``id:`` lines, as an LLM provider
streams; the events are otherwise the same bytes."""

from __future__ import annotations

import httpx
import pytest

from sseplay.errors import UsageError
from sseplay.server import Server
from sseplay.stream import Stream
from tests.conftest import ServeProcess

RECORDS = [{"n": 1}, {"n": 2}, "[DONE]"]


def test_no_ids_serves_the_events_without_id_lines() -> None:
    with Server(Stream.from_records(RECORDS, interval=0)) as server:
        with_ids = httpx.get(server.url).text
    with Server(Stream.from_records(RECORDS, interval=0, no_ids=True)) as server:
        without = httpx.get(server.url).text
    assert "id: " in with_ids
    assert without == 'data: {"n":1}\n\ndata: {"n":2}\n\ndata: [DONE]\n\n'
    lines = [line for line in with_ids.splitlines() if not line.startswith("id: ")]
    assert lines == without.splitlines()


def test_no_ids_on_the_command_line_and_not_with_follow() -> None:
    with ServeProcess("samples/llm.jsonl", "--no-ids", "--interval", "0") as served:
        text = httpx.get(served.url).text
    assert "data: " in text
    assert "id:" not in text
    with pytest.raises(UsageError, match="drop --no-ids"):
        Stream.from_records(RECORDS, follow=True, no_ids=True)
