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
    from sseplay.server import Server
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


@pytest.fixture
def sse_server() -> Iterator[Callable[..., Server]]:
    """A factory: ``sse_server(records_or_path_or_stream, **options)`` returns a running
    ``Server`` (its ``url`` is the stream's), stopped when the test ends. Options are
    those of ``Stream.from_file`` (``interval``, ``loop``, ``id_field``...) and of
    ``Server`` (``broadcast``, ``ping``, ``cors``...)."""
    from sseplay.server import Server

    servers: list[Server] = []

    def start(source: Source, **options: Any) -> Server:
        stream_options = {k: v for k, v in options.items() if k in StreamKeywords.__annotations__}
        server_options = {k: v for k, v in options.items() if k not in stream_options}
        server = Server(stream_of(source, stream_options), **server_options)
        servers.append(server.start())
        return server

    yield start
    for server in servers:
        server.stop()
