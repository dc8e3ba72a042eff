"""The ``sseplay`` command: flags -> option objects -> one call per command.

This is the one place where errors become messages and exit codes. It must
stay light: ``sseplay --help`` and ``sseplay tail`` never import the server
stack (FastAPI, uvicorn, sse-starlette), so those imports live inside ``serve``.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, cast

import typer

from sseplay import __version__
from sseplay.errors import ExitCode, SseplayError, UsageError

if TYPE_CHECKING:
    from sseplay.client import TailOptions

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Plain click help: rich help formatting costs ~100 ms of imports on every --help.
    rich_markup_mode=None,
    help="Replay JSON event files as Server-Sent Events, and tail any SSE stream.",
)

ROUTE_NAME = re.compile(r"^/?[A-Za-z0-9._~-][A-Za-z0-9._~/-]*$")
STDIN_NAME = "-"


def _version(value: bool) -> None:
    if value:
        print(f"sseplay {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Replay JSON event files as Server-Sent Events, and tail any SSE stream."""


def fail(error: SseplayError) -> NoReturn:
    """Report a known error as one line on stderr and exit with its code."""
    sys.stderr.write(f"sseplay: error: {error}\n")
    sys.stderr.flush()
    raise SystemExit(int(error.exit_code))


def _setup_logging(quiet: bool, verbose: bool) -> None:
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn's own start-up chatter is noise for a replay tool; keep its warnings.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "sse_starlette"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.WARNING)


def _split_route(argument: str, index: int, total: int, default_route: str) -> tuple[str, str]:
    """``ROUTE=FILE`` or ``FILE``; an unnamed file gets ``--route`` when alone, else its stem."""
    name, equals, path = argument.partition("=")
    if equals and ROUTE_NAME.match(name) and not Path(argument).exists():
        return "/" + name.strip("/"), path
    if total == 1:
        return default_route, argument
    stem = "stdin" if argument == STDIN_NAME else Path(argument).name.split(".")[0]
    return "/" + (stem or f"stream{index + 1}"), argument


def _spool_stdin() -> Path:
    """Standard input is read to its end before serving, into a temporary file, so that
    it is served like any file (large input never sits in memory)."""
    with tempfile.NamedTemporaryFile(
        prefix="sseplay-stdin-", suffix=".json", delete=False
    ) as spool:
        shutil.copyfileobj(sys.stdin.buffer, spool, 1 << 20)
    return Path(spool.name)


@app.command()
def serve(
    files: Annotated[
        list[str],
        typer.Argument(
            help="Event files (JSON array or JSON Lines, .gz too; - for stdin). "
            "ROUTE=FILE serves FILE at /ROUTE.",
            show_default=False,
        ),
    ],
    route: Annotated[str, typer.Option(help="Route of a single file.")] = "/events",
    interval: Annotated[
        float | None,
        typer.Option(help="Seconds between events; 0 = as fast as the client reads. [default: 1]"),
    ] = None,
    time_field: Annotated[
        str | None,
        typer.Option(help="Field with each record's time: seconds, 00:05, 01:02:03 or ISO-8601."),
    ] = None,
    speed: Annotated[float, typer.Option(help="Play this many times faster.")] = 1.0,
    max_gap: Annotated[
        float | None, typer.Option(help="Cap every pause at this many seconds (after --speed).")
    ] = None,
    loop: Annotated[bool, typer.Option(help="Play forever; ids stay unique.")] = False,
    data_field: Annotated[
        str | None, typer.Option(help="Field (dotted path) sent as the data.")
    ] = None,
    event_field: Annotated[str | None, typer.Option(help="Field with the event type.")] = None,
    event_type: Annotated[str | None, typer.Option(help="One event type for all.")] = None,
    id_field: Annotated[
        str | None, typer.Option(help="Field with the id. [default: position 1, 2, 3...]")
    ] = None,
    broadcast: Annotated[
        bool, typer.Option(help="One shared timeline from server start for all clients.")
    ] = False,
    retry: Annotated[
        int | None, typer.Option(help="Send retry: MS, the browser's reconnection delay.")
    ] = None,
    ping: Annotated[float, typer.Option(help="Seconds between heartbeat comments; 0 = off.")] = 15,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port; 0 = any free port.")] = 8000,
    cors: Annotated[
        list[str] | None,
        typer.Option(help="Allowed origin (repeatable). [default: any origin]"),
    ] = None,
    once: Annotated[
        bool, typer.Option(help="Exit 0 once the first client has received the whole replay.")
    ] = False,
    send_timeout: Annotated[
        float, typer.Option(help="Cut off a client that takes no data for this many seconds.")
    ] = 10.0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Log only warnings.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log everything.")] = False,
) -> None:
    """Replay event files as SSE streams; prints each stream's URL when ready."""
    try:
        _serve(**locals())
    except SseplayError as error:
        fail(error)


