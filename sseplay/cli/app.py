"""The ``sseplay`` command: flags -> option objects -> one call per command.

This is the one place where errors become messages and exit codes. It must
stay light: ``sseplay --help`` and ``sseplay tail`` never import the server
stack (FastAPI, uvicorn, sse-starlette), so those imports live inside ``serve``.

Unlike the other modules, this one does not use ``from __future__ import annotations``:
Typer reads the commands' annotations at run time, and as strings it would compile
each of them at every launch (about 13 ms of CPU for ``serve``); as objects they are
built from the module's cached bytecode.
"""

import importlib
import logging
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, cast

import typer

from sseplay import __version__
from sseplay.config import (
    DEFAULT_PING,
    DEFAULT_ROUTE,
    DEFAULT_SEND_TIMEOUT,
    FieldMapping,
    ServerConfig,
    StreamOptions,
    Timing,
    check_route,
    is_url,
    route_problem,
)
from sseplay.epoch import parse_epoch
from sseplay.errors import ExitCode, SseplayError, UsageError

if TYPE_CHECKING:
    from sseplay.client.options import TailOptions

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Plain click help: rich help formatting costs ~100 ms of imports on every --help.
    rich_markup_mode=None,
    help="Replay JSON event files as Server-Sent Events, and tail any SSE stream.",
)

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


def _is_url(argument: str) -> bool:
    """``scheme://...``: a source that is not a file (redis://), unless a file has that name."""
    return is_url(argument) and not _names_a_file(argument)


def _names_a_file(argument: str) -> bool:
    """Whether ``argument`` is an existing path (a file may have ``=`` in its name); a path
    that cannot even be looked at (no search permission, a name too long) is not one."""
    try:
        return Path(argument).exists()
    except OSError:
        return False


def routes_of(files: Sequence[str], default_route: str) -> dict[str, str]:
    """Route -> file argument. ``ROUTE=FILE`` names the route; a lone unnamed file gets
    ``--route``, and each of several gets its file name's stem."""
    routes: dict[str, str] = {}
    for index, argument in enumerate(files):
        name, equals, path = argument.partition("=")
        url = _is_url(argument)  # redis://...?stream=KEY has an = of its own
        if equals and not url and not _names_a_file(argument) and (route := "/" + name.strip("/")):
            if problem := route_problem(route):
                raise UsageError(f"{argument}: {problem}")
        elif len(files) == 1:
            route, path = default_route, argument
        else:
            stem = "stdin" if argument == STDIN_NAME else Path(argument).name.split(".")[0]
            if url:  # a Redis stream: its key names the route
                from sseplay.sources.redis_reader import RedisTarget

                stem = RedisTarget.parse(argument).stream
            route, path = "/" + (stem or f"stream{index + 1}"), argument
            if problem := route_problem(route):
                raise UsageError(
                    f"{argument}: its name gives the route {route!r}, which cannot be served: "
                    f"name the route with ROUTE={argument}"
                )
        if route in routes:
            raise UsageError(f"two files would be served at {route}: name them with ROUTE=FILE")
        routes[route] = path
    return routes


@contextmanager
def _url_file(path: Path | None) -> Iterator[Any]:
    """``--url-file``: the URLs are written there once the server accepts connections
    (whole, by a rename, so a script that polls for the file never reads half of it),
    and the file is removed when the server stops, so a stale one never says "ready"."""
    if path is None:
        yield lambda urls: None
        return
    path.unlink(missing_ok=True)

    def write(urls: list[str]) -> None:
        partial = path.with_name(path.name + ".partial")
        try:
            partial.write_text("".join(url + "\n" for url in urls), encoding="utf-8")
            os.replace(partial, path)
        except OSError as error:
            logging.getLogger("sseplay.server").error(
                "--url-file %s: cannot write it: %s", path, error.strerror
            )

    try:
        yield write
    finally:
        path.unlink(missing_ok=True)


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM during the start-up check stops it like Ctrl-C does, so that a check that
    takes a while is stopped cleanly (temporary files removed) and not killed."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# Flags that `serve` and `publish` share: declared once, each a type alias the two
