"""``sseplay tail URL >&-`` (issue 23): stdout closed is one line and exit 11, not a
traceback, whatever the format."""

from __future__ import annotations

import shlex
import socket
import subprocess

import pytest

from sseplay.errors import ExitCode
from tests.conftest import ROOT, SSE_HEAD, RawServer, sseplay


def _one_event(conn: socket.socket, request: bytes, number: int) -> None:
    conn.sendall(SSE_HEAD + b"data: x\n\n")


@pytest.mark.parametrize("args", [[], ["--data-only"], ["-f", "raw"], ["-f", "pretty"]])
def test_tail_with_stdout_closed_is_one_line_and_exit_11(args: list[str]) -> None:
    with RawServer(_one_event) as server:
        command = shlex.join(sseplay("tail", server.url, "--count", "1", *args))
        result = subprocess.run(
            ["sh", "-c", f"exec {command} >&-"],  # fd 1 closed, not /dev/null
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=20,
            cwd=ROOT,
        )
    assert result.returncode == ExitCode.OUTPUT_FAILED, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("sseplay: ")
    assert "stdout is closed" in lines[0]
