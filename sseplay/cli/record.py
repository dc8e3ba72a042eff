"""``sseplay record UPSTREAM --out DIR``: a reverse proxy to UPSTREAM that records every
exchange into DIR (issue 24); ``sseplay serve DIR`` plays them back.

No ``from __future__ import annotations``: Typer reads this command's annotations at run
time (see ``startup.py``). The proxy (uvicorn, httptools) is imported only when it runs.
"""

import signal
from pathlib import Path
from typing import Annotated

import typer

from sseplay.cli.shared import (
    Interrupted,
    LogFormatOption,
    QuietOption,
    VerboseOption,
    check_log_format,
    hangup_stops,
    setup_logging,
)

SHORT_HELP = "Record a real upstream through a streaming proxy."


def record(
    upstream: Annotated[
        str,
        typer.Argument(
            metavar="UPSTREAM",
            help="Base URL every request is forwarded to (+ its path), like "
            "https://api.openai.com.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            metavar="DIR",
            help="Directory of the recordings, one file per exchange (created).",
            show_default=False,
        ),
    ],
    redact: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NAME",
            help="A header or query parameter whose value is never written (repeatable); "
            "Authorization, Cookie, X-Api-Key, ?key=, ?token= ... always are.",
        ),
    ] = None,
    host: Annotated[str, typer.Option(metavar="ADDRESS", help="Address to listen on.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(metavar="PORT", help="Port; 0 = any free port.")] = 8000,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
    log_format: LogFormatOption = "text",
) -> None:
    """Forward every request to UPSTREAM, streaming, and record each exchange into DIR;
    prints the proxy's base URL when ready."""
    from sseplay.cli.process import raise_open_file_limit, tune_collector
    from sseplay.http.proxy_server import RecordingProxy

    proxy = RecordingProxy(upstream, out, redact=redact or (), host=host, port=port)
    # Three open files per proxied stream (client, upstream, recording), and no stall of
    # every stream while the collector walks the heap: the process is the command's.
    raise_open_file_limit()
    tune_collector()
    setup_logging(quiet, verbose, check_log_format(log_format))
    serving = False

    def ready() -> None:
        nonlocal serving
        serving = True
        print(proxy.url, flush=True)

    def stop(signum: int, frame: object) -> None:
        # Before the proxy is ready, it is still starting: stop there. Once it serves,
        # uvicorn handles SIGINT and SIGTERM (the exchanges in flight end, recorded as
        # "proxy stopped") and re-raises the one that stopped it once it is done: then
        # this is a no-op, and the command exits 0.
        if not serving:
            raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with hangup_stops():
            proxy.run(ready)
    except KeyboardInterrupt:
        if serving:
            raise
        raise Interrupted("interrupted while starting; nothing was recorded") from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
