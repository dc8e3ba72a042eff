"""What the commands share: the flags that shape a replay (``serve``, ``publish``), standard
input's name, logging, SIGTERM and SIGHUP (the terminal closing), and ``Interrupted``.

No ``from __future__ import annotations`` here: the flags below are the commands'
annotations, which Typer reads at run time (see ``startup.py``).
"""

import atexit
import logging
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from sseplay.log_limit import limit_repeats

# The file argument that means standard input.
STDIN_NAME = "-"


class Interrupted(Exception):
    """Ctrl-C (or SIGTERM or SIGHUP during a start-up check) stopped a command: ``app.main`` writes
    ``sseplay: SAID`` on stderr, when there is something to say, and exits 130."""

    def __init__(self, said: str | None = "interrupted") -> None:
        super().__init__(said)
        self.said = said


def setup_logging(quiet: bool, verbose: bool, log_format: str = "text") -> None:
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        from sseplay.logs import JsonFormatter, use_json

        use_json()
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    # A warning that repeats (a bad line in a followed file, clients falling behind) is
    # one line, then a count, not thousands a second; counts pending at exit are written.
    atexit.register(limit_repeats(handler).flush)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn's own start-up chatter is noise for a replay tool; keep its warnings.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "sse_starlette"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.WARNING)


# SIGHUP: the terminal closing (POSIX only; Windows has no such signal).
SIGHUP: int | None = getattr(signal, "SIGHUP", None)


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM and SIGHUP during the start-up check stop it like Ctrl-C does, so that a
    check that takes a while is stopped cleanly (temporary files removed) and not killed."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    stops = [signal.SIGTERM] if SIGHUP is None else [signal.SIGTERM, SIGHUP]
    previous = {sig: signal.signal(sig, interrupt) for sig in stops}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def hangup_stops() -> Iterator[None]:
    """SIGHUP (the terminal closing, ``kill -HUP``) stops the command as SIGTERM does, in
    whatever state it is: its default action kills the process on the spot, and the copy
    of standard input, the ``--self-signed`` key and the ``--url-file`` were left behind.
    The signal is passed on as SIGTERM, so that whichever handler stops the command
    cleanly at that moment (the start-up check's, uvicorn's, the ``--workers``
    supervisor's) is the one that runs, and the exit status is SIGTERM's."""
    if SIGHUP is None:
        yield
        return

    def as_sigterm(signum: int, frame: object) -> None:
        signal.raise_signal(signal.SIGTERM)

    previous = signal.signal(SIGHUP, as_sigterm)
    try:
        yield
    finally:
        signal.signal(SIGHUP, previous)


# Flags that `serve` and `publish` share: declared once, each a type alias the two
# commands' parameters use, so their names, help and defaults cannot drift apart.
TimeFieldOption = Annotated[
    str | None,
    typer.Option(
        metavar="FIELD",
        help="Field with each record's time: seconds, 00:05, 01:02:03 or ISO-8601.",
    ),
]
SpeedOption = Annotated[float, typer.Option(metavar="FACTOR", help="Play this many times faster.")]
MaxGapOption = Annotated[
    float | None,
    typer.Option(metavar="SECONDS", help="Cap every pause at this many seconds (after --speed)."),
]
LoopOption = Annotated[bool, typer.Option("--loop", help="Play forever; ids stay unique.")]
DataFieldOption = Annotated[
    str | None,
    typer.Option(metavar="FIELD", help="Field (dotted path) sent as the data."),
]
EventFieldOption = Annotated[
    str | None, typer.Option(metavar="FIELD", help="Field with the event type.")
]
EventTypeOption = Annotated[
    str | None, typer.Option(metavar="TYPE", help="One event type for all.")
]
IdFieldOption = Annotated[
    str | None,
    typer.Option(metavar="FIELD", help="Field with the id. [default: position 1, 2, 3...]"),
]
# The client side's TLS and token flags (tail, probe).
InsecureOption = Annotated[bool, typer.Option("--insecure", help="Do not verify TLS certificates.")]
CacertOption = Annotated[
    str | None,
    typer.Option(metavar="FILE", help="Trust the CA certificates in this PEM file too."),
]
ClientTokenOption = Annotated[
    str | None,
    typer.Option(
        metavar="SECRET",
        envvar="SSEPLAY_TOKEN",
        help="Send 'Authorization: Bearer SECRET'.",
    ),
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Log only warnings.")]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Log everything.")]
LogFormatOption = Annotated[
    str,
    typer.Option(
        "--log-format",
        metavar="FORMAT",
        help="How stderr's lines are written: text, or json (one object per line).",
    ),
]


def check_log_format(log_format: str) -> str:
    """--log-format's value, checked against the formats ``sseplay.logs`` writes."""
    from sseplay.errors import UsageError
    from sseplay.logs import LOG_FORMATS

    if log_format not in LOG_FORMATS:
        raise UsageError(f"--log-format must be {' or '.join(LOG_FORMATS)}, not {log_format!r}")
    return log_format
