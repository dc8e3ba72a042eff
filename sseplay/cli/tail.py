"""``sseplay tail``: its flags, read into ``TailOptions``, and the run that shows the stream
(or records it, or checks it) until it ends, Ctrl-C, or the reader of stdout goes away.

No ``from __future__ import annotations``: Typer reads this command's annotations at run
time (see ``startup.py``). The client is imported only when the command runs.
"""

import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sseplay.cli.shared import CacertOption, ClientTokenOption, InsecureOption, Interrupted
from sseplay.cli.startup import skip_imports_tail_never_uses
from sseplay.client.defaults import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_CONTENT_TYPE,
    DEFAULT_MAX_EVENT_SIZE,
    DEFAULT_METHOD,
    FORMAT_FLAG_CHOICES,
    FORMATS,
    PIPED_FORMAT,
    TERMINAL_FORMAT,
    Format,
)
from sseplay.errors import UsageError

if TYPE_CHECKING:
    from sseplay.client.delivery import DeliveryOptions
    from sseplay.client.options import TailOptions

SHORT_HELP = "Show an SSE stream as it arrives; an assertion for CI."


def _request_body(data: str | None) -> bytes | None:
    if data is None or not data.startswith("@"):
        return None if data is None else data.encode()
    try:
        return Path(data[1:]).read_bytes()
    except OSError as error:
        raise UsageError(f"-d {data}: cannot read the file: {error.strerror}") from None


# "pretty, json, raw or data", for the help and the usage error.
_CHOICES_TEXT = ", ".join(FORMAT_FLAG_CHOICES[:-1]) + f" or {FORMAT_FLAG_CHOICES[-1]}"


def _check_stdout() -> None:
    """``sseplay tail URL >&-``: Python starts with ``sys.stdout`` None when fd 1 is
    closed. Say so in one line (exit 11) rather than fail on the first use of it."""
    if sys.stdout is None:
        from sseplay.errors import OutputFailed

        raise OutputFailed(
            "stdout is closed: tail has nowhere to show the stream "
            "(to discard it, send it to /dev/null: > /dev/null)"
        )


def _output_format(output: str | None, data_only: bool) -> Format:
    default = TERMINAL_FORMAT if sys.stdout.isatty() else PIPED_FORMAT
    chosen = "data" if data_only else output or default
    if chosen not in FORMATS:
        raise UsageError(f"--format must be {_CHOICES_TEXT}, not {output!r}")
    return chosen


