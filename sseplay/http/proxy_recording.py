"""The recording of one exchange of the recording proxy (``sseplay.http.proxy``): the
response's head, then each read of the body as the client got it, decoded (a copy: the
client gets the bytes as sent) and, for an event stream, split into blocks; a read and
its blocks go to the file in one write, whole JSON lines only (``ExchangeWriter``,
``held``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import httpx
from httpx._decoders import (  # see sseplay/client/CONTRACT.md
    SUPPORTED_DECODERS,
    ContentDecoder,
    IdentityDecoder,
    MultiDecoder,
)

from sseplay.errors import OutputFailed
from sseplay.exchange import BlockSplitter, ExchangeWriter, RecordedRequest, is_stream_type
from sseplay.redaction import redact_headers

logger = logging.getLogger("sseplay.record")

COMPLETE = "complete"
# The lines of the reads wait this long at most before their one write: a write per read,
# to as many files as there are streams, was half of what the proxy cost and the source of
# its slowest relays (benchmarks/proxy_latency.py). A crash loses no more than this, and
# still leaves whole lines only.
FLUSH_SECONDS = 0.1
# ... or until this much is held, so that a fast stream is written as it goes.
FLUSH_BYTES = 64 << 10


def text_pairs(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    # ISO-8859-1 maps every byte to one character, so a value survives the round trip.
    return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in headers]


def content_decoder(headers: httpx.Headers) -> tuple[ContentDecoder, list[str]]:
    """The decoder of a body in its Content-Encoding (as httpx builds it for
    ``Response.aiter_bytes``), and the codings it does not know (left encoded)."""
    codings = [c.strip().lower() for c in headers.get_list("content-encoding", split_commas=True)]
    unknown = [c for c in codings if c and c not in SUPPORTED_DECODERS]
    decoders = [SUPPORTED_DECODERS[c]() for c in codings if c in SUPPORTED_DECODERS]
    if unknown or not decoders:
        return IdentityDecoder(), unknown
    return (decoders[0] if len(decoders) == 1 else MultiDecoder(children=decoders)), unknown


class ExchangeRecording:
    """One exchange's recording: the writer, the decoder of its copy of the body and, for
    an event stream, the block splitter. A file that cannot be written is logged once and
    given up; the exchange itself goes on."""

    def __init__(
        self, path: Path, upstream: str, request: RecordedRequest, redact: Sequence[str]
    ) -> None:
        self.path = path
        self.redact = redact
        self.started = time.monotonic()
        self.writer: ExchangeWriter | None = None
        self.decoder: ContentDecoder = IdentityDecoder()
        self.decoding = False  # a Content-Encoding sseplay decodes
        self.splitter: BlockSplitter | None = None
        self.ended: str | None = None  # how it ended, once its end line is written
        self._held_bytes = 0
        self._flush_due: asyncio.TimerHandle | None = None
        self._try(
            lambda: setattr(self, "writer", ExchangeWriter(path, upstream, request, held=True))
        )

    def offset(self) -> float:
        return time.monotonic() - self.started

    def _try(self, write: Callable[[], object]) -> None:
        try:
            write()
        except OutputFailed as error:
            self._failed(error)

    def _failed(self, error: OutputFailed) -> None:
        logger.error("%s: cannot write the recording: %s", self.path, error)
        self._drop()

    def _drop(self) -> None:
        if self._flush_due is not None:
            self._flush_due.cancel()
            self._flush_due = None
        writer, self.writer = self.writer, None
        if writer is not None:
            with contextlib.suppress(OutputFailed):  # already reported
                writer.close()

    def response(self, status: int, raw: list[tuple[bytes, bytes]]) -> None:
        writer = self.writer
        if writer is None:
            return
        headers = httpx.Headers(raw)
        self.decoder, unknown = content_decoder(headers)
        self.decoding = not isinstance(self.decoder, IdentityDecoder)
        if unknown:
            logger.warning(
                "%s: Content-Encoding %s is not one sseplay decodes: recorded encoded",
                self.path,
                ", ".join(unknown),
            )
        if is_stream_type(headers.get("content-type")):
            self.splitter = BlockSplitter()
        pairs = redact_headers(text_pairs(raw), self.redact)

        def write() -> None:
            writer.response(self.offset(), status, pairs)
            writer.flush()

        self._try(write)

    def piece(self, raw: bytes) -> None:
        """One read from the upstream, as the client got it: its lines in one write."""
        if self.writer is None:
            return
        data = raw
        if self.decoding:
            try:
                data = self.decoder.decode(raw)
            except httpx.DecodingError as error:
                self.finish(f"upstream failed: the body does not decode ({error})")
                return
        try:  # not through _try: this runs for every read
            self._record(data)
        except OutputFailed as error:
            self._failed(error)

    def _record(self, data: bytes) -> None:
        writer = self.writer
        if writer is None or not data:
            return
        offset = time.monotonic() - self.started
        splitter = self.splitter
        if splitter is None:
            writer.read(offset, len(data))
            writer.body(offset, data)
        else:
            writer.read(offset, len(data), splitter.feed(data))
        self._held_bytes += len(data)
        if self._flush_due is not None and self._held_bytes < FLUSH_BYTES:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (a caller of its own): written at once
            loop = None
        if loop is None or self._held_bytes >= FLUSH_BYTES:
            self._flush()
        else:
            self._flush_due = loop.call_later(FLUSH_SECONDS, self._flush)

    def _flush(self) -> None:
        """Write the lines held, in one write."""
        if self._flush_due is not None:
            self._flush_due.cancel()
            self._flush_due = None
        self._held_bytes = 0
        writer = self.writer
        if writer is not None:
            self._try(writer.flush)

    def finish(self, how: str) -> None:
        """The end line (``complete`` or why not); what the decoder and splitter still
        hold is recorded first."""
        writer = self.writer
        if writer is None:
            return
        if how == COMPLETE:
            try:
                data = self.decoder.flush()
            except httpx.DecodingError as error:
                how = f"upstream failed: the body does not decode ({error})"
            else:
                self._try(lambda: self._record(data))
        splitter = self.splitter
        if splitter is not None and self.writer is not None and (rest := splitter.rest()):
            self._try(lambda: writer.block(self.offset(), rest))
        if self.writer is not None:
            self._try(lambda: writer.end(self.offset(), how))
            if self.writer is not None:
                self.ended = how
        self._drop()
