"""A ``--canary`` route (``sseplay.canary``) as a ``RouteSource`` of the one stream
endpoint: each connection joins the route's ``CanaryFeed`` at the live edge (or where its
Last-Event-ID says) and is written to by the timeline, as a broadcast's are."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.types import Receive

from sseplay.canary import Canary, CanaryTimeline
from sseplay.feed import LiveSubscriber, Resume
from sseplay.http.endpoint import Opening
from sseplay.outlet import Listener, Outlet
from sseplay.replay import decode_id, shown_id

if TYPE_CHECKING:
    from sseplay.http.hub import Hub
    from sseplay.http.uvicorn.direct import DirectBody


@dataclass(frozen=True, slots=True)
class CanaryRoute:
    """A route served by a canary."""

    route: str
    label: str
    canary: Canary


class CanarySource:
    faults_apply = False
    holdable = False
    dropped_at_stop = False

    def __init__(self, canary_route: CanaryRoute, hub: Hub) -> None:
        self.route = canary_route.route
        self.canary = canary_route.canary
        self.hub = hub
        self._timeline: CanaryTimeline | None = None

    @property
    def timeline(self) -> CanaryTimeline:
        assert self._timeline is not None, "the app's lifespan starts the canary first"
        return self._timeline

    def start(self) -> None:
        """Start the timeline on the hub's timer (the server is up, in its event loop);
        it stops with the server."""
        self._timeline = CanaryTimeline(self.canary, self.hub.timer)
        self.hub.on_stop.append(self._timeline.stop)
        self._timeline.begin()

    def opening(self, raw_id: bytes | None) -> Opening[Resume]:
        last_event_id = None if raw_id is None else decode_id(raw_id)
        resume = self.timeline.feed.resume(last_event_id)
        opening = Opening(resume, shown_id(last_event_id or ""))
        if last_event_id:
            opening.said = f" (resuming at canary event {resume.position + 1})"
        return opening

    def is_over(self, opening: Opening[Resume]) -> bool:
        return False  # a canary has no end

    async def open(
        self,
        outlet: Outlet,
        opening: Opening[Resume],
        receive: Receive,
        direct: DirectBody | None,
    ) -> Listener:
        feed = self.timeline.feed
        subscriber = feed.subscribe(outlet, opening.at)
        self.hub.listeners.add(subscriber)
        feed.admit(subscriber, opening.at.notice)
        if self.hub.stopping:
            outlet.write(b"", more_body=False)
        return subscriber

    def close(self, listener: Listener) -> Listener:
        listener.outlet.close()
        self.hub.listeners.discard(listener)
        if isinstance(listener, LiveSubscriber):
            self.timeline.feed.unsubscribe(listener)
        return listener

    def broken(self) -> str | None:
        return None