def tail(
    url: Annotated[
        str,
        typer.Argument(
            metavar="URL",
            help="The stream, e.g. http://127.0.0.1:8000/events (http:// when no scheme).",
        ),
    ],
    output: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            metavar="FORMAT",
            help=f"{_CHOICES_TEXT} (data: only each event's data, as --data-only). "
            f"[default: {TERMINAL_FORMAT} on a terminal, {PIPED_FORMAT} when piped]",
        ),
    ] = None,
    data_only: Annotated[
        bool,
        typer.Option(
            "--data-only",
            help="Print only each event's data (control characters escaped on a terminal).",
        ),
    ] = False,
    framing: Annotated[
        str,
        typer.Option(
            metavar="FRAMING",
            help="How the body is split into events: sse (text/event-stream), ndjson (one "
            "JSON value a line: Ollama) or json-array (a streamed JSON array: Gemini without "
            "?alt=sse); each JSON value is an event of type message, without id.",
        ),
    ] = "sse",
    method: Annotated[
        str, typer.Option("--method", "-X", metavar="METHOD", help="HTTP method.")
    ] = DEFAULT_METHOD,
    data: Annotated[
        str | None,
        typer.Option("--data", "-d", metavar="BODY", help="Request body: text, or @FILE."),
    ] = None,
    content_type: Annotated[
        str, typer.Option(metavar="TYPE", help="Content-Type of --data.")
    ] = DEFAULT_CONTENT_TYPE,
    header: Annotated[
        list[str] | None,
        typer.Option(
            "--header", "-H", metavar="'NAME: VALUE'", help="A request header (repeatable)."
        ),
    ] = None,
    last_event_id: Annotated[
        str | None,
        typer.Option(metavar="ID", help="Start after this id (sent as Last-Event-ID)."),
    ] = None,
    event: Annotated[
        list[str] | None,
        typer.Option("--event", "-e", metavar="TYPE", help="Show only this type (repeatable)."),
    ] = None,
    count: Annotated[
        int | None, typer.Option(metavar="N", help="Exit 0 after this many events.")
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(metavar="REGEX", help="Exit 0 when an event's data matches this regex."),
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(metavar="SECONDS", help="Give up after this long in all.")
    ] = None,
    idle_timeout: Annotated[
        float | None,
        typer.Option(metavar="SECONDS", help="Give up after this long without a byte."),
    ] = None,
    connect_timeout: Annotated[
        float,
        typer.Option(metavar="SECONDS", help="Time to connect and get the response headers."),
    ] = DEFAULT_CONNECT_TIMEOUT,
    no_reconnect: Annotated[
        bool,
        typer.Option(
            "--no-reconnect", help="Exit when the stream ends or drops, instead of reconnecting."
        ),
    ] = False,
    max_retries: Annotated[
        int | None,
        typer.Option(metavar="N", help="Give up after this many reconnections. [default: never]"),
    ] = None,
    record: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="Write the stream to FILE as it came, byte for byte with its timing, for "
            "'sseplay serve FILE'.",
        ),
    ] = None,
    max_event_size: Annotated[
        int,
        typer.Option(metavar="N", help="Fail on an event larger than this many characters."),
    ] = DEFAULT_MAX_EVENT_SIZE,
    insecure: InsecureOption = False,
    cacert: CacertOption = None,
    token: ClientTokenOption = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No status lines on stderr.")
    ] = False,
    expect: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="Exit 9 at the first event that differs from FILE (a --record recording, "
            "or events as --format json prints them); exit 0 once all have come.",
        ),
    ] = None,
    ignore: Annotated[
        list[str] | None,
        typer.Option(
            metavar="FIELD",
            help="Leave this field of the data (a dotted path: created, choices.*.delta.id) "
            "out of --expect (repeatable).",
        ),
    ] = None,
    ignore_id: Annotated[
        bool, typer.Option("--ignore-id", help="Leave event ids out of --expect.")
    ] = False,
    exact: Annotated[
        bool,
        typer.Option(
            "--exact", help="With --expect: an event after the expected ones is a mismatch."
        ),
    ] = False,
    schema: Annotated[
        list[str] | None,
        typer.Option(
            metavar="[TYPE=]FILE",
            help="Exit 10 at the first event whose data breaks this JSON Schema "
            "(TYPE=FILE: for that event type only; repeatable).",
        ),
    ] = None,
    stats: Annotated[
        bool,
        typer.Option(
            "--stats",
            help="At the end, print one JSON object of figures on stderr (events, bytes, "
            "reconnects, latencies).",
        ),
    ] = False,
    stats_file: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="Write the --stats object to FILE instead."),
    ] = None,
    wait: Annotated[
        float | None,
        typer.Option(
            metavar="SECONDS",
            help="Retry a refused (or 502/503/504) first connection for up to this long.",
        ),
    ] = None,
    check_delivery: Annotated[
        bool,
        typer.Option(
            "--check-delivery",
            help="Read for --timeout (or --count events) and exit 12 if a hop held the "
            "stream back (lag, bursts, headers), naming the likely culprit; best against "
            "'sseplay serve --canary'.",
        ),
    ] = False,
    max_lag: Annotated[
        str | None,
        typer.Option(
            metavar="DURATION",
            help="--check-delivery: the lag allowed (250ms, 0.5s). [default: 250ms]",
        ),
    ] = None,
    expected_interval: Annotated[
        float | None,
        typer.Option(
            metavar="SECONDS",
            help="--check-delivery on a stream that is not a canary: the interval it keeps.",
        ),
    ] = None,
) -> None:
    """Show an SSE stream as it arrives; exit codes make it an assertion for CI."""
    skip_imports_tail_never_uses()
    _check_stdout()
    from sseplay.client.options import TailOptions

    delivery = None
    if check_delivery or max_lag is not None or expected_interval is not None:
        from sseplay.client.delivery import delivery_options

        delivery = delivery_options(check_delivery, max_lag, expected_interval, timeout, count)
    options = TailOptions(
        url=url,
        method=method,
        headers=header or (),
        body=_request_body(data),
        content_type=content_type,
        last_event_id=last_event_id,
        event_types=event or (),
        count=count,
        until=until,
        timeout=timeout,
        idle_timeout=idle_timeout,
        connect_timeout=connect_timeout,
        reconnect=not no_reconnect and delivery is None,
        max_retries=max_retries,
        max_event_size=max_event_size,
        verify=not insecure,
        cacert=cacert,
        token=token,
        expect=expect,
        ignore=ignore or (),
        ignore_id=ignore_id,
        exact=exact,
        schema=schema or None,
        stats=_stats_wanted(stats, stats_file, delivery),
        wait=wait,
        framing=framing,  # type: ignore[arg-type]  # checked by TailOptions
    )
    if delivery is not None:
        _run_check_delivery(options, delivery, stats_file if stats_file else stats, quiet)
        return
    _run_tail(options, _output_format(output, data_only), record, quiet)


