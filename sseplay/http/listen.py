"""Where a server listens: its socket, its URLs, and the uvicorn settings for TLS and
HTTP/2."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import uvicorn

from sseplay.errors import CannotServe

if TYPE_CHECKING:
    from sseplay.http.canary import CanaryRoute
    from sseplay.http.hub import LiveRoute, Route
    from sseplay.http.tls import TlsFiles


def bind(host: str, port: int, *, reuse_port: bool = False, listen: bool = True) -> socket.socket:
    """Bind before serving, so a port in use is our own one-line error, and port 0 is known.
    ``reuse_port``: SO_REUSEPORT, so that each --workers process listens on the port with a
    socket of its own; ``listen=False`` only holds the port (it gets no connections)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise CannotServe(f"cannot listen on {host!r}: {error.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(address)
        if listen:
            sock.listen(2048)
    except OSError as error:
        sock.close()
        hint = " (pick another --port, or 0 for any free one)" if port else ""
        raise CannotServe(f"cannot listen on {host}:{port}: {error.strerror}{hint}") from None
    sock.setblocking(False)
    return sock


def stream_urls(
    sock: socket.socket,
    streams: Sequence[Route | LiveRoute | CanaryRoute],
    scheme: str = "http",
) -> list[str]:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return [f"{scheme}://{shown}:{port}{s.route}" for s in streams]


def http2_settings() -> dict[str, Any]:
    """uvicorn's HTTP/2 (experimental in 0.54): its zttp protocols, HTTP/1.1 or HTTP/2 by
    ALPN (RFC 9113 section 3.2). The fast write path then stays off: it is httptools-only."""
    import inspect

    if "http2" not in inspect.signature(uvicorn.Config).parameters:
        raise CannotServe(
            f"--http2 needs uvicorn 0.54 or newer (this is {uvicorn.__version__}): "
            "pip install 'sseplay[http2]'"
        )
    try:
        import zttp  # noqa: F401
    except ImportError:
        raise CannotServe(
            "--http2 needs the zttp package, uvicorn's HTTP/2: pip install 'sseplay[http2]'"
        ) from None
    return {"http": "zttp", "http2": True}


def tls_settings(files: TlsFiles | None, http2: bool) -> dict[str, Any]:
    """The uvicorn settings for HTTPS with ``files`` (none for plain HTTP)."""
    if files is None:
        return {}
    settings: dict[str, Any] = {"ssl_certfile": str(files.certfile)}
    if files.keyfile is not None:
        settings["ssl_keyfile"] = str(files.keyfile)
    if http2:
        settings.update(http2_settings())
    return settings
