"""The input side of ``sseplay serve``: time values, input limits, pipes, .gz, signals
during the start-up check, spool files and the progress bar (issues 10 and 11)."""

from __future__ import annotations

import gzip
import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from sseplay.errors import InputError
from sseplay.source import FieldMapping, load_event_file, parse_time
from tests.conftest import run_cli, write_lines

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


def test_serve_dev_zero_is_one_line_and_bounded_in_memory() -> None:
    result = run_cli("serve", "/dev/zero", "--port", "0", timeout=30)
    assert result.returncode == 3, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr[-2000:]
    assert "MemoryError" not in result.stderr
    assert "not JSON text" in result.stderr or "longer than" in result.stderr


def test_a_gzip_bomb_is_refused_in_one_line(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.jsonl.gz"
    with gzip.open(bomb, "wb", compresslevel=9) as out:
        block = b"\0" * (1 << 20)
        for _ in range(256):  # 256 MiB of zeros in about 250 KB
            out.write(block)
    assert bomb.stat().st_size < 1 << 20
    result = run_cli("serve", str(bomb), "--port", "0", timeout=30)
    assert result.returncode == 3, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr[-2000:]
    assert result.stderr.startswith(f"sseplay: error: {bomb}")