# commands' parameters use, so their names, help and defaults cannot drift apart.
TimeFieldOption = Annotated[
    str | None,
    typer.Option(
        metavar="FIELD",
        help="Field with each record's time: seconds, 00:05, 01:02:03 or ISO-8601.",
    ),
]
SpeedOption = Annotated[float, typer.Option(metavar="FACTOR", help="Play this many times faster.")]
MaxGapOption = Annotated[
    float | None,
    typer.Option(metavar="SECONDS", help="Cap every pause at this many seconds (after --speed)."),
]
LoopOption = Annotated[bool, typer.Option("--loop", help="Play forever; ids stay unique.")]
DataFieldOption = Annotated[
    str | None,
    typer.Option(metavar="FIELD", help="Field (dotted path) sent as the data."),
]
EventFieldOption = Annotated[
    str | None, typer.Option(metavar="FIELD", help="Field with the event type.")
]
EventTypeOption = Annotated[
    str | None, typer.Option(metavar="TYPE", help="One event type for all.")
]
IdFieldOption = Annotated[
    str | None,
    typer.Option(metavar="FIELD", help="Field with the id. [default: position 1, 2, 3...]"),
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Log only warnings.")]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Log everything.")]


@app.command(short_help="Replay event files as SSE streams.")
def serve(
    files: Annotated[
        list[str],
        typer.Argument(
            metavar="FILE...",  # any number of them
            help="Event files (JSON array or JSON Lines, .gz too; - for stdin), or Redis "
            "streams served live: redis://HOST:PORT/DB?stream=KEY (the timing and mapping "
            "flags apply to files only). ROUTE=FILE serves FILE at /ROUTE.",
            show_default=False,
        ),
    ],
    route: Annotated[
        str, typer.Option(metavar="ROUTE", help="Route of a single file.")
    ] = DEFAULT_ROUTE,
    interval: Annotated[
        float | None,
        typer.Option(
            metavar="SECONDS",
            help="Seconds between events; 0 = as fast as the client reads. [default: 1]",
        ),
    ] = None,
    time_field: TimeFieldOption = None,
    speed: SpeedOption = 1.0,
    max_gap: MaxGapOption = None,
    loop: LoopOption = False,
    data_field: DataFieldOption = None,
    event_field: EventFieldOption = None,
    event_type: EventTypeOption = None,
    id_field: IdFieldOption = None,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            help="Then serve every record appended to the file (or arriving on - stdin) as "
            "it is written, to every client; JSON Lines only.",
        ),
    ] = False,
    from_end: Annotated[
        bool,
        typer.Option(
            "--from-end",
            help="With --follow: clients without Last-Event-ID start at the live edge.",
        ),
    ] = False,
    broadcast: Annotated[
        bool,
        typer.Option("--broadcast", help="One shared timeline from server start for all clients."),
    ] = False,
    epoch: Annotated[
        str | None,
        typer.Option(
            metavar="TIME",
            help="When the --broadcast timeline starts (ISO-8601 or Unix seconds): "
            "hosts with the same file and TIME serve the same stream.",
        ),
    ] = None,
    retry: Annotated[
        int | None,
        typer.Option(metavar="MS", help="Send retry: MS, the browser's reconnection delay."),
    ] = None,
    ping: Annotated[
        float,
        typer.Option(metavar="SECONDS", help="Seconds between heartbeat comments; 0 = off."),
    ] = DEFAULT_PING,
    host: Annotated[str, typer.Option(metavar="ADDRESS", help="Address to listen on.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(metavar="PORT", help="Port; 0 = any free port.")] = 8000,
    workers: Annotated[
        int | None,
        typer.Option(
            metavar="N", help="Serve the port from N processes; 0 = one per CPU. [default: 1]"
        ),
    ] = None,
    cors: Annotated[
        list[str] | None,
        typer.Option(metavar="ORIGIN", help="Allowed origin (repeatable). [default: any origin]"),
    ] = None,
    once: Annotated[
        bool,
        typer.Option("--once", help="Exit 0 once the first client has received the whole replay."),
    ] = False,
    send_timeout: Annotated[
        float,
        typer.Option(
            metavar="SECONDS", help="Cut off a client that takes no data for this many seconds."
        ),
    ] = DEFAULT_SEND_TIMEOUT,
    url_file: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="Write the URLs to FILE once the server accepts connections; "
            "removed when it stops.",
        ),
    ] = None,
    certfile: Annotated[
        str | None, typer.Option(metavar="FILE", help="Serve HTTPS with this PEM certificate.")
    ] = None,
    keyfile: Annotated[
        str | None, typer.Option(metavar="FILE", help="The private key of --certfile (PEM).")
    ] = None,
    self_signed: Annotated[
        bool,
        typer.Option(
            "--self-signed", help="Serve HTTPS with a throwaway certificate for localhost."
        ),
    ] = False,
    http2: Annotated[
        bool,
        typer.Option("--http2", help="Serve HTTP/2 too, with TLS (uvicorn's, experimental)."),
    ] = False,
    token: Annotated[
        str | None,
        typer.Option(
            metavar="SECRET",
            envvar="SSEPLAY_TOKEN",
            help="Require it: 'Authorization: Bearer SECRET' or ?token=SECRET.",
        ),
    ] = None,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NAME", help="Answer requests for this Host too (repeatable; * = any)."
        ),
    ] = None,
    fault: Annotated[
        list[str] | None,
        typer.Option(
            metavar="SPEC",
            help="Make streams fail at exact events (repeatable): KIND[:KEY=VALUE,...], like "
            "drop:after=5,conn=1. Kinds: status, refuse, hang, drop, reset, cut, stall, delay, "
            "slice, duplicate, skip, malformed; selectors: conn=, times=, p=.",
            show_default=False,
        ),
    ] = None,
    fault_header: Annotated[
        bool,
        typer.Option(
            "--fault-header",
            help="Let a request name its own faults (Sseplay-Fault: SPEC, or ?fault=SPEC).",
        ),
    ] = False,
    seed: Annotated[
        int | None,
        typer.Option(
            metavar="N", help="Seed of the p= draws of --fault. [default: a new one, logged]"
        ),
    ] = None,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Replay event files as SSE streams; prints each stream's URL when ready."""
    try:
        options = StreamOptions(
            FieldMapping(data_field, event_field, id_field, event_type, time_field),
            Timing(interval=interval, speed=speed, max_gap=max_gap, loop=loop),
            retry,
            follow,
            from_end,
        )
        if follow and workers is not None:
            raise UsageError("--follow reads its input in one process: drop --workers")
        config = ServerConfig(
            host=host,
            port=port,
            broadcast=broadcast,
            ping=ping,
            cors=tuple(cors) if cors else None,
            send_timeout=send_timeout,
            once=once,
            certfile=certfile,
            keyfile=keyfile,
            self_signed=self_signed,
            http2=http2,
            token=token,
            allowed_hosts=tuple(allowed_host or ()),
            epoch=None if epoch is None else parse_epoch(epoch),
            workers=workers,
            faults=_faults(fault),
            fault_header=fault_header,
            seed=seed,
        )
        if files.count(STDIN_NAME) > 1:
            raise UsageError("standard input (-) can be read only once")
        routes = routes_of(files, check_route("/" + route.strip("/")))
        _check_urls(routes, config)
        _check_file_flags(
            routes,
            {
                "--interval": interval is not None,
                "--time-field": time_field is not None,
                "--speed": speed != 1.0,
                "--max-gap": max_gap is not None,
                "--loop": loop,
                "--data-field": data_field is not None,
                "--event-field": event_field is not None,
                "--event-type": event_type is not None,
                "--id-field": id_field is not None,
                "--follow": follow,
                "--from-end": from_end,
                "--broadcast": broadcast,
                "--epoch": epoch is not None,
            },
        )
        _setup_logging(quiet, verbose)
        with _url_file(url_file) as write_urls:
            run_serve(routes, options, config, write_urls)
    except SseplayError as error:
        fail(error)


