"""A library ``Server`` leaves the process alone (issue 22): importing sseplay and running a
server replace none of uvicorn's process-wide handlers (sse-starlette's import replaces
``uvicorn.Server.handle_exit``, so sseplay never imports it) and no signal handler."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT

PROBE = """
import signal
import sys

import uvicorn

uvicorn_own = uvicorn.Server.handle_exit
handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

import sseplay
from sseplay import Server, Stream

print("after import", uvicorn.Server.handle_exit is uvicorn_own)
import httpx

with Server(Stream.from_records([1, 2], interval=0)) as server:
    body = httpx.get(server.url, timeout=10).text
    print("while serving", uvicorn.Server.handle_exit is uvicorn_own)
print("events", body.count("data: "))
print("after stop", uvicorn.Server.handle_exit is uvicorn_own)
print("signals", all(signal.getsignal(s) is h for s, h in handlers.items()))
print("sse_starlette", "sse_starlette" in sys.modules)
"""


def test_import_sseplay_and_a_server_leave_uvicorn_handle_exit_and_signals_alone() -> None:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": path},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "after import True",
        "while serving True",
        "events 2",
        "after stop True",
        "signals True",
        "sse_starlette False",
    ]
