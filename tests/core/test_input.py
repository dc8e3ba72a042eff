"""The input side of ``sseplay serve``: time values, input limits, pipes, .gz, signals
during the start-up check, spool files and the progress bar (issues 10 and 11)."""

from __future__ import annotations

import gzip
import io
import json
import os
import resource
import select
import shutil
import signal
import subprocess
import threading
import tracemalloc
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console

from sseplay.cli.progress import StartupProgress
from sseplay.errors import InputError
from sseplay.eventfile import FieldMapping, load_event_file
from sseplay.mapping import parse_time
from sseplay.spool import Spools
from tests.conftest import ROOT, run_cli, sseplay, write_lines
from tests.support import FakeClock, wait_until

TIMED = FieldMapping(time_field="t")


def check_error(path: Path, mapping: FieldMapping | None = None, **kwargs: Any) -> str:
    with pytest.raises(InputError) as caught:
        load_event_file(path.name, path, mapping or FieldMapping(), **kwargs)
    return str(caught.value)


# --- time values (issue 10 item 8, issue 11 item 5) ---------------------------------

BAD_TIMES = [
    "nan",
    "NaN",
    "inf",
    "-Infinity",
    "1e400",
    "1_000",
    "1e3",
    "0x10",
    " ",
    "٣",  # an Arabic-Indic digit: str.isdigit() and float() take it, a person does not
    "99" * 200 + ":00",  # a clock with a 400-digit hour
    "9" * 400,  # 400 digits as a string
]


@pytest.mark.parametrize("value", BAD_TIMES, ids=lambda v: repr(v)[:20])
def test_a_time_string_not_in_a_documented_form_is_refused_at_the_check(
    tmp_path: Path, value: str
) -> None:
    path = write_lines(tmp_path / "t.jsonl", [{"t": 0}, {"t": value}])
    message = check_error(path, TIMED)
    assert message.startswith("t.jsonl:2: record 2: cannot read the time"), message
    assert "ISO-8601" in message  # says what to write instead
    assert len(message) < 400


