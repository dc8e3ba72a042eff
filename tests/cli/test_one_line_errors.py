"""The command's own mistakes and interrupts are one line on stderr: a Ctrl-C before the
command is running, a flag without its value. Real subprocesses."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT, run_cli

# Ctrl-C while main() builds the command (tens of ms at every launch): a real SIGINT.
_INTERRUPTED_WHILE_BUILDING = """
import os, signal, sys, typer.main
from sseplay.cli.app import main
build = typer.main.get_command
def interrupted_while_building(app):
    os.kill(os.getpid(), signal.SIGINT)
    return build(app)
typer.main.get_command = interrupted_while_building
main(sys.argv[1:])
"""


# Ctrl-C inside the tail command before its own handler is in place (it imports httpx).
_INTERRUPTED_BEFORE_THE_TAIL = """
import os, signal, sys
import sseplay.cli.tail as tail_command
from sseplay.cli import main
run_tail = tail_command._run_tail
def interrupted_first(*args):
    os.kill(os.getpid(), signal.SIGINT)
    return run_tail(*args)
tail_command._run_tail = interrupted_first
main(sys.argv[1:])
"""


@pytest.mark.parametrize(
    "probe",
    [_INTERRUPTED_WHILE_BUILDING, _INTERRUPTED_BEFORE_THE_TAIL],
    ids=["while-the-command-is-built", "before-the-tail-runs"],
)
def test_ctrl_c_early_is_one_line_and_exit_130(probe: str) -> None:
    # Before: a KeyboardInterrupt traceback and exit -2 (while building), or exit 130 with
    # nothing on stderr (Typer's Exit(130), returned as a code, before the tail ran).
    result = subprocess.run(
        [sys.executable, "-c", probe, "tail", "http://127.0.0.1:9/"],
        capture_output=True,
        text=True,
        timeout=20,
        cwd=ROOT,
    )
    assert result.returncode == 130, result.stderr
    assert result.stderr.strip().splitlines() == ["sseplay: interrupted"]


@pytest.mark.parametrize(
    ("args", "command"),
    [
        (("serve", "samples/llm.jsonl", "--broadcast=yes"), "sseplay serve"),
        (("serve", "samples/llm.jsonl", "--port"), "sseplay serve"),
        (("tail", "http://127.0.0.1:9/", "--expect"), "sseplay tail"),
    ],
)
def test_a_flag_without_its_value_or_given_one_points_at_its_command(
    args: tuple[str, ...], command: str
) -> None:
    # Before: "sseplay: Option '--expect' requires an argument; see 'sseplay --help'", a
    # help page that does not list the option (click's parser gives these no context).
    result = run_cli(*args, timeout=15)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"sseplay: error: {command}: Option "), result.stderr
    assert lines[0].endswith(f"see '{command} --help'"), result.stderr