def _serve(
    *,
    files: list[str],
    route: str,
    interval: float | None,
    time_field: str | None,
    speed: float,
    max_gap: float | None,
    loop: bool,
    data_field: str | None,
    event_field: str | None,
    event_type: str | None,
    id_field: str | None,
    broadcast: bool,
    retry: int | None,
    ping: float,
    host: str,
    port: int,
    cors: list[str] | None,
    once: bool,
    send_timeout: float,
    quiet: bool,
    verbose: bool,
) -> None:
    from sseplay.model import field_problem
    from sseplay.schedule import Plan, Timing
    from sseplay.source import FieldMapping, load_event_file

    for name, value, minimum in (
        ("--interval", interval, 0.0),
        ("--max-gap", max_gap, 0.0),
        ("--retry", retry, 0),
        ("--ping", ping, 0.0),
    ):
        if value is not None and value < minimum:
            raise UsageError(f"{name} must be {minimum} or more, not {value}")
    if speed <= 0 or send_timeout <= 0:
        raise UsageError("--speed and --send-timeout must be more than 0")
    if not 0 <= port <= 65535:
        raise UsageError(f"--port must be 0 to 65535, not {port}")
    if once and loop and not broadcast:
        raise UsageError("--once waits for the end of the replay, and --loop never ends")
    if event_type is not None and event_field is not None:
        raise UsageError("use --event-type or --event-field, not both")
    if event_type is not None and (problem := field_problem("event type", event_type)):
        raise UsageError(f"--event-type: {problem}")
    if files.count(STDIN_NAME) > 1:
        raise UsageError("standard input (-) can be read only once")

    _setup_logging(quiet, verbose)
    mapping = FieldMapping(data_field, event_field, id_field, event_type, time_field)
    timing = Timing(interval=interval, speed=speed, max_gap=max_gap, loop=loop)
    routes: dict[str, str] = {}
    for index, argument in enumerate(files):
        path, file = _split_route(argument, index, len(files), "/" + route.strip("/"))
        if path in routes:
            raise UsageError(f"two files would be served at {path}: name them with ROUTE=FILE")
        if path in ("/", "/healthz"):
            raise UsageError(f"{path} is taken by sseplay itself: choose another route")
        routes[path] = file

    from sseplay.replay import Replay
    from sseplay.server import AppOptions, ServerOptions, Stream, bind, serve, stream_urls

    streams = []
    for path, file in routes.items():
        location = _spool_stdin() if file == STDIN_NAME else Path(file)
        label = "<stdin>" if file == STDIN_NAME else file
        event_file = load_event_file(label, location, mapping)
        streams.append(
            Stream(
                path,
                label,
                Replay(event_file, Plan(event_file.count, event_file.times, timing), retry),
            )
        )

    options = ServerOptions(
        host=host,
        port=port,
        once=once,
        app=AppOptions(
            broadcast=broadcast,
            ping=ping,
            cors_origins=tuple(cors) if cors else ("*",),
            send_timeout=send_timeout,
        ),
    )
    sock = bind(host, port)

    def ready() -> None:
        urls = stream_urls(sock, streams)
        for url in urls:
            print(url, flush=True)
        viewer = urls[0][: -len(streams[0].route)] + "/"
        logging.getLogger("sseplay.server").info("live viewer: %s", viewer)

    serve(streams, options, sock, ready)


def _request_body(data: str | None) -> bytes | None:
    if data is None or not data.startswith("@"):
        return None if data is None else data.encode()
    try:
        return Path(data[1:]).read_bytes()
    except OSError as error:
        raise UsageError(f"-d {data}: cannot read the file: {error.strerror}") from None


