"""The layers of the package, stated once and checked on every import in it.

Each module may import only from the layers below its own. Imports under
``if TYPE_CHECKING:`` are annotations, not imports at run time, and are not counted.

    cli/, __main__               the command: may import anything of sseplay
    server, stream, workers, pytest_plugin, __init__   the library's surface
    http/                        the only package that imports FastAPI, Starlette, uvicorn
    sources/                     live inputs (followed files, Redis)
    client/                      tail: never the server side (http/, sources/, the fan-out)
    faults/                      failures played on a stream
    core (the top-level modules) knows neither HTTP nor terminals
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "sseplay"

# The third-party server stack: imported only in http/ (and by nothing a plain tail runs).
SERVER_STACK = ("fastapi", "starlette", "uvicorn", "sse_starlette", "httptools")

# Per layer, the sseplay layers it must never import.
LIBRARY_SURFACE = {"server", "stream", "workers", "pytest_plugin", "__init__"}
FORBIDDEN: dict[str, set[str]] = {
    "core": {"cli", "surface", "http", "sources", "client"},
    "faults": {"cli", "surface", "http", "sources", "client"},
    "client": {"cli", "surface", "http", "sources", "faults", "fanout"},
    "sources": {"cli", "surface", "http", "client"},
    "http": {"cli", "surface", "client"},
    "surface": {"cli"},
    "cli": set(),
}
# Core modules of the server-side fan-out, which the client must not pull in.
FANOUT = {"timer", "outlet", "player", "feed", "fanout", "replay", "schedule"}


def layer_of(module: str) -> str:
    """The layer of ``sseplay.a.b``: its package, or core/surface for top-level modules."""
    parts = module.split(".")
    if len(parts) == 1:
        return "surface"
    if parts[1] == "__main__":
        return "cli"
    if parts[1] == "shapes":  # provider streams (issue 25): pure, so core
        return "core"
    if len(parts) > 2 or parts[1] in {"cli", "http", "sources", "client", "faults"}:
        return parts[1]
    return "surface" if parts[1] in LIBRARY_SURFACE else "core"


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def runtime_imports(tree: ast.Module, package: str) -> list[tuple[int, str]]:
    """Every module imported when the code runs: ``import x``, ``from x import y`` (both as
    ``x`` and ``x.y``, since ``y`` may be a module), relative imports resolved."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((node.lineno, base))
            found.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names)
    return found


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_the_package_has_the_layers_this_test_names() -> None:
    # If the layout changes, this test must change with it, not pass over a missing layer.
    layers = {layer_of(module_name(path)) for path in modules()}
    assert layers == set(FORBIDDEN)


@pytest.mark.parametrize("path", modules(), ids=lambda path: module_name(path))
def test_a_module_imports_only_from_the_layers_below_it(path: Path) -> None:
    name = module_name(path)
    layer = layer_of(name)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text("utf-8"))
    crossings = []
    for line, imported in runtime_imports(tree, package):
        top = imported.split(".")[0]
        if top in SERVER_STACK and layer not in {"http"}:
            crossings.append(f"line {line}: {imported} (the server stack belongs to http/)")
        if top != "sseplay" or imported == "sseplay":
            continue
        if imported in {"sseplay.__version__"}:
            continue
        target = layer_of(imported)
        if target in FORBIDDEN[layer]:
            crossings.append(f"line {line}: {imported} ({layer} must not import {target})")
        if layer == "client" and imported.split(".")[1] in FANOUT:
            crossings.append(f"line {line}: {imported} (the client never pulls in the fan-out)")
    assert not crossings, f"{name} crosses a layer:\n" + "\n".join(crossings)


def test_the_rule_catches_a_crossing() -> None:
    # The checker itself: a core module importing the server stack or the CLI is caught.
    tree = ast.parse("import uvicorn\nfrom sseplay.cli import main\n")
    imported = [name for _, name in runtime_imports(tree, "sseplay")]
    assert "uvicorn" in imported
    assert "sseplay.cli" in imported
    assert layer_of("sseplay.cli") in FORBIDDEN["core"]
    hidden = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import uvicorn\n")
    assert "uvicorn" not in [name for _, name in runtime_imports(hidden, "sseplay")]
