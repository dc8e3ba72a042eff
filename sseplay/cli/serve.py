"""``sseplay serve``: its flags, read into ``StreamOptions`` and ``ServerConfig`` and checked
before anything is read or opened; ``serving.py`` does the rest.

No ``from __future__ import annotations``: Typer reads this command's annotations at run
time (see ``startup.py``).
"""

from pathlib import Path
from typing import Annotated, Any

import typer

from sseplay.cli.serve_options import (
    CanaryOption,
    ChunkOption,
    ChunksOption,
    ControlOption,
    ExpectClientOption,
    FaultHeaderOption,
    FaultOption,
    JitterOption,
    MatchIgnoreOption,
    MetricsOption,
    RecordMissingOption,
    RedactOption,
    ScenarioOption,
    ScenarioPresetOption,
    SeedOption,
    ShapeOption,
    TpsOption,
    TtftOption,
)
from sseplay.cli.serving import (
    is_url_argument,
    recordings_argument,
    routes_of,
    run_recordings,
    run_serve,
    url_file_written,
)
from sseplay.cli.shared import (
    STDIN_NAME,
    DataFieldOption,
    EventFieldOption,
    EventTypeOption,
    IdFieldOption,
    LogFormatOption,
    LoopOption,
    MaxGapOption,
    QuietOption,
    SpeedOption,
    TimeFieldOption,
    VerboseOption,
    check_log_format,
    hangup_stops,
    setup_logging,
)
from sseplay.config import (
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_INTERVAL,
    DEFAULT_PING,
    DEFAULT_ROUTE,
    DEFAULT_SEND_TIMEOUT,
    FieldMapping,
    ServerConfig,
    StreamOptions,
    Timing,
    check_route,
)
from sseplay.epoch import parse_epoch
from sseplay.errors import UsageError

SHORT_HELP = "Replay event files as SSE streams."


