"""A scenario's routes over HTTP (``sseplay.scenario``, issue 26): a request is read (its
body once, bounded), matched to the first rule that accepts it, counted under its
scenario key, and answered by the route machinery of what the rule plays: an event
file's ``StreamEndpoint`` over a ``FileSource``, a turns file's ``ShapedEndpoint``, a
recording's ``RecordedEndpoint``."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from fastapi.responses import JSONResponse
from starlette import routing
from starlette.types import Receive, Scope, Send

from sseplay.feed import Resume
from sseplay.http.endpoint import RULE_FAULTS_KEY, StreamEndpoint
from sseplay.http.hub import Route
from sseplay.http.recorded import BodyTooLarge, RecordedEndpoint, read_body
from sseplay.http.request import BODY_KEY, client_of, header, query_parameter
from sseplay.http.route_sources import FileSource
from sseplay.http.shaped import ShapedEndpoint
from sseplay.http.uvicorn.protocol import arrived_at
from sseplay.recordings import Recordings
from sseplay.replay import Start
from sseplay.scenario import (
    SCENARIO_HEADER,
    SCENARIO_QUERY,
    Counters,
    Scenario,
    ScenarioRequest,
)
from sseplay.shaped import Turns

if TYPE_CHECKING:
    from sseplay.http.hub import Hub

logger = logging.getLogger("sseplay.server")

# The largest request body a scenario reads to match it: an LLM request with a long
# conversation fits; more is answered 413 rather than held in memory.
MAX_BODY = 8 << 20

Answer = StreamEndpoint[Start | Resume] | ShapedEndpoint | RecordedEndpoint


def scenario_key(scope: Scope) -> str:
    """The scenario key a request counts under: its ``Sseplay-Scenario`` header, else
    its ``?scenario=``, else "" (every request without one counts together)."""
    raw = header(scope, SCENARIO_HEADER)
    if raw is None:
        raw = query_parameter(scope["query_string"], SCENARIO_QUERY)
    return "" if raw is None else raw.decode("utf-8", "replace")


class ScenarioEndpoint:
    """One path of a scenario, for every method: the rules decide what answers."""

    def __init__(
        self,
        scenario: Scenario,
        hub: Hub,
        counters: Counters,
        answers: tuple[tuple[Answer, ...], ...],
    ) -> None:
        self.scenario = scenario
        self.hub = hub
        self.counters = counters
        self.answers = answers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            body = await read_body(receive, MAX_BODY)
        except BodyTooLarge as error:
            await JSONResponse({"error": str(error)}, status_code=413)(scope, receive, send)
            return
        if body is None:  # the client left
            return
        origin = arrived_at(scope, self.hub.timer.time)  # a turn's offsets count from the request
        method, path = scope["method"], scope["path"]
        journal = self.hub.journal
        if journal is not None:  # --control, --expect-client: each request is journaled
            scope[BODY_KEY] = body
            await journal.started(scope, receive, path)
        query = bytes(scope["query_string"]).decode("latin-1")
        request = ScenarioRequest(method, path, query, scope["headers"], body)
        rule = self.scenario.match(request)
        if rule is None:
            explained = self.scenario.explain(request)
            differs = "; ".join(f"{r['rule']}: {r['differs']}" for r in explained["rules"])
            logger.warning(
                "%s %s %s: no scenario rule matches (%s)", client_of(scope), method, path, differs
            )
            await JSONResponse(explained, status_code=404)(scope, receive, send)
            if journal is not None:
                journal.ended(scope, "error", 404)
            return
        key = scenario_key(scope)
        number = self.counters.next(key, rule.index)
        pick = rule.pick(number)
        told = f"request {number} of rule {rule.index}" + (f" (scenario {key!r})" if key else "")
        if pick.file is None:
            assert pick.status is not None
            logger.info("%s %s %s: %s: %d", client_of(scope), method, path, told, pick.status)
            said = f"{rule.where} has played its {len(rule.play)} files; then: {pick.status}"
            await JSONResponse({"error": said}, status_code=pick.status)(scope, receive, send)
            if journal is not None:
                journal.ended(scope, "error", pick.status)
            return
        logger.info(
            "%s %s %s: %s: playing %s",
            client_of(scope),
            method,
            path,
            told,
            rule.play[pick.file].name,
        )
        if rule.faults:
            scope[RULE_FAULTS_KEY] = rule.faults
        answer = self.answers[rule.index][pick.file]
        if isinstance(answer, ShapedEndpoint):
            await answer.answer(scope, receive, send, body, pick.turn, origin)
        elif isinstance(answer, RecordedEndpoint):
            exchange = answer.recordings.exchanges[0]
            await answer.play(scope, receive, send, exchange, origin)
        else:  # the body is read: the stream's wait for the client to go starts after it
            await answer(scope, receive, send)


async def _never(scope: Scope, receive: Receive, send: Send) -> None:
    """What a recording's endpoint would do with a WebSocket: a scenario's routes are
    HTTP routes, which Starlette never hands one."""
    raise AssertionError("a scenario route got a WebSocket")


def scenario_routes(scenario: Scenario, hub: Hub) -> list[routing.Route]:
    """The routes of a scenario's paths; ``POST /_sseplay/reset`` clears its counts."""
    counters = Counters()
    hub.on_reset.append(counters.clear)
    answers: list[tuple[Answer, ...]] = []
    for rule, played in zip(scenario.rules, scenario.answers, strict=True):
        endpoints: list[Answer] = []
        for answer in played:
            if isinstance(answer, Turns):
                endpoints.append(ShapedEndpoint(answer, rule.path, hub))
                continue
            if isinstance(answer, Recordings):
                endpoints.append(RecordedEndpoint(answer, hub, _never))
                continue
            route = Route(rule.path, answer.file.label, answer)
            endpoints.append(StreamEndpoint(FileSource(route, hub), hub))
        answers.append(tuple(endpoints))
    endpoint = ScenarioEndpoint(scenario, hub, counters, tuple(answers))
    # No methods: a request of any method is the rules' to answer (or to explain).
    return [routing.Route(path, endpoint, methods=None) for path in scenario.paths]
