"""What a stream endpoint reads of a request, in place: no copies kept for the life of a
stream (thousands of them are open at once)."""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from starlette.types import Receive, Scope


async def disconnect(receive: Receive) -> None:
    """Wait for the client to go (uvicorn also answers http.disconnect once the response
    has ended)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def raw_last_event_id(scope: Scope) -> bytes | None:
    """The id a client resumes after: the Last-Event-ID header a browser sends when it
    reconnects (WHATWG 9.2.4), else the lastEventId query parameter, which stands in for
    it on a first connection (that cannot set headers)."""
    raw_id = header(scope, b"last-event-id")
    if raw_id is None:
        raw_id = query_parameter(scope["query_string"], b"lastEventId")
    return raw_id


def header(scope: Scope, name: bytes) -> bytes | None:
    """A request header's first value, as sent; read in place, because Starlette's
    ``Headers`` copies the whole list into the scope, where it stays for the life of a
    stream. ASGI header names are lower-cased by the server."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def query_parameter(query: bytes, name: bytes) -> bytes | None:
    """The first value of a query parameter, percent-decoded to bytes (URL Standard,
    application/x-www-form-urlencoded parsing: ``+`` is a space); the caller decodes it
    as UTF-8, so that bytes that are not UTF-8 are not silently replaced with U+FFFD."""
    for pair in query.split(b"&"):
        key, _, value = pair.partition(b"=")
        if unquote_to_bytes(key.replace(b"+", b" ")) == name:
            return unquote_to_bytes(value.replace(b"+", b" "))
    return None


def client_of(scope: Scope) -> str:
    """The client as the log names it: ``host:port``."""
    host, port = scope.get("client") or ("?", 0)
    return f"{host}:{port}"


# Where an endpoint that read the request's body itself (a POST route: shapes,
# recordings, scenarios) leaves it, for the journal, which cannot read it again.
BODY_KEY = "sseplay.body"
