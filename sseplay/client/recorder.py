"""``tail --record FILE``: the stream as it came, in the recording format of issue 24
(version 2, ``sseplay.exchange``), the one ``sseplay record`` writes.

Every block goes down exactly as the server sent it (comments, field order and spacing,
line ends, ``id:`` present or absent, ``retry:``), with the moment it arrived and the size
of each read, so ``sseplay serve FILE`` plays it byte for byte, as it plays a recording of
the proxy. The request is the GET (or ``--method``) tail sent, its secrets redacted.

A reconnection goes on in the same recording: its blocks follow the first connection's
(the recording is the stream as a client saw it, across reconnections); what a connection
left unterminated when it dropped is not written, since no client ever got it as an
event and, written, it would run into the next connection's first block.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from sseplay.errors import OutputFailed, UsageError
from sseplay.exchange import BlockSplitter, ExchangeWriter, RecordedRequest
from sseplay.redaction import redact_headers, redact_query, redact_url


def _text_pairs(headers: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    # ISO-8859-1 maps every byte to one character, so any value is kept as it was.
    return [(name.decode("latin-1").lower(), value.decode("latin-1")) for name, value in headers]


def _body(request: httpx.Request) -> bytes:
    try:
        return request.content
    except httpx.RequestNotRead:  # a streamed body: tail sends none
        return b""


class TailRecorder:
    """The ``--record`` file of one tail: created (emptied) at once, so a path that
    cannot be written is a usage error before anything is read; its header line when the
    first response comes. Every write is whole lines (``ExchangeWriter``)."""

    def __init__(self, path: Path, started: float) -> None:
        self.path = path
        self.started = started
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666))
        except OSError as error:
            raise UsageError(f"--record {path}: cannot write: {error.strerror}") from None
        self._writer: ExchangeWriter | None = None
        self._splitter = BlockSplitter()
        self._blocks = 0
        self._closed = False

    def _offset(self) -> float:
        return time.monotonic() - self.started

    def connected(self, response: httpx.Response) -> None:
        """A response opened the stream: the first one is the recording's request and
        response; a later one (a reconnection) drops what the last one left unterminated."""
        if self._closed:
            return
        if self._writer is not None:
            self._splitter.rest()
            return
        request = response.request
        url = request.url
        target = url.raw_path.decode("ascii", "replace")
        path, _, query = target.partition("?")
        origin = str(url.copy_with(raw_path=b"/")).removesuffix("/")
        recorded = RecordedRequest(
            request.method.upper(),
            path or "/",
            redact_query(query),
            redact_headers(_text_pairs(request.headers.raw)),
            _body(request),
        )
        self._write(
            lambda: setattr(
                self,
                "_writer",
                ExchangeWriter(self.path, redact_url(origin), recorded, replace=True),
            )
        )
        writer = self._writer
        if writer is not None:
            headers = redact_headers(_text_pairs(response.headers.raw))
            self._write(lambda: writer.response(self._offset(), response.status_code, headers))

    def raw(self, chunk: bytes) -> None:
        """One decoded chunk as it came: its read, then the blocks it completed."""
        writer = self._writer
        if writer is None or self._closed or not chunk:
            return
        offset = self._offset()

        def write() -> None:
            writer.read(offset, len(chunk))
            for block in self._splitter.feed(chunk):
                writer.block(offset, block)
                self._blocks += 1

        self._write(write)

    def flush(self) -> None:
        """Nothing is held: every line is written as it is known."""

    def close(self, how: str = "complete") -> None:
        """The end: the unterminated rest of the stream (replayed as it came, never an
        event), then the end line. Idempotent; a failed write is not raised again."""
        if self._closed:
            return
        self._closed = True
        writer, self._writer = self._writer, None
        if writer is None:
            return
        try:
            rest = self._splitter.rest()
            if rest:
                writer.block(self._offset(), rest)
            writer.end(self._offset(), how)
        except OutputFailed:
            pass
        finally:
            writer.close()

    def _write(self, write: Callable[[], object]) -> None:
        try:
            write()
        except OutputFailed as error:
            self._closed = True
            if self._writer is not None:
                self._writer.close()
            problem = str(error.args[0] if error.args else error)
            problem = problem.removeprefix(f"{self.path}: ").split("; ")[0]
            raise OutputFailed(
                f"--record {self.path}: {problem}; it holds the first {self._blocks} "
                "blocks, in whole lines"
            ) from None
