"""``sseplay serve DIR`` (issue 24): a directory of recordings, or one recording file, served
by the command with --match-ignore, --chunks, --speed, --ping and --once."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.conftest import ServeProcess, run_cli
from tests.http.recordings_support import raw_request, write_recording


def _chat(directory: Path, body: dict[str, object], reply: str) -> Path:
    return write_recording(
        directory / "POST-v1-chat.jsonl",
        method="POST",
        target="/v1/chat",
        body=json.dumps(body),
        blocks=[(0.01, f"data: {reply}\n\n"), (0.02, "data: [DONE]\n\n")],
    )


def test_serve_dir_prints_its_base_url_and_answers_with_the_recording(tmp_path: Path) -> None:
    _chat(tmp_path, {"model": "m", "user": "ann"}, "hello")
    with ServeProcess(str(tmp_path), "--match-ignore", "user") as served:
        assert served.url.count("/") == 2  # http://127.0.0.1:PORT: the upstream's stand-in
        answer = httpx.post(served.url + "/v1/chat", json={"user": "bob", "model": "m"})
        assert answer.status_code == 200
        assert answer.content == b"data: hello\n\ndata: [DONE]\n\n"
        missing = httpx.post(served.url + "/v1/chat", json={"model": "other"})
        assert missing.status_code == 404
        assert "model" in missing.json()["differs"]
        health = httpx.get(served.url + "/healthz").json()
        assert [(r["method"], r["path"]) for r in health["recordings"]] == [("POST", "/v1/chat")]
        code, _, err = served.stop()
    assert code == 0
    assert "no recording matches" in err


def test_one_recording_file_chunks_and_speed(tmp_path: Path) -> None:
    block = "data: hello world\n\n"
    path = write_recording(
        tmp_path / "one.jsonl",
        blocks=[(4.0, block)],
        reads=[(0.0, 8), (4.0, len(block) - 8)],
    )
    with ServeProcess(str(path), "--chunks", "--speed", "10") as served:
        answer = raw_request(served.url + "/v1/stream")
    assert [data for _, data in answer.chunks] == [b"data: he", b"llo world\n\n"]
    assert answer.chunks[1][0] - answer.chunks[0][0] >= 0.35  # 4 s / 10


def test_no_ping_unless_asked_for(tmp_path: Path) -> None:
    blocks = [(0.0, "data: a\n\n"), (0.6, "data: b\n\n")]
    write_recording(tmp_path / "gap.jsonl", blocks=blocks)
    with ServeProcess(str(tmp_path)) as served:
        assert raw_request(served.url + "/v1/stream").body == b"data: a\n\ndata: b\n\n"
    with ServeProcess(str(tmp_path), "--ping", "0.2") as served:
        body = raw_request(served.url + "/v1/stream").body
    assert body.startswith(b"data: a\n\n: ping\n\n")
    assert body.endswith(b"data: b\n\n")


def test_a_partial_recording_is_said_in_one_line(tmp_path: Path) -> None:
    path = write_recording(tmp_path / "cut.jsonl", blocks=[(0.0, "data: a\n\n")], end=None)
    with ServeProcess(str(tmp_path)) as served:
        assert raw_request(served.url + "/v1/stream").body == b"data: a\n\n"
        _, _, err = served.stop()
    said = [line for line in err.splitlines() if "partial recording" in line]
    assert len(said) == 1
    assert said[0].endswith(f"{path}: partial recording (no end line): played as far as it goes")


def test_once_stops_when_every_recording_was_played(tmp_path: Path) -> None:
    write_recording(tmp_path / "a.jsonl", blocks=[(0.0, "data: a\n\n")])
    _chat(tmp_path, {"model": "m"}, "x")
    with ServeProcess(str(tmp_path), "--once") as served:
        raw_request(served.url + "/v1/stream")
        assert served.process.poll() is None  # one of two played
        httpx.post(served.url + "/v1/chat", json={"model": "m"})
        served.process.wait(10)
        code, _, _ = served.stop()
    assert code == 0


def test_flags_that_do_not_apply_are_usage_errors(tmp_path: Path) -> None:
    write_recording(tmp_path / "a.jsonl", blocks=[(0.0, "data: a\n\n")])
    looped = run_cli("serve", str(tmp_path), "--loop")
    assert looped.returncode != 0
    assert "--loop does not apply to recordings" in looped.stderr
    events = tmp_path.parent / "events.jsonl"
    events.write_text('{"data": "x"}\n')
    chunked = run_cli("serve", str(events), "--chunks")
    assert chunked.returncode != 0
    assert "--chunks applies to recordings" in chunked.stderr
    missing = run_cli("serve", str(events), "--record-missing", "http://127.0.0.1:9")
    assert missing.returncode != 0
    assert "--record-missing applies to recordings" in missing.stderr
