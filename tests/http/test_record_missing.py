"""``serve DIR --record-missing UPSTREAM`` (issue 24): a request no recording matches is
forwarded by the recording proxy's code, recorded into DIR, and answered from that
recording from then on, with the upstream gone."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from sseplay import Server, Stream
from sseplay.exchange import read_exchange
from sseplay.recordings import Recordings
from tests.conftest import ServeProcess, run_cli
from tests.support import wait_until

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def _upstream() -> Server:
    stream = Stream.from_records([{"n": n} for n in range(3)], interval=0, retry=1500)
    return Server({"/v1/chat": stream}, ping=0)


def _recorded(url: str) -> int:
    return len(httpx.get(url + "/healthz", timeout=10).json()["recordings"])


def test_serve_dir_records_a_missing_exchange_and_plays_it_with_the_upstream_stopped(
    tmp_path: Path,
) -> None:
    recordings = tmp_path / "rec"  # not there yet: the first run creates it
    with _upstream() as upstream:
        base = upstream.url.removesuffix("/v1/chat")
        with ServeProcess(str(recordings), "--record-missing", base) as served:
            first = httpx.post(served.url + "/v1/chat", json=BODY, timeout=10)
            assert first.status_code == 200
            assert first.headers["content-type"].startswith("text/event-stream")
            assert first.text.count("data: ") == 3
            # The client has its last byte before the recording its end line: wait for the
            # server to have it among its recordings.
            wait_until(lambda: _recorded(served.url) == 1, timeout=10)
            [saved] = sorted(recordings.glob("POST-v1-chat-*.jsonl"))
            assert read_exchange(saved).complete
            upstream.stop()
            # The same body, its keys in another order: the recording answers, byte for byte.
            reordered = json.dumps({"messages": BODY["messages"], "model": "m"}, indent=1)
            second = httpx.post(
                served.url + "/v1/chat",
                content=reordered,
                headers={"content-type": "application/json"},
                timeout=10,
            )
            assert second.status_code == 200
            assert second.content == first.content
            assert sorted(recordings.glob("*.jsonl")) == [saved]  # nothing forwarded again
            # Another body is forwarded; the upstream is down: 502, and nothing is played.
            other = httpx.post(served.url + "/v1/chat", json={"model": "x"}, timeout=10)
            assert other.status_code == 502
            assert "upstream" in other.json()["error"]
            code, _, err = served.stop()
    assert code == 0, err
    assert "forwarded to" in err
    assert "played from now on" in err


def test_the_library_records_missing_exchanges_too(tmp_path: Path) -> None:
    with _upstream() as upstream:
        base = upstream.url.removesuffix("/v1/chat")
        with Server(Recordings(tmp_path, record_missing=base)) as served:
            first = httpx.post(served.url + "/v1/chat", json=BODY, timeout=10)
            wait_until(lambda: _recorded(served.url) == 1, timeout=10)
            upstream.stop()
            second = httpx.post(served.url + "/v1/chat", json=BODY, timeout=10)
            health = httpx.get(served.url + "/healthz", timeout=10).json()
    assert second.content == first.content
    assert [(r["method"], r["path"]) for r in health["recordings"]] == [("POST", "/v1/chat")]


def test_record_missing_needs_a_directory_and_an_http_url(tmp_path: Path) -> None:
    (tmp_path / "rec").mkdir()
    bad_url = run_cli("serve", str(tmp_path / "rec"), "--record-missing", "ftp://x")
    assert bad_url.returncode == 2
    assert "--record-missing 'ftp://x' is not an http:// or https:// URL" in bad_url.stderr
