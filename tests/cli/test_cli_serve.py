"""``sseplay serve`` end to end as a user runs it: a subprocess, stdout, stderr, exit codes."""

from __future__ import annotations

import gzip
import itertools
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from sseplay.errors import ExitCode
from tests.conftest import ROOT, ServeProcess, run_cli, sseplay, write_lines
from tests.support import recorded_events


def test_prints_the_url_and_nothing_else_then_once_exits_zero() -> None:
    with ServeProcess("samples/scores.json", "--interval", "0", "--once", "--retry", "0") as serve:
        assert serve.urls == [serve.url]
        assert serve.url.endswith("/events")
        body = httpx.get(serve.url, timeout=10).text
        assert body.count("data: ") == 3
        out, err = serve.process.communicate(timeout=10)
        assert serve.process.returncode == 0
        assert out == b""
        assert b"connected to /events" in err
        assert b"left /events after 3 events (got the whole replay)" in err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stops_within_a_second_with_streams_open(sig: int) -> None:
    with (
        ServeProcess("samples/scores.json", "--interval", "30", "--ping", "0") as serve,
        httpx.stream("GET", serve.url, timeout=10) as response,
    ):
        assert response.status_code == 200
        next(response.iter_raw())  # the first event is out; the stream stays open
        started = time.monotonic()
        code, out, err = serve.stop(sig)
        elapsed = time.monotonic() - started
    assert code == 0
    # It ends its streams itself: about 0.5 s on an idle machine. Waiting for them instead
    # would take until the next event, 30 s away; a busy machine may add a few seconds.
    assert elapsed < 10.0
    assert "Traceback" not in err
    assert out == "", "nothing but the URL goes to stdout"


def test_several_files_get_their_own_routes_and_stdin_works(tmp_path: Path) -> None:
    gz = tmp_path / "feed.json.gz"
    gz.write_bytes(gzip.compress(b'[{"a": 1}]'))
    import subprocess
    import sys

    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sseplay",
            "serve",
            "--port",
            "0",
            "--interval",
            "0",
            "samples/scores.json",
            f"custom={gz}",
            "-",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.write('"from stdin"\n')
    process.stdin.close()
    urls = [process.stdout.readline().strip() for _ in range(3)]
    try:
        assert [u.rsplit("/", 1)[1] for u in urls] == ["scores", "custom", "stdin"]
        assert httpx.get(urls[1], timeout=10).text == 'id: 1\ndata: {"a":1}\n\n'
        assert httpx.get(urls[2], timeout=10).text == "id: 1\ndata: from stdin\n\n"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(10)
        process.stdout.close()
        assert process.stderr is not None
        process.stderr.close()
    assert process.returncode == 0


def test_port_in_use_is_one_line_and_its_own_exit_code() -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        result = run_cli("serve", "samples/scores.json", "--port", str(port))
    finally:
        holder.close()
    assert result.returncode == ExitCode.CANNOT_SERVE
    assert result.stderr.strip().splitlines() == [
        f"sseplay: error: cannot listen on 127.0.0.1:{port}: Address already in use "
        "(pick another --port, or 0 for any free one)"
    ]
    assert result.stdout == ""


