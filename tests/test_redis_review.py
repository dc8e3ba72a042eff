"""An adversarial review of Redis Streams (``sseplay publish``, ``sseplay serve redis://``):
hostile producers, clients and networks, against a real ``redis-server`` of the module's
own on a free 127.0.0.1 port (``tests/redis_server.py``), and ones of a test's own where
a test stops or kills its Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.conftest import ROOT, run_cli
from tests.redis_server import REDIS_SERVER, RedisServer

redis = pytest.importorskip("redis")

pytestmark = pytest.mark.skipif(
    not os.path.exists(REDIS_SERVER), reason="needs redis-server (apt-get install redis-server)"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("redis")) as running:
        yield running


@pytest.fixture
def key(request: pytest.FixtureRequest) -> str:
    """A stream key of this test's own, on the module's shared server."""
    return f"{request.node.name}-{time.monotonic_ns()}"


# The public API.


def test_redis_stream_is_exported_without_loading_redis_or_the_server() -> None:
    probe = (
        "import sys, sseplay\n"
        "assert 'RedisStream' in sseplay.__all__\n"
        "heavy = {m.split('.')[0] for m in sys.modules}\n"
        "print(sorted(heavy & {'fastapi', 'uvicorn', 'sse_starlette', 'starlette', 'redis'}))\n"
        "from sseplay import RedisStream\n"
        "import sseplay.redis_feed\n"
        "assert RedisStream is sseplay.redis_feed.RedisStream\n"
        "stream = RedisStream('redis://127.0.0.1:1/0?stream=feed')\n"
        "print(stream.label, 'redis' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=30, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["[]", "redis://127.0.0.1:1/0?stream=feed False"]


# Flags that shape a file's replay, on redis:// routes.


@pytest.mark.parametrize(
    "flag",
    [
        ["--interval", "0"],
        ["--speed", "2"],
        ["--time-field", "t"],
        ["--data-field", "d"],
        ["--event-type", "tick"],
        ["--broadcast"],
        ["--follow"],
    ],
)
def test_a_file_flag_with_only_redis_sources_is_one_usage_line(flag: list[str]) -> None:
    # Refused before Redis is even asked (nothing listens on port 1): a flag that would
    # silently do nothing is a usage error, exit 2, not a server that ignores it.
    result = run_cli("serve", "--port", "0", "redis://127.0.0.1:1/0?stream=a", *flag)
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        f"sseplay: error: {flag[0]} applies to files only: a redis:// stream sends each entry "
        f"as it is read, with its own type and id; drop {flag[0]}\n"
    )


def test_the_serve_help_says_the_file_flags_apply_to_files_only() -> None:
    result = run_cli("serve", "--help")
    assert result.returncode == 0
    assert "flags apply to files only" in " ".join(result.stdout.replace("│", " ").split())