def _faults(texts: list[str] | None) -> tuple[Any, ...]:
    """The --fault specs; fault injection is imported only when some are given."""
    if not texts:
        return ()
    from sseplay.faults.spec import parse_faults

    return parse_faults(texts)


def _check_urls(routes: dict[str, str], config: ServerConfig) -> None:
    """Every ``scheme://`` source is a valid redis:// URL (one usage line otherwise)."""
    urls = [path for path in routes.values() if _is_url(path)]
    if not urls:
        return
    from sseplay.sources.redis_reader import RedisTarget, check_redis_route

    for url in urls:
        RedisTarget.parse(url)
    check_redis_route(config)


def _check_file_flags(routes: dict[str, str], given: dict[str, bool]) -> None:
    """A flag that shapes the replay of a file, given when every source is a redis:// stream:
    it would silently do nothing (a Redis entry goes out as it is read, with its own type
    and id), so it is a usage error. Beside files it applies to the files."""
    if not routes or not all(_is_url(path) for path in routes.values()):
        return
    flags = [flag for flag, used in given.items() if used]
    if flags:
        raise UsageError(
            f"{flags[0]} applies to files only: a redis:// stream sends each entry as it is "
            f"read, with its own type and id; drop {flags[0]}"
        )


def _redis_streams(routes: dict[str, str], options: StreamOptions) -> dict[str, Any]:
    """The redis:// sources, connected once (exit 4 when Redis cannot be reached)."""
    sources = {route: path for route, path in routes.items() if _is_url(path)}
    if not sources:
        return {}
    import asyncio

    from sseplay.sources.redis_feed import RedisStream
    from sseplay.sources.redis_reader import redis_asyncio

    redis_asyncio()  # a missing package is one line that says how to install it
    streams = {route: RedisStream(url, retry=options.retry) for route, url in sources.items()}

    async def check() -> None:
        for stream in streams.values():
            await stream.check()

    asyncio.run(check())
    return streams


