"""``sseplay probe URL``: one GET, exit 0 on a 2xx and 1 with one line otherwise, against
real servers; the HEALTHCHECK of docs/deploy/Containerfile run as it is written."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time

import pytest

from sseplay import Stream
from sseplay.errors import ExitCode
from sseplay.server import Server
from tests.conftest import ROOT, SAMPLES, RawServer, ServeProcess, free_port, run_cli

SCORES = str(SAMPLES / "scores.json")
CONTAINERFILE = ROOT / "docs" / "deploy" / "Containerfile"


def test_probe_exits_0_on_200_and_1_on_a_refused_port_and_on_a_404() -> None:
    with ServeProcess(SCORES, "-q") as server:
        base = server.url.removesuffix("/events")
        healthy = run_cli("probe", base + "/healthz")
        assert healthy.returncode == ExitCode.OK, healthy.stderr
        assert healthy.stdout == "200 OK\n"
        assert healthy.stderr == ""
        missing = run_cli("probe", base + "/nowhere")
        server.stop()
    refused = run_cli("probe", f"http://127.0.0.1:{free_port()}/healthz")
    for result, said in ((missing, "answered 404 Not Found"), (refused, "cannot connect to")):
        assert result.returncode == ExitCode.ERROR
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("sseplay: error: "), lines
        assert said in lines[0], lines
        assert result.stdout == ""


def test_probe_timeout_against_a_server_that_never_answers_exits_1_in_time() -> None:
    released = threading.Event()

    def never_answers(conn: socket.socket, request: bytes, number: int) -> None:
        released.wait(10)

    with RawServer(never_answers) as server:
        started = time.monotonic()
        result = run_cli("probe", server.url, "--timeout", "0.3")
        took = time.monotonic() - started
        released.set()
    assert result.returncode == ExitCode.ERROR
    assert result.stderr == f"sseplay: error: {server.url}: no answer within 0.3 s (--timeout)\n"
    assert took < 8  # the request's own 10 s wait would be far more


def test_probe_sends_the_token_as_tail_does_and_reads_no_body() -> None:
    with ServeProcess(SCORES, "-q", "--token", "s3cret", "--interval", "5") as server:
        without = run_cli("probe", server.url)
        assert without.returncode == ExitCode.ERROR
        assert "answered 401" in without.stderr
        # The stream itself: 200 at its headers, though its events take 15 s.
        started = time.monotonic()
        with_token = run_cli("probe", server.url, "--token", "s3cret", "-q")
        assert with_token.returncode == ExitCode.OK, with_token.stderr
        assert with_token.stdout == ""
        assert time.monotonic() - started < 8


def test_probe_over_tls_one_line_without_trust_then_cacert_and_insecure() -> None:
    with Server(Stream.from_file(SCORES, interval=0), self_signed=True) as server:
        assert server.ca_file is not None
        healthz = server.base_url + "/healthz"
        untrusted = run_cli("probe", healthz)
        trusted = run_cli("probe", healthz, "--cacert", server.ca_file)
        insecure = run_cli("probe", healthz, "--insecure")
    assert untrusted.returncode == ExitCode.ERROR
    assert untrusted.stderr.startswith(f"sseplay: error: TLS failed for {healthz}:")
    assert len(untrusted.stderr.splitlines()) == 1
    assert trusted.returncode == ExitCode.OK, trusted.stderr
    assert insecure.returncode == ExitCode.OK, insecure.stderr


def test_probe_bad_input_is_a_usage_line() -> None:
    for args, said in (
        (("ftp://host/x",), "unsupported URL scheme"),
        (("http://127.0.0.1:1/", "--timeout", "0"), "--timeout must be"),
        (("http://127.0.0.1:1/", "--insecure", "--cacert", "x.pem"), "not both"),
    ):
        result = run_cli("probe", *args)
        assert result.returncode == ExitCode.USAGE, result.stderr
        assert said in result.stderr
        assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    "command",
    [
        ["probe", "-q", "{base}/healthz"],
        ["tail", "{base}/events", "--check-delivery", "--count", "2", "-q"],
    ],
    ids=["probe", "tail --check-delivery"],
)
def test_probe_and_check_delivery_never_import_the_server_stack(command: list[str]) -> None:
    program = (
        "import sys\n"
        "sys.argv = ['sseplay', *sys.argv[1:]]\n"
        "from sseplay.cli.app import main\n"
        "try:\n    main()\nexcept SystemExit as stopped:\n    print('CODE', stopped.code)\n"
        "heavy = {m.split('.')[0] for m in sys.modules}\n"
        "heavy &= {'fastapi', 'uvicorn', 'sse_starlette', 'starlette'}\n"
        "ours = ('sseplay.http', 'sseplay.server')\n"
        "server = sorted(m for m in sys.modules if m.startswith(ours))\n"
        "print('HEAVY', sorted(heavy), server)\n"
    )
    with ServeProcess(SCORES, "-q", "--interval", "0.01") as server:
        base = server.url.removesuffix("/events")
        args = [arg.format(base=base) for arg in command]
        result = subprocess.run(
            [sys.executable, "-c", program, *args],
            capture_output=True,
            text=True,
            timeout=20,
            cwd=ROOT,
        )
    assert "HEAVY [] []" in result.stdout, result.stdout + result.stderr
    assert "CODE" not in result.stdout  # exit 0: main returned


def test_the_containerfile_healthcheck_command_runs_against_a_live_server() -> None:
    """The image cannot be built here (no network): its HEALTHCHECK's command is run as
    written, with the test server's port in place of 8000."""
    text = CONTAINERFILE.read_text()
    found = re.search(r"^HEALTHCHECK .*?CMD (\[.*?\])$", text, re.MULTILINE | re.DOTALL)
    assert found, "no HEALTHCHECK ... CMD [...] in the Containerfile"
    command = json.loads(found.group(1))
    assert command[:2] == ["sseplay", "probe"]
    assert "http://127.0.0.1:8000/healthz" in command
    with ServeProcess(SCORES, "-q") as server:
        port = server.url.split(":")[2].split("/")[0]
        args = [arg.replace(":8000/", f":{port}/") for arg in command[1:]]
        healthy = run_cli(*args)
        server.stop()
    assert healthy.returncode == ExitCode.OK, healthy.stderr
    down = run_cli(*args)  # the server is gone: unhealthy
    assert down.returncode == ExitCode.ERROR
