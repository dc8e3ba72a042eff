"""``serve sample:NAME``: the samples ship in the package, so an installed sseplay serves them
by name from any directory (docs/ci.md relies on it), routed as files are."""

from __future__ import annotations

import select
import subprocess
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.conftest import ROOT, ServeProcess, run_cli, sseplay


@contextmanager
def served_from(cwd: Path, *args: str) -> Iterator[list[str]]:
    """``sseplay serve --port 0 ARGS`` run in ``cwd``; yields the URLs it printed."""
    process = subprocess.Popen(
        sseplay("serve", "--port", "0", *args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,
        cwd=cwd,
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 15)
        assert ready, "sseplay serve printed no URL"
        first = process.stdout.readline().decode().strip()
        if not first.startswith("http://"):
            process.kill()
            _, err = process.communicate()
            raise AssertionError(f"stdout {first!r}, stderr {err.decode()!r}")
        yield [first]
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


def test_sample_llm_serves_the_events_of_samples_llm_jsonl_from_any_directory(
    tmp_path: Path,
) -> None:
    flags = ("--interval", "0", "--ping", "0")
    with ServeProcess("samples/llm.jsonl", *flags) as from_file:
        expected = httpx.get(from_file.url, timeout=10).content
    # A directory with no samples/ in it: the sample comes with the package.
    with served_from(tmp_path, "sample:llm", *flags) as (url,):
        assert url.endswith("/events"), url
        body = httpx.get(url, timeout=10).content
    assert body == expected
    ids = [line for line in body.splitlines() if line.startswith(b"id: ")]
    assert len(ids) == len((ROOT / "samples" / "llm.jsonl").read_text().splitlines())


def test_samples_are_routed_as_files_are() -> None:
    with ServeProcess("sample:llm", "sample:scores", "feed=sample:ticks", "--interval", "0") as s:
        assert [url.rsplit("/", 1)[1] for url in s.urls] == ["llm", "scores", "feed"]


def test_an_unknown_sample_is_a_usage_error_naming_the_samples() -> None:
    result = run_cli("serve", "sample:nope")
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "sample:nope" in line
    for name in ("llm", "notifications", "scores", "ticks"):
        assert f"sample:{name}" in line


def test_the_wheel_carries_every_sample_the_repository_has() -> None:
    """The names come from samples/ (a clone, an editable install) and the wheel gets that
    directory as sseplay/samples, where an installed sseplay reads them."""
    from sseplay.cli.serving import sample_names

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wheel = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]
    assert wheel["force-include"] == {"samples": "sseplay/samples"}
    in_repository = sorted(p.name.split(".")[0] for p in (ROOT / "samples").glob("*.json*"))
    assert sample_names() == in_repository == ["llm", "notifications", "scores", "ticks"]
