"""Verdicts (``--expect-client``, issue 26): rules a streaming client must keep, judged
over the journal's entries (``sseplay.journal``) as its requests start and end. Pure:
the HTTP layer hands each entry to a ``Referee`` when it opens (with the request's own
headers, which the journal keeps only redacted) and when it ends.

A reconnect is a client's request after its previous one was ended by the server (the
whole stream sent, a fault, a cut-off); a request after one the client left itself, or
beside one still open, is a new start and is judged only by ``method=``, ``header=``.
Clients are told apart by their address, or the ``Sseplay-Client`` header / ``?client=``.

    resumes            each reconnect carries the last id this server sent that client
    honours-retry      each reconnect waits at least the last retry: sent (10 ms slack)
    stops-on-204       no request within twice the retry time after a 204
    backoff            over consecutive failures, the waits do not shrink (10 ms slack)
    max-reconnects=N   at most N reconnects per client
    method=METHOD      every request uses METHOD
    header=NAME:VALUE  every request carries NAME with VALUE
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sseplay.errors import UsageError
from sseplay.journal import Entry
from sseplay.redaction import REDACTED, SECRET_HEADERS

# The rules, as written after --expect-client, and what each one takes after its "=".
RULES: dict[str, str] = {
    "resumes": "",
    "honours-retry": "",
    "stops-on-204": "",
    "backoff": "",
    "max-reconnects": "N",
    "method": "METHOD",
    "header": "NAME:VALUE",
}
# How much sooner than asked a reconnect may come (timers are not exact).
SLACK_MS = 10.0
# A client's reconnection time when the server sent no retry: (3 s in Chromium and
# sseplay tail), for stops-on-204.
DEFAULT_RETRY_MS = 3000
# The broken rules kept (every one after counts in ``more``, never in memory).
MAX_BROKEN = 1000
# How many clients are followed at once; the one seen least recently is forgotten.
MAX_CLIENTS = 10_000


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule of ``--expect-client``: its name, its value (``N``, ``METHOD``, the header
    ``(name, value)`` joined by ``:``) and ``text`` as it was written."""

    name: str
    text: str
    number: int = 0
    value: str = ""
    header: str = ""


def parse_rules(texts: Iterable[str] | str) -> tuple[Rule, ...]:
    """The rules of ``--expect-client`` (each text may list several, comma-separated);
    a bad one is a one-line ``UsageError`` naming it and what to write."""
    if isinstance(texts, str):
        texts = (texts,)
    rules: list[Rule] = []
    for text in texts:
        if not isinstance(text, str):
            raise UsageError(
                f"--expect-client takes texts like 'resumes,honours-retry', not {text!r}"
            )
        for part in text.split(","):
            rule = _rule(part.strip())
            if rule not in rules:
                rules.append(rule)
    return tuple(rules)


def _rule(text: str) -> Rule:
    name, equals, value = text.partition("=")
    name = name.strip().lower()
    known = ", ".join(f"{rule}={takes}" if takes else rule for rule, takes in RULES.items())
    if name not in RULES:
        raise UsageError(f"--expect-client {text!r}: no such rule; the rules are {known}")
    takes = RULES[name]
    if not takes:
        if equals:
            raise UsageError(f"--expect-client {text!r}: {name} takes no value; write {name}")
        return Rule(name, name)
    if not value.strip():
        raise UsageError(f"--expect-client {text!r}: write {name}={takes}")
    value = value.strip()
    if name == "max-reconnects":
        if not value.isdigit() or len(value) > 9:
            raise UsageError(
                f"--expect-client {text!r}: N must be a whole number, 0 or more, like "
                "max-reconnects=3"
            )
        return Rule(name, f"{name}={int(value)}", number=int(value))
    if name == "method":
        if not value.isalpha():
            raise UsageError(f"--expect-client {text!r}: write a method like method=POST")
        return Rule(name, f"{name}={value.upper()}", value=value.upper())
    header, colon, wanted = value.partition(":")
    header = header.strip().lower()
    if not colon or not header or any(c in header for c in ' \t()<>@,;\\"/[]?={}'):
        raise UsageError(
            f"--expect-client {text!r}: write header=NAME:VALUE, like header=x-mode:fast"
        )
    return Rule(name, f"{name}={header}:{wanted.strip()}", value=wanted.strip(), header=header)


@dataclass(slots=True)
class _Client:
    """What the referee remembers of one client."""

    previous: Entry | None = None
    last_id: str | None = None
    retry: int | None = None
    reconnects: int = 0
    # The wait before the last reconnect after a failure, while failures follow each other.
    failure_gap: float | None = None


def _failed(entry: Entry) -> bool:
    ended = entry.ended or ""
    return ended.startswith("fault:") or ended in ("cut off", "error")


def _shown(value: str | None) -> str:
    return "none" if value is None else repr(value)


