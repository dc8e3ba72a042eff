"""What the README and docs/ say about sseplay's behaviour is what it does."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import ROOT
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
