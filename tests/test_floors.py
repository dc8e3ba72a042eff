"""The dependency floors in pyproject.toml are the ones CI runs the suite on (tests/floors.txt)."""

from __future__ import annotations

import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.conftest import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _declared_floors() -> dict[str, Version]:
    floors = {}
    for line in PYPROJECT["project"]["dependencies"]:
        requirement = Requirement(line)
        lows = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
        assert len(lows) == 1, f"{line!r}: give it exactly one '>=' floor"
        floors[canonicalize_name(requirement.name)] = lows[0]
    # Extras whose floors are pinned too: the suite runs them (their tests need them).
    extras = PYPROJECT["project"]["optional-dependencies"]
    for line in extras["redis"] + extras["metrics"]:
        requirement = Requirement(line)
        floors[canonicalize_name(requirement.name)] = min(
            Version(s.version) for s in requirement.specifier if s.operator == ">="
        )
    return floors


def _pinned_floors() -> dict[str, Version]:
    pins = {}
    for raw in (ROOT / "tests" / "floors.txt").read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = Version(version)
    return pins


def test_every_floor_is_pinned_in_the_constraints_ci_runs_the_suite_on() -> None:
    assert _pinned_floors() == _declared_floors()


def test_ci_runs_the_suite_on_the_floors_before_the_readme_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    floors_step = ci.index("-c tests/floors.txt")
    assert floors_step < ci.index("pip install -e '.[test]' && python -m pytest")
    assert "-m pytest" in ci[floors_step:].splitlines()[1]


def test_uvicorn_is_capped_because_the_fast_write_path_uses_its_internals() -> None:
    uvicorn = next(
        Requirement(line)
        for line in PYPROJECT["project"]["dependencies"]
        if canonicalize_name(Requirement(line).name) == "uvicorn"
    )
    assert any(s.operator == "<" for s in uvicorn.specifier)


def test_the_declared_pythons_are_the_ones_the_suite_runs_on() -> None:
    """3.11, 3.12 and 3.13 are the Pythons the suite has been run on."""
    prefix = "Programming Language :: Python :: 3."
    classifiers = PYPROJECT["project"]["classifiers"]
    declared = sorted(int(c.removeprefix(prefix)) for c in classifiers if c.startswith(prefix))
    assert declared == [11, 12, 13]
    assert PYPROJECT["project"]["requires-python"] == f">=3.{declared[0]}"
