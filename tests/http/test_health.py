"""/livez and /readyz: live while the process serves, ready only while it can do its job."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from sseplay import Server, Stream
from tests.conftest import ServeProcess, write_lines
from tests.http.test_metrics import scrape, value
from tests.redis_server import RedisServer
from tests.support import wait_until

FIVE = [{"n": n} for n in range(5)]


def status(base: str, path: str) -> int:
    return httpx.get(base + path, timeout=5).status_code


def test_a_plain_server_is_live_and_ready_and_healthz_is_unchanged() -> None:
    with Server(Stream.from_records(FIVE)) as server:
        base = server.base_url
        assert httpx.get(base + "/livez", timeout=5).json() == {"status": "live"}
        assert httpx.get(base + "/readyz", timeout=5).json() == {"status": "ready"}
        assert httpx.get(base + "/healthz", timeout=5).json()["status"] == "ok"


def test_killing_redis_makes_it_not_ready_at_once_and_a_restart_ready_again(
    tmp_path: Path,
) -> None:
    redis = RedisServer(tmp_path / "redis").start()
    try:
        with ServeProcess(redis.url("events"), "--metrics", "--ping", "0.2") as process:
            base = process.url.rsplit("/", 1)[0]
            wait_until(lambda: status(base, "/readyz") == 200, timeout=10)
            source = f"redis://127.0.0.1:{redis.port}/0?stream=events"
            assert value(scrape(base), "sseplay_redis_connected", source=source) == 1
            assert redis.process is not None
            redis.process.kill()  # by its PID
            redis.process.wait(10)
            redis.process = None
            wait_until(lambda: status(base, "/readyz") == 503, timeout=2)
            reply = httpx.get(base + "/readyz", timeout=5).json()
            assert reply["status"] == "not ready"
            assert reply["reasons"] == [f"/events: Redis at {source} is unreachable"]
            assert value(scrape(base), "sseplay_redis_connected", source=source) == 0
            assert status(base, "/livez") == 200
            redis.start()  # on the same port
            wait_until(lambda: status(base, "/readyz") == 200, timeout=15)
            assert value(scrape(base), "sseplay_redis_connected", source=source) == 1
            code, _, err = process.stop()
        assert code == 0, err
    finally:
        redis.stop()


def test_a_missing_followed_file_makes_it_not_ready_until_it_is_back(tmp_path: Path) -> None:
    followed = write_lines(tmp_path / "log.jsonl", FIVE)
    with ServeProcess(str(followed), "--follow", "--metrics") as process:
        base = process.url.rsplit("/", 1)[0]
        wait_until(lambda: status(base, "/readyz") == 200, timeout=10)
        assert value(scrape(base), "sseplay_follow_live", route="/events") == 1
        followed.unlink()
        wait_until(lambda: status(base, "/readyz") == 503, timeout=10)
        reasons = httpx.get(base + "/readyz", timeout=5).json()["reasons"]
        assert reasons == [f"/events: the followed file {followed} is missing"]
        assert value(scrape(base), "sseplay_follow_live", route="/events") == 0
        assert status(base, "/livez") == 200
        write_lines(followed, FIVE)
        wait_until(lambda: status(base, "/readyz") == 200, timeout=10)
        assert value(scrape(base), "sseplay_follow_live", route="/events") == 1


def test_an_epoch_to_come_is_not_ready_until_it_begins() -> None:
    epoch = time.time() + 1.5
    stream = Stream.from_records(FIVE, interval=0.01)
    with Server(stream, broadcast=True, epoch=epoch) as server:
        base = server.base_url
        reply = httpx.get(base + "/readyz", timeout=5)
        if time.time() < epoch - 0.2:  # a busy machine may have taken the whole wait
            assert reply.status_code == 503
            assert "the --epoch timeline begins in" in reply.json()["reasons"][0]
        assert status(base, "/livez") == 200
        wait_until(lambda: status(base, "/readyz") == 200, timeout=10)
        assert time.time() >= epoch


def test_livez_and_readyz_obey_the_token() -> None:
    with Server(Stream.from_records(FIVE), token="s3cret") as server:
        base = server.base_url
        assert status(base, "/readyz") == 401
        headers = {"Authorization": "Bearer s3cret"}
        assert httpx.get(base + "/readyz", headers=headers, timeout=5).status_code == 200
        assert httpx.get(base + "/livez", headers=headers, timeout=5).status_code == 200
