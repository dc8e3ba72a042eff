"""Every start-up speed-up of the ``sseplay`` command, and every reach it makes into the
private parts of Typer, httpx/httpcore and pydantic to get them. ``CONTRACT.md`` beside
this file lists each name relied on and the releases checked, and
``tests/cli/test_typer_contract.py`` fails when a release changes one. Each speed-up
falls back to the library's own way when a name it needs is missing, so an unexpected
release makes the command slower, never broken.

- ``plain_conversions``: Typer 0.29 (not 0.26 or 0.27) converts every flag's value
  through a pydantic ``TypeAdapter`` (``typer._coercion``), and importing pydantic for that
  costs ~0.25 s of every launch. ``typer.core._TyperParameter.get_runtime_param`` is
  replaced by one that gives plain ``str``, ``int``, ``float``, ``bool`` and ``Path`` flags
  a subclass of ``typer._coercion.RuntimeParam`` that converts them as click would
  (``Path`` through ``typer._param_types.coerce_cli_path``).
- ``plain_arguments``: Typer 0.29 writes an argument as ``{files}... <list[str]>`` in
  usage lines and help; each argument's ``display_type_rich`` and
  ``_usage_display_name`` (methods of ``typer.core.TyperArgument``) are replaced on the
  instance, so that its metavar (``FILE...``, ``URL``) is shown instead.
- ``skip_imports_tail_never_uses``: ``httpx._main``, ``trio`` and ``h2`` are marked absent
  in ``sys.modules`` for ``tail`` (~0.6 s of imports it never uses; see the comment there).
- ``server_stack_importing``: FastAPI and pydantic are imported for ``serve`` with the
  garbage collector paused and pydantic's ``defer_build`` set on ``BaseModel.model_config``.

Two more use only Typer's public API and live in ``app.py``: the app is built with only the
command asked for (Typer reads the signature of every command it builds), and a command's
module is imported only when that command runs or the help lists them all.

The modules that declare commands (``app``, ``serve``, ``tail``, ``publish``, ``shared``) do not use
``from __future__ import annotations``: Typer reads the commands' annotations at run time,
and as strings it would compile each of them at every launch (about 13 ms of CPU for
``serve``); as objects they are built from the module's cached bytecode.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

# Modules that the libraries under tail import for features tail never uses: httpx imports
# its own command line (click, rich.console, rich.progress, pygments: ~0.2 s here), httpcore
# imports trio when it is installed, to support trio event loops (~0.3 s), and h2 when it is
# installed, for HTTP/2 (~0.1 s), which tail does not ask for (HTTP/1.1, as EventSource
# streams are usually served). The tail command runs on asyncio and has its own command
# line, so in its process these are marked as absent; the libraries catch the ImportError
# (httpx/__init__.py, httpcore/_synchronization.py, httpcore/_async/__init__.py). Only the
# CLI does this: a program that imports sseplay as a library keeps them.
NEVER_USED_BY_TAIL = ("httpx._main", "trio", "h2")


def skip_imports_tail_never_uses() -> None:
    for name in NEVER_USED_BY_TAIL:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


def plain_conversions() -> None:
    """Typer 0.2x converts each flag's value through a pydantic TypeAdapter, and importing
    pydantic for that is ~0.25 s of every command's start-up here. The flags of sseplay
    take plain str, int, float and Path values (and lists of them), converted here as
    click would; any other type, any constraint (min, max, a parser...) and any Typer
    without this hook go Typer's own way."""
    try:  # private modules of Typer 0.29 (older ones have none of this)
        _coercion: Any = importlib.import_module("typer._coercion")
        _param_types: Any = importlib.import_module("typer._param_types")
        _TyperParameter: Any = importlib.import_module("typer.core")._TyperParameter
    except (ImportError, AttributeError):
        return
    if not all(
        hasattr(owner, name)
        for owner, name in (
            (_TyperParameter, "get_runtime_param"),
            (_coercion, "RuntimeParam"),
            (_param_types, "coerce_cli_path"),
        )
    ):
        return
    nouns = {int: "a whole number", float: "a number", bool: "true or false"}
    truth = {"1": True, "true": True, "t": True, "yes": True, "y": True, "on": True}
    truth |= {"0": False, "false": False, "f": False, "no": False, "n": False, "off": False}

    def to_bool(value: Any, info: Any) -> bool:
        if isinstance(value, bool):
            return value
        try:
            return truth[str(value).strip().lower()]
        except KeyError:
            raise ValueError(value) from None

    converters: dict[Any, Any] = {
        bool: to_bool,
        str: lambda value, info: value,
        int: lambda value, info: int(value),
        float: lambda value, info: float(value),
        Path: lambda value, info: _param_types.coerce_cli_path(value, info, path_type=Path),
    }

    class PlainRuntimeParam(_coercion.RuntimeParam):  # type: ignore[misc]  # Any: private
        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            kind = self.annotation
            if getattr(kind, "__origin__", None) is list:
                (kind,) = kind.__args__
            convert = converters[kind]
            try:
                if isinstance(value, list | tuple):
                    return [convert(item, self.parameter_info) for item in value]
                return convert(value, self.parameter_info)
            except ValueError:
                raise typer.BadParameter(
                    f"{value!r} is not {nouns.get(kind, 'valid')}", ctx=ctx, param=param
                ) from None

    def plain(annotation: Any, info: Any) -> bool:
        if getattr(annotation, "__origin__", None) is list:
            (annotation,) = annotation.__args__
        constrained = (
            info.parser is not None
            or getattr(info, "click_type", None) is not None
            or info.min is not None
            or info.max is not None
            or getattr(info, "exists", False)
            or getattr(info, "resolve_path", False)
            or getattr(info, "allow_dash", False)
            or getattr(info, "path_type", None) is not None
        )
        return annotation in converters and not constrained

    typer_way = _TyperParameter.get_runtime_param

    def get_runtime_param(self: Any) -> Any:
        if self._runtime_param is None:
            descriptor = self.type_descriptor
            annotation, info = descriptor.annotation, descriptor.parameter_info
            if descriptor.file_annotation is None and plain(annotation, info):
                self._runtime_param = PlainRuntimeParam(parameter_info=info, annotation=annotation)
        return typer_way(self)

    _TyperParameter.get_runtime_param = get_runtime_param


