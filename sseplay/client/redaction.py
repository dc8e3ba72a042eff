"""How ``sseplay tail`` shows a URL: without the secrets in it.

Recordings get committed as fixtures and status lines end up in CI logs, so the password
of a URL and the values of the query parameters that carry a credential are shown as
``***`` everywhere tail prints or writes a URL; the request still carries them.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

import httpx

# Query (and fragment) parameters whose value is a secret, compared case-insensitively
# after percent-decoding the name: what APIs take instead of an Authorization header, and
# OAuth 2.0's access_token (RFC 6750 2.3, and the fragment of RFC 6749 4.2.2).
SECRET_PARAMETERS = frozenset({"token", "key", "api_key", "apikey", "access_token"})
_PARAMETER_SEPARATOR = re.compile("([&;])")  # ';' too: some servers split on it
REDACTED = "***"


def _redact_parameters(text: str) -> str:
    """``text`` (a query or fragment) with the value of each secret parameter ``***``;
    everything else is kept byte for byte."""
    parts = _PARAMETER_SEPARATOR.split(text)
    for index in range(0, len(parts), 2):
        name, equals, value = parts[index].partition("=")
        if equals and value and unquote_plus(name).strip().lower() in SECRET_PARAMETERS:
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