class Referee:
    """Judges each request against ``rules`` as the journal opens and ends it."""

    def __init__(self, rules: Iterable[Rule], redact: Iterable[str] = ()) -> None:
        self.rules = tuple(rules)
        # Headers whose values are never shown (as in recordings, plus --redact).
        self.secret = SECRET_HEADERS | {name.strip().lower() for name in redact}
        self.broken: list[dict[str, Any]] = []
        self.more = 0  # broken beyond MAX_BROKEN
        self._names = {rule.name for rule in self.rules}
        self._clients: OrderedDict[str, _Client] = OrderedDict()

    @property
    def ok(self) -> bool:
        return not self.broken

    def verdict(self) -> dict[str, Any]:
        """``GET /_sseplay/verdict``: whether every rule held, and each one broken."""
        return {
            "ok": self.ok,
            "rules": [self._shown_rule(rule) for rule in self.rules],
            "broken": list(self.broken),
        }

    def lines(self) -> list[str]:
        """One line per broken rule, as ``sseplay serve`` prints them when it stops."""
        lines = [line_of(broken) for broken in self.broken]
        if self.more:
            lines.append(f"and {self.more} more broken rules")
        return lines

    def clear(self) -> None:
        self.broken.clear()
        self.more = 0
        self._clients.clear()

    def opened(self, entry: Entry, headers: Mapping[str, str]) -> bool:
        """A request has come (``headers``: as sent, lower-case names); whether it broke
        a rule."""
        before = len(self.broken) + self.more
        client = self._client(entry.client)
        for rule in self.rules:
            if rule.name == "method" and entry.method != rule.value:
                self._break(rule, entry, f"sent {entry.method}, expected {rule.value}")
            elif rule.name == "header":
                self._header(rule, entry, headers.get(rule.header))
        previous, client.previous = client.previous, entry
        if previous is None or previous.ended is None or previous.ended == "client left":
            client.failure_gap = None
            return len(self.broken) + self.more > before
        gap = entry.gap_ms if entry.gap_ms is not None else 0.0
        client.reconnects += 1
        if "max-reconnects" in self._names:
            for rule in self.rules:
                if rule.name == "max-reconnects" and client.reconnects > rule.number:
                    self._break(
                        rule,
                        entry,
                        f"reconnected {client.reconnects} times, expected at most {rule.number}",
                    )
        if previous.ended == "204":
            retry = client.retry if client.retry is not None else DEFAULT_RETRY_MS
            window = 2 * retry
            for rule in self.rules:
                if rule.name == "stops-on-204" and gap < window:
                    self._break(
                        rule,
                        entry,
                        f"requested again {gap:.0f} ms after a 204, expected no request "
                        f"within {window} ms (twice retry: {retry})",
                    )
            return len(self.broken) + self.more > before
        for rule in self.rules:
            if rule.name == "resumes" and client.last_id is not None:
                if entry.last_event_id != client.last_id:
                    sent = entry.last_event_id
                    what = "no Last-Event-ID" if sent is None else f"Last-Event-ID {sent!r}"
                    self._break(rule, entry, f"sent {what}, expected {client.last_id!r}")
            elif rule.name == "honours-retry" and client.retry is not None:
                if gap + SLACK_MS < client.retry:
                    self._break(
                        rule,
                        entry,
                        f"reconnected {gap:.0f} ms after connection {previous.connection} "
                        f"ended, expected at least {client.retry} ms (retry: {client.retry})",
                    )
            elif (
                rule.name == "backoff"
                and _failed(previous)
                and client.failure_gap is not None
                and gap + SLACK_MS < client.failure_gap
            ):
                self._break(
                    rule,
                    entry,
                    f"waited {gap:.0f} ms after a failure, less than the "
                    f"{client.failure_gap:.0f} ms before (backoff)",
                )
        client.failure_gap = gap if _failed(previous) else None
        return len(self.broken) + self.more > before

    def ended(self, entry: Entry) -> None:
        """A request has ended: what it was sent is what its client's next one is judged by."""
        client = self._client(entry.client)
        if entry.last_id is not None:
            client.last_id = entry.last_id
        if entry.retry_ms is not None:
            client.retry = entry.retry_ms

    def _header(self, rule: Rule, entry: Entry, sent: str | None) -> None:
        if sent == rule.value:
            return
        name = rule.header
        secret = name in self.secret
        wanted = repr(REDACTED) if secret else repr(rule.value)
        if sent is None:
            what = f"sent no {name} header"
        else:
            what = f"sent {name} {REDACTED if secret else _shown(sent)}"
        self._break(rule, entry, f"{what}, expected {wanted}")

    def _shown_rule(self, rule: Rule) -> str:
        if rule.name == "header" and rule.header in self.secret:
            return f"header={rule.header}:{REDACTED}"
        return rule.text

    def _client(self, key: str) -> _Client:
        clients = self._clients
        client = clients.get(key)
        if client is None:
            client = clients[key] = _Client()
            if len(clients) > MAX_CLIENTS:
                clients.popitem(last=False)
        else:
            clients.move_to_end(key)
        return client

    def _break(self, rule: Rule, entry: Entry, message: str) -> None:
        if len(self.broken) >= MAX_BROKEN:
            self.more += 1
            return
        self.broken.append(
            {
                "rule": self._shown_rule(rule),
                "client": entry.client,
                "connection": entry.connection,
                "message": message,
            }
        )


def line_of(broken: Mapping[str, Any]) -> str:
    """``client 127.0.0.1, connection 3: sent Last-Event-ID '4', expected '7'``."""
    return f"client {broken['client']}, connection {broken['connection']}: {broken['message']}"