def plain_arguments(command: Any) -> Any:
    """Arguments shown the way a hand-written help shows them (``FILE...``, ``URL``), not
    as Typer 0.2x writes them, with braces and Python types (``{files}... <list[str]>``)."""
    for sub in getattr(command, "commands", {}).values():
        for param in sub.params:
            if param.param_type_name == "argument" and param.metavar:
                param.display_type_rich = lambda ctx: None
                param._usage_display_name = lambda param=param: param.metavar
    return command


@contextlib.contextmanager
def server_stack_importing() -> Iterator[None]:
    """Import the server stack (FastAPI, pydantic, uvicorn) without the work ``serve`` never
    needs, measured at launch (issue 12 item 7, ``benchmarks/launch_ab.py``):

    - No collection: FastAPI and pydantic build some 80,000 tracked objects that live as
      long as the process, and the full collection their growth triggers walks them all
      (about 30 ms, for nothing: the imports leave no garbage cycles worth it). They are
      frozen as the pause ends, or the next young collection would walk them all instead.
    - No pydantic validators built at import: FastAPI defines some 40 models at import, its
      OpenAPI document's among them, and pydantic builds each one's validator and
      serializer as the class is created (about 110 ms of CPU). ``serve`` has no OpenAPI
      document and validates no request body, so those models are left to pydantic's
      documented ``defer_build``: a model is built on its first validation, if it ever
      has one. The setting goes on ``BaseModel``'s configuration, which every model
      defined meanwhile inherits, and comes off as the import ends.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        with _pydantic_builds_deferred():
            yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


@contextlib.contextmanager
def _pydantic_builds_deferred() -> Iterator[None]:
    from pydantic import BaseModel

    inherited = getattr(BaseModel, "model_config", None)
    if not isinstance(inherited, dict):  # pydantic 1, which older FastAPI releases allow
        yield
        return
    had_setting = "defer_build" in inherited
    before = inherited.get("defer_build", False)
    inherited["defer_build"] = True
    try:
        yield
    finally:
        if had_setting:
            inherited["defer_build"] = before
        else:
            del inherited["defer_build"]
