"""A record that is only ``{"comment": TEXT}`` is sent as comment lines where it stands in
the file, without an id; a client sees no event for it (issue 25: OpenRouter's
``: OPENROUTER PROCESSING`` keep-alives)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from sseplay.errors import ExitCode
from tests.conftest import ServeProcess, run_cli, write_lines

RECORDS = [
    {"n": 1},
    {"comment": "OPENROUTER PROCESSING"},
    {"n": 2},
    {"comment": "two\nlines"},
    {"n": 3, "comment": "a field of the data, not a comment"},
]


def test_comment_records_are_comment_lines_and_tail_shows_no_event_for_them(
    tmp_path: Path,
) -> None:
    stream = write_lines(tmp_path / "chat.jsonl", RECORDS)
    with ServeProcess("--interval", "0", str(stream)) as served:
        body = httpx.get(served.url, timeout=10).text
        shown = run_cli("tail", served.url, "--no-reconnect", "-q", "--format", "json")
        again = httpx.get(served.url, timeout=10).text
    assert body.endswith(
        'id: 1\ndata: {"n":1}\n\n'
        ": OPENROUTER PROCESSING\n\n"
        'id: 3\ndata: {"n":2}\n\n'
        ": two\n: lines\n\n"
        'id: 5\ndata: {"n":3,"comment":"a field of the data, not a comment"}\n\n'
    ), body
    assert again == body  # the same bytes to every client
    assert shown.returncode == ExitCode.OK, shown.stderr
    events = [json.loads(line) for line in shown.stdout.splitlines()]
    assert [(e["id"], json.loads(e["data"])["n"]) for e in events] == [("1", 1), ("3", 2), ("5", 3)]


def test_resuming_after_an_event_before_a_comment_sends_the_comment_again(tmp_path: Path) -> None:
    stream = write_lines(tmp_path / "chat.jsonl", RECORDS)
    with ServeProcess("--interval", "0", str(stream)) as served:
        body = httpx.get(served.url, headers={"Last-Event-ID": "1"}, timeout=10).text
    assert body.startswith(": OPENROUTER PROCESSING\n\nid: 3\n"), body


def test_with_no_ids_the_comments_are_sent_the_same(tmp_path: Path) -> None:
    stream = write_lines(tmp_path / "chat.jsonl", RECORDS[:3])
    with ServeProcess("--interval", "0", "--no-ids", str(stream)) as served:
        body = httpx.get(served.url, timeout=10).text
    assert body.endswith('data: {"n":1}\n\n: OPENROUTER PROCESSING\n\ndata: {"n":2}\n\n'), body


def test_a_comment_that_is_not_text_is_refused_at_load(tmp_path: Path) -> None:
    stream = write_lines(tmp_path / "bad.jsonl", [{"n": 1}, {"comment": 5}])
    result = run_cli("serve", "--port", "0", str(stream))
    assert result.returncode == ExitCode.BAD_INPUT, result.stderr
    assert '"comment" must be a string' in result.stderr
