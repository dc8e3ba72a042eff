"""What ``sseplay serve`` does once its flags are read: routes from the file arguments, every
source checked (files read, Redis connected) before a port opens, then serving until Ctrl-C,
SIGTERM or ``--once``; ``--url-file`` written once the server is ready.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sseplay.cli.shared import STDIN_NAME, Interrupted, sigterm_interrupts
from sseplay.config import ServerConfig, StreamOptions, is_url, route_problem
from sseplay.errors import ClientRulesBroken, UsageError


def is_url_argument(argument: str) -> bool:
    """``scheme://...``: a source that is not a file (redis://), unless a file has that name."""
    return is_url(argument) and not _names_a_file(argument)


def _names_a_file(argument: str) -> bool:
    """Whether ``argument`` is an existing path (a file may have ``=`` in its name); a path
    that cannot even be looked at (no search permission, a name too long) is not one."""
    try:
        return Path(argument).exists()
    except OSError:
        return False


SAMPLE_PREFIX = "sample:"


def samples_directory() -> Path:
    """Where the bundled samples are. An installed wheel carries the repository's samples/
    as ``sseplay/samples`` (pyproject's ``force-include``). From a clone (``PYTHONPATH``) or
    an editable install there is no such directory beside the code: hatchling's editable
    wheel copies force-included files into site-packages, where ``import sseplay`` (found
    through the .pth first) never looks, so the repository's own samples/ is read, which
    also stays current as it is edited."""
    from importlib.resources import files  # only when a sample is named: no start-up cost

    packaged = files("sseplay") / "samples"
    if isinstance(packaged, Path) and packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "samples"


def sample_names() -> list[str]:
    """The names ``sample:NAME`` accepts: the stems of the bundled event files."""
    directory = samples_directory()
    if not directory.is_dir():
        return []
    return sorted(
        entry.name.split(".")[0]
        for entry in directory.iterdir()
        if entry.suffix in (".json", ".jsonl") and entry.is_file()
    )


def _file_of(argument: str) -> str:
    """``sample:NAME`` is the bundled sample NAME (unless a file has that very name); any
    other argument is the file (or URL) it names."""
    if not argument.startswith(SAMPLE_PREFIX) or _names_a_file(argument):
        return argument
    name = argument.removeprefix(SAMPLE_PREFIX)
    names = sample_names()
    if name not in names:
        listed = ", ".join(SAMPLE_PREFIX + known for known in names) or "none are installed"
        raise UsageError(f"{argument}: no such sample; the samples are {listed}")
    return str(min(p for p in samples_directory().iterdir() if p.name.split(".")[0] == name))


def routes_of(files: Sequence[str], default_route: str) -> dict[str, str]:
    """Route -> file argument. ``ROUTE=FILE`` names the route; a lone unnamed file gets
    ``--route``, and each of several gets its file name's stem. ``sample:NAME`` is a file
    too: the bundled sample's path (so ``sample:llm`` beside another file is ``/llm``)."""
    routes: dict[str, str] = {}
    for index, argument in enumerate(files):
        name, equals, path = argument.partition("=")
        url = is_url_argument(argument)  # redis://...?stream=KEY has an = of its own
        if equals and not url and not _names_a_file(argument) and (route := "/" + name.strip("/")):
            if problem := route_problem(route):
                raise UsageError(f"{argument}: {problem}")
            path = _file_of(path)
        elif len(files) == 1:
            route, path = default_route, _file_of(argument)
        else:
            path = _file_of(argument)
            stem = "stdin" if argument == STDIN_NAME else Path(path).name.split(".")[0]
            if url:  # a Redis stream: its key names the route
                from sseplay.sources.redis_reader import RedisTarget

                stem = RedisTarget.parse(argument).stream
            route = "/" + (stem or f"stream{index + 1}")
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
def url_file_written(path: Path | None) -> Iterator[Any]:
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


def _redis_streams(routes: dict[str, str], options: StreamOptions) -> dict[str, Any]:
    """The redis:// sources, connected once (exit 4 when Redis cannot be reached)."""
    sources = {route: path for route, path in routes.items() if is_url_argument(path)}
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


