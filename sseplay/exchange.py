"""The recording format of one HTTP exchange (version 2): written by the proxy
(``sseplay record``), served by ``sseplay serve DIR`` (issue 24).

A recording is JSON Lines, each line one compact JSON object (``json_line``), written as
the exchange goes, whole lines only, so a ``kill -9`` leaves a valid prefix::

    {"sseplay":"recording","version":2,"upstream":"http://...","started":"...",
     "request":{"method":"POST","path":"/v1/x","query":"a=1&key=***",
                "headers":[["authorization","***"]],"body":"{\\"model\\":\\"m\\"}"}}
    {"offset":0.0123,"response":{"status":200,"headers":[["content-type","text/event-stream"]]}}
    {"offset":0.0125,"read":57}
    {"offset":0.0125,"block":"data: {\\"n\\":1}\\n\\n"}
    {"offset":1.0001,"end":"complete"}

- ``response``: status and headers as upstream sent them (secrets ``***``), once.
- ``read``: the size of one network read of the (decoded) body, for ``--chunks``.
- ``block``: one event-stream block byte for byte (comments, field order, line ends,
  ``id:`` present or absent), up to and including its empty line; the unterminated rest
  of a stream is a last block. ``body``: a piece of any other body. ``*_b64`` when the
  bytes are not UTF-8. The blocks (or body pieces) put together are the body.
- ``end``: ``"complete"`` or why the exchange ended; without it the recording is partial.

Offsets are seconds since the request was sent upstream. The parts live in
``sseplay.exchange_model``, the files in ``sseplay.exchange_io``; this is their one name.
"""

from __future__ import annotations

from sseplay.exchange_io import ExchangeWriter, load_exchanges, read_exchange
from sseplay.exchange_model import (
    EXCHANGE_VERSION,
    Block,
    BlockSplitter,
    Exchange,
    Read,
    RecordedRequest,
    RecordedResponse,
    is_exchange_header,
    is_stream_type,
    recording_name,
    unique_path,
)

__all__ = [
    "EXCHANGE_VERSION",
    "Block",
    "BlockSplitter",
    "Exchange",
    "ExchangeWriter",
    "Read",
    "RecordedRequest",
    "RecordedResponse",
    "is_exchange_header",
    "is_stream_type",
    "load_exchanges",
    "read_exchange",
    "recording_name",
    "unique_path",
]
