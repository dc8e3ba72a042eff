"""The ``sseplay`` command line: the app, its entry point ``main``, and the one place where
errors become messages and exit codes. Each command lives in a module of its own
(``serve``, ``tail``, ``publish``), which raises ``SseplayError`` and leaves the words and
the exit code to ``main``; the start-up speed-ups are in ``startup.py``.

It must stay light: ``sseplay --help`` and ``sseplay tail`` never import the server stack
(FastAPI, uvicorn, sse-starlette), and a run imports only the module of its command.
(The module is not called ``main.py``: ``sseplay.cli.main``, the console script's entry
point, is the function.) No ``from __future__ import annotations``: Typer reads
``_root``'s annotations at run time (see ``startup.py``).
"""

import importlib
import sys
from collections.abc import Sequence
from typing import Annotated, Any, NoReturn

import typer

from sseplay import __version__
from sseplay.cli.shared import Interrupted
from sseplay.cli.startup import plain_arguments, plain_conversions
from sseplay.errors import ExitCode, SseplayError
from sseplay.logs import error_line, use_json, wants_json

HELP = "Replay JSON event files as Server-Sent Events, and tail any SSE stream."
# Each command is the function of that name in the module of that name, in the order the
# help lists them; a module is imported only when its command runs or the help lists all.
COMMANDS = ("serve", "tail", "publish", "record", "probe")


def _version(value: bool) -> None:
    if value:
        print(f"sseplay {__version__}")
        raise typer.Exit()


def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Replay JSON event files as Server-Sent Events, and tail any SSE stream."""


def build_app(names: Sequence[str] = COMMANDS) -> typer.Typer:
    """The app with the commands ``names``."""
    app = typer.Typer(
        add_completion=False,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        # Plain click help: rich help formatting costs ~100 ms of imports on every --help.
        rich_markup_mode=None,
        help=HELP,
    )
    app.callback()(_root)
    for name in names:
        module = importlib.import_module(f"sseplay.cli.{name}")
        app.command(short_help=module.SHORT_HELP)(getattr(module, name))
    return app


def _only_the_command_asked_for(args: Sequence[str] | None) -> list[str]:
    """The command that runs, alone: Typer reads the signature of every command it builds
    (about 20 ms each here, of every launch), and a run needs one. ``sseplay``, ``--help``,
    ``--version`` and a typo (click names the commands it knows) get them all."""
    words = list(sys.argv[1:] if args is None else args)
    if words and words[0] in COMMANDS:
        return [words[0]]
    return list(COMMANDS)


def fail(error: SseplayError) -> NoReturn:
    """Report a known error as one line on stderr and exit with its code."""
    sys.stderr.write(error_line(str(error), exit_code=int(error.exit_code)))
    sys.stderr.flush()
    raise SystemExit(int(error.exit_code))


def _say(line: str) -> None:
    """Write ``sseplay: LINE`` on stderr, if it can still be written: after SIGHUP the terminal may
    be gone (EIO), and the exit status must still say how the command stopped."""
    try:
        sys.stderr.write(error_line(line, level="info"))
        sys.stderr.flush()
    except (OSError, ValueError):  # a terminal hung up, or stderr closed
        pass


def _usage_line(error: Any, command_path: str = "sseplay") -> str:
    """One line for a mistake on the command line, where click would print three: what is
    wrong, the suggestion if there is one, and where to read more. ``command_path`` names
    the command when click's parser gives no context (an option without its value, a flag
    given one), so that the line points at that command's help."""
    command = error.ctx.command_path if error.ctx is not None else command_path
    possibilities = sorted(getattr(error, "possibilities", None) or ())
    message = error.message if possibilities else error.format_message()
    message = " ".join(message.split()).rstrip(".")
    if possibilities:
        alternatives = possibilities[0]
        if len(possibilities) > 1:
            alternatives = ", ".join(possibilities[:-1]) + " or " + possibilities[-1]
        message += f" (did you mean {alternatives}?)"
    return f"{command}: {message}; see '{command} --help'"


# Typer's UsageError: click's own in older Typer releases, a vendored copy in newer
# ones; BadParameter, which Typer exports under both, derives from it.
_ClickUsageError: type[Exception] = typer.BadParameter.__mro__[1]


def main(args: Sequence[str] | None = None) -> None:
    """Entry point of the ``sseplay`` script."""
    command_path = "sseplay"
    # --log-format json: every line on stderr is JSON, a mistake in the flags too.
    use_json(wants_json(sys.argv[1:] if args is None else args))
    try:
        # Inside the try: building the command takes tens of ms, and a Ctrl-C then is an
        # interrupt like any other, not a traceback.
        plain_conversions()
        names = _only_the_command_asked_for(args)
        if len(names) == 1:
            command_path = f"sseplay {names[0]}"
        command = plain_arguments(typer.main.get_command(build_app(names)))
        # Not standalone: click would print its errors on three lines and exit itself.
        code = command.main(args, prog_name="sseplay", standalone_mode=False)
    except _ClickUsageError as error:
        if type(error).__name__ == "NoArgsIsHelpError":  # bare ``sseplay``: the help
            error.show()  # type: ignore[attr-defined]
        else:
            line = _usage_line(error, command_path)
            sys.stderr.write(error_line(line, exit_code=int(ExitCode.USAGE)))
        raise SystemExit(int(ExitCode.USAGE)) from None
    except SseplayError as error:  # what a command, or a callback, raises
        fail(error)
    except Interrupted as stopped:  # a command's own Ctrl-C handling, with its words
        if stopped.said:
            _say(stopped.said)
        raise SystemExit(int(ExitCode.INTERRUPTED)) from None
    except (typer.Abort, KeyboardInterrupt):  # Ctrl-C, caught by click first or not
        _say("interrupted")
        raise SystemExit(int(ExitCode.INTERRUPTED)) from None
    except BrokenPipeError:
        sys.exit(int(ExitCode.OK))
    if code == ExitCode.INTERRUPTED:  # Typer turns a Ctrl-C in a command into Exit(130)
        _say("interrupted")
    if isinstance(code, int) and code:
        raise SystemExit(code)