def run_serve(
    routes: dict[str, str], options: StreamOptions, config: ServerConfig, write_urls: Any
) -> None:
    """Check every file, then serve them until Ctrl-C, SIGTERM or ``--once``."""
    from sseplay.cli.process import raise_open_file_limit, server_stack_importing, tune_collector
    from sseplay.cli.progress import StartupProgress

    with server_stack_importing():
        from sseplay.server import Server
    from sseplay.eventfile import load_event_file
    from sseplay.spool import Spools
    from sseplay.stream import Stream

    streams: dict[str, Any] = {}
    # Standard input, pipes, devices and .gz files are served from a copy in a temporary
    # directory, removed on every way out: when ``spools`` goes (after serving, or at exit).
    spools = Spools()
    try:
        with _sigterm_interrupts(), StartupProgress() as progress:
            # Connecting to Redis is start-up work too: Ctrl-C or SIGTERM meanwhile is an
            # interrupt, said in one line.
            streams.update(_redis_streams(routes, options))
            for route, file in routes.items():
                if route in streams:  # a redis:// stream, already connected
                    continue
                label = "<stdin>" if file == STDIN_NAME else file
                if options.follow:
                    streams[route] = Stream.followed(file, label, options)
                    continue
                location = spools.prepare(file, label, progress.reporter(f"reading {label}"))
                event_file = load_event_file(
                    label,
                    location,
                    options.mapping,
                    on_progress=progress.reporter(f"checking {label}"),
                )
                streams[route] = Stream(event_file, options)
    except KeyboardInterrupt:
        sys.stderr.write("sseplay: interrupted during the start-up check; nothing was served\n")
        raise SystemExit(int(ExitCode.INTERRUPTED)) from None

    def announce(urls: list[str], first_route: str) -> None:
        for url in urls:
            print(url, flush=True)
        write_urls(urls)
        viewer = urls[0][: -len(first_route)] + "/"
        logging.getLogger("sseplay.server").info("live viewer: %s", viewer)

    streams = {route: streams[route] for route in routes}  # in the order given
    raise_open_file_limit()
    tune_collector()
    if config.workers is not None:
        from sseplay.workers import serve_with_workers

        serve_with_workers(streams, config, announce)
        return
    server = Server(streams, config=config)

    def ready() -> None:
        announce(server.urls, server.all_routes[0].route)

    # uvicorn re-raises the signal that stopped it once it is done; with these
    # handlers in place that is a no-op instead of a KeyboardInterrupt traceback.
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(ready)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


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


