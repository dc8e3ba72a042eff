"""``sseplay serve --scenario FILE``: answers picked by request (``sseplay.scenario``),
until Ctrl-C, SIGTERM or ``--once``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from sseplay.config import ServerConfig
from sseplay.errors import UsageError


def check_scenario_flags(files: Sequence[str], given: dict[str, bool]) -> None:
    """A FILE or a flag of what is played, given with --scenario: its rules name their
    files and options, and one given here would silently do nothing."""
    if files:
        raise UsageError(
            f"--scenario serves the files its rules play: drop {files[0]} (or play it in a rule)"
        )
    flags = [flag for flag, used in given.items() if used]
    if not flags:
        return
    from sseplay.scenario import ALL_KEYS

    name = {"--route": "path"}.get(flags[0], flags[0].removeprefix("--").replace("-", "_"))
    instead = f"set {name} in its rules" if name in ALL_KEYS else f"drop {flags[0]}"
    raise UsageError(f"{flags[0]} does not apply to --scenario: {instead}")


def run_scenario(
    source: Path,
    files: Sequence[str],
    given: dict[str, bool],
    config: ServerConfig,
    setup_logging: Callable[[], None],
    url_file: Path | None,
) -> None:
    """Check the flags, load and check the scenario and every file its rules play, then
    answer its paths until stopped."""
    check_scenario_flags(files, given)
    from sseplay.cli.serving import serve_loaded, url_file_written
    from sseplay.cli.shared import hangup_stops
    from sseplay.scenario import Scenario
    from sseplay.scenario_file import load_scenario

    def described(loaded: Scenario) -> str:
        return f"{len(loaded.rules)} scenario rules from {loaded.label}"

    setup_logging()
    with hangup_stops(), url_file_written(url_file) as write_urls:
        serve_loaded(lambda: load_scenario(source), described, config, write_urls)
