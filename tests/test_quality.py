"""The code is linted, formatted and type-checked as part of the suite."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_ruff_lint() -> None:
    result = run("ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format() -> None:
    result = run("ruff", "format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict() -> None:
    result = run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_help_does_not_import_the_server_stack() -> None:
    probe = (
        "import sys\n"
        "sys.argv = ['sseplay', '--help']\n"
        "from sseplay.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = {m.split('.')[0] for m in sys.modules}\n"
        "heavy &= {'fastapi', 'uvicorn', 'sse_starlette', 'starlette'}\n"
        "print('HEAVY', sorted(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=30
    )
    assert "serve" in result.stdout
    assert "HEAVY []" in result.stdout


def test_the_suite_needs_nothing_outside_the_repository() -> None:
    """A clone is tested alone: no test reads a path above the repository (issue 10.1)."""
    offenders = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        if path.name == "test_quality.py":  # this test names what it looks for
            continue
        text = path.read_text("utf-8")
        if "ROOT.parent" in text or "../shared" in text or '"shared"' in text:
            offenders.append(path.name)
    assert offenders == [], f"tests reading outside the repository: {offenders}"
