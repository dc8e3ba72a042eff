"""``sseplay probe URL``: one GET, the whole of it bounded by ``timeout``; a 2xx is
healthy, anything else is one ``StreamError`` line. Nothing of the server side is
imported, so the command is the ``HEALTHCHECK`` of an image with no curl."""

from __future__ import annotations

import asyncio
import math
import ssl
from dataclasses import dataclass

import httpx

from sseplay.client.defaults import USER_AGENT
from sseplay.client.exchange import describe, tls_settings
from sseplay.client.options import RequestOptions
from sseplay.errors import StreamError, UsageError
from sseplay.model import visible
from sseplay.redaction import redact_url

DEFAULT_PROBE_TIMEOUT = 5.0  # seconds, for the whole request; a HEALTHCHECK's default is 30


@dataclass(frozen=True)
class ProbeOptions:
    """What ``probe`` sends (the URL, ``--token``, TLS) and how long it may take in all."""

    url: str
    timeout: float = DEFAULT_PROBE_TIMEOUT
    verify: bool = True
    cacert: str | None = None
    token: str | None = None

    def __post_init__(self) -> None:
        timeout = self.timeout
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise UsageError(f"--timeout must be a number of seconds, not {timeout!r}")
        if not math.isfinite(timeout) or timeout <= 0:
            raise UsageError(
                f"--timeout must be a finite number of seconds more than 0, not {timeout:g}"
            )

    @property
    def request(self) -> RequestOptions:
        """The checked URL, the Authorization header of ``token`` and the TLS context,
        as ``tail`` builds them."""
        return RequestOptions(self.url, verify=self.verify, cacert=self.cacert, token=self.token)


async def probe(options: ProbeOptions) -> str:
    """``"STATUS REASON"`` for a 2xx answer to one GET (the body is not read); raise
    ``StreamError`` with one line for anything else: refused, timed out, TLS, a status."""
    request = options.request
    shown = redact_url(request.url)
    headers = [("User-Agent", USER_AGENT), *request.header_pairs]
    verify: ssl.SSLContext | bool = tls_settings(request.url, request.verify, request.tls_context)
    async with httpx.AsyncClient(verify=verify, timeout=None) as client:
        try:
            async with asyncio.timeout(options.timeout):
                sent = client.build_request("GET", request.url, headers=headers)
                response = await client.send(sent, stream=True)
                await response.aclose()
        except TimeoutError:
            raise StreamError(
                f"{shown}: no answer within {options.timeout:g} s (--timeout)"
            ) from None
        except httpx.HTTPError as error:
            raise StreamError(describe(error, shown)) from None
    answer = f"{response.status_code} {visible(response.reason_phrase)}".rstrip()
    if not 200 <= response.status_code < 300:
        raise StreamError(f"{shown} answered {answer}")
    return answer
