"""The names sseplay's command line relies on in Typer (and its click), httpx and httpcore,
each checked for the shape sseplay uses (sseplay/cli/CONTRACT.md): a release that changes
one fails here, instead of making the command slower or wordier without a word."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import importlib.util
import inspect
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import pytest
import typer
import typer.core
import typer.main

from sseplay.cli.app import _ClickUsageError
from sseplay.cli.startup import NEVER_USED_BY_TAIL
from sseplay.errors import UsageError
from tests.conftest import ROOT

TYPER = tuple(int(part) for part in importlib.metadata.version("typer").split(".")[:2])
# Typer 0.29's pydantic conversion, the hook startup.plain_conversions replaces.
HAS_COERCION = importlib.util.find_spec("typer._coercion") is not None


def parameters(function: object) -> list[str]:
    return list(inspect.signature(function).parameters)  # type: ignore[arg-type]


def test_a_typer_from_0_29_on_has_the_conversion_hook() -> None:
    # Older ones (0.26, 0.27: read at their tags) convert without pydantic, and need no hook.
    assert (TYPER >= (0, 29)) is HAS_COERCION


def test_the_conversion_hook_has_the_shape_plain_conversions_uses() -> None:
    if not HAS_COERCION:
        # This Typer (the floors' 0.26) converts without pydantic: there is nothing for
        # plain_conversions to take over, and nothing of the hook to check. (No skip: CI
        # runs every test.)
        assert importlib.util.find_spec("typer._coercion") is None
        return
    coercion = importlib.import_module("typer._coercion")
    param_types = importlib.import_module("typer._param_types")
    runtime_param = coercion.RuntimeParam
    assert dataclasses.is_dataclass(runtime_param)
    fields = {field.name for field in dataclasses.fields(runtime_param)}
    assert {"parameter_info", "annotation"} <= fields
    assert parameters(runtime_param._coerce_value) == ["self", "value", "param", "ctx"]
    assert parameters(runtime_param.coerce) == ["self", "value", "param", "ctx"]
    parameter = typer.core._TyperParameter  # type: ignore[attr-defined]
    assert parameters(parameter.get_runtime_param) == ["self"]
    descriptor = coercion.TypeDescriptor
    assert {"annotation", "parameter_info", "file_annotation"} <= {
        field.name for field in dataclasses.fields(descriptor)
    }
    path_parameters = inspect.signature(param_types.coerce_cli_path).parameters
    assert list(path_parameters)[:2] == ["value", "parameter_info"]
    assert path_parameters["path_type"].kind is inspect.Parameter.KEYWORD_ONLY


def test_each_option_and_argument_keeps_its_runtime_param_where_the_hook_fills_it() -> None:
    if not HAS_COERCION:
        assert not hasattr(typer.core, "_TyperParameter")  # no hook, nothing filled
        return
    app = typer.Typer(add_completion=False)

    @app.command()
    def command(name: str, count: Annotated[int, typer.Option()] = 1) -> None:
        pass

    built = typer.main.get_command(app)
    for param in built.params:
        assert isinstance(param, typer.core._TyperParameter)  # type: ignore[attr-defined]
        assert param._runtime_param is None  # filled on first use
        assert param.type_descriptor.annotation in (str, int)


def test_parameter_info_has_what_a_plain_flag_is_told_apart_by() -> None:
    for info in (typer.Option(metavar="N"), typer.Argument(metavar="FILE")):
        assert info.parser is None
        assert info.min is None
        assert info.max is None


def test_arguments_have_the_display_methods_plain_arguments_replaces() -> None:
    argument = typer.core.TyperArgument
    if TYPER < (0, 29):
        # Older Typer shows the metavar itself: plain_arguments has nothing to replace.
        assert not hasattr(argument, "_usage_display_name")
        return
    assert parameters(argument._usage_display_name) == ["self"]  # type: ignore[attr-defined]
    assert parameters(argument.display_type_rich) == ["self", "ctx"]  # type: ignore[attr-defined]


def test_arguments_are_told_apart_and_carry_their_metavar() -> None:
    app = typer.Typer(add_completion=False)
    app.callback()(lambda: None)

    @app.command()
    def command(files: Annotated[list[str], typer.Argument(metavar="FILE...")]) -> None:
        pass

    group = typer.main.get_command(app)
    (param,) = group.commands["command"].params  # type: ignore[attr-defined]
    assert param.param_type_name == "argument"
    assert param.metavar == "FILE..."


def test_the_usage_error_class_is_the_one_typer_raises() -> None:
    exceptions = sys.modules[typer.BadParameter.__module__]
    assert _ClickUsageError.__name__ == "UsageError"
    for name in ("BadParameter", "NoSuchOption", "NoArgsIsHelpError", "MissingParameter"):
        assert issubclass(getattr(exceptions, name), _ClickUsageError), name
    error = exceptions.NoSuchOption("--colour", possibilities=["--color"])
    assert error.possibilities == ["--color"]
    assert error.ctx is None
    assert isinstance(error.message, str)
    assert isinstance(error.format_message(), str)
    assert callable(error.show)


def test_a_command_s_own_error_goes_through_and_ctrl_c_is_130() -> None:
    # app.main is the one place a command's SseplayError becomes a message and an exit code:
    # click, not standalone, must let it through, and turn a Ctrl-C into a returned 130.
    app = typer.Typer(add_completion=False)
    app.callback()(lambda: None)

    @app.command()
    def refuse() -> None:
        raise UsageError("no")

    @app.command()
    def interrupted() -> None:
        raise KeyboardInterrupt

    group = typer.main.get_command(app)
    with pytest.raises(UsageError, match="no"):
        group.main(["refuse"], prog_name="x", standalone_mode=False)
    assert group.main(["interrupted"], prog_name="x", standalone_mode=False) == 130
    with pytest.raises(_ClickUsageError) as caught:
        group.main(["refuse", "--nope"], prog_name="x", standalone_mode=False)
    assert caught.value.ctx.command_path == "x refuse"  # type: ignore[attr-defined]


def test_httpx_and_httpcore_import_without_what_tail_marks_absent() -> None:
    probe = (
        "import sys\n"
        f"for name in {NEVER_USED_BY_TAIL!r}:\n"
        "    sys.modules[name] = None\n"
        "import asyncio, httpx, httpcore\n"
        "async def main():\n"
        "    async with httpx.AsyncClient() as client:\n"
        "        pass\n"
        "asyncio.run(main())\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=30, cwd=ROOT
    )
    assert result.stdout == "ok\n", result.stderr
    sources = {
        "httpx": "from ._main import main",
        "httpcore._synchronization": "import trio",
        "httpcore._async": "from .http2 import",
    }
    for module, statement in sources.items():
        spec = importlib.util.find_spec(module)
        assert spec is not None
        assert spec.origin is not None
        text = Path(spec.origin).read_text(encoding="utf-8")
        before = text[: text.index(statement)]
        assert before.rstrip().endswith("try:"), module  # imported where ImportError is caught
