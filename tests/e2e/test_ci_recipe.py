"""The CI recipe (docs/ci.md, docs/ci-smoke.sh) and the README's shell snippet run in a real
shell, so what they promise stays true."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()
SCRIPT = ROOT / "docs" / "ci-smoke.sh"
WORKFLOW = (ROOT / "docs" / "ci.md").read_text()


def shell_env() -> dict[str, str]:
    """The shell finds this interpreter's ``sseplay`` first."""
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}


def test_the_ci_script_serves_and_asserts_in_a_real_shell() -> None:
    result = subprocess.run(
        ["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60, env=shell_env()
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("ok: 11 events from http://127.0.0.1:")


def test_the_workflow_runs_the_scripts_commands() -> None:
    """The workflow's serve and tail lines are the script's, word for word."""
    script = SCRIPT.read_text()
    for command in ("sseplay serve ", "sseplay tail "):
        (in_script,) = [line for line in script.splitlines() if line.startswith(command)]
        command_line = in_script.split(" >")[0].replace('"$url"', '"$STREAM_URL"')
        assert command_line in WORKFLOW, command


def test_the_readme_background_snippet_runs_in_a_real_shell(tmp_path: Path) -> None:
    (snippet,) = [b for b in re.findall(r"```sh\n(.*?)```", README, re.S) if "--url-file" in b]
    url_file = tmp_path / "url"
    snippet = snippet.replace("/tmp/sseplay-url", str(url_file))
    result = subprocess.run(
        ["bash", "-c", "set -e\n" + snippet + "wait\n"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=shell_env(),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[DONE]"
    assert not url_file.exists(), "the URL file outlived its server"
