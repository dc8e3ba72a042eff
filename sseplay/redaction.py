"""Secrets kept out of what sseplay shows and writes: URLs, headers, query strings.

Recordings get committed as fixtures and status lines end up in CI logs, so the password
of a URL, the values of the query parameters that carry a credential and the headers that
carry one are ``***`` everywhere sseplay prints or writes them (``tail``'s URLs, the
proxy's recordings, issue 24); the request itself still carries them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import unquote_plus

if TYPE_CHECKING:  # imported where a URL is redacted: recordings (the core) need no httpx
    import httpx

# Query (and fragment) parameters whose value is a secret, compared case-insensitively
# after percent-decoding the name: what APIs take instead of an Authorization header, and
# OAuth 2.0's access_token (RFC 6750 2.3, and the fragment of RFC 6749 4.2.2).
SECRET_QUERY = frozenset({"token", "key", "api_key", "apikey", "access_token"})
# Headers that carry a credential (RFC 9110 11.6.2 Authorization, 11.7.2
# Proxy-Authorization; RFC 6265 Cookie and Set-Cookie) and the API-key headers providers
# take instead (X-Api-Key, Api-Key). Lower case: header names are case-insensitive.
SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key"}
)
_PARAMETER_SEPARATOR = re.compile("([&;])")  # ';' too: some servers split on it
REDACTED = "***"


def _redact_parameters(text: str, names: frozenset[str] = SECRET_QUERY) -> str:
    """``text`` (a query or fragment) with the value of each parameter of ``names``
    (lower case) ``***``; everything else is kept byte for byte."""
    parts = _PARAMETER_SEPARATOR.split(text)
    for index in range(0, len(parts), 2):
        name, equals, value = parts[index].partition("=")
        if equals and value and unquote_plus(name).strip().lower() in names:
            parts[index] = f"{name}={REDACTED}"
    return "".join(parts)


def _redact_query_and_fragment(url: str) -> str:
    rest, hash_mark, fragment = url.partition("#")
    base, question_mark, query = rest.partition("?")
    return (
        base + question_mark + _redact_parameters(query) + hash_mark + _redact_parameters(fragment)
    )


def redact_url(url: str | httpx.URL) -> str:
    """The URL as tail shows it: without its password and the values of its secret
    parameters (``?token=``, ``key``, ``api_key``, ``access_token``), as ``***``.
    Recordings get committed as fixtures, status lines end up in CI logs. A user name
    alone may be a token, so it is hidden too. A URL that does not parse still loses
    its secret parameters (it is shown in the usage error)."""
    import httpx

    text = str(url)
    try:
        parsed = httpx.URL(text)
    except httpx.InvalidURL:
        return _redact_query_and_fragment(text)
    if parsed.userinfo:
        username, _, password = parsed.userinfo.decode("ascii", "replace").partition(":")
        userinfo = f"{username}:{REDACTED}" if password else REDACTED
        text = str(parsed.copy_with(userinfo=userinfo.encode()))
    return _redact_query_and_fragment(text)


def _names(base: frozenset[str], extra: Iterable[str]) -> frozenset[str]:
    return base | {name.strip().lower() for name in extra}


def redact_headers(
    headers: Iterable[tuple[str, str]], extra: Iterable[str] = ()
) -> tuple[tuple[str, str], ...]:
    """The headers with lower-case names, the value of each secret one ``***``.

    ``extra`` adds names (``--redact NAME``), compared case-insensitively."""
    secret = _names(SECRET_HEADERS, extra)
    pairs = ((name.lower(), value) for name, value in headers)
    return tuple((name, REDACTED if name in secret else value) for name, value in pairs)


def redact_query(query: str, extra: Iterable[str] = ()) -> str:
    """A raw query string with the value of each secret parameter ``***`` (names kept,
    everything else byte for byte). ``extra`` adds names, compared case-insensitively
    after percent-decoding, as the defaults are."""
    return _redact_parameters(query, _names(SECRET_QUERY, extra))
