"""Redis Streams from the user's side before any Redis is asked: the public name, and the
file-only flags refused on redis:// routes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT, run_cli


def test_redis_stream_is_exported_without_loading_redis_or_the_server() -> None:
    probe = (
        "import sys, sseplay\n"
        "assert 'RedisStream' in sseplay.__all__\n"
        "heavy = {m.split('.')[0] for m in sys.modules}\n"
        "print(sorted(heavy & {'fastapi', 'uvicorn', 'sse_starlette', 'starlette', 'redis'}))\n"
        "from sseplay import RedisStream\n"
        "import sseplay.sources.redis_feed\n"
        "assert RedisStream is sseplay.sources.redis_feed.RedisStream\n"
        "stream = RedisStream('redis://127.0.0.1:1/0?stream=feed')\n"
        "print(stream.label, 'redis' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=30, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["[]", "redis://127.0.0.1:1/0?stream=feed False"]


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