BAD_FILES = {
    "empty.json": (b"", "the file is empty"),
    "broken.json": (b'{"a": 1}\n{"a": \n', "broken.json:2:"),
    "object.json": (b'{\n "a": 1\n}\n', "object.json:1:"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_files_fail_before_a_socket_opens(tmp_path: Path, name: str) -> None:
    content, expected = BAD_FILES[name]
    path = tmp_path / name
    path.write_bytes(content)
    result = run_cli("serve", str(path), "--port", "0")
    assert result.returncode == ExitCode.BAD_INPUT
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "code", "expected"),
    [
        (["missing.json"], ExitCode.BAD_INPUT, "missing.json: no such file"),
        (["samples"], ExitCode.BAD_INPUT, "samples: is a directory"),
        (["samples/scores.json", "--interval", "-1"], ExitCode.USAGE, "--interval must be 0 or"),
        # Non-finite and absurd numbers are usage errors (issue 11.5), not a stream that
        # never sends anything.
        (["samples/scores.json", "--interval", "nan"], ExitCode.USAGE, "must be a finite"),
        (["samples/scores.json", "--interval", "inf"], ExitCode.USAGE, "must be a finite"),
        (["samples/scores.json", "--speed", "0"], ExitCode.USAGE, "--speed must be more than 0"),
        (["samples/scores.json", "--speed", "nan"], ExitCode.USAGE, "--speed must be a finite"),
        (["samples/scores.json", "--max-gap", "-inf"], ExitCode.USAGE, "--max-gap must be a fin"),
        (["samples/scores.json", "--send-timeout", "nan"], ExitCode.USAGE, "--send-timeout"),
        (["samples/scores.json", "--send-timeout", "inf"], ExitCode.USAGE, "--send-timeout"),
        (["samples/scores.json", "--ping", "1e-6"], ExitCode.USAGE, "--ping must be 0.1 or more"),
        (["samples/scores.json", "--retry", "99999999999"], ExitCode.USAGE, "--retry must be 0"),
        (["samples/scores.json", "--cors", "example.com"], ExitCode.USAGE, "not an origin"),
        # Routes are plain names (issue 11.10): no path parameters, nothing a URL escapes.
        (["{p:path}=samples/scores.json"], ExitCode.USAGE, "may hold only letters"),
        (["a b=samples/scores.json"], ExitCode.USAGE, "may hold only letters"),
        (["q?x=samples/scores.json"], ExitCode.USAGE, "may hold only letters"),
        (["healthz=samples/scores.json"], ExitCode.USAGE, "/healthz is taken"),
        (["samples/scores.json", "--route", "/x/../y"], ExitCode.USAGE, "may hold only letters"),
        (["samples/scores.json", "--route", "/a//b"], ExitCode.USAGE, "only letters"),
        (
            ["samples/scores.json", "--time-field", "nope"],
            ExitCode.BAD_INPUT,
            'has no field "nope"',
        ),
        (["samples/notifications.json", "--id-field", "type"], ExitCode.BAD_INPUT, "duplicate id"),
        (["samples/scores.json", "--once", "--loop"], ExitCode.USAGE, "--loop never ends"),
        (["samples/scores.json", "--event-type", "a\nb"], ExitCode.USAGE, "line break"),
        (["samples/scores.json", "--port", "70000"], ExitCode.USAGE, "--port must be 0 to 65535"),
        (["samples/scores.json", "--bogus"], ExitCode.USAGE, "No such option: --bogus"),
        # A ROUTE=FILE that cannot even be looked at as a path (issue 11.8).
        (["r" * 300 + "=missing.json"], ExitCode.BAD_INPUT, "missing.json: no such file"),
        # click's close matches, in order (--control is one of them too).
        (["samples/scores.json", "--intervl", "1"], ExitCode.USAGE, "--interval or --jitter?)"),
        (
            ["samples/scores.json", "--host", "no.such.host.invalid"],
            ExitCode.CANNOT_SERVE,
            "cannot listen",
        ),
    ],
)
def test_bad_input_gets_one_clear_line(args: list[str], code: int, expected: str) -> None:
    result = (
        run_cli("serve", *args, "--port", "0") if "--port" not in args else run_cli("serve", *args)
    )
    assert result.returncode == code, result.stderr
    assert expected in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stdout == ""


def test_file_names_that_are_not_plain_routes_are_refused(tmp_path: Path) -> None:
    """Several files are served at their stems; a stem a URL cannot carry says how to name
    the route instead of serving a route that 404s or shadows sseplay's own."""
    odd = write_lines(tmp_path / "my events.jsonl", [{"a": 1}])
    fine = write_lines(tmp_path / "fine.jsonl", [{"a": 1}])
    result = run_cli("serve", str(odd), str(fine), "--port", "0")
    assert result.returncode == ExitCode.USAGE
    assert "ROUTE=" in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr


def test_a_recording_replays_with_types_ids_and_timing(tmp_path: Path) -> None:
    """serve -> tail --record -> serve the recording -> tail: same events, same gaps."""
    records = [{"type": t, "id": f"k{n}", "v": n} for n, t in enumerate(["a", "b", "a", "c"])]
    source = write_lines(tmp_path / "src.jsonl", records)
    first_rec = tmp_path / "first.jsonl"
    second_rec = tmp_path / "second.jsonl"
    mapping = ["--event-field", "type", "--id-field", "id", "--interval", "0.15", "--retry", "50"]
    with ServeProcess(str(source), *mapping) as serve:
        result = run_cli(
            "tail", serve.url, "--record", str(first_rec), "--format", "json", "--timeout", "10"
        )
    assert result.returncode == 0, result.stderr
    # Served at the path it was recorded from; the second tail reconnects with the last id
    # and is answered 204, as by the first server, so it ends by itself.
    with ServeProcess(str(first_rec)) as replay:
        again = run_cli(
            "tail",
            replay.url + "/events",
            "--record",
            str(second_rec),
            "--format",
            "json",
            "--timeout",
            "10",
        )
    assert again.returncode == 0, again.stderr

    def events(path: Path) -> list[dict[str, object]]:
        # The recording holds the stream as it came (issue 24's format): its events are
        # what a client parses from its blocks.
        return [
            {"offset": offset, "event": e.event, "id": e.id, "data": e.data}
            for offset, e in recorded_events(path)
        ]

    one, two = events(first_rec), events(second_rec)
    assert [(e["event"], e["id"], e["data"]) for e in one] == [
        ("a", "k0", '{"type":"a","id":"k0","v":0}'),
        ("b", "k1", '{"type":"b","id":"k1","v":1}'),
        ("a", "k2", '{"type":"a","id":"k2","v":2}'),
        ("c", "k3", '{"type":"c","id":"k3","v":3}'),
    ]
    assert [(e["event"], e["id"], e["data"]) for e in two] == [
        (e["event"], e["id"], e["data"]) for e in one
    ]
    # The replay keeps the recorded times: each event's time since the first, which a
    # replay schedules as an absolute deadline (one late read on a busy machine moves one
    # arrival, not the ones after it; sending all at once would be 0.15 s off and more).
    since_one = [e["offset"] - one[0]["offset"] for e in one]  # type: ignore[operator]
    since_two = [e["offset"] - two[0]["offset"] for e in two]  # type: ignore[operator]
    gaps_one = [b - a for a, b in itertools.pairwise(since_one)]
    assert statistics.median(gaps_one) == pytest.approx(0.15, abs=0.03)
    for recorded, replayed in zip(since_one, since_two, strict=True):
        assert replayed == pytest.approx(recorded, abs=0.06)