@pytest.mark.parametrize(
    "raw",
    [b"1e308", b"-1e308", b"9" * 400, b"-" + b"9" * 400, b"1e16"],
    ids=["1e308", "-1e308", "400-digits", "minus-400-digits", "1e16"],
)
def test_a_time_number_out_of_range_is_refused_not_a_traceback(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(b'{"t": 0}\n{"t": ' + raw + b"}\n")
    message = check_error(path, TIMED)
    assert message.startswith("t.jsonl:2: record 2: cannot read the time"), message
    assert "out of range" in message
    assert len(message) < 400, "a 400-digit value is shortened"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_parse_time_refuses_floats_that_are_not_finite(value: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        parse_time(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (12, ("number", 12.0)),
        (12.5, ("number", 12.5)),
        ("12.5", ("number", 12.5)),
        ("-3", ("number", -3.0)),
        ("00:05", ("clock", 5.0)),
        ("01:02:03.5", ("clock", 3723.5)),
        ("1970-01-01T00:00:05Z", ("timestamp", 5.0)),
        (10**15, ("number", 1e15)),
    ],
)
def test_every_documented_time_form_still_reads(value: Any, expected: tuple[str, float]) -> None:
    assert parse_time(value) == expected


@pytest.mark.parametrize(
    "record",
    [
        b'{"a": NaN, "b": 12345678901234567890123}',
        b'{"a": Infinity, "b": 12345678901234567890123}',
        b'{"a": -Infinity, "b": 12345678901234567890123}',
        b'{"a": 1e400, "b": 12345678901234567890123}',
    ],
    ids=["NaN", "Infinity", "-Infinity", "1e400"],
)
def test_nan_or_infinity_next_to_a_long_integer_is_refused_not_sent(
    tmp_path: Path, record: bytes
) -> None:
    # A long integer sends the record through the standard decoder, which accepts these
    # and re-encodes them as NaN/Infinity: invalid JSON for every client.
    lines = tmp_path / "r.jsonl"
    lines.write_bytes(b'{"ok": 1}\n' + record + b"\n")
    assert check_error(lines).startswith("r.jsonl:2")
    array = tmp_path / "r.json"
    array.write_bytes(b'[{"ok": 1},\n' + record + b"\n]")
    assert check_error(array).startswith("r.json:2")


def test_a_5000_digit_integer_in_an_array_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_bytes(b'[{"a": 1},\n{"a": ' + b"9" * 5000 + b"}\n]")
    message = check_error(path)
    assert message.startswith("big.json:2:"), message
    assert "4,300 digits" in message
    assert "set_int_max_str_digits" not in message


def test_bad_time_values_through_the_cli_are_one_line_exit_3(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(b'{"t": 0}\n{"t": "NaN"}\n')
    result = run_cli("serve", str(path), "--time-field", "t", "--port", "0", timeout=20)
    assert result.returncode == 3
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"sseplay: error: {path}:2: record 2:")
    assert result.stdout == ""


# --- the array scanner and record limits (issue 11 item 4) --------------------------


def test_an_error_early_in_a_large_array_is_reported_without_reading_the_rest(
    tmp_path: Path,
) -> None:
    record = json.dumps({"n": 1, "text": "x" * 200})
    path = tmp_path / "typo.json"
    with path.open("w") as out:
        out.write("[\n" + record + ',\n{"n": 2 "text": "typo"},\n')
        out.write((record + ",\n") * 40_000 + record + "\n]\n")  # about 8.6 MB
    size = path.stat().st_size
    tracemalloc.start()
    try:
        message = check_error(path, FieldMapping(data_field="text"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert message.startswith("typo.json:3:9: invalid JSON array (Expecting ',' delimiter)")
    # Before: the scanner read on to the end of the file after the error, holding it
    # all twice over (bytes and text), 2.3 x the file's size at its peak.
    assert peak < size / 2, f"peak {peak / 1e6:.1f} MB for a {size / 1e6:.1f} MB file"


@pytest.mark.parametrize(
    ("name", "content", "where"),
    [
        ("one-line.jsonl", b'{"a": "' + b"x" * 3000 + b'"}\n', "one-line.jsonl:1"),
        ("second-line.jsonl", b"1\n" + b"2" * 3000 + b"\n", "second-line.jsonl:2"),
        ("zeros.jsonl", b"\0" * 5000, "zeros.jsonl:1"),
        ("array.json", b'[1,\n"' + b"x" * 3000 + b'"]', "array.json:2:1"),
        ("minified.json", b'["' + b"x" * 3000 + b'"]', "minified.json:1:2"),
        ("no-end.json", b'[1, "' + b"x" * 5000, "no-end.json:1:5"),
    ],
    ids=lambda value: value if isinstance(value, str) and "." in value else "",
)
def test_a_record_past_the_limit_is_refused_in_one_line(
    tmp_path: Path, name: str, content: bytes, where: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    # A limit lowered through the parameter stands for the real one (64 MiB).
    limited = {"max_record_bytes": 1000}
    message = check_error(path, **limited)
    assert message.startswith(where), message
    assert "a record longer than 1,000 bytes" in message
    # The quick check of records sent as they are (no field mapping) holds it too.
    message = check_error(path, FieldMapping(), memory_budget=0, **limited)
    assert message.startswith(where), message
    assert "longer than" in message


def test_records_up_to_the_limit_are_fine(tmp_path: Path) -> None:
    line = b'"' + b"x" * 998 + b'"'  # exactly 1,000 bytes
    for path in (tmp_path / "ok.jsonl", tmp_path / "ok.json"):
        path.write_bytes(line + b"\n" + line + b"\n" if path.suffix == ".jsonl" else b"[1]")
        assert load_event_file(path.name, path, FieldMapping(), max_record_bytes=1000).count


# What a check of any input may take: address space, not resident memory, so it
# includes the interpreter and its libraries (about 250 MB of it).
ADDRESS_SPACE_LIMIT = 400 << 20


def run_cli_in_bounded_memory(*args: str) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT))

    return subprocess.run(
        sseplay(*args),
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        preexec_fn=limit,
    )


def test_serve_dev_zero_is_one_line_and_bounded_in_memory() -> None:
    result = run_cli_in_bounded_memory("serve", "/dev/zero", "--port", "0")
    assert result.returncode == 3, result.stderr[-2000:]
    assert result.stderr == (
        "sseplay: error: /dev/zero: byte 1 is 0x00, which is never part of JSON text: "
        "this is not an event file (it needs UTF-8 JSON: an array or JSON Lines)\n"
    )


def test_a_gzip_bomb_is_refused_in_one_line_and_bounded_in_memory(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.jsonl.gz"
    with gzip.open(bomb, "wb", compresslevel=9) as out:
        block = b"\0" * (1 << 20)
        for _ in range(256):  # 256 MiB of zeros in about 250 KB
            out.write(block)
    assert bomb.stat().st_size < 1 << 20
    # Before: the zeros were read as one line, 256 MiB held twice over: MemoryError.
    result = run_cli_in_bounded_memory("serve", str(bomb), "--port", "0")
    assert result.returncode == 3, result.stderr[-2000:]
    assert result.stderr.count("\n") == 1, result.stderr[-2000:]
    assert result.stderr.startswith(f"sseplay: error: {bomb}: byte 1 is 0x00")


# --- pipes, spool files and signals during the check (issue 10 item 9, issue 11 item 9) ----

LINES = b'{"n": 1}\n{"n": 2}\n{"n": 3}\n'
EXPECTED_STREAM = 'id: 1\ndata: {"n":1}\n\nid: 2\ndata: {"n":2}\n\nid: 3\ndata: {"n":3}\n\n'


def spool_env(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """An environment whose temporary directory is one the test can look into."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    return {**os.environ, "TMPDIR": str(temporary)}, temporary


def left_behind(temporary: Path) -> list[str]:
    return sorted(str(p.relative_to(temporary)) for p in temporary.rglob("*"))


def start_serve(*args: str, env: dict[str, str], stdin: Any = subprocess.DEVNULL) -> Any:
    return subprocess.Popen(
        sseplay("serve", "--port", "0", "--ping", "0", *args),
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )


def first_line(process: Any, timeout: float = 15) -> str:
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    assert ready, "sseplay serve printed nothing"
    line: str = process.stdout.readline().decode().strip()
    return line


def test_a_named_pipe_is_read_like_standard_input(tmp_path: Path) -> None:
    fifo = tmp_path / "events.fifo"
    os.mkfifo(fifo)
    env, temporary = spool_env(tmp_path)

    def feed() -> None:
        with fifo.open("wb") as writer:  # blocks until sseplay opens the pipe
            writer.write(LINES)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    process = start_serve(str(fifo), "--interval", "0", env=env)
    try:
        url = first_line(process)
        assert url.startswith("http://"), process.stderr.read1().decode()
        assert httpx.get(url, timeout=10).text == EXPECTED_STREAM
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=10)
        feeder.join(5)
    assert process.returncode == 0, err.decode()
    assert left_behind(temporary) == [], "the spool file is removed"


def test_process_substitution_is_read_like_standard_input(tmp_path: Path) -> None:
    source = tmp_path / "events.jsonl"
    source.write_bytes(LINES)
    env, temporary = spool_env(tmp_path)
    command = " ".join(
        [
            *sseplay("serve"),
            f"<(cat {source})",
            "--port",
            "0",
            "--interval",
            "0",
            "--once",
            "--retry",
            "0",
        ]
    )
    process = subprocess.Popen(
        ["bash", "-c", command], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=env
    )
    try:
        url = first_line(process)
        assert url.startswith("http://"), process.stderr.read1().decode()
        # --retry 0 keeps --once's wait for the reconnect short.
        assert httpx.get(url, timeout=10).text == "retry: 0\n\n" + EXPECTED_STREAM
        _, err = process.communicate(timeout=15)  # --once: it ends by itself
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err.decode()
    assert left_behind(temporary) == []


@pytest.mark.parametrize(
    ("content", "code"),
    [(LINES, 0), (b'{"n": 1}\n{"n": \n', 3)],
    ids=["served-then-SIGTERM", "bad-input"],
)
def test_standard_input_leaves_no_spool_file(tmp_path: Path, content: bytes, code: int) -> None:
    env, temporary = spool_env(tmp_path)
    given = tmp_path / "given.jsonl"
    given.write_bytes(content)
    with given.open("rb") as stdin:
        process = start_serve("-", "--interval", "0", env=env, stdin=stdin)
    try:
        if code == 0:
            url = first_line(process)
            assert httpx.get(url, timeout=10).text == EXPECTED_STREAM
            assert left_behind(temporary), "while serving, the copy of stdin is in TMPDIR"
            process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == code, err.decode()
    assert left_behind(temporary) == [], "the spool file is removed on the way out"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["Ctrl-C", "SIGTERM"])
def test_a_signal_during_the_check_is_one_line_exit_130_and_no_spool_file(
    tmp_path: Path, sig: int
) -> None:
    env, temporary = spool_env(tmp_path)
    # Standard input that stays open keeps sseplay in its start-up check.
    process = start_serve("-", env=env, stdin=subprocess.PIPE)
    try:
        assert process.stdin is not None
        process.stdin.write(LINES)
        process.stdin.flush()
        wait_until(lambda: any(p.is_file() for p in temporary.rglob("*")), timeout=15)
        process.send_signal(sig)
        assert process.wait(timeout=10) == 130
        out, err = process.stdout.read(), process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()
    assert err.decode() == "sseplay: interrupted during the start-up check; nothing was served\n"
    assert out == b""
    assert left_behind(temporary) == []


def test_a_large_gz_is_decompressed_once_and_the_copy_removed(tmp_path: Path) -> None:
    records = [{"n": n, "pad": "x" * 50} for n in range(3000)]
    source = tmp_path / "events.jsonl.gz"
    source.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in records).encode()))
    env, temporary = spool_env(tmp_path)
    process = start_serve(str(source), "--interval", "0", env=env)
    try:
        url = first_line(process)
        # Served from a decompressed copy, so a resume near the end is read at its offset
        # instead of decompressing everything before it for every page.
        copies = [p for p in temporary.rglob("*") if p.is_file()]
        assert len(copies) == 1
        assert copies[0].read_bytes().startswith(b'{"n": 0,')
        response = httpx.get(url, headers={"Last-Event-ID": "2998"}, timeout=10)
        assert response.text == 'id: 2999\ndata: {"n":2998,"pad":"' + "x" * 50 + '"}\n\n' + (
            'id: 3000\ndata: {"n":2999,"pad":"' + "x" * 50 + '"}\n\n'
        )
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=10)
    assert process.returncode == 0, err.decode()
    assert left_behind(temporary) == []


def test_a_broken_gz_is_one_line(tmp_path: Path) -> None:
    source = tmp_path / "cut.jsonl.gz"
    source.write_bytes(gzip.compress(LINES * 100)[:-30])
    env, temporary = spool_env(tmp_path)
    result = subprocess.run(
        sseplay("serve", str(source), "--port", "0"),
        capture_output=True,
        text=True,
        timeout=20,
        env=env,
        cwd=ROOT,
    )
    assert result.returncode == 3
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"sseplay: error: {source}: cannot be decompressed")
    assert left_behind(temporary) == []


def test_spooling_refuses_bytes_that_are_never_json(tmp_path: Path) -> None:
    with Spools(tmp_path, stdin=io.BytesIO(b'{"a": 1}\n' * 10 + b"\x01")) as spools:
        with pytest.raises(InputError, match=r"^<stdin>: byte 91 is 0x01, which is never part"):
            spools.prepare("-", "<stdin>")
        directory = spools.directory
    assert not directory.exists()


def test_spooling_stops_before_the_disk_is_full(tmp_path: Path) -> None:
    free = shutil.disk_usage(tmp_path).free
    spools = Spools(tmp_path, reserve=free, stdin=io.BytesIO(LINES))
    with spools, pytest.raises(InputError, match="too little free space"):
        spools.prepare("-", "<stdin>")
    assert not spools.directory.exists()


# --- the progress bar (issue 10 item 15) ---------------------------------------------


def terminal() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=True, width=120, color_system=None), buffer


def test_the_bar_shows_bytes_rate_and_time_left_after_a_second() -> None:
    console, buffer = terminal()
    clock = FakeClock(now=0.0)
    with StartupProgress(console, clock=clock) as progress:
        report = progress.reporter("checking big.json")
        assert report is not None
        clock.now = 0.5
        report(1_000_000, 10_000_000)
        assert buffer.getvalue() == "", "nothing within the first second"
        clock.now = 1.5
        report(2_000_000, 10_000_000)
        clock.now = 2.5
        report(4_000_000, 10_000_000)
        shown = buffer.getvalue()
    assert "checking big.json" in shown
    assert "4.0/10.0 MB" in shown
    assert "2.0 MB/s" in shown
    assert "0:00:03" in shown  # 6 MB left at 2 MB/s


def test_no_bar_when_stderr_is_not_a_terminal() -> None:
    buffer = io.StringIO()
    with StartupProgress(Console(file=buffer), clock=FakeClock(now=0.0, step=10)) as progress:
        assert progress.reporter("checking big.json") is None
    assert buffer.getvalue() == ""


def test_the_check_of_a_file_reports_its_progress(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "big.jsonl", [{"n": n, "pad": "x" * 100} for n in range(30_000)])
    console, buffer = terminal()
    # Each look at the clock is a second later: the check "runs past a second" at once.
    with StartupProgress(console, clock=FakeClock(now=0.0, step=1.0)) as progress:
        event_file = load_event_file(
            path.name, path, FieldMapping(), on_progress=progress.reporter("checking big.jsonl")
        )
    assert event_file.count == 30_000
    shown = buffer.getvalue()
    assert "checking big.jsonl" in shown
    size = path.stat().st_size / 1e6
    assert f"/{size:.1f} MB" in shown, shown[-500:]
