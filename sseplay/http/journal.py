"""The journal over HTTP (issue 26): what the stream endpoint tells it of each request
(``sseplay.journal`` keeps the entries, ``sseplay.verdict`` judges them), and
``GET /_sseplay/journal`` and ``/_sseplay/verdict``.

On when ``--control`` or ``--expect-client`` is given. The endpoint calls ``started``
when a request comes and ``ended`` (or ``answered``) when it ends: per connection, never
per event; what a connection was sent (events, last id) is read from its listener then.

    GET /_sseplay/journal   JSON Lines, one entry a line; with Accept: text/event-stream
                            a live feed: ``dropped`` when entries were already dropped,
                            the entries so far (each as ``open`` or ``end``),
                            then ``open`` when a request starts, ``end`` (same seq) when it
                            ends, ``verdict`` when the verdict changes, ``dropped`` when
                            the oldest entries were dropped
    GET /_sseplay/verdict   {"ok", "rules", "broken": [{"rule", "client", "connection",
                            "message"}]}
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from sseplay.faults.outlet import FaultyOutlet
from sseplay.feed import LiveSubscriber
from sseplay.http.endpoint import ANSWERED_KEY
from sseplay.http.request import BODY_KEY, header, query_parameter
from sseplay.journal import MAX_BODY, Entry, Journal
from sseplay.outlet import Listener
from sseplay.player import Player
from sseplay.redaction import REDACTED, SECRET_HEADERS, redact_query
from sseplay.verdict import Referee

if TYPE_CHECKING:
    from sseplay.config import ServerConfig
    from sseplay.faults.spec import FaultSpec
    from sseplay.replay import Replay

logger = logging.getLogger("sseplay.server")

# Where a request's entry is kept while it is open (the scope lives as long as it).
ENTRY_KEY = "sseplay.entry"
# A live reader that falls this many messages behind is ended (it may reconnect, and
# gets the entries then kept).
LIVE_BACKLOG = 10_000
_END_OF_FEED = None
# How long ``call`` from another thread waits for the loop to do it.
CALL_TIMEOUT = 10.0

T = TypeVar("T")


class RequestJournal:
    """The journal of one app, its referee (``--expect-client``) and its live readers."""

    def __init__(self, config: ServerConfig) -> None:
        self.journal = Journal(config.journal_bytes)
        self.referee = Referee(config.expect_client, config.redact)
        self.redact = config.redact
        # Headers whose values the journal hides: those recordings hide, and --redact.
        self.secret = SECRET_HEADERS | {name.strip().lower() for name in config.redact}
        self._next_connection = 0
        self._readers: set[asyncio.Queue[tuple[str, Any] | None]] = set()
        # The server's loop, set when it starts (``sseplay.http.app``'s lifespan).
        self.loop: asyncio.AbstractEventLoop | None = None
        self.journal.listeners.append(self._tell)
        # The open streams' entries (by seq) and what tells what each was sent so far.
        self._streaming: dict[int, tuple[Entry, Listener, bool, Replay | None]] = {}

    def call(self, operation: Callable[[], T]) -> T:
        """Run ``operation`` on the server's loop (from any thread), or here once it has
        stopped: the journal changes on that loop only."""
        loop = self.loop
        if loop is None or loop.is_closed() or not loop.is_running():
            return operation()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            return operation()

        async def run() -> T:
            return operation()

        return asyncio.run_coroutine_threadsafe(run(), loop).result(CALL_TIMEOUT)

    def next_connection(self) -> int:
        """The id of a new connection: its entry's, and the control API's."""
        self._next_connection += 1
        return self._next_connection

    async def started(self, scope: Scope, receive: Receive, route: str) -> Entry:
        """A request to ``route`` has come: its entry (kept in its scope; a request that
        a scenario's rule hands to another endpoint keeps the one it has)."""
        entry: Entry | None = scope.get(ENTRY_KEY)
        if entry is not None:
            return entry
        raw: dict[str, str] = {}  # as sent (ASGI names are lower case), for the rules
        shown: dict[str, str] = {}  # as the journal keeps them
        secret = self.secret
        size = 0
        for name_bytes, value_bytes in scope["headers"]:
            size += len(name_bytes) + len(value_bytes)
            name, value = name_bytes.decode("latin-1"), value_bytes.decode("latin-1")
            if name in raw:  # a repeated header: its values joined (RFC 9110 5.3)
                value = f"{raw[name]}, {value}"
            raw[name] = value
            shown[name] = REDACTED if name in secret else value
        query_bytes: bytes = scope["query_string"]
        client = raw.get("sseplay-client")
        if client is None and query_bytes:
            named = query_parameter(query_bytes, b"client")
            client = named.decode("utf-8", "replace") if named else None
        # The client's own name for itself, else its address (its port changes with
        # each connection, so a reconnect would be another client).
        key = client or (scope.get("client") or ("?", 0))[0]
        last_event_id = raw.get("last-event-id")
        if (
            last_event_id is None
            and query_bytes
            and (lei := query_parameter(query_bytes, b"lastEventId"))
        ):
            last_event_id = lei.decode("utf-8", "replace")
        read: bytes | None = scope.get(BODY_KEY)
        if read is not None:  # the endpoint read it already
            body = read[:MAX_BODY].decode("utf-8", "replace")
        else:
            body = await _body(scope, receive) if _has_body(raw) else ""
        entry = self.journal.open(
            route=route,
            client=key,
            connection=self.next_connection(),
            method=scope["method"],
            path=scope["path"],
            query=redact_query(query_bytes.decode("latin-1"), self.redact) if query_bytes else "",
            headers=shown,
            body=body,
            last_event_id=last_event_id,
            headers_size=size,
        )
        scope[ENTRY_KEY] = entry
        if self.referee.rules and self.referee.opened(entry, raw) and self._readers:
            self._tell("verdict", self.referee.verdict())
        return entry

    def ended(
        self,
        scope: Scope,
        ended: str,
        status: int | None,
        listener: Listener | None = None,
        retry: int | None = None,
        positional: bool = True,
        replay: Replay | None = None,
    ) -> None:
        """A request has ended: how (``sseplay.journal.ENDINGS``), and what its listener
        sent (``retry``: the route's own retry:, which its connections got first;
        ``positional``, ``replay``: see ``sent_by``)."""
        entry: Entry | None = scope.pop(ENTRY_KEY, None)
        if entry is None:
            return
        self._streaming.pop(entry.seq, None)
        events, last_id = (0, None) if listener is None else sent_by(listener, positional, replay)
        outlet = None if listener is None else listener.outlet
        if isinstance(outlet, FaultyOutlet) and outlet.retry_sent is not None:
            retry = outlet.retry_sent
        self.journal.end(
            entry, ended=ended, status=status, events=events, last_id=last_id, retry_ms=retry
        )
        if self.referee.rules:
            self.referee.ended(entry)

    def streaming(
        self, scope: Scope, listener: Listener, positional: bool, replay: Replay | None
    ) -> None:
        """A request's stream has started: its entry says 200, and, when listed, what its
        listener has sent so far."""
        entry: Entry | None = scope.get(ENTRY_KEY)
        if entry is not None:
            entry.status = 200
            self._streaming[entry.seq] = (entry, listener, positional, replay)

    def answered(self, scope: Scope) -> None:
        """A fault (or a bad fault in the request) answered instead of the stream."""
        spec: FaultSpec | None = scope.get(ANSWERED_KEY)
        if spec is None:
            self.ended(scope, "error", 400)
        elif spec.kind == "status":
            self.ended(scope, f"fault:{spec.kind}", spec.code)
        else:
            self.ended(scope, f"fault:{spec.kind}", 200 if spec.headers else None)

    def clear(self) -> None:
        self.journal.clear()
        self._streaming.clear()
        self.referee.clear()
        if self._readers:
            self._tell("verdict", self.referee.verdict())

    def stop(self) -> None:
        """The server is stopping: every live reader's feed ends."""
        for queue in self._readers:
            _put_last(queue)

    def report(self) -> list[str]:
        """The broken rules, one line each, logged as the server stops."""
        lines = self.referee.lines()
        for line in lines:
            logger.warning("%s", line)
        return lines

    # ---- GET /_sseplay/journal and /_sseplay/verdict ----

    async def answer(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Serve the journal's paths; False for any other."""
        path = scope["path"].removeprefix("/_sseplay/")
        if scope["method"] != "GET" or path not in ("journal", "verdict"):
            return False
        if path == "verdict":
            await JSONResponse(self.referee.verdict())(scope, receive, send)
            return True
        accept = header(scope, b"accept") or b""
        if b"text/event-stream" in accept:
            await self._live(scope, receive, send)
            return True
        lines = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in self.listing())
        await Response(lines, media_type="application/jsonl")(scope, receive, send)
        return True

    def listing(self) -> list[dict[str, Any]]:
        """Every entry as it stands: an open stream's with what it was sent so far."""
        rows = self.journal.listing()
        streaming = self._streaming
        if streaming:
            for row in rows:
                if row["ended"] is None and (open_ := streaming.get(row["seq"])) is not None:
                    _, listener, positional, replay = open_
                    row["events"], row["last_id"] = sent_by(listener, positional, replay)
        return rows

    async def _live(self, scope: Scope, receive: Receive, send: Send) -> None:
        response_class, event_class = sse_starlette()
        queue: asyncio.Queue[tuple[str, Any] | None] = asyncio.Queue(LIVE_BACKLOG)
        so_far = list(self.journal.entries)
        dropped = self.journal.dropped
        self._readers.add(queue)

        async def events() -> AsyncIterator[Any]:
            try:
                if dropped:  # before this reader came: it is told first
                    yield event_class(_json({"dropped": dropped}), event="dropped")
                for entry in so_far:
                    kind = "open" if entry.ended is None else "end"
                    yield event_class(_json(entry.as_json()), event=kind, id=str(entry.seq))
                if self.referee.rules:
                    yield event_class(_json(self.referee.verdict()), event="verdict")
                while (message := await queue.get()) is not _END_OF_FEED:
                    kind, what = message
                    if isinstance(what, Entry):
                        yield event_class(_json(what.as_json()), event=kind, id=str(what.seq))
                    elif kind == "dropped":
                        yield event_class(_json({"dropped": what}), event=kind)
                    else:
                        yield event_class(_json(what), event=kind)
            finally:
                self._readers.discard(queue)

        await response_class(events())(scope, receive, send)

    def _tell(self, kind: str, what: Any) -> None:
        for queue in self._readers:
            try:
                queue.put_nowait((kind, what))
            except asyncio.QueueFull:  # too far behind: its feed ends, it may come back
                _put_last(queue)


def _put_last(queue: asyncio.Queue[tuple[str, Any] | None]) -> None:
    while True:
        try:
            queue.put_nowait(_END_OF_FEED)
            return
        except asyncio.QueueFull:
            queue.get_nowait()


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def sse_starlette() -> tuple[Any, Any]:
    """sse-starlette's ``EventSourceResponse`` and ``ServerSentEvent``, imported when a live
    journal is first asked for. Its import replaces uvicorn's ``Server.handle_exit`` for
    the whole process (to end its streams on a signal); a library server leaves the
    process alone, so uvicorn's own is put back, and the live feeds end with the server
    (``RequestJournal.stop``)."""
    import uvicorn

    own = uvicorn.Server.handle_exit
    from sse_starlette import EventSourceResponse, ServerSentEvent

    if uvicorn.Server.handle_exit is not own:  # replaced by this very import
        uvicorn.Server.handle_exit = own  # type: ignore[method-assign]

    class OwnEnd(EventSourceResponse):  # type: ignore[misc, unused-ignore]
        """Ended by the server (``RequestJournal.stop``) and by its client only. Releases
        before 3.0 also wait on one exit event for the whole process, bound to the first
        event loop that waited on it, so a second server (another thread's loop) failed
        with "bound to a different event loop" (sysid/sse-starlette#140); 3.0 keeps one
        per loop, under another name, which this leaves alone."""

        @staticmethod
        async def listen_for_exit_signal() -> None:
            await asyncio.Event().wait()  # until the response's task group is cancelled

    return OwnEnd, ServerSentEvent


def _has_body(headers: dict[str, str]) -> bool:
    length = headers.get("content-length", "0").strip()
    return (length.isdigit() and int(length) > 0) or "transfer-encoding" in headers


async def _body(scope: Scope, receive: Receive) -> str:
    """The request's body, up to ``MAX_BODY`` bytes kept (the rest is read and let go)."""
    kept = bytearray()
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        if len(kept) < MAX_BODY:
            kept += message.get("body", b"")[: MAX_BODY - len(kept)]
        if not message.get("more_body", False):
            break
    return kept.decode("utf-8", "replace")


def sent_by(
    listener: Listener, positional: bool, replay: Replay | None = None
) -> tuple[int, str | None]:
    """How many events a connection was sent whole, and the id of the last of them (the
    Last-Event-ID its client resumes with; None when it got none). An event cut in its
    middle (``cut``) was not sent whole: its client never dispatched it (WHATWG HTML
    9.2.6). ``positional``: a live feed's ids are its positions (a file's route), after
    the events of its ``replay``, whose ids are their own."""
    outlet = listener.outlet
    events = listener.sent
    if isinstance(outlet, FaultyOutlet):
        whole = outlet.events - (1 if outlet.fault_end == "fault cut" else 0)
        events = max(0, min(events, whole))
    if events == 0:
        return 0, None
    behind = listener.sent - events  # handed to the outlet, and not sent whole
    if isinstance(listener, Player):
        return events, _id_in(listener.replay, listener.n - behind - 1)
    if isinstance(listener, LiveSubscriber) and positional:
        position = listener.seen_until - behind
        if replay is not None and 0 < position <= replay.file.count:  # handed over at its end
            return events, _id_in(replay, position - 1)
        return events, str(position) if position > 0 else None
    return events, None


def _id_in(replay: Replay, position: int) -> str | None:
    """The id of a replay's event ``position`` (from 0), as it went out."""
    if position < 0 or replay.no_ids:
        return None
    wire, _ = replay.chunk(position, position + 1)
    for line in wire.split(b"\n"):
        if line.startswith(b"id: "):
            return line[4:].decode("utf-8", "replace")
    return None
