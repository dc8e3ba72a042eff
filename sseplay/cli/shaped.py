"""``sseplay serve --shape SHAPE TURNS.jsonl``: model responses served as an LLM provider
streams them (``sseplay.shaped``), until Ctrl-C, SIGTERM or ``--once``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sseplay.cli.shared import STDIN_NAME
from sseplay.config import ServerConfig, route_problem
from sseplay.errors import UsageError


def shape_options(
    shape: str,
    files: Sequence[str],
    given: dict[str, Any],
    ping: float | None,
    other_flags: dict[str, bool],
) -> dict[str, Any]:
    """The keywords of ``Turns`` from the command line, every flag that would do nothing
    with turns refused (a flag silently ignored would pass a test that meant it)."""
    for flag, used in other_flags.items():
        if used:
            raise UsageError(
                f"{flag} does not apply to --shape: a turn is sent as its provider sends it; "
                f"drop {flag}"
            )
    if len(files) != 1:
        raise UsageError(
            "--shape serves one turns file (TURNS.jsonl, one model response a line): "
            "give one, at the provider's routes, or ROUTE=TURNS.jsonl at a route of yours"
        )
    argument = files[0]
    if argument == STDIN_NAME:
        raise UsageError("--shape reads its turns from a file, not standard input: name one")
    options: dict[str, Any] = {"shape": shape, "source": argument}
    name, equals, path = argument.partition("=")
    if equals and name and not _exists(argument):
        route = "/" + name.strip("/")
        if problem := route_problem(route):
            raise UsageError(f"{argument}: {problem}")
        options.update(source=path, route=route)
    options.update({key: value for key, value in given.items() if value is not None})
    # A provider sends no keep-alive comments: none unless asked.
    options["ping"] = 0.0 if ping is None else ping
    return options


def _exists(argument: str) -> bool:
    from pathlib import Path

    try:
        return Path(argument).exists()
    except OSError:
        return False


def run_shaped(turns_options: dict[str, Any], config: ServerConfig, write_urls: Any) -> None:
    """Load and check the turns, then answer the shape's routes until stopped."""
    from sseplay.cli.serving import serve_loaded
    from sseplay.shaped import Turns

    options = dict(turns_options)
    source = options.pop("source")
    serve_loaded(
        lambda: Turns(source, **options),
        lambda turns: (
            f"{len(turns.turns)} turns from {turns.label} as {turns.shape.name}"
            f" at {', '.join(turns.routes)}"
        ),
        config,
        write_urls,
    )
