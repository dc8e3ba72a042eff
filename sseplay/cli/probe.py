"""``sseplay probe URL``: one GET, exit 0 on a 2xx and 1 with one line otherwise; the
health check of a container image that has no curl (docs/deploy/Containerfile).

No ``from __future__ import annotations``: Typer reads this command's annotations at run
time (see ``startup.py``). The client is imported only when the command runs.
"""

import sys
from typing import Annotated

import typer

from sseplay.cli.shared import CacertOption, ClientTokenOption, InsecureOption
from sseplay.cli.startup import skip_imports_tail_never_uses

SHORT_HELP = "Exit 0 if URL answers 2xx, 1 otherwise: a health check."
DEFAULT_TIMEOUT = 5.0  # sseplay.client.probe.DEFAULT_PROBE_TIMEOUT, without importing httpx


def probe(
    url: Annotated[
        str,
        typer.Argument(metavar="URL", help="What to ask, e.g. http://127.0.0.1:8000/healthz."),
    ],
    timeout: Annotated[
        float,
        typer.Option(metavar="SECONDS", help="Give up after this long in all."),
    ] = DEFAULT_TIMEOUT,
    insecure: InsecureOption = False,
    cacert: CacertOption = None,
    token: ClientTokenOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing on success.")] = False,
) -> None:
    """Send one GET to URL: exit 0 on a 2xx answer, 1 with one line otherwise (refused,
    timed out, TLS failure, another status). The body is not read."""
    skip_imports_tail_never_uses()
    import asyncio

    from sseplay.client.probe import ProbeOptions
    from sseplay.client.probe import probe as probe_once

    options = ProbeOptions(url, timeout, not insecure, cacert, token)
    answer = asyncio.run(probe_once(options))
    if not quiet:
        sys.stdout.write(f"{answer}\n")
