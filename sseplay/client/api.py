"""The library API of the client: ``sseplay.tail()`` and ``sseplay.atail()``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Generator
from typing import Any

from sseplay.client.options import TailOptions
from sseplay.client.reconnect import reconnecting_stream
from sseplay.errors import UsageError
from sseplay.model import Event


def _options(url: str | TailOptions, options: dict[str, Any]) -> TailOptions:
    if isinstance(url, TailOptions):
        if options:
            raise UsageError("pass either TailOptions or keyword options, not both")
        return url
    if "insecure" in options:
        options["verify"] = not options.pop("insecure")
    try:
        return TailOptions(url, **options)
    except TypeError as error:  # an unknown keyword
        raise UsageError(f"tail(): {error}") from None


def atail(url: str | TailOptions, **options: Any) -> AsyncGenerator[Event, None]:
    """The events of an SSE stream as they arrive, reconnecting as a browser does.

    ``options`` are the keywords of ``TailOptions`` (``insecure=True`` is ``verify=False``),
    checked now (``UsageError``). The CI checks are options too: ``expect`` (a file or a
    list of events, with ``ignore``, ``ignore_id``, ``exact``) raises ``Mismatch``,
    ``schema`` raises ``Invalid``, ``stats`` (True: JSON on stderr; a file; or a
    ``sseplay.client.stats.TailStats`` to read afterwards) reports however the tail ends,
    and ``wait`` retries a first connection that is refused. Ends where ``sseplay tail``
    exits 0 (``count`` reached, ``until`` matched, 204, or the end with
    ``reconnect=False``); raises the ``SseplayError`` subclass whose ``exit_code`` the CLI
    would exit with. To leave early and close the connection at once, iterate inside
    ``contextlib.aclosing(...)``.
    """
    return _events(_options(url, options))


async def _events(options: TailOptions) -> AsyncGenerator[Event, None]:
    batches = reconnecting_stream(options)
    try:
        async for batch in batches:
            for event in batch:
                yield event
    finally:
        await batches.aclose()


def tail(url: str | TailOptions, **options: Any) -> Generator[Event, None, None]:
    """``atail`` for code without an event loop: a blocking iterator of events.

    The options are checked now (``UsageError``). Breaking out of the loop, or calling
    ``close()``, closes the connection at once.
    """
    checked = _options(url, options)
    return _blocking(checked)


def _blocking(options: TailOptions) -> Generator[Event, None, None]:
    with asyncio.Runner() as runner:
        events = _events(options)

        async def next_event() -> Event:
            return await events.__anext__()

        try:
            while True:
                try:
                    event = runner.run(next_event())
                except StopAsyncIteration:
                    return
                yield event
        finally:
            runner.run(events.aclose())


__all__ = ["TailOptions", "atail", "tail"]