def recordings_argument(files: Sequence[str]) -> str | None:
    """The argument when ``serve`` is given recordings (``sseplay record --out DIR``): one
    directory, or one file whose first line is a version 2 recording header; else None."""
    directories = [argument for argument in files if _is_directory(argument)]
    if directories and len(files) > 1:
        raise UsageError(
            f"{directories[0]} is a directory of recordings: serve it alone "
            "(sseplay serve DIR), without other files"
        )
    if len(files) != 1 or files[0] == STDIN_NAME or is_url_argument(files[0]):
        return None
    argument = files[0]
    if directories:
        return argument
    try:
        # Only a regular file is looked into: a FIFO or /dev/fd/N would block here, or lose
        # its first line to this look.
        if not Path(argument).is_file():
            return None
        with open(argument, "rb") as file:
            first = file.readline(1 << 20)
    except OSError:
        return None  # the start-up check says what is wrong with it
    if b'"recording"' not in first:  # cheap: most event files stop here
        return None
    import json

    from sseplay.exchange import is_exchange_header

    try:
        return argument if is_exchange_header(json.loads(first)) else None
    except ValueError:
        return None


def _is_directory(argument: str) -> bool:
    try:
        return Path(argument).is_dir()
    except OSError:
        return False


def run_recordings(
    source: str, recording_options: dict[str, Any], config: ServerConfig, write_urls: Any
) -> None:
    """``serve DIR``: load and check the recordings, then answer requests with them until
    Ctrl-C, SIGTERM or ``--once`` (every recording played)."""
    from sseplay.recordings import Recordings

    serve_loaded(
        lambda: Recordings(source, **recording_options),
        lambda recordings: f"{len(recordings.exchanges)} recordings from {source}",
        config,
        write_urls,
    )


def serve_loaded(
    load: Callable[[], Any], described: Callable[[Any], str], config: ServerConfig, write_urls: Any
) -> None:
    """Load and check what is served (recordings, turns), stopped by Ctrl-C or SIGTERM
    with one line; then serve it until stopped, its URLs printed and written."""
    from sseplay.cli.startup import server_stack_importing

    with server_stack_importing():
        from sseplay.server import Server

    try:
        with sigterm_interrupts():
            served = load()
    except KeyboardInterrupt:
        raise Interrupted("interrupted during the start-up check; nothing was served") from None

    def announce(urls: list[str]) -> None:
        for url in urls:
            print(url, flush=True)
        write_urls(urls)
        logging.getLogger("sseplay.server").info("serving %s", described(served))

    from sseplay.cli.process import raise_open_file_limit, tune_collector

    raise_open_file_limit()
    tune_collector()
    _run_until_stopped(Server(served, config=config), announce)


def run_serve(
    routes: dict[str, str], options: StreamOptions, config: ServerConfig, write_urls: Any
) -> None:
    """Check every file, then serve them until Ctrl-C, SIGTERM or ``--once``."""
    from sseplay.cli.process import raise_open_file_limit, tune_collector
    from sseplay.cli.progress import StartupProgress
    from sseplay.cli.startup import server_stack_importing

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
        with sigterm_interrupts(), StartupProgress() as progress:
            # Connecting to Redis is start-up work too: Ctrl-C or SIGTERM meanwhile is an
            # interrupt, said in one line.
            streams.update(_redis_streams(routes, options))
            for route, file in routes.items():
                if route in streams:  # a redis:// stream, already connected
                    continue
                if not file and config.control:  # ROUTE= : an empty live route (issue 26)
                    streams[route] = None
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
        raise Interrupted("interrupted during the start-up check; nothing was served") from None

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
    _run_until_stopped(server, lambda urls: announce(urls, server.all_routes[0].route))


def _run_until_stopped(server: Any, announce: Any) -> None:
    """Serve in the foreground; ``announce(urls)`` once it accepts connections."""
    serving = False

    def ready() -> None:
        nonlocal serving
        serving = True
        announce(server.urls)

    def stop(signum: int, frame: object) -> None:
        # Before the server is ready, it is still starting: reading the certificate (which
        # may be a FIFO that no one writes, and open() waits for a writer), binding. A
        # no-op here would have open() resumed and the signal lost (PEP 475): stop as
        # the start-up check does. Once it serves, uvicorn handles SIGINT and SIGTERM,
        # and re-raises the one that stopped it once it is done: then this is a no-op
        # instead of a KeyboardInterrupt traceback.
        if not serving:
            raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(ready)
    except KeyboardInterrupt:
        if serving:
            _judged(server)
            raise
        raise Interrupted("interrupted during the start-up check; nothing was served") from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    _judged(server)


def _judged(server: Any) -> None:
    """--expect-client: exit 9 when a client broke a rule (the server, as it stopped, said
    each one on a line of its own)."""
    config = server.config
    if not config.expect_client:
        return
    broken = server.verdict()["broken"]
    if broken:
        rules = sorted({item["rule"] for item in broken})
        raise ClientRulesBroken(
            f"{len(broken)} time(s) a client broke --expect-client {','.join(rules)} "
            "(each one is said above)"
        )