@pytest.mark.skipif(sys.platform == "win32", reason="no open-file limit to raise on Windows")
def test_more_clients_than_a_low_open_file_limit_all_get_their_stream() -> None:
    """Many systems start processes with a soft limit of 1,024 open files; the server lifts
    it to the hard limit itself, so it is not what caps a fan-out."""
    import resource

    soft_limit = 200
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert hard == resource.RLIM_INFINITY or hard > 600, "the machine's hard limit is too low"

    def lower_the_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft_limit, hard))

    clients: list[socket.socket] = []
    with subprocess.Popen(
        sseplay("serve", "samples/scores.json", "--port", "0", "--interval", "30", "-q"),
        stdout=subprocess.PIPE,
        cwd=ROOT,
        preexec_fn=lower_the_limit,
    ) as process:
        try:
            assert process.stdout is not None
            url = process.stdout.readline().decode().strip()
            port = int(url.rsplit(":", 1)[1].split("/")[0])
            for _ in range(soft_limit + 100):
                client = socket.create_connection(("127.0.0.1", port), timeout=10)
                client.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                clients.append(client)
            for client in clients:
                received = b""
                while b"data:" not in received:
                    chunk = client.recv(65536)
                    assert chunk, "a client was dropped"
                    received += chunk
        finally:
            for client in clients:
                client.close()
            process.terminate()


def test_help_reads_like_a_hand_written_one() -> None:
    """Metavars name what a flag takes, flags are single, summaries are whole (issue 10.14)."""
    serve_help = " ".join(run_cli("serve", "--help").stdout.split())
    # FILE is optional (--scenario, --canary): click shows it bracketed or not by release.
    assert re.search(r"Usage: sseplay serve \[OPTIONS\] \[?FILE\.\.\.\]?", serve_help)
    for shown in ("--interval SECONDS", "--time-field FIELD", "--speed FACTOR", "--port PORT"):
        assert shown in serve_help, shown
    for flag in ("--loop", "--broadcast", "--once"):
        assert f"{flag} " in serve_help, flag
        assert f"--no-{flag[2:]}" not in serve_help, flag
    for python_ish in ("<float>", "<int>", "<str>", "<list", "{", " / --no-"):
        assert python_ish not in serve_help, python_ish
    top = run_cli("--help").stdout
    summaries = [line for line in top.splitlines() if line.startswith(("  serve", "  tail"))]
    assert len(summaries) == 2
    assert not any(line.endswith("...") for line in summaries), summaries
    tail_usage = run_cli("tail", "--help").stdout.splitlines()[0]
    assert tail_usage == "Usage: sseplay tail [OPTIONS] URL"


def test_the_server_stack_imports_with_no_collection_no_validator_and_only_what_it_needs() -> None:
    # The start-up of `serve` (issue 12 item 7): a full collection while FastAPI and
    # pydantic are imported walked ~80,000 objects for nothing (about 30 ms of launch), and
    # pydantic built validators for FastAPI's ~40 models, its OpenAPI document's among
    # them, which `serve` never uses (about 110 ms).
    program = """
import gc
from pydantic import BaseModel
from sseplay.cli.startup import server_stack_importing
started = []
gc.callbacks.append(lambda phase, info: started.append(info) if phase == "start" else None)
with server_stack_importing():
    import sseplay.server
import sys
print(len(started), gc.get_freeze_count(), gc.isenabled())
optional = ("sseplay.faults.spec", "sseplay.sources.follow", "sseplay.sources.redis_feed", "redis")
print(sorted(name for name in optional if name in sys.modules))
from fastapi.openapi.models import Contact, OpenAPI
print(OpenAPI.__pydantic_complete__, BaseModel.model_config)
# A model left unbuilt is built on its first validation, and validates as ever.
print(Contact(name="n", email="a@b.c").name, Contact.__pydantic_complete__)
class Defined(BaseModel):  # a model defined afterwards is built at once again
    x: int
print(Defined.__pydantic_complete__)
"""
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True
    )
    counts, loaded, deferred, first_use, defined_after = result.stdout.splitlines()
    collections, frozen, enabled = counts.split()
    assert collections == "0"
    # Faults, following and Redis load only when faults, a followed file or a Redis
    # stream are served.
    assert loaded == "[]"
    assert int(frozen) > 50_000  # the whole stack, out of every later collection
    assert enabled == "True"
    assert deferred == "False {}"  # not built, and BaseModel's configuration as it was
    assert first_use == "n True"
    assert defined_after == "True"
