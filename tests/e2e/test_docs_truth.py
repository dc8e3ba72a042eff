"""What the README and docs/ say about sseplay's behaviour is what it does."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import ROOT, ServeProcess, sseplay
from tests.e2e.test_ci_recipe import shell_env

SCRIPT = ROOT / "docs" / "ci-smoke.sh"


def test_the_ci_recipe_needs_no_checkout_of_sseplay(tmp_path: Path) -> None:
    """docs/ci.md runs in a job's own repository, where there is no samples/ directory: the
    stream it serves comes with the installed package."""
    result = subprocess.run(
        ["bash", str(SCRIPT)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=shell_env(),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("ok: 11 events from http://127.0.0.1:")
    assert "samples/" not in SCRIPT.read_text()


README = (ROOT / "README.md").read_text()


def _readme_row(flag: str) -> str:
    (row,) = [line for line in README.splitlines() if line.startswith(f"| `{flag}")]
    return row


def test_every_format_tail_accepts_is_in_its_help_and_the_readme() -> None:
    """``--format data`` works (it is ``--data-only``): the help and the README say so."""
    import inspect

    from sseplay.cli import tail
    from sseplay.client.defaults import FORMATS

    parameter = inspect.signature(tail.tail).parameters["output"]
    (info,) = parameter.annotation.__metadata__
    row = _readme_row("-f, --format FORMAT")
    for name in FORMATS:
        assert re.search(rf"\b{name}\b", info.help), name
        assert f"`{name}`" in row, name
    shown = subprocess.run(
        [*sseplay("tail", "--help")],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"},
    ).stdout
    (line,) = [line for line in shown.splitlines() if "-f, --format" in line]
    assert re.search(r"\braw or data\b", line), line


def test_a_lone_redis_stream_is_served_where_the_readme_says(tmp_path: Path) -> None:
    """One ``redis://...?stream=ticks`` is served at /events, as one file is; beside another
    source its key names the route. The README's host A line shows the URL it prints."""
    from tests.redis_server import REDIS_SERVER, RedisServer

    if not os.path.exists(REDIS_SERVER):
        pytest.skip("needs redis-server (apt-get install redis-server)")
    pytest.importorskip("redis")
    (line,) = [line for line in README.splitlines() if "# host A" in line]
    command, _, shown = line.partition("# host A: ")
    with RedisServer(tmp_path / "redis") as redis_server:
        url = redis_server.url("ticks")
        assert shlex.split(command)[2] == url.replace(str(redis_server.port), "6379")
        with ServeProcess(url) as alone:
            assert urlsplit(alone.url).path == urlsplit(shown.strip()).path == "/events"
        with ServeProcess(url, "samples/llm.jsonl") as beside:
            assert [urlsplit(u).path for u in beside.urls] == ["/ticks", "/llm"]