@app.command(short_help="Show an SSE stream as it arrives; an assertion for CI.")
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
    cacert: Annotated[
        str | None,
        typer.Option(metavar="FILE", help="Trust the CA certificates in this PEM file too."),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            metavar="SECRET",
            envvar="SSEPLAY_TOKEN",
            help="Send 'Authorization: Bearer SECRET'.",
        ),
    ] = None,
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
) -> None:
    """Show an SSE stream as it arrives; exit codes make it an assertion for CI."""
    _skip_imports_tail_never_uses()
    from sseplay.client.options import TailOptions

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
            cacert=cacert,
            token=token,
            expect=expect,
            ignore=ignore or (),
            ignore_id=ignore_id,
            exact=exact,
            schema=schema or None,
            stats=stats_file if stats_file is not None else stats,
            wait=wait,
        )
        _run_tail(options, _output_format(output, data_only), record, quiet)
    except SseplayError as error:
        fail(error)


@app.command(short_help="Play an event file into a Redis stream (XADD).")
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
            help="Seconds between events; 0 = all at once. [default: 1]",
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
) -> None:
    """Play an event file on its schedule into a Redis stream, for `serve redis://...`."""
    try:
        from sseplay.sources.redis_publish import PublishOptions
        from sseplay.sources.redis_reader import RedisTarget

        options = StreamOptions(
            FieldMapping(data_field, event_field, id_field, event_type, time_field),
            Timing(interval=interval, speed=speed, max_gap=max_gap, loop=loop),
            follow=follow,
        )
        publish_options = PublishOptions(RedisTarget.parse(to, "--to"), maxlen)
        _setup_logging(quiet, verbose)
        run_publish(file, options, publish_options)
    except SseplayError as error:
        fail(error)


def run_publish(file: str, options: StreamOptions, publish_options: Any) -> None:
    """Check the file, connect, then play it into the stream until its end (or Ctrl-C)."""
    import asyncio

    from sseplay.eventfile import load_event_file
    from sseplay.sources.follow import prepare_file, prepare_stdin
    from sseplay.sources.redis_publish import Publisher
    from sseplay.sources.redis_reader import redis_asyncio
    from sseplay.spool import Spools

    redis_asyncio()  # a missing package is said before the file is read
    label = "<stdin>" if file == STDIN_NAME else file
    with Spools() as spools:
        try:
            with _sigterm_interrupts():
                follow_input = None
                if options.follow and file == STDIN_NAME:
                    event_file, follow_input = None, prepare_stdin(options.mapping)
                elif options.follow:
                    event_file, follow_input = prepare_file(label, Path(file), options.mapping)
                else:
                    location = spools.prepare(file, label)
                    event_file = load_event_file(label, location, options.mapping)
        except KeyboardInterrupt:
            sys.stderr.write("sseplay: interrupted during the start-up check; nothing was sent\n")
            raise SystemExit(int(ExitCode.INTERRUPTED)) from None
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
            with _sigterm_interrupts():
                sent = asyncio.run(run())
        except KeyboardInterrupt:
            log.info("stopped after %d events", publisher.published)
            raise SystemExit(int(ExitCode.INTERRUPTED)) from None
        log.info("published %d events to %s", sent, publish_options.target.shown)


# Modules that the libraries under tail import for features tail never uses: httpx imports
# its own command line (click, rich.console, rich.progress, pygments: ~0.2 s here), httpcore
# imports trio when it is installed, to support trio event loops (~0.3 s), and h2 when it is
# installed, for HTTP/2 (~0.1 s), which tail does not ask for (HTTP/1.1, as EventSource
# streams are usually served). The tail command runs on asyncio and has its own command
# line, so in its process these are marked as absent; the libraries catch the ImportError
# (httpx/__init__.py, httpcore/_synchronization.py, httpcore/_async/__init__.py). Only the
# CLI does this: a program that imports sseplay as a library keeps them.
_NEVER_USED_BY_TAIL = ("httpx._main", "trio", "h2")


