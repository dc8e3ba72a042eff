"""Faults: a stream that fails the way real streams fail, at exact events, repeatably.

``--fault SPEC`` is ``KIND[:key=value[,key=value...]]``, parsed once here into a frozen
``FaultSpec`` (a bad kind, parameter or value is a one-line ``UsageError`` naming the
spec and what to write). Which connections a fault hits is decided when a connection
starts, from its route-local number, whether it carries a Last-Event-ID and a draw
seeded by ``--seed``; never from wall time, so that a CI run is repeatable. Where in
the stream it fires is counted in events of that connection (``after=N``, ``at=N``).

Pure: no I/O, no clock. The writer that carries faults out is ``faults.outlet.FaultyOutlet``;
the server counts firings (``FaultCounters``) and logs each one.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from sseplay.errors import UsageError

# The kinds that answer instead of a stream, and those that act on the stream's events.
BEFORE_STREAM = ("status", "refuse", "hang")
DURING_STREAM = (
    "drop",
    "reset",
    "cut",
    "stall",
    "delay",
    "slice",
    "duplicate",
    "skip",
    "error-event",
)
KINDS = (*BEFORE_STREAM, *DURING_STREAM, "malformed")
# The largest reconnection delay a browser can wait (HTML 8.6 "Timers": a signed 32-bit
# count of milliseconds), as for --retry.
MAX_RETRY_MS = 2**31 - 1
SELECTORS = ("conn", "times", "p")
# A request may name this many faults in its Sseplay-Fault header or ?fault= at most.
MAX_REQUEST_FAULTS = 16
# The request-named specs with a ``times=`` whose firings are remembered (issue 23: every
# distinct spec a client names was kept forever). A spec holds at most a request head
# (16 KiB), so the counters hold a few MiB at most; one named again after this many other
# counted specs were named since starts counting anew.
MAX_REQUEST_COUNTERS = 256

_CONN_RANGE = re.compile(r"^([1-9][0-9]{0,17})(?:-([1-9][0-9]{0,17}))?$")


@dataclass(frozen=True, slots=True)
class ConnSelector:
    """Which connections of a route, numbered from 1 in arrival order (``conn=``)."""

    ranges: tuple[tuple[int, int], ...] = ()
    odd: bool = False
    even: bool = False
    resume: bool = False
    every: bool = True

    def matches(self, number: int, resuming: bool) -> bool:
        if self.every:
            return True
        if self.resume and resuming:
            return True
        if self.odd and number % 2 == 1:
            return True
        if self.even and number % 2 == 0:
            return True
        return any(low <= number <= high for low, high in self.ranges)


ALL_CONNECTIONS = ConnSelector()


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """One ``--fault``: its kind, its parameters (those of other kinds stay None) and its
    selectors. ``text`` is the spec as written, for messages."""

    kind: str
    text: str = ""
    conn: ConnSelector = ALL_CONNECTIONS
    times: int | None = None
    p: float | None = None
    # status
    code: int = 503
    retry_after: int | None = None
    body: str | None = None
    # hang
    headers: bool = False
    # drop, reset, cut, stall, delay, slice, error-event: after the Nth event of the
    # connection
    after: int = 0
    # drop: a retry: field first
    retry: int | None = None
    # cut: bytes of the next event sent (None: half of it)
    cut_bytes: int | None = None
    # stall: seconds (0 = forever) and whether pings go on meanwhile
    seconds: float = 0.0
    keep_pings: bool = True
    # delay: milliseconds more before each event, plus up to jitter_ms drawn per event
    ms: int = 0
    jitter_ms: int = 0
    # slice: bytes per write
    size: int = 1
    # duplicate, skip, malformed: the Nth event of the connection
    at: int = 0
    # malformed: json, utf8 or crlf
    damage: str = "json"

    @property
    def before_stream(self) -> bool:
        return self.kind in BEFORE_STREAM

    @property
    def where(self) -> str:
        """Where in a stream it fires, for the log line."""
        if self.kind in ("duplicate", "skip", "malformed"):
            return f"at event {self.at}"
        if self.kind in BEFORE_STREAM:
            return "before the stream"
        return f"after event {self.after}"


def _fail(spec: str, problem: str) -> UsageError:
    return UsageError(f"--fault {spec!r}: {problem}")


def _whole(spec: str, key: str, value: str, low: int, high: int, unit: str = "") -> int:
    if not re.fullmatch(r"[0-9]{1,19}", value) or not low <= int(value) <= high:
        shown = f"{low} or more" if high >= 2**62 else f"{low} to {high}"
        raise _fail(spec, f"{key}= must be a whole number{unit}, {shown}, not {value!r}")
    return int(value)


def _seconds(spec: str, key: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)?", value) or number > 10**9:
        raise _fail(spec, f"{key}= must be a number of seconds, 0 or more, like 2.5, not {value!r}")
    return number


def _choice(spec: str, key: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise _fail(spec, f"{key}= must be {' or '.join(choices)}, not {value!r}")
    return value


def _conn(spec: str, value: str) -> ConnSelector:
    ranges: list[tuple[int, int]] = []
    odd = even = resume = every = False
    for part in value.split(","):
        if part == "all":
            every = True
        elif part == "odd":
            odd = True
        elif part == "even":
            even = True
        elif part == "resume":
            resume = True
        elif match := _CONN_RANGE.match(part):
            low = int(match.group(1))
            high = int(match.group(2) or low)
            if high < low:
                raise _fail(spec, f"conn= range {part} runs backwards: write {high}-{low}")
            ranges.append((low, high))
        else:
            raise _fail(
                spec,
                f"conn= takes connection numbers from 1 (1, 2-3, 1,4), odd, even, all "
                f"or resume, not {part!r}",
            )
    return ConnSelector(tuple(ranges), odd, even, resume, every)


def _probability(spec: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not re.fullmatch(r"[0-9]*\.?[0-9]+", value) or not 0 < number <= 1:
        raise _fail(spec, f"p= must be above 0 and at most 1, like 0.3, not {value!r}")
    return number


# Each kind's own parameters: name -> (field of FaultSpec, parser of the value).
_Parser = Callable[[str, str, str], object]
_AFTER: dict[str, tuple[str, _Parser]] = {
    "after": ("after", lambda s, k, v: _whole(s, k, v, 0, 2**62)),
}
_AT: dict[str, tuple[str, _Parser]] = {
    "at": ("at", lambda s, k, v: _whole(s, k, v, 1, 2**62)),
}
PARAMETERS: dict[str, dict[str, tuple[str, _Parser]]] = {
    "status": {
        "code": ("code", lambda s, k, v: _status_code(s, v)),
        "retry_after": ("retry_after", lambda s, k, v: _whole(s, k, v, 0, 10**9, " of seconds")),
        "body": ("body", lambda s, k, v: v),
    },
    "refuse": {},
    "hang": {"headers": ("headers", lambda s, k, v: _choice(s, k, v, ("yes", "no")) == "yes")},
    "drop": {
        **_AFTER,
        "retry": ("retry", lambda s, k, v: _whole(s, k, v, 0, MAX_RETRY_MS, " of milliseconds")),
    },
    "reset": {**_AFTER},
    # A shaped stream's own mid-stream error (``sseplay.shaped``), then the end.
    "error-event": {**_AFTER},
    "cut": {**_AFTER, "bytes": ("cut_bytes", lambda s, k, v: _whole(s, k, v, 0, 2**62))},
    "stall": {
        **_AFTER,
        "for": ("seconds", _seconds),
        "pings": ("keep_pings", lambda s, k, v: _choice(s, k, v, ("keep", "stop")) == "keep"),
    },
    "delay": {
        **_AFTER,
        "ms": ("ms", lambda s, k, v: _whole(s, k, v, 0, 3_600_000)),
        "jitter": ("jitter_ms", lambda s, k, v: _whole(s, k, v, 0, 3_600_000)),
    },
    "slice": {**_AFTER, "size": ("size", lambda s, k, v: _whole(s, k, v, 1, 1 << 20))},
    "duplicate": {**_AT},
    "skip": {**_AT},
    "malformed": {
        **_AT,
        "kind": ("damage", lambda s, k, v: _choice(s, k, v, ("json", "utf8", "crlf"))),
    },
}
REQUIRED = {"duplicate": ("at",), "skip": ("at",), "malformed": ("at",), "delay": ("ms",)}


def _status_code(spec: str, value: str) -> int:
    # 204 tells a browser to stop (WHATWG 9.2.3), 4xx and 5xx are failures; a 2xx with a
    # body would be read as a stream, and a 3xx without a Location goes nowhere.
    if not re.fullmatch(r"[0-9]{3}", value) or not (value == "204" or 400 <= int(value) <= 599):
        raise _fail(spec, f"code= must be 204 or an HTTP status from 400 to 599, not {value!r}")
    return int(value)


def _pairs(spec: str, text: str) -> list[tuple[str, str]]:
    """``key=value`` pairs; a part without ``=`` continues the previous value, so that
    ``conn=1,4`` and ``body=a,b`` keep their commas."""
    pairs: list[tuple[str, str]] = []
    for part in text.split(","):
        key, equals, value = part.partition("=")
        if equals and re.fullmatch(r"[a-z_]+", key):
            pairs.append((key, value))
        elif pairs:
            pairs[-1] = (pairs[-1][0], f"{pairs[-1][1]},{part}")
        else:
            raise _fail(spec, f"expected key=value after the kind, not {part!r}")
    return pairs


def parse_fault(spec: str) -> FaultSpec:
    """One ``--fault`` value as a ``FaultSpec``; a ``UsageError`` naming it when it is wrong."""
    if not isinstance(spec, str):
        raise UsageError(f"--fault must be a text like 'drop:after=5', not {spec!r}")
    kind, colon, rest = spec.strip().partition(":")
    if kind not in PARAMETERS:
        raise _fail(spec, f"unknown kind {kind!r}: use one of {', '.join(KINDS)}")
    if colon and not rest:
        raise _fail(spec, f"nothing after the colon: write {kind} alone, or {kind}:key=value")
    own = PARAMETERS[kind]
    values: dict[str, object] = {"kind": kind, "text": spec.strip()}
    seen: set[str] = set()
    for key, value in _pairs(spec, rest) if rest else []:
        if key in seen:
            raise _fail(spec, f"{key}= is given twice")
        seen.add(key)
        if key == "conn":
            values["conn"] = _conn(spec, value)
        elif key == "times":
            values["times"] = _whole(spec, key, value, 1, 2**62)
        elif key == "p":
            values["p"] = _probability(spec, value)
        elif key in own:
            name, parse = own[key]
            values[name] = parse(spec, key, value)
        else:
            takes = ", ".join([*own, *SELECTORS])
            raise _fail(spec, f"{kind} takes no {key}=; it takes {takes}")
    for key in REQUIRED.get(kind, ()):
        if key not in seen:
            raise _fail(spec, f"{kind} needs {key}=, like {kind}:{key}=3")
    return FaultSpec(**values)  # type: ignore[arg-type]


def parse_faults(specs: Iterable[str | FaultSpec]) -> tuple[FaultSpec, ...]:
    return tuple(spec if isinstance(spec, FaultSpec) else parse_fault(spec) for spec in specs)


def parse_request_faults(text: str) -> tuple[FaultSpec, ...]:
    """The faults a request names (``Sseplay-Fault`` or ``?fault=``): specs separated by ``;``."""
    parts = [part.strip() for part in text.split(";") if part.strip()]
    if len(parts) > MAX_REQUEST_FAULTS:
        raise UsageError(f"a request may name at most {MAX_REQUEST_FAULTS} faults")
    return tuple(parse_fault(part) for part in parts)


def draw(seed: int, *parts: object) -> float:
    """A number in [0, 1) fixed by ``seed`` and ``parts``: the same on every run and
    platform (not Python's salted ``hash``), whatever order connections arrive in."""
    key = "/".join(map(str, (seed, *parts))).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") / 2**64


def seeded(specs: Iterable[FaultSpec]) -> str:
    """What ``specs`` draw from the seed, as the log names it ("p=", "jitter=", "p= and
    jitter="), or "" when nothing: then the seed is not worth a line."""
    specs = tuple(specs)
    uses = [
        name
        for name, used in (
            ("p=", any(spec.p is not None for spec in specs)),
            ("jitter=", any(spec.jitter_ms for spec in specs)),
        )
        if used
    ]
    return " and ".join(uses)


@dataclass(frozen=True, slots=True)
class Chosen:
    """A fault that applies to a connection; ``key`` names it for its ``times=`` budget."""

    spec: FaultSpec
    key: object


def choose(
    specs: Iterable[FaultSpec],
    seed: int,
    route: str,
    number: int,
    resuming: bool,
    scope: str = "server",
) -> list[Chosen]:
    """The faults among ``specs`` that apply to connection ``number`` of ``route``."""
    chosen = []
    for index, spec in enumerate(specs):
        if not spec.conn.matches(number, resuming):
            continue
        if spec.p is not None and draw(seed, scope, index, route, number) >= spec.p:
            continue
        chosen.append(Chosen(spec, (scope, index) if scope == "server" else spec))
    return chosen


@dataclass(slots=True)
class FaultCounters:
    """What the server counts: connections per route, firings per fault and per kind.

    Only faults with ``times=`` need their firings remembered. Those of ``--fault`` are
    counted by their place among the server's specs (a fixed few). Those a request names
    are counted by the spec itself, so that requests naming the same spec share its
    ``times=``; at most ``MAX_REQUEST_COUNTERS`` of them, the least recently named
    forgotten first (it then fires anew, as a spec never seen before does)."""

    connections: dict[str, int] = field(default_factory=dict)
    fired: dict[object, int] = field(default_factory=dict)
    by_kind: dict[str, int] = field(default_factory=dict)
    request_fired: OrderedDict[FaultSpec, int] = field(default_factory=OrderedDict)

    def next_connection(self, route: str) -> int:
        number = self.connections.get(route, 0) + 1
        self.connections[route] = number
        return number

    def fire(self, chosen: Chosen) -> bool:
        """Count a firing; False when the fault has used up its ``times=``."""
        spec = chosen.spec
        if spec.times is not None:
            if isinstance(chosen.key, FaultSpec):
                if not self._fire_request(chosen.key, spec.times):
                    return False
            else:
                count = self.fired.get(chosen.key, 0)
                if count >= spec.times:
                    return False
                self.fired[chosen.key] = count + 1
        self.by_kind[spec.kind] = self.by_kind.get(spec.kind, 0) + 1
        return True

    def _fire_request(self, key: FaultSpec, times: int) -> bool:
        counters = self.request_fired
        count = counters.get(key, 0)
        counters[key] = count if count >= times else count + 1
        counters.move_to_end(key)  # named again: the last to be forgotten
        while len(counters) > MAX_REQUEST_COUNTERS:
            counters.popitem(last=False)
        return count < times


# What an event's bytes become under ``malformed``.


def _data_lines(lines: list[bytes]) -> list[int]:
    return [i for i, line in enumerate(lines) if line.startswith(b"data:")]


def malform(event: bytes, damage: str) -> bytes:
    """``event`` (whole, ending in a blank line) damaged: ``json``: its data is no longer
    valid JSON (cut short, as a half-written object is); ``utf8``: its data holds bytes that
    are not UTF-8 (a truncated three-byte sequence); ``crlf``: every line ends in a lone CR,
    which WHATWG 9.2.6 allows and many hand-written parsers do not."""
    if damage == "crlf":
        return event.replace(b"\n", b"\r")
    lines = event[:-2].split(b"\n")
    data = _data_lines(lines)
    if not data:
        return event
    last = data[-1]
    if damage == "utf8":
        lines[last] += b"\xe2\x82"  # the first two of the three bytes of U+20AC
        return b"\n".join(lines) + b"\n\n"
    if len(lines[last]) > len(b"data: "):
        lines[last] = lines[last][:-1]
    value = b"\n".join(lines[i].removeprefix(b"data:").removeprefix(b" ") for i in data)
    try:
        json.loads(value)
    except ValueError:
        pass
    else:  # still JSON (a number cut short is a number): open an object it never closes
        first = data[0]
        lines[first] = b"data: {" + lines[first][6:]
    return b"\n".join(lines) + b"\n\n"
