"""The response headers of an event stream are the ones sse-starlette gives, byte for byte.

sseplay writes them out as constants instead of building an ``EventSourceResponse`` to copy
them, because importing sse-starlette replaces uvicorn's ``Server.handle_exit`` for the whole
process. This test imports it in a child process, so the suite's own process stays clean,
and fails if a release of sse-starlette changes what a stream should start with.
"""

from __future__ import annotations

import json
import subprocess
import sys

from sseplay.http.hub import EVENT_STREAM_HEADERS

SSE_STARLETTE_HEADERS = """
import json
from sse_starlette import EventSourceResponse

class NoBody:
    def __aiter__(self):
        return self

    async def __anext__(self):
        raise StopAsyncIteration

headers = EventSourceResponse(NoBody(), ping=0, sep="\\n").raw_headers
print(json.dumps([[name.decode("latin-1"), value.decode("latin-1")] for name, value in headers]))
"""


def test_the_stream_headers_are_sse_starlettes_in_the_same_order() -> None:
    child = subprocess.run(
        [sys.executable, "-c", SSE_STARLETTE_HEADERS],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    theirs = [
        (name.encode("latin-1"), value.encode("latin-1"))
        for name, value in json.loads(child.stdout)
    ]
    assert theirs == EVENT_STREAM_HEADERS