def serve(
    files: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="FILE...",  # any number of them
            help="Event files (JSON array or JSON Lines, .gz too; - for stdin), or Redis "
            "streams served live: redis://HOST:PORT/DB?stream=KEY (the timing and mapping "
            "flags apply to files only). ROUTE=FILE serves FILE at /ROUTE. sample:NAME is a "
            "sample that comes with sseplay: sample:llm, sample:scores, sample:ticks, "
            "sample:notifications. A directory of recordings (sseplay record --out DIR), or "
            "one recording file, answers every request with the recording that matches it.",
            show_default=False,
        ),
    ] = None,
    route: Annotated[
        str, typer.Option(metavar="ROUTE", help="Route of a single file.")
    ] = DEFAULT_ROUTE,
    interval: Annotated[
        float | None,
        typer.Option(
            metavar="SECONDS",
            help="Seconds between events; 0 = as fast as the client reads. "
            f"[default: {DEFAULT_INTERVAL:g}]",
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
    no_ids: Annotated[
        bool,
        typer.Option(
            "--no-ids",
            help="Send no id: lines (as LLM providers send none); clients cannot resume.",
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
        float | None,
        typer.Option(
            metavar="SECONDS",
            help="Seconds between heartbeat comments; 0 = off. "
            f"[default: {DEFAULT_PING:g}; 0 for recordings, which get only what was recorded]",
        ),
    ] = None,
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
    header_timeout: Annotated[
        float,
        typer.Option(
            metavar="SECONDS",
            help="Close a connection whose request line and headers have not all come"
            " within this many seconds.",
        ),
    ] = DEFAULT_HEADER_TIMEOUT,
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
    metrics: MetricsOption = False,
    control: ControlOption = False,
    expect_client: ExpectClientOption = None,
    scenario_preset: ScenarioPresetOption = None,
    redact: RedactOption = None,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NAME", help="Answer requests for this Host too (repeatable; * = any)."
        ),
    ] = None,
    fault: FaultOption = None,
    fault_header: FaultHeaderOption = False,
    seed: SeedOption = None,
    match_ignore: MatchIgnoreOption = None,
    chunks: ChunksOption = False,
    record_missing: RecordMissingOption = None,
    shape: ShapeOption = None,
    chunk: ChunkOption = None,
    ttft: TtftOption = None,
    tps: TpsOption = None,
    jitter: JitterOption = None,
    scenario: ScenarioOption = None,
    canary: CanaryOption = False,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
    log_format: LogFormatOption = "text",
) -> None:
    """Replay event files as SSE streams; prints each stream's URL when ready."""
    check_log_format(log_format)
    files = files or []
    if not files and scenario is None and not canary:
        raise UsageError(
            "give a FILE to serve, or --scenario FILE, or --canary; see 'sseplay serve --help'"
        )
    if record_missing is not None and len(files) == 1 and not Path(files[0]).exists():
        # The first run of ``serve rec/ --record-missing URL`` records into a new directory.
        try:
            Path(files[0]).mkdir(parents=True)
        except OSError as error:
            raise UsageError(f"{files[0]}: cannot create it: {error.strerror}") from None
    # The flags that shape a file's events or routes: what a recording, a scenario's rules
    # or a turns file would silently ignore, so each path below refuses them.
    file_flags = {
        "--route": route != DEFAULT_ROUTE,
        "--time-field": time_field is not None,
        "--loop": loop,
        "--data-field": data_field is not None,
        "--event-field": event_field is not None,
        "--event-type": event_type is not None,
        "--id-field": id_field is not None,
        "--follow": follow,
        "--from-end": from_end,
        "--no-ids": no_ids,
        "--retry": retry is not None,
    }
    timing_flags = {
        "--interval": interval is not None,
        "--speed": speed != 1.0,
        "--max-gap": max_gap is not None,
    }
    recording_flags = {
        "--match-ignore": match_ignore is not None,
        "--chunks": chunks,
        "--record-missing": record_missing is not None,
    }
    shaping = {"--chunk": chunk, "--ttft": ttft, "--tps": tps, "--jitter": jitter}
    if shape is None:
        for flag, value in shaping.items():
            if value is not None:
                raise UsageError(f"{flag} applies to --shape SHAPE TURNS.jsonl: add --shape")
    recorded = None if shape is not None else recordings_argument(files)
    if recorded is None:
        for flag, used in recording_flags.items():
            if used:
                raise UsageError(
                    f"{flag} applies to recordings: give a directory of them "
                    "(sseplay record --out DIR), or one recording file"
                )
    else:
        _check_recording_flags(
            {
                **file_flags,
                "--workers": workers is not None,
                "--scenario-preset": scenario_preset is not None,
            }
        )
    options = StreamOptions(
        FieldMapping(data_field, event_field, id_field, event_type, time_field),
        Timing(interval=interval, speed=speed, max_gap=max_gap, loop=loop),
        retry,
        follow,
        from_end,
        no_ids,
    )
    if follow and workers is not None:
        raise UsageError("--follow reads its input in one process: drop --workers")
    config = ServerConfig(
        host=host,
        port=port,
        broadcast=broadcast,
        ping=DEFAULT_PING if ping is None else ping,
        cors=tuple(cors) if cors else None,
        send_timeout=send_timeout,
        header_timeout=header_timeout,
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
        control=control,
        expect_client=_rules(expect_client),
        scenario_preset=scenario_preset,
        redact=tuple(redact or ()),
        metrics=metrics,
    )
    if scenario is not None:
        from sseplay.cli.scenario import run_scenario

        run_scenario(
            scenario,
            files,
            {
                **file_flags,
                **timing_flags,
                **recording_flags,
                "--shape": shape is not None,
                "--canary": canary,
            },
            config,
            lambda: setup_logging(quiet, verbose, log_format),
            url_file,
        )
        return
    if canary:
        from sseplay.cli.serve_canary import run_canary

        given = {"--follow": follow, "--broadcast": broadcast, "--loop": loop, "--once": once}
        given.update({"--workers": workers is not None, "--fault": bool(fault)})
        given.update({"--shape": shape is not None, "--retry": retry is not None})
        setup = (quiet, verbose, log_format, url_file)
        run_canary(files, check_route("/" + route.strip("/")), interval, config, given, setup)
        return
    if shape is not None:
        from sseplay.cli.shaped import run_shaped, shape_options

        turns_options = shape_options(
            shape,
            files,
            {"chunk": chunk, "ttft": ttft, "tps": tps, "jitter": jitter, "seed": seed},
            ping,
            {
                **file_flags,
                **timing_flags,
                **recording_flags,
                "--epoch": epoch is not None,
                "--scenario-preset": scenario_preset is not None,
            },
        )
        setup_logging(quiet, verbose, log_format)
        with hangup_stops(), url_file_written(url_file) as write_urls:
            run_shaped(turns_options, config, write_urls)
        return
    if recorded is not None:
        recording_options: dict[str, Any] = {
            "match_ignore": tuple(match_ignore or ()),
            "chunks": chunks,
            "speed": speed,
            "max_gap": max_gap,
            "interval": interval,
            "ping": 0.0 if ping is None else ping,
            "record_missing": record_missing,
        }
        setup_logging(quiet, verbose, log_format)
        with hangup_stops(), url_file_written(url_file) as write_urls:
            run_recordings(recorded, recording_options, config, write_urls)
        return
    if files.count(STDIN_NAME) > 1:
        raise UsageError("standard input (-) can be read only once")
    routes = routes_of(files, check_route("/" + route.strip("/")))
    _check_urls(routes, config)
    # A live URL's route, ids and retry: are its own flags' to set; the rest shape a file.
    applies_to_urls = ("--route", "--no-ids", "--retry")
    _check_file_flags(
        routes,
        {
            **timing_flags,
            **{flag: used for flag, used in file_flags.items() if flag not in applies_to_urls},
            "--broadcast": broadcast,
            "--epoch": epoch is not None,
        },
    )
    setup_logging(quiet, verbose, log_format)
    with hangup_stops(), url_file_written(url_file) as write_urls:
        run_serve(routes, options, config, write_urls)


def _faults(texts: list[str] | None) -> tuple[Any, ...]:
    """The --fault specs; fault injection is imported only when some are given."""
    if not texts:
        return ()
    from sseplay.faults.spec import parse_faults

    return parse_faults(texts)


def _rules(texts: list[str] | None) -> tuple[Any, ...]:
    """The --expect-client rules; verdicts are imported only when some are given."""
    if not texts:
        return ()
    from sseplay.verdict import parse_rules

    return parse_rules(texts)


def _check_urls(routes: dict[str, str], config: ServerConfig) -> None:
    """Every ``scheme://`` source is a valid redis:// URL (one usage line otherwise)."""
    urls = [path for path in routes.values() if is_url_argument(path)]
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
    if not routes or not all(is_url_argument(path) for path in routes.values()):
        return
    flags = [flag for flag, used in given.items() if used]
    if flags:
        raise UsageError(
            f"{flags[0]} applies to files only: a redis:// stream sends each entry as it is "
            f"read, with its own type and id; drop {flags[0]}"
        )


def _check_recording_flags(given: dict[str, bool]) -> None:
    """A flag that shapes a file's events or its routes, given with recordings: it would
    silently do nothing (a recording is played as it was recorded), so it is a usage error."""
    flags = [flag for flag, used in given.items() if used]
    if not flags:
        return
    raise UsageError(
        f"{flags[0]} does not apply to recordings: each is played as it was recorded, "
        f"to the request that matches it; drop {flags[0]}"
    )