def _stats_wanted(stats: bool, stats_file: Path | None, delivery: object) -> object:
    """--stats as TailOptions takes it; --check-delivery fills a TailStats of its own and
    writes the report itself, with the lag percentiles."""
    wanted = stats_file if stats_file is not None else stats
    if delivery is not None and wanted:
        from sseplay.client.stats import TailStats

        return TailStats()
    return wanted


def _run_check_delivery(
    options: "TailOptions", delivery: "DeliveryOptions", stats: object, quiet: bool
) -> None:
    """Read and judge the stream: one line on stderr, exit 0 or 12 (``Buffered``)."""
    import asyncio

    from sseplay.client.delivery_check import check_delivery, conclude
    from sseplay.model import visible

    def on_status(text: str) -> None:
        if not quiet:
            sys.stderr.write(f"sseplay: {visible(text)}\n")
            sys.stderr.flush()

    try:
        verdict = asyncio.run(check_delivery(options, delivery, on_status))
    except KeyboardInterrupt:
        raise Interrupted from None
    conclude(verdict, options.stats, None if stats is True else str(stats), on_status)


def _silence_stdout() -> None:
    """After stdout failed: what is still buffered must not fail again at exit (which
    prints a second error and makes the exit code 120)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _run_tail(options: "TailOptions", chosen: Format, record: Path | None, quiet: bool) -> None:
    """Follow the stream with ``options``, showing it in format ``chosen``."""
    import asyncio
    import contextlib
    import time

    from sseplay.client.hooks import Hooks
    from sseplay.client.reconnect import reconnecting_stream
    from sseplay.client.recorder import TailRecorder
    from sseplay.client.render import make_renderer, now
    from sseplay.errors import OutputFailed
    from sseplay.model import visible

    renderer = make_renderer(chosen)

    def on_status(text: str) -> None:
        if not quiet:
            sys.stderr.write(f"sseplay: {visible(text)}\n")
            sys.stderr.flush()

    def show_raw(chunk: bytes) -> None:
        renderer.raw(chunk)

    recorder = None
    if record is not None:
        # The stream as it came (issue 24's recording format): what ``serve FILE`` plays
        # byte for byte.
        recorder = TailRecorder(record, time.monotonic())
        recording = recorder

        def show_and_record(chunk: bytes) -> None:
            renderer.raw(chunk)
            recording.raw(chunk)

    hooks = (
        Hooks(show_and_record, on_status, connected=recorder.connected)
        if recorder is not None
        else Hooks(show_raw, on_status)
    )
    ended = "tail stopped"  # unless the stream ends as tail was asked to let it

    interrupted = False

    def interrupt(task: asyncio.Task[None]) -> None:
        """Ctrl-C: cancel the tail, and again every 50 ms until it is gone, because a
        cancellation that meets an I/O wait ending at the same moment can be lost on the
        way up (asyncio.timeout and wait_for in 3.11, anyio's scopes in httpcore)."""
        nonlocal interrupted
        interrupted = True
        if not task.done():
            task.cancel()
            asyncio.get_running_loop().call_later(0.05, interrupt, task)

    async def run() -> None:
        nonlocal ended
        task = asyncio.current_task()
        assert task is not None
        with contextlib.suppress(NotImplementedError, RuntimeError):  # no signals here
            asyncio.get_running_loop().add_signal_handler(signal.SIGINT, interrupt, task)
        async with contextlib.aclosing(reconnecting_stream(options, hooks)) as batches:
            async for batch in batches:
                if batch:
                    arrived = now()  # the events of a chunk arrived together
                    for item in batch:
                        renderer.event(item, arrived)
                renderer.flush()
        ended = "complete"

    try:
        try:
            asyncio.run(run())
        except asyncio.CancelledError:
            if not interrupted:
                raise
        if interrupted:
            raise KeyboardInterrupt
    except BrokenPipeError:
        # The reader has all it wanted (`sseplay tail URL | head -3`): a success.
        _silence_stdout()
    except OSError as error:  # stdout on a full disk, or otherwise unwritable
        _silence_stdout()
        raise OutputFailed(f"cannot write the output: {error.strerror or error}") from None
    except KeyboardInterrupt:
        raise Interrupted from None
    finally:
        if recorder is not None:
            recorder.close(ended)
