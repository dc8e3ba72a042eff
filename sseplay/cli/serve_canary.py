"""``sseplay serve --canary``: the flags checked, then the canary (``sseplay.canary``)
served until Ctrl-C or SIGTERM."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sseplay.canary import DEFAULT_CANARY_INTERVAL, Canary
from sseplay.cli.serving import serve_loaded, url_file_written
from sseplay.cli.shared import hangup_stops, setup_logging
from sseplay.config import ServerConfig
from sseplay.errors import UsageError


def run_canary(
    files: list[str],
    route: str,
    interval: float | None,
    config: ServerConfig,
    given: dict[str, bool],
    setup: tuple[bool, bool, str, Path | None],
) -> None:
    """Serve the canary at ``route``; ``given``: the flags that do not apply to it, and
    whether each was given (a usage error if so, rather than silently nothing)."""
    if files:
        raise UsageError(
            f"--canary serves its own events, not {files[0]}: drop the files, or --canary"
        )
    flags = [flag for flag, used in given.items() if used]
    if flags:
        raise UsageError(f"{flags[0]} does not apply to --canary; drop {flags[0]}")
    canary = Canary(DEFAULT_CANARY_INTERVAL if interval is None else interval)
    quiet, verbose, log_format, url_file = setup

    def described(served: Any) -> str:
        return f"a canary at {route}: an event every {canary.interval:g} s"

    setup_logging(quiet, verbose, log_format)
    with hangup_stops(), url_file_written(url_file) as write_urls:
        serve_loaded(lambda: {route: canary}, described, config, write_urls)
