"""``sseplay publish``: play an event file on its schedule into a Redis stream (XADD), for
``sseplay serve redis://...`` to serve.

No ``from __future__ import annotations``: Typer reads this command's annotations at run
time (see ``startup.py``). Redis and the publisher are imported only when the command runs.
"""

import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from sseplay.cli.shared import (
    STDIN_NAME,
    DataFieldOption,
    EventFieldOption,
    EventTypeOption,
    IdFieldOption,
    Interrupted,
    LogFormatOption,
    LoopOption,
    MaxGapOption,
    QuietOption,
    SpeedOption,
    TimeFieldOption,
    VerboseOption,
    check_log_format,
    setup_logging,
    sigterm_interrupts,
)
from sseplay.config import DEFAULT_INTERVAL, FieldMapping, StreamOptions, Timing

SHORT_HELP = "Play an event file into a Redis stream (XADD)."


def publish(
    file: Annotated[
        str,
        typer.Argument(
            metavar="FILE",
            help="Event file (JSON array or JSON Lines, .gz too; - for stdin).",
            show_default=False,
        ),
    ],
    to: Annotated[
        str,
        typer.Option(
            "--to",
            metavar="URL",
            help="The Redis stream: redis://HOST:PORT/DB?stream=KEY (rediss:// for TLS).",
            show_default=False,
        ),
    ],
    maxlen: Annotated[
        int | None,
        typer.Option(metavar="N", help="Trim the stream to about N entries (XADD MAXLEN ~ N)."),
    ] = None,
    interval: Annotated[
        float | None,
        typer.Option(
            metavar="SECONDS",
            help=f"Seconds between events; 0 = all at once. [default: {DEFAULT_INTERVAL:g}]",
        ),
    ] = None,
    time_field: TimeFieldOption = None,
    speed: SpeedOption = 1.0,
    max_gap: MaxGapOption = None,
    loop: LoopOption = False,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            help="Then publish every record appended to FILE (or arriving on -) as it is "
            "written; timing flags apply to the existing records only.",
        ),
    ] = False,
    data_field: DataFieldOption = None,
    event_field: EventFieldOption = None,
    event_type: EventTypeOption = None,
    id_field: IdFieldOption = None,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
    log_format: LogFormatOption = "text",
) -> None:
    """Play an event file on its schedule into a Redis stream, for `serve redis://...`."""
    from sseplay.sources.redis_publish import PublishOptions
    from sseplay.sources.redis_reader import RedisTarget

    options = StreamOptions(
        FieldMapping(data_field, event_field, id_field, event_type, time_field),
        Timing(interval=interval, speed=speed, max_gap=max_gap, loop=loop),
        follow=follow,
    )
    publish_options = PublishOptions(RedisTarget.parse(to, "--to"), maxlen)
    setup_logging(quiet, verbose, check_log_format(log_format))
    run_publish(file, options, publish_options)


def run_publish(file: str, options: StreamOptions, publish_options: Any) -> None:
    """Check the file, connect, then play it into the stream until its end (or Ctrl-C)."""
    import asyncio

    from sseplay.eventfile import load_event_file
    from sseplay.sources.follow_input import prepare_file, prepare_stdin
    from sseplay.sources.redis_publish import Publisher
    from sseplay.sources.redis_reader import redis_asyncio
    from sseplay.spool import Spools

    redis_asyncio()  # a missing package is said before the file is read
    label = "<stdin>" if file == STDIN_NAME else file
    with Spools() as spools:
        try:
            with sigterm_interrupts():
                follow_input = None
                if options.follow and file == STDIN_NAME:
                    event_file, follow_input = None, prepare_stdin(options.mapping)
                elif options.follow:
                    event_file, follow_input = prepare_file(label, Path(file), options.mapping)
                else:
                    location = spools.prepare(file, label)
                    event_file = load_event_file(label, location, options.mapping)
        except KeyboardInterrupt:
            raise Interrupted("interrupted during the start-up check; nothing was sent") from None
        publisher = Publisher(event_file, options, publish_options)
        log = logging.getLogger("sseplay.publish")

        async def run() -> int:
            await publisher.connect()
            log.info("publishing %s to %s", label, publish_options.target.shown)
            try:
                return await publisher.run(follow_input)
            finally:
                await publisher.close()

        try:
            with sigterm_interrupts():
                sent = asyncio.run(run())
        except KeyboardInterrupt:
            log.info("stopped after %d events", publisher.published)
            raise Interrupted(said=None) from None  # the log line says it
        log.info("published %d events to %s", sent, publish_options.target.shown)