def _output_format(output: str | None, data_only: bool) -> str:
    chosen = "data" if data_only else output or ("pretty" if sys.stdout.isatty() else "json")
    if chosen not in ("pretty", "json", "raw", "data"):
        raise UsageError(f"--format must be pretty, json or raw, not {output!r}")
    return chosen


@app.command()
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
            help="pretty, json or raw. [default: pretty on a terminal, json when piped]",
        ),
    ] = None,
    data_only: Annotated[
        bool, typer.Option("--data-only", help="Print only each event's data.")
    ] = False,
    method: Annotated[
        str, typer.Option("--method", "-X", metavar="METHOD", help="HTTP method.")
    ] = "GET",
    data: Annotated[
        str | None,
        typer.Option("--data", "-d", metavar="BODY", help="Request body: text, or @FILE."),
    ] = None,
    content_type: Annotated[
        str, typer.Option(metavar="TYPE", help="Content-Type of --data.")
    ] = "application/json",
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
    ] = 10.0,
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
        typer.Option(metavar="FILE", help="Write every event to FILE for 'sseplay serve FILE'."),
    ] = None,
    max_event_size: Annotated[
        int,
        typer.Option(metavar="N", help="Fail on an event larger than this many characters."),
    ] = 16 << 20,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Do not verify TLS certificates.")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No status lines on stderr.")
    ] = False,
) -> None:
    """Show an SSE stream as it arrives; exit codes make it an assertion for CI."""
    from sseplay.client import TailOptions

    try:
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
            reconnect=not no_reconnect,
            max_retries=max_retries,
            max_event_size=max_event_size,
            verify=not insecure,
        )
        _run_tail(options, _output_format(output, data_only), record, quiet)
    except SseplayError as error:
        fail(error)


def _silence_stdout() -> None:
    """After stdout failed: what is still buffered must not fail again at exit (which
    prints a second error and makes the exit code 120)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _run_tail(options: TailOptions, chosen: str, record: Path | None, quiet: bool) -> None:
    """Follow the stream with ``options``, showing it in format ``chosen``."""
    import asyncio
    import contextlib
    import time

    from sseplay.client import Hooks, follow, redact_url
    from sseplay.errors import OutputFailed
    from sseplay.model import visible
    from sseplay.render import Format, Recorder, make_renderer, now

    renderer = make_renderer(cast(Format, chosen))

    def on_status(text: str) -> None:
        if not quiet:
            sys.stderr.write(f"sseplay: {visible(text)}\n")
            sys.stderr.flush()

    def show_raw(chunk: bytes) -> None:
        renderer.raw(chunk)

    recorder = None
    if record is not None:
        recorder = Recorder(record, redact_url(options.url), time.monotonic())
    hooks = (
        Hooks(show_raw, on_status, recorder.event)
        if recorder is not None
        else Hooks(show_raw, on_status)
    )

    async def run() -> None:
        async with contextlib.aclosing(follow(options, hooks)) as batches:
            async for batch in batches:
                if batch:
                    arrived = now()  # the events of a chunk arrived together
                    for item in batch:
                        renderer.event(item, arrived)
                renderer.flush()
                if recorder is not None:
                    recorder.flush()
        if recorder is not None:
            recorder.flush()

    try:
        asyncio.run(run())
    except BrokenPipeError:
        # The reader has all it wanted (`sseplay tail URL | head -3`): a success.
        _silence_stdout()
    except OSError as error:  # stdout on a full disk, or otherwise unwritable
        _silence_stdout()
        raise OutputFailed(f"cannot write the output: {error.strerror or error}") from None
    except KeyboardInterrupt:
        sys.stderr.write("sseplay: interrupted\n")
        raise SystemExit(int(ExitCode.INTERRUPTED)) from None
    finally:
        if recorder is not None:
            recorder.close()


def main() -> None:
    """Entry point of the ``sseplay`` script."""
    try:
        app()
    except SseplayError as error:  # raised outside a command body, e.g. by a callback
        fail(error)
    except BrokenPipeError:
        sys.exit(int(ExitCode.OK))
