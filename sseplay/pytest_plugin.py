"""The pytest plugin: an ``sse_server`` fixture that serves a stream for one test.

Registered through the ``pytest11`` entry point, so installing sseplay is all a test
suite needs: no conftest.

    def test_client_reads_every_token(sse_server):
        server = sse_server([{"token": "Hel"}, {"token": "lo"}, "[DONE]"], interval=0)
        assert my_client(server.url) == "Hello"
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeAlias

import pytest

from sseplay.config import StreamKeywords

if TYPE_CHECKING:  # imported when a test uses the fixture, not whenever pytest starts
    from sseplay.recordings import Recordings
    from sseplay.server import Server
    from sseplay.shaped import Turns
    from sseplay.stream import Stream

Source: TypeAlias = "Stream | str | os.PathLike[str] | Iterable[Any]"


def stream_of(source: Source, options: Mapping[str, Any]) -> Stream:
    """A ``Stream`` as it is, a path to an event file, or records as Python values."""
    from sseplay.stream import Stream

    if isinstance(source, Stream):
        if options:
            raise TypeError("stream options go to Stream.from_file/from_records, not here")
        return source
    if isinstance(source, str | os.PathLike):
        return Stream.from_file(source, **options)
    if isinstance(source, bytes | Mapping):
        raise TypeError(
            "give records as a list (or any iterable) of values, a path, or a Stream; "
            "for several routes, give Server a mapping of route to Stream"
        )
    return Stream.from_records(source, **options)


# The keywords of ``Recordings`` (the rest go to ``Server``).
RECORDING_KEYWORDS = frozenset({"match_ignore", "chunks", "speed", "max_gap", "interval"})


def recordings_of(
    source: str | os.PathLike[str], options: Mapping[str, Any]
) -> tuple[Recordings, dict[str, Any]]:
    """A directory of recordings (``sseplay record --out DIR``) and the ``Server`` options:
    ``ping`` goes to the recordings too, which get none unless asked."""
    from sseplay.recordings import Recordings

    recording_options = {k: v for k, v in options.items() if k in RECORDING_KEYWORDS}
    server_options = {k: v for k, v in options.items() if k not in recording_options}
    if "ping" in server_options:
        recording_options["ping"] = server_options["ping"]
    return Recordings(source, **recording_options), server_options


@pytest.fixture
def sse_server() -> Iterator[Callable[..., Server]]:
    """A factory: ``sse_server(records_or_path_or_stream, **options)`` returns a running
    ``Server`` (its ``url`` is the stream's), stopped when the test ends. Options are
    those of ``Stream.from_file`` (``interval``, ``loop``, ``id_field``...) and of
    ``Server`` (``broadcast``, ``ping``, ``cors``...). A directory of recordings
    (``sseplay record --out DIR``) is served as ``Recordings``: ``url`` is the base URL
    that stands for the upstream, and ``match_ignore``, ``chunks``, ``speed``... apply.
    ``Turns`` (``sseplay.Turns``) are served at their shape's routes: ``url`` is the
    base URL an LLM SDK is given. ``sse_server(scenario=FILE_OR_DICT)`` serves a
    scenario (``sseplay.scenario``): ``url`` is the base URL of its paths. With
    ``expect_client=[...]`` (``sseplay.verdict``'s rules), a client that broke one fails
    the test when it ends, a line per rule broken (``server.verdict()`` says so at any
    time before)."""
    from sseplay.server import Server

    servers: list[Server] = []

    def start(source: Source | Turns | None = None, **options: Any) -> Server:
        from sseplay.shaped import Turns

        if source is None:  # a scenario alone: sse_server(scenario={...})
            if "scenario" not in options:
                raise TypeError("sse_server() needs records, a path, a Stream or scenario=")
            server = Server(**options)
            servers.append(server.start())
            return server
        if isinstance(source, Turns):  # at its shape's routes; ``url`` is the base URL
            server = Server(source, **options)
            servers.append(server.start())
            return server
        if isinstance(source, str | os.PathLike) and os.path.isdir(source):
            recordings, server_options = recordings_of(source, options)
            server = Server(recordings, **server_options)
            servers.append(server.start())
            return server
        stream_options = {k: v for k, v in options.items() if k in StreamKeywords.__annotations__}
        server_options = {k: v for k, v in options.items() if k not in stream_options}
        server = Server(stream_of(source, stream_options), **server_options)
        servers.append(server.start())
        return server

    yield start
    broken: list[str] = []
    for server in servers:
        server.stop()
        if server.config.expect_client:
            from sseplay.verdict import line_of

            broken += [line_of(item) for item in server.verdict()["broken"]]
    if broken:
        pytest.fail("the client broke --expect-client:\n" + "\n".join(broken), pytrace=False)