def _skip_imports_tail_never_uses() -> None:
    for name in _NEVER_USED_BY_TAIL:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


def _plain_conversions() -> None:
    """Typer 0.2x converts each flag's value through a pydantic TypeAdapter, and importing
    pydantic for that is ~0.25 s of every command's start-up here. The flags of sseplay
    take plain str, int, float and Path values (and lists of them), converted here as
    click would; any other type, any constraint (min, max, a parser...) and any Typer
    without this hook go Typer's own way."""
    try:  # private modules of Typer 0.29 (older ones have none of this)
        _coercion: Any = importlib.import_module("typer._coercion")
        _param_types: Any = importlib.import_module("typer._param_types")
        _TyperParameter: Any = importlib.import_module("typer.core")._TyperParameter
    except (ImportError, AttributeError):
        return
    if not all(
        hasattr(owner, name)
        for owner, name in (
            (_TyperParameter, "get_runtime_param"),
            (_coercion, "RuntimeParam"),
            (_param_types, "coerce_cli_path"),
        )
    ):
        return
    nouns = {int: "a whole number", float: "a number", bool: "true or false"}
    truth = {"1": True, "true": True, "t": True, "yes": True, "y": True, "on": True}
    truth |= {"0": False, "false": False, "f": False, "no": False, "n": False, "off": False}

    def to_bool(value: Any, info: Any) -> bool:
        if isinstance(value, bool):
            return value
        try:
            return truth[str(value).strip().lower()]
        except KeyError:
            raise ValueError(value) from None

    converters: dict[Any, Any] = {
        bool: to_bool,
        str: lambda value, info: value,
        int: lambda value, info: int(value),
        float: lambda value, info: float(value),
        Path: lambda value, info: _param_types.coerce_cli_path(value, info, path_type=Path),
    }

    class PlainRuntimeParam(_coercion.RuntimeParam):  # type: ignore[misc]  # Any: private
        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            kind = self.annotation
            if getattr(kind, "__origin__", None) is list:
                (kind,) = kind.__args__
            convert = converters[kind]
            try:
                if isinstance(value, list | tuple):
                    return [convert(item, self.parameter_info) for item in value]
                return convert(value, self.parameter_info)
            except ValueError:
                raise typer.BadParameter(
                    f"{value!r} is not {nouns.get(kind, 'valid')}", ctx=ctx, param=param
                ) from None

    def plain(annotation: Any, info: Any) -> bool:
        if getattr(annotation, "__origin__", None) is list:
            (annotation,) = annotation.__args__
        constrained = (
            info.parser is not None
            or getattr(info, "click_type", None) is not None
            or info.min is not None
            or info.max is not None
            or getattr(info, "exists", False)
            or getattr(info, "resolve_path", False)
            or getattr(info, "allow_dash", False)
            or getattr(info, "path_type", None) is not None
        )
        return annotation in converters and not constrained

    typer_way = _TyperParameter.get_runtime_param

    def get_runtime_param(self: Any) -> Any:
        if self._runtime_param is None:
            descriptor = self.type_descriptor
            annotation, info = descriptor.annotation, descriptor.parameter_info
            if descriptor.file_annotation is None and plain(annotation, info):
                self._runtime_param = PlainRuntimeParam(info, annotation)
        return typer_way(self)

    _TyperParameter.get_runtime_param = get_runtime_param


