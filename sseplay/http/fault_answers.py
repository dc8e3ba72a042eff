"""The answers a client gets instead of its stream: ``status``, ``refuse`` and ``hang``
(see ``sseplay.faults.spec``). Imported only by a server with faults to inject."""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING

from starlette.responses import Response

from sseplay.http.request import disconnect
from sseplay.http.uvicorn.protocol import transport_of

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

    from sseplay.faults.spec import FaultSpec


async def answer_instead(
    spec: FaultSpec,
    scope: Scope,
    receive: Receive,
    send: Send,
    stream_headers: list[tuple[bytes, bytes]],
) -> None:
    """``status``, ``refuse`` or ``hang``: what the client gets instead of the stream
    (``stream_headers``: those a stream starts with, for ``hang:headers=yes``)."""
    if spec.kind == "status":
        headers = {}
        if spec.retry_after is not None:  # RFC 9110 section 10.2.3
            headers["Retry-After"] = str(spec.retry_after)
        if spec.code == 204:
            body = ""
        elif spec.body is not None:
            body = spec.body
        else:
            body = f"{spec.code} {HTTPStatus(spec.code).phrase}\n"
        response = Response(body, spec.code, headers, media_type="text/plain")
        await response(scope, receive, send)
        return
    if spec.kind == "refuse":
        transport = transport_of(receive)
        if transport is None:  # not uvicorn's httptools: it answers 500 for us
            return
        transport.close()
    elif spec.headers:  # hang:headers=yes
        await send({"type": "http.response.start", "status": 200, "headers": stream_headers})
    # Until the client goes; then uvicorn knows the connection is lost and adds nothing.
    await disconnect(receive)
