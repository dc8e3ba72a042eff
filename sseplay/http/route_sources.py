"""What the stream endpoint serves a route from (``RouteSource``): a replayed file, perhaps
followed, or a Redis stream."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.types import Receive

from sseplay.feed import LiveSubscriber, Resume
from sseplay.http.endpoint import Opening, wait_for_loss
from sseplay.http.hub import Hub, JoiningListener, LiveRoute, Route
from sseplay.model import encode_retry
from sseplay.outlet import Listener, Outlet
from sseplay.replay import UNKNOWN, Start, decode_id, shown_id

if TYPE_CHECKING:
    from sseplay.http.uvicorn.direct import DirectBody
    from sseplay.sources.redis_feed import RedisFeed


class FileSource:
    """A replayed file's route: each connection gets its own replay (or joins the
    broadcast), then, for a followed file, goes on in the route's live feed."""

    faults_apply = True
    holdable = True
    dropped_at_stop = False

    def __init__(self, stream: Route, hub: Hub) -> None:
        self.stream = stream
        self.route = stream.route
        self.hub = hub

    def opening(self, raw_id: bytes | None) -> Opening[Start | Resume]:
        hub, stream = self.hub, self.stream
        last_event_id = None if raw_id is None else decode_id(raw_id)
        start: Start | Resume
        feed = hub.feeds.get(stream.route)
        if raw_id and last_event_id is None:  # not UTF-8: no event has that id
            shown = shown_id(raw_id)
            start = UNKNOWN if feed is None else hub.live_start(stream, None, known=False)
        else:
            shown = shown_id(last_event_id or "")
            if feed is not None:
                start = hub.live_start(stream, last_event_id, known=True)
            else:
                assert stream.replay is not None
                start = stream.replay.start_after(last_event_id)
        opening: Opening[Start | Resume] = Opening(start, shown)
        if isinstance(start, Resume):
            how = f"at live event {start.position + 1}" if raw_id else "live"
            opening.said = f" ({how})"
            if start.notice:  # the feed's comment: an unknown id, or events missed
                unknown = b"unknown Last-Event-ID" in start.notice
                opening.resumed = "unknown" if unknown else "trimmed"
        elif not start.known:
            opening.said = f" with an unknown Last-Event-ID {shown}: replaying from the start"
            opening.warn = True
            opening.resumed = "unknown"
        elif start.n:
            opening.said = f" (resuming at event {start.n + 1})"
        return opening

    def is_over(self, opening: Opening[Start | Resume]) -> bool:
        stream, start = self.stream, opening.at
        if isinstance(start, Resume):
            feed = self.hub.feeds[stream.route]
            return feed.ended and start.position >= feed.position
        if stream.route in self.hub.feeds:
            return False  # its replay goes on into the feed (followed, or --control)
        assert stream.replay is not None
        broadcast = self.hub.broadcasts.get(stream.route)
        return stream.replay.is_over(start.n) or (broadcast is not None and broadcast.ended)

    async def open(
        self,
        outlet: Outlet,
        opening: Opening[Start | Resume],
        receive: Receive,
        direct: DirectBody | None,
    ) -> Listener:
        stream, start = self.stream, opening.at
        if isinstance(start, Resume):
            preamble = start.notice
            retry = stream.follow.retry if stream.follow is not None else None
            if retry is None and stream.replay is not None:  # --control: the file's retry
                retry = stream.replay.retry
            if retry is not None:
                preamble = encode_retry(retry) + preamble
        else:
            assert stream.replay is not None
            preamble = stream.replay.preamble(start, opening.shown)
        return self.hub.open(stream, outlet, start, preamble)

    def close(self, listener: Listener) -> Listener:
        return self.hub.close(self.stream, listener)

    def broken(self) -> str | None:
        replay = self.stream.replay
        if replay is not None and replay.failed:
            return "its file cannot be read any more"
        return None


class RedisSource:
    """A Redis stream's route: each connection joins the route's ``RedisFeed`` (with a
    backfill when it resumes) and is then written to by the feed, as a broadcast's are."""

    faults_apply = False
    holdable = False
    dropped_at_stop = True

    def __init__(self, live: LiveRoute, redis_feed: RedisFeed, hub: Hub) -> None:
        self.live = live
        self.route = live.route
        self.redis_feed = redis_feed
        self.hub = hub

    def opening(self, raw_id: bytes | None) -> Opening[str | None]:
        last_event_id = None if raw_id is None else decode_id(raw_id)
        if raw_id and last_event_id is None:
            last_event_id = shown_id(raw_id)  # not UTF-8: no entry has that id
        opening = Opening(last_event_id, shown_id(last_event_id or ""), resumed=None)
        if last_event_id:
            opening.said = f" (resuming after {shown_id(last_event_id)})"
        return opening

    def is_over(self, opening: Opening[str | None]) -> bool:
        return False  # a Redis stream has no end

    async def open(
        self,
        outlet: Outlet,
        opening: Opening[str | None],
        receive: Receive,
        direct: DirectBody | None,
    ) -> Listener | None:
        hub = self.hub
        retry = self.live.source.retry
        preamble = encode_retry(retry) if retry is not None else b""
        joining = JoiningListener(outlet)
        hub.listeners.add(joining)
        try:
            listener = await self.redis_feed.join(outlet, opening.at, preamble)
        except Exception as error:  # Redis lost during the backfill: the client retries
            opening.ended = f"ended: Redis could not be read for its backfill ({error})"
            # The end goes out after the pages the client has not taken yet: closing
            # the outlet before would cancel it, and the client would see a broken
            # body (an incomplete chunked read) instead of an end to reconnect after.
            outlet.write(b"", more_body=False)
            from sseplay.sources.redis_feed import drained

            await drained(outlet)
            return None
        finally:
            hub.listeners.discard(joining)
        if listener is None:
            await wait_for_loss(hub, receive, outlet, direct)
            return None
        hub.listeners.add(listener)
        if hub.stopping:
            outlet.write(b"", more_body=False)
        return listener

    def close(self, listener: Listener) -> Listener:
        listener.outlet.close()
        self.hub.listeners.discard(listener)
        if isinstance(listener, LiveSubscriber):
            self.redis_feed.feed.unsubscribe(listener)
        return listener

    def broken(self) -> str | None:
        return None