def _silence_stdout() -> None:
    """After stdout failed: what is still buffered must not fail again at exit (which
    prints a second error and makes the exit code 120)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _run_tail(options: "TailOptions", chosen: str, record: Path | None, quiet: bool) -> None:
    """Follow the stream with ``options``, showing it in format ``chosen``."""
    import asyncio
    import contextlib
    import time

    from sseplay.client.hooks import Hooks
    from sseplay.client.options import redact_url
    from sseplay.client.reconnect import reconnecting_stream
    from sseplay.client.render import Format, make_renderer, now
    from sseplay.errors import OutputFailed
    from sseplay.model import visible
    from sseplay.recording import Recorder

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
                if recorder is not None:
                    recorder.flush()
        if recorder is not None:
            recorder.flush()

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
        sys.stderr.write("sseplay: interrupted\n")
        raise SystemExit(int(ExitCode.INTERRUPTED)) from None
    finally:
        if recorder is not None:
            recorder.close()


def _usage_line(error: Any, command_path: str = "sseplay") -> str:
    """One line for a mistake on the command line, where click would print three: what is
    wrong, the suggestion if there is one, and where to read more. ``command_path`` names
    the command when click's parser gives no context (an option without its value, a flag
    given one), so that the line points at that command's help."""
    command = error.ctx.command_path if error.ctx is not None else command_path
    possibilities = sorted(getattr(error, "possibilities", None) or ())
    message = error.message if possibilities else error.format_message()
    message = " ".join(message.split()).rstrip(".")
    if possibilities:
        alternatives = possibilities[0]
        if len(possibilities) > 1:
            alternatives = ", ".join(possibilities[:-1]) + " or " + possibilities[-1]
        message += f" (did you mean {alternatives}?)"
    return f"{command}: {message}; see '{command} --help'"


def _plain_arguments(command: Any) -> Any:
    """Arguments shown the way a hand-written help shows them (``FILE...``, ``URL``), not
    as Typer 0.2x writes them, with braces and Python types (``{files}... <list[str]>``)."""
    for sub in getattr(command, "commands", {}).values():
        for param in sub.params:
            if param.param_type_name == "argument" and param.metavar:
                param.display_type_rich = lambda ctx: None
                param._usage_display_name = lambda param=param: param.metavar
    return command


# Typer's UsageError: click's own in older Typer releases, a vendored copy in newer
# ones; BadParameter, which Typer exports under both, derives from it.
_ClickUsageError: type[Exception] = typer.BadParameter.__mro__[1]


def _only_the_command_asked_for(args: Sequence[str] | None) -> typer.Typer:
    """The app with only the command that runs: Typer reads the signature of every command
    it builds (about 20 ms each here, of every launch), and a run needs one. ``sseplay``,
    ``--help`` and ``--version`` get the whole app."""
    words = list(sys.argv[1:] if args is None else args)
    if not words or words[0].startswith("-"):
        return app
    chosen = [c for c in app.registered_commands if c.callback and c.callback.__name__ == words[0]]
    if not chosen:
        return app  # a typo: click says so, with the commands it knows
    only = typer.Typer(
        add_completion=False,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
    )
    only.registered_callback = app.registered_callback
    only.info = app.info
    only.registered_commands = chosen
    return only


def main(args: Sequence[str] | None = None) -> None:
    """Entry point of the ``sseplay`` script."""
    command_path = "sseplay"
    try:
        # Inside the try: building the command takes tens of ms, and a Ctrl-C then is an
        # interrupt like any other, not a traceback.
        _plain_conversions()
        asked = _only_the_command_asked_for(args)
        callback = asked.registered_commands[0].callback if asked is not app else None
        if callback is not None:  # one command, named as its function is
            command_path = f"sseplay {callback.__name__}"
        command = _plain_arguments(typer.main.get_command(asked))
        # Not standalone: click would print its errors on three lines and exit itself.
        code = command.main(args, prog_name="sseplay", standalone_mode=False)
    except _ClickUsageError as error:
        if type(error).__name__ == "NoArgsIsHelpError":  # bare ``sseplay``: the help
            error.show()  # type: ignore[attr-defined]
        else:
            sys.stderr.write(f"sseplay: error: {_usage_line(error, command_path)}\n")
        raise SystemExit(int(ExitCode.USAGE)) from None
    except SseplayError as error:  # raised outside a command body, e.g. by a callback
        fail(error)
    except (typer.Abort, KeyboardInterrupt):  # Ctrl-C, caught by click first or not
        sys.stderr.write("sseplay: interrupted\n")
        raise SystemExit(int(ExitCode.INTERRUPTED)) from None
    except BrokenPipeError:
        sys.exit(int(ExitCode.OK))
    if code == ExitCode.INTERRUPTED:  # Typer turns a Ctrl-C in a command into Exit(130)
        sys.stderr.write("sseplay: interrupted\n")
    if isinstance(code, int) and code:
        raise SystemExit(code)
