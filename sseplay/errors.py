"""The one error tree of sseplay and the exit codes it maps to.

Every failure a user can cause is one of these; ``cli.py`` turns them into a
single line on stderr and the exit code named here.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1  # the stream or the network failed (refused, bad status, TLS, ...)
    USAGE = 2  # a wrong flag or argument (the same code click uses)
    BAD_INPUT = 3  # an event file that cannot be served as it is
    CANNOT_SERVE = 4  # could not start: port in use, bad address, Redis unreachable
    TIMED_OUT = 5  # tail --timeout fired first
    IDLE_TIMED_OUT = 6  # tail --idle-timeout fired first
    GAVE_UP = 7  # tail used up --max-retries reconnecting
    ASSERTION_FAILED = 8  # the stream ended before --count / --until were met
    MISMATCH = 9  # tail --expect: the stream differs; serve --expect-client: a client broke a rule
    INVALID = 10  # tail --schema: an event's data breaks its JSON Schema
    OUTPUT_FAILED = 11  # tail could not write stdout or its --record file (disk full, ...)
    BUFFERED = 12  # tail --check-delivery: a hop held the stream back (bursts, lag, headers)
    INTERRUPTED = 130  # Ctrl-C during tail (128 + SIGINT, as shells report it)


class SseplayError(Exception):
    """Base of every error sseplay reports to the user."""

    exit_code = ExitCode.ERROR


class UsageError(SseplayError, ValueError):
    """A wrong flag, argument or option value; a ``ValueError`` too, as Python expects of
    a bad argument."""

    exit_code = ExitCode.USAGE


class InputError(SseplayError):
    """An event file that cannot be read or served, with where the problem is."""

    exit_code = ExitCode.BAD_INPUT

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where = where
        self.problem = problem


class CannotServe(SseplayError):
    exit_code = ExitCode.CANNOT_SERVE


class StreamError(SseplayError):
    """The stream could not be read: connection, HTTP status, content type, size."""

    exit_code = ExitCode.ERROR


class TimedOut(SseplayError):
    exit_code = ExitCode.TIMED_OUT


class IdleTimedOut(SseplayError):
    exit_code = ExitCode.IDLE_TIMED_OUT


class GaveUp(SseplayError):
    exit_code = ExitCode.GAVE_UP


class AssertionFailed(SseplayError):
    exit_code = ExitCode.ASSERTION_FAILED


class Mismatch(SseplayError):
    """``tail --expect``: the first event that differs from the expected stream, an
    expected event that never came, or (with ``--exact``) one event too many."""

    exit_code = ExitCode.MISMATCH


class ClientRulesBroken(SseplayError):
    """``serve --expect-client``: a client broke a rule (each one is said as it stops)."""

    exit_code = ExitCode.MISMATCH


class Invalid(SseplayError):
    """``tail --schema``: the first event whose data breaks its JSON Schema."""

    exit_code = ExitCode.INVALID


class Buffered(SseplayError):
    """``tail --check-delivery``: the events came late or in bursts; the message names the
    likely culprit and the fix."""

    exit_code = ExitCode.BUFFERED


class OutputFailed(SseplayError):
    """tail's output (stdout or the --record file) could not be written."""

    exit_code = ExitCode.OUTPUT_FAILED
