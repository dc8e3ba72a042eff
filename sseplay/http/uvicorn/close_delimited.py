"""The request cycle of an HTTP/1.0 request: its stream's body is delimited by the close
of the connection, not chunked.

uvicorn's httptools protocol frames every response without a Content-Length in chunks,
whatever the request's version; but chunked transfer coding is HTTP/1.1's (RFC 9112
section 7), and an HTTP/1.0 client reads the chunk-size lines as part of the body. A
response without a length is instead delimited by closing the connection (RFC 9112
section 6.3, item 8; RFC 1945 section 7.2.2), which uvicorn does after every HTTP/1.0
response anyway (it keeps no HTTP/1.0 connection alive). ``HeadLimitedHttpToolsProtocol``
gives an HTTP/1.0 request this cycle; every other answer (a length, HEAD, 204) is
uvicorn's, unchanged."""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

# Headers an HTTP/1.0 stream does not send: its framing is the close, so no
# Transfer-Encoding and no "Connection: keep-alive"; it says "Connection: close" itself
# (uvicorn 0.54 would add it, 0.45 does not; given, neither adds another).
_DROPPED = (b"connection", b"transfer-encoding")
_CLOSE = (b"connection", b"close")


class CloseDelimitedCycle(RequestResponseCycle):
    """uvicorn's ``RequestResponseCycle`` for an HTTP/1.0 request."""

    # Set when the response started without a length: its body goes out unframed and
    # the connection closes after it (``DirectBody`` then writes it unframed too).
    close_delimited = False

    async def send(self, message: Any) -> None:
        kind = message["type"]
        if kind == "http.response.start" and not self.response_started and _unframed(self, message):
            self.close_delimited = True
            # Not None: uvicorn then adds no Transfer-Encoding of its own.
            self.chunked_encoding = False
            headers = [(n, v) for n, v in message.get("headers", ()) if n.lower() not in _DROPPED]
            headers.append(_CLOSE)
            start: Any = {**message, "headers": headers}
            await super().send(start)
        elif kind == "http.response.body" and self.close_delimited and not self.response_complete:
            # What uvicorn's send does with a body chunk, without the chunk framing.
            if self.flow.write_paused and not self.disconnected:
                await self.flow.drain()
            if self.disconnected:
                return
            body = message.get("body", b"")
            if body:
                self.transport.write(body)
            if not message.get("more_body", False):
                self.response_complete = True
                self.message_event.set()
                self.transport.close()  # the end of the body (RFC 9112 section 6.3)
                self.on_response()
        else:
            await super().send(message)


def _unframed(cycle: RequestResponseCycle, message: Any) -> bool:
    """Whether this response start has a body but no length: uvicorn would chunk it."""
    status = message["status"]
    if cycle.scope["method"] == "HEAD" or status in (204, 304) or status < 200:
        return False
    names = {name.lower() for name, _ in message.get("headers", ())}
    return b"content-length" not in names
