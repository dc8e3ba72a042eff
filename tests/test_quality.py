"""The code is linted, formatted and type-checked as part of the suite."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import CONFORMANCE, ROOT


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
        "from sseplay.cli.app import main\n"
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


def test_the_conformance_vectors_are_part_of_the_repository() -> None:
    """A clone is tested alone (issue 10.1): the WHATWG vectors the parser is tested
    against live under tests/, not beside the repository."""
    assert CONFORMANCE.is_relative_to(ROOT / "tests")
    for name in ("sse_vectors.json", "sse_vectors_bytes.json"):
        assert json.loads((CONFORMANCE / name).read_text("utf-8")), name
