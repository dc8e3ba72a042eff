"""What the README and docs/ say about sseplay's behaviour is what it does."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from tests.conftest import ROOT, sseplay
from tests.test_ci_recipe import shell_env

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
