"""Two ``--workers`` servers on one port (issue 23): the second used to start without error
and share the port through SO_REUSEPORT, clients getting either file at random. It is
refused as a plain server is (exit 4, one line), and the first goes on serving alone."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

from sseplay.errors import ExitCode
from tests.conftest import ServeProcess, run_cli, write_json

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="workers are forked")


def test_a_second_workers_server_on_a_served_port_is_refused(tmp_path: Path) -> None:
    first = write_json(tmp_path / "first.json", [{"from": "first"}])
    second = write_json(tmp_path / "second.json", [{"from": "second"}])
    with ServeProcess(str(first), "--workers", "2", "--interval", "0") as server:
        port = httpx.URL(server.url).port
        result = run_cli("serve", str(second), "--workers", "2", "--port", str(port))
        assert result.returncode == ExitCode.CANNOT_SERVE, result.stderr
        assert result.stderr.splitlines() == [
            f"sseplay: error: cannot listen on 127.0.0.1:{port}: Address already in use "
            "(pick another --port, or 0 for any free one)"
        ]
        # Every connection still reaches the first (new connections spread over its
        # workers: enough of them that a second server's share would show).
        with httpx.Client(timeout=10) as client:
            bodies = {
                client.get(server.url, headers={"Connection": "close"}).text for _ in range(20)
            }
        assert bodies == {'id: 1\ndata: {"from":"first"}\n\n'}
        code, _, err = server.stop()
    assert code == 0, err
