"""Who may read the streams: ``--token`` and the ``Host`` check against DNS rebinding.

``AccessGuard`` is a plain ASGI middleware in front of every route. It passes ``receive``
on untouched, so the fast write path (``sseplay.http.uvicorn.direct``) still finds uvicorn's request
cycle behind it, and it answers a refused request itself with one line of text.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Receive, Scope, Send

logger = logging.getLogger("sseplay.server")

HEALTH_ROUTE = "/healthz"
# A browser asks for the icon by itself, without the page's query string or headers.
OPEN_ROUTES = frozenset({"/favicon.ico"})
TOKEN_PARAMETER = b"token"
# RFC 6761 section 6.3: "localhost" always names the loopback. Any other name may be made
# to resolve to 127.0.0.1 by whoever owns it (DNS rebinding).
LOOPBACK_NAMES = frozenset({"localhost"})


def is_loopback(host: str) -> bool:
    """Whether a listening address (``--host``) reaches only this machine."""
    name = host.strip("[]").lower().rstrip(".")
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_name(value: str) -> str:
    """The name of a ``Host`` header (RFC 9110 section 7.2: uri-host [":" port]) without
    its port and IPv6 brackets, lower-cased and without a trailing dot."""
    value = value.strip()
    if value.startswith("["):
        name = value[1 : value.find("]")] if "]" in value else value[1:]
    else:
        name = value.rsplit(":", 1)[0] if value.count(":") == 1 else value
    return name.lower().rstrip(".")


def normalize_allowed_host(value: str) -> str:
    """An ``--allowed-host`` value as compared: ``*``, or a name without port or brackets."""
    return "*" if value.strip() == "*" else host_name(value)


@dataclass(frozen=True, slots=True)
class AccessRules:
    """``token``: the secret every request must carry (None: none needed).
    ``allowed_hosts``: the ``Host`` names answered besides the loopback ones (None: any
    Host, as for a server reachable from elsewhere with no ``--allowed-host``)."""

    token: str | None = None
    allowed_hosts: frozenset[str] | None = None

    @classmethod
    def of(cls, listen: str, token: str | None, allowed_hosts: Iterable[str]) -> AccessRules:
        """The rules for a server listening on ``listen``: one on the loopback checks Host,
        and so does any server given ``--allowed-host``."""
        allowed = frozenset(normalize_allowed_host(name) for name in allowed_hosts)
        if "*" in allowed:
            return cls(token, None)
        if allowed or is_loopback(listen):
            # The address it listens on is one of its names too (unless it is a wildcard).
            if not is_loopback(listen) and listen not in ("0.0.0.0", "::"):
                allowed |= {host_name(listen)}
            return cls(token, allowed)
        return cls(token, None)

    def host_allowed(self, name: str) -> bool:
        if self.allowed_hosts is None or name in self.allowed_hosts:
            return True
        return is_loopback(name)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def _query_token(query: bytes) -> bytes | None:
    """``?token=`` percent-decoded (URL Standard, application/x-www-form-urlencoded)."""
    for pair in query.split(b"&"):
        key, _, value = pair.partition(b"=")
        if unquote_to_bytes(key.replace(b"+", b" ")) == TOKEN_PARAMETER:
            return unquote_to_bytes(value.replace(b"+", b" "))
    return None


def presented_token(scope: Scope) -> bytes | None:
    """The token a request carries: ``Authorization: Bearer TOKEN`` (RFC 6750 section 2.1;
    the scheme is case-insensitive, RFC 9110 section 11.1), else ``?token=TOKEN``, which an
    ``EventSource`` has to use since it cannot set headers (RFC 6750 section 2.3)."""
    authorization = _header(scope, b"authorization")
    if authorization is not None:
        scheme, _, credentials = authorization.strip().partition(b" ")
        if scheme.lower() == b"bearer":
            return credentials.strip()
    return _query_token(scope.get("query_string", b""))


async def _answer(
    send: Send, status: int, text: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = text.encode() + b"\n"
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", b"%d" % len(body)),
                (b"cache-control", b"no-store"),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _client(scope: Scope) -> str:
    host, port = scope.get("client") or ("?", 0)
    return f"{host}:{port}"


class AccessGuard:
    """Refuses what ``rules`` do not allow, before any route sees the request."""

    def __init__(self, app: ASGIApp, rules: AccessRules) -> None:
        self.app = app
        self.rules = rules
        self._token = rules.token.encode() if rules.token is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or await self.admits(scope, send):
            await self.app(scope, receive, send)

    async def admits(self, scope: Scope, send: Send) -> bool:
        """Whether the rules let an HTTP request through; when not, it is answered."""
        if self.rules.allowed_hosts is not None and not await self._host_ok(scope, send):
            return False
        needs_token = self._token is not None and scope["path"] not in OPEN_ROUTES
        return not needs_token or await self._token_ok(scope, send)

    async def _host_ok(self, scope: Scope, send: Send) -> bool:
        # HTTP/2 carries it as :authority, which a server treats as Host (RFC 9113 8.3.1).
        raw = _header(scope, b"host") or _header(scope, b":authority")
        if raw is None:
            # No browser sends a request without Host, so no page can use that to rebind.
            return True
        value = raw.decode("latin-1")
        name = host_name(value)
        if self.rules.host_allowed(name):
            return True
        logger.warning(
            "%s %s %s with Host %r: answered 421 (not a name of this server; "
            "--allowed-host %s would allow it)",
            _client(scope),
            scope["method"],
            scope["path"],
            value,
            name,
        )
        # 421 Misdirected Request (RFC 9110 section 15.5.20): not a name this server answers.
        # A page on another name resolved to 127.0.0.1 (DNS rebinding) must not read streams.
        await _answer(
            send,
            421,
            f"sseplay: this server does not answer for the host {name!r}; "
            f"start it with --allowed-host {name} to allow it",
        )
        return False

    async def _token_ok(self, scope: Scope, send: Send) -> bool:
        assert self._token is not None
        presented = presented_token(scope)
        # Compared in constant time, so the time of a refusal tells nothing of the token.
        if presented is not None and hmac.compare_digest(presented, self._token):
            return True
        if presented is None and scope["path"] == HEALTH_ROUTE:
            # The health status alone stays open, for load balancers and `curl -f`;
            # the streams and the files behind them need the token.
            await _health_status_only(send)
            return False
        why = "no token" if presented is None else "a wrong token"
        # Logged without the token, right or wrong: logs end up in many hands.
        logger.warning(
            "%s %s %s with %s: answered 401", _client(scope), scope["method"], scope["path"], why
        )
        await _answer(
            send,
            401,
            f"sseplay: {why}: send the server's --token as 'Authorization: Bearer TOKEN' "
            "or as ?token=TOKEN",
            # RFC 9110 section 11.6.1: a 401 says how to authenticate (RFC 6750 section 3).
            [(b"www-authenticate", b'Bearer realm="sseplay"')],
        )
        return False


async def _health_status_only(send: Send) -> None:
    body = b'{"status":"ok"}'
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(body)),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})
