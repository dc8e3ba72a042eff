"""A --certfile or --keyfile is read with a size bound (issue 23): ``/dev/zero`` or a huge
file given by mistake is one line, not a MemoryError traceback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sseplay.errors import CannotServe
from sseplay.http.tls import MAX_PEM_BYTES, check_pair, make_self_signed
from tests.conftest import SAMPLES, run_cli

SCORES = str(SAMPLES / "scores.json")


def _one_line(certfile: Path, keyfile: Path | None) -> str:
    with pytest.raises(CannotServe) as caught:
        check_pair(certfile, keyfile)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_dev_zero_and_an_oversized_file_are_one_line(tmp_path: Path) -> None:
    pair = make_self_signed("127.0.0.1")
    try:
        assert pair.keyfile is not None
        zero = Path("/dev/zero")
        assert re.match(r"--certfile /dev/zero: more than 1 MiB, too large", _one_line(zero, None))
        big = tmp_path / "big.pem"
        # A real certificate first, then padding: the size alone refuses it.
        big.write_bytes(pair.certfile.read_bytes() + b"\n" * MAX_PEM_BYTES)
        message = _one_line(big, pair.keyfile)
        assert message.startswith(f"--certfile {big}: more than 1 MiB, too large for a PEM")
        assert message.endswith("give the PEM certificate file")
        # The key is bounded as well.
        message = _one_line(pair.certfile, zero)
        assert message.startswith("--keyfile /dev/zero: more than 1 MiB, too large for a PEM key")
        # A file of exactly the bound is still read (and refused for what it holds).
        exact = tmp_path / "exact.pem"
        exact.write_bytes(b"\n" * MAX_PEM_BYTES)
        assert "no PEM certificate in it" in _one_line(exact, pair.keyfile)
    finally:
        pair.remove()


def test_serve_certfile_dev_zero_exits_4_with_one_line() -> None:
    result = run_cli(
        "serve", SCORES, "--port", "0", "--certfile", "/dev/zero", "--keyfile", "/dev/zero"
    )
    assert result.returncode == 4, result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("sseplay: error: --certfile /dev/zero: more than 1 MiB")
