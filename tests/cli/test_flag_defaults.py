"""Each flag default and each set of choices of the command line is the library's: imported
from it where the library names it, checked against it here where importing it would cost
start-up time or where the library has no name for it yet."""

from __future__ import annotations

import dataclasses
import inspect
import re
from typing import Any

from sseplay.cli import publish, serve
from sseplay.config import DEFAULT_INTERVAL, ServerConfig, Timing
from sseplay.faults.spec import KINDS, SELECTORS


def option(command: Any, name: str) -> Any:
    """The ``typer.Option`` of parameter ``name`` of ``command``, and its default."""
    parameter = inspect.signature(command).parameters[name]
    (info,) = parameter.annotation.__metadata__
    return info, parameter.default


def test_the_fault_help_names_every_kind_and_selector_the_parser_knows() -> None:
    # Importing sseplay.faults.spec for its names would cost every `serve` launch ~9 ms
    # (its dataclasses and regexes): the help names them, and this keeps the two equal.
    info, _ = option(serve.serve, "fault")
    kinds = re.search(r"Kinds: ([a-z, -]+);", info.help)
    selectors = re.search(r"selectors: ([a-z=, ]+)\.", info.help)
    assert kinds is not None
    assert selectors is not None
    assert tuple(kinds.group(1).split(", ")) == KINDS
    assert tuple(selectors.group(1).split(", ")) == tuple(f"{name}=" for name in SELECTORS)


def test_the_interval_default_shown_is_the_library_s() -> None:
    for command in (serve.serve, publish.publish):
        info, default = option(command, "interval")
        assert default is None  # "from the file's times, else DEFAULT_INTERVAL"
        assert info.help.endswith(f"[default: {DEFAULT_INTERVAL:g}]")


def test_defaults_the_library_has_no_name_for_yet_are_its_own() -> None:
    defaults = {field.name: field.default for field in dataclasses.fields(ServerConfig)}
    assert option(serve.serve, "host")[1] == defaults["host"]
    timing = {field.name: field.default for field in dataclasses.fields(Timing)}
    for command in (serve.serve, publish.publish):
        assert option(command, "speed")[1] == timing["speed"]
        assert option(command, "loop")[1] == timing["loop"]
