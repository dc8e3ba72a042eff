"""What reaches a terminal from ``sseplay tail`` (issue 23): control characters in the
data are shown escaped in every format but ``raw`` when stdout is a terminal, and
``--data-only`` into a pipe still writes the data exactly as it came."""

from __future__ import annotations

import errno
import json
import os
import select
import socket
import subprocess
import time

from tests.conftest import ROOT, SSE_HEAD, RawServer, sseplay

# An OSC title, an OSC 52 clipboard write, colour, a C1 CSI (0x9b), DEL and a bidi override.
ATTACK_DATA = "\x1b]0;pwned\x07 \x1b]52;c;aGk=\x07 \x1b[31mred \x9b2J \x7f \u202eevil\nline2\tok"
STREAM = b"data: " + ATTACK_DATA.encode().replace(b"\n", b"\ndata: ") + b"\n\n"
RAW_CONTROLS = ("\x1b", "\x07", "\x9b", "\x7f", "\u202e")


def _attack(conn: socket.socket, request: bytes, number: int) -> None:
    conn.sendall(SSE_HEAD + STREAM)


def _tail_on_a_terminal(*args: str) -> tuple[int, str, str]:
    """``sseplay tail ARGS`` with a pseudo-terminal as stdout (isatty() is true there):
    (exit code, what the terminal got, stderr)."""
    master, slave = os.openpty()
    os.set_blocking(master, False)
    process = subprocess.Popen(
        sseplay("tail", *args), stdout=slave, stderr=subprocess.PIPE, cwd=ROOT
    )
    os.close(slave)
    shown = b""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                part = os.read(master, 65536)
            except OSError as error:  # EIO: the last writer of the terminal is gone
                if error.errno != errno.EIO:
                    raise
                break
            if not part:
                break
            shown += part
        elif process.poll() is not None and not select.select([master], [], [], 0.05)[0]:
            break
    os.close(master)
    assert process.stderr is not None
    _, err = process.communicate(timeout=10)
    # The terminal's line discipline writes LF as CR LF (onlcr).
    return process.returncode, shown.decode().replace("\r\n", "\n"), err.decode()


def test_data_only_on_a_terminal_shows_control_characters_escaped() -> None:
    with RawServer(_attack) as server:
        code, shown, err = _tail_on_a_terminal(server.url, "--data-only", "--no-reconnect")
    assert code == 0, err
    for control in RAW_CONTROLS:
        assert control not in shown
    # Escaped as pretty shows them (sseplay.model.visible); line feed and tab are text.
    assert shown == (
        "\\x1b]0;pwned\\x07 \\x1b]52;c;aGk=\\x07 \\x1b[31mred \\x9b2J \\x7f \\u202eevil\n"
        "line2\tok\n"
    )


def test_json_on_a_terminal_escapes_what_json_leaves_raw() -> None:
    with RawServer(_attack) as server:
        code, shown, err = _tail_on_a_terminal(server.url, "-f", "json", "--no-reconnect")
    assert code == 0, err
    for control in RAW_CONTROLS:
        assert control not in shown
    assert json.loads(shown.splitlines()[0])["data"] == ATTACK_DATA  # still the same JSON


def test_raw_on_a_terminal_keeps_its_meaning_the_bytes_as_they_came() -> None:
    with RawServer(_attack) as server:
        code, shown, err = _tail_on_a_terminal(server.url, "-f", "raw", "--no-reconnect")
    assert code == 0, err
    assert shown == STREAM.decode()


def test_data_only_into_a_pipe_writes_the_data_exactly() -> None:
    with RawServer(_attack) as server:
        result = subprocess.run(
            sseplay("tail", server.url, "--data-only", "--no-reconnect"),
            capture_output=True,
            timeout=20,
            cwd=ROOT,
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ATTACK_DATA.encode() + b"\n"
