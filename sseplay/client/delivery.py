"""``tail --check-delivery``: whether a stream reached this client as it was sent, or a hop
(compression middleware, a proxy, a test runner) held it back and let it go in bursts.

Pure: ``judge`` reads what one connection brought (when the request went, when the
headers came and what they say, when each event came, how many bytes had come by then)
and gives a ``Verdict``: one line naming the finding, the likely culprit and the fix.

The lag of a canary event (``sseplay serve --canary``: ``{"seq": n, "sent_ns": ...}``) is
its arrival on this host's wall clock minus its ``sent_ns``, less the smallest such
difference seen on the connection: the fastest event counts as on time, so an offset
between the two hosts' clocks cancels out (and a hop that delays every event by the
same amount is not buffering).
"""

from __future__ import annotations

import itertools
import json
import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from sseplay.errors import UsageError

DEFAULT_MAX_LAG = 0.25  # seconds
# The headers came and then no event for this many intervals: the events are held.
SILENT_INTERVALS = 4
# Without an interval (no canary events, no --expected-interval), how long after the
# headers no event at all counts as held.
SILENCE_WITHOUT_INTERVAL = 1.0
# Events that arrive this close together came in one burst (or within half the interval,
# when it is known: events sent apart arrive an interval apart).
BURST_GAP = 0.02
# Bursts whose sizes (or periods) vary by less than half as much as their periods (or
# sizes) point at a byte threshold (or a flush timer).
DECISIVE = 0.5

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s)?\s*$")

_REFRAME = "turn off response buffering for text/event-stream in the hop between"
_FIX = f"{_REFRAME} (nginx: proxy_buffering off, or send X-Accel-Buffering: no)"


def parse_duration(flag: str, text: str | float) -> float:
    """Seconds from ``250ms``, ``0.25s`` or ``0.25``."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        seconds = float(text)
    else:
        match = _DURATION.match(str(text))
        if match is None:
            raise UsageError(f"{flag} must be a duration like 250ms or 0.5s, not {text!r}")
        seconds = float(match.group(1)) / (1000 if match.group(2) == "ms" else 1)
    if not math.isfinite(seconds) or seconds <= 0:
        raise UsageError(f"{flag} must be a duration more than 0, not {text!r}")
    return seconds


@dataclass(frozen=True)
class DeliveryOptions:
    """How ``--check-delivery`` judges: the lag a canary event may have, and the interval
    a stream that is not a canary is expected to keep."""

    max_lag: float | str = DEFAULT_MAX_LAG  # seconds, or "250ms", "0.5s"; kept in seconds
    expected_interval: float | str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "max_lag", parse_duration("--max-lag", self.max_lag))
        if self.expected_interval is not None:
            interval = parse_duration("--expected-interval", self.expected_interval)
            object.__setattr__(self, "expected_interval", interval)


def delivery_options(
    check: bool,
    max_lag: str | float | None,
    interval: float | None,
    timeout: float | None,
    count: int | None,
) -> DeliveryOptions | None:
    """``--check-delivery``'s options from tail's flags, or None; its flags without it,
    or a check with no end (no ``--timeout``, no ``--count``), are usage errors."""
    if not check:
        for flag, value in (("--max-lag", max_lag), ("--expected-interval", interval)):
            if value is not None:
                raise UsageError(f"{flag} works with --check-delivery, which is not given")
        return None
    if timeout is None and count is None:
        raise UsageError("--check-delivery reads for --timeout SECONDS or --count N: give one")
    return DeliveryOptions(DEFAULT_MAX_LAG if max_lag is None else max_lag, interval)


@dataclass(frozen=True, slots=True)
class Arrival:
    """One event as it came: on the monotonic clock (``at``, seconds) and the wall clock
    (``wall_ns``), the bytes of the body that had come before the read that brought it,
    and, for a canary event, its ``seq`` and ``sent_ns``."""

    at: float
    wall_ns: int
    bytes_before: int
    seq: int | None = None
    sent_ns: int | None = None


def canary_stamp(data: str) -> tuple[int, int] | None:
    """``(seq, sent_ns)`` of a canary event's data, None for any other event."""
    if not data.startswith("{") or "sent_ns" not in data:
        return None
    try:
        value = json.loads(data)
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    seq, sent_ns = value.get("seq"), value.get("sent_ns")
    if type(seq) is not int or type(sent_ns) is not int:
        return None
    return seq, sent_ns


@dataclass(frozen=True)
class Delivery:
    """What one connection brought, for ``judge``: times on the monotonic clock."""

    requested_at: float
    headers_at: float
    headers: Sequence[tuple[str, str]]  # names in lower case
    arrivals: Sequence[Arrival]
    ended_at: float


@dataclass(frozen=True)
class Verdict:
    buffered: bool
    line: str
    notes: tuple[str, ...] = ()
    lags_ms: tuple[float, ...] = field(default=(), repr=False)
    offset_min_ms: float | None = None


@dataclass(frozen=True, slots=True)
class _Burst:
    first: int  # indices into the arrivals
    last: int
    silence: float  # before its first event


def _header(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    values = [value for key, value in headers if key == name]
    return ", ".join(values) if values else None


@dataclass(frozen=True, slots=True)
class HeaderFindings:
    """What the response headers say: culprits that hold a stream whatever its timing
    (``certain``), culprits a held stream points at (``likely``), and notes."""

    certain: tuple[str, ...]
    likely: tuple[str, ...]
    notes: tuple[str, ...]


def read_headers(headers: Sequence[tuple[str, str]]) -> HeaderFindings:
    certain: list[str] = []
    likely: list[str] = []
    notes: list[str] = []
    length = _header(headers, "content-length")
    if length is not None:
        certain.append(
            f"the response has Content-Length: {length}: a hop read the whole body before "
            "sending it; let it stream (chunked), and exclude text/event-stream from it"
        )
    coding = _header(headers, "content-encoding")
    if coding is not None and coding.strip().lower() != "identity":
        likely.append(
            f"the response has Content-Encoding: {coding}: compression middleware holds "
            "the stream; exclude text/event-stream"
        )
        notes.append(f"Content-Encoding: {coding} on an event stream")
    accel = _header(headers, "x-accel-buffering")
    if accel is not None and accel.strip().lower() == "yes":
        likely.append(
            "the response has X-Accel-Buffering: yes: nginx buffers it; send "
            "X-Accel-Buffering: no, or set proxy_buffering off"
        )
    via = _header(headers, "via")
    if via is not None:
        likely.append(f"it came through a proxy (Via: {via}): {_FIX}")
        notes.append(f"Via: {via}")
    cache = (_header(headers, "cache-control") or "").lower()
    if "no-transform" not in cache:
        notes.append("Cache-Control has no no-transform: a proxy may compress or hold it")
    return HeaderFindings(tuple(certain), tuple(likely), tuple(notes))


def _bursts(arrivals: Sequence[Arrival], start: float, gap: float) -> list[_Burst]:
    bursts: list[_Burst] = []
    previous = start
    first = 0
    for index in range(1, len(arrivals) + 1):
        if index == len(arrivals) or arrivals[index].at - arrivals[index - 1].at > gap:
            bursts.append(_Burst(first, index - 1, arrivals[first].at - previous))
            previous = arrivals[index - 1].at
            first = index
    return bursts


def _variation(values: Sequence[float]) -> float:
    """How much ``values`` vary: their median absolute deviation over their median, which
    one odd burst (split by a slow read) does not sway."""
    middle = statistics.median(values)
    spread = statistics.median(abs(value - middle) for value in values)
    return spread / middle if middle > 0 else math.inf


def _pattern(arrivals: Sequence[Arrival], bursts: Sequence[_Burst]) -> str:
    """What the bursts say of the hop, from one burst's start to the next (the first burst,
    which began when the connection did, left out): bursts of one size at uneven times are
    a byte threshold, bursts at even times of uneven sizes a flush timer."""
    starts = [arrivals[b.first] for b in bursts[1:]]
    if len(starts) >= 3:
        pairs = list(itertools.pairwise(starts))
        sizes = [float(after.bytes_before - before.bytes_before) for before, after in pairs]
        periods = [after.at - before.at for before, after in pairs]
        by_size, by_time = _variation(sizes), _variation(periods)
        if by_size < by_time * DECISIVE:
            size = statistics.median(sizes) / 1024
            return f"a hop holds about {size:.1f} KiB before it sends: {_FIX}"
        if by_time < by_size * DECISIVE:
            period = statistics.median(periods)
            return f"a hop sends what it holds every {period:.1f} s: {_FIX}"
    return f"a hop between the server and this client buffers the stream: {_FIX}"


def _name(arrivals: Sequence[Arrival], index: int) -> str:
    seq = arrivals[index].seq
    return str(seq if seq is not None else index + 1)


def _describe(arrivals: Sequence[Arrival], burst: _Burst) -> str:
    span_ms = (arrivals[burst.last].at - arrivals[burst.first].at) * 1000
    if burst.last == burst.first:
        what = f"event {_name(arrivals, burst.first)} arrived"
    else:
        names = f"{_name(arrivals, burst.first)}-{_name(arrivals, burst.last)}"
        what = f"events {names} arrived within {span_ms:.0f} ms"
    return f"{what} after {burst.silence:.1f} s of silence"


def _percentile(ordered: Sequence[float], fraction: float) -> float:
    return ordered[max(math.ceil(fraction * len(ordered)), 1) - 1]


def judge(delivery: Delivery, options: DeliveryOptions) -> Verdict:
    """Whether ``delivery`` came as it was sent (see the module docstring)."""
    arrivals = delivery.arrivals
    found = read_headers(delivery.headers)
    sent = [a.sent_ns for a in arrivals if a.sent_ns is not None]
    # Seconds, both (``DeliveryOptions`` read the texts when it was made).
    expected = options.expected_interval
    interval = None if expected is None else float(expected)
    if interval is None and len(sent) >= 2:
        steps = [after - before for before, after in itertools.pairwise(sent)]
        positive = [step for step in steps if step > 0]
        interval = statistics.median(positive) / 1e9 if positive else None
    max_lag = float(options.max_lag)
    silence_limit = (
        max(SILENT_INTERVALS * interval, max_lag) if interval else SILENCE_WITHOUT_INTERVAL
    )
    # Per arrival, its lag in ms (None for an event that is not a canary's).
    lag_of: list[float | None] = [None] * len(arrivals)
    offset_min_ms = None
    if sent:
        least = min(a.wall_ns - a.sent_ns for a in arrivals if a.sent_ns is not None)
        offset_min_ms = round(least / 1e6, 3)
        for index, arrival in enumerate(arrivals):
            if arrival.sent_ns is not None:
                lag_of[index] = (arrival.wall_ns - arrival.sent_ns - least) / 1e6
    lags = [lag for lag in lag_of if lag is not None]
    findings: list[str] = []
    start = delivery.headers_at
    gap = interval / 2 if interval else BURST_GAP
    bursts = _bursts(arrivals, start, gap) if arrivals else []
    if not arrivals:
        waited = delivery.ended_at - delivery.headers_at
        if waited > silence_limit:
            findings.append(f"the headers came, then no event in {waited:.1f} s")
    elif lags and max(lags) > max_lag * 1000:
        worst = max(range(len(arrivals)), key=lambda i: lag_of[i] or -1.0)
        burst = next(b for b in bursts if b.first <= worst <= b.last)
        findings.append(
            f"{_describe(arrivals, burst)} (up to {max(lags) / 1000:.2f} s late, "
            f"--max-lag {max_lag:g} s)"
        )
    elif arrivals[0].at - start > silence_limit:
        findings.append(f"the headers came, then {_describe(arrivals, bursts[0])}")
    elif interval and not lags:
        late = [
            b
            for b in bursts[1:]
            if b.last - b.first >= 2
            and b.silence > max(2 * interval, interval + max_lag)
            and arrivals[b.last].at - arrivals[b.first].at < interval / 2
        ]
        if late:
            findings.append(f"{_describe(arrivals, late[0])} (--expected-interval {interval:g} s)")
    if found.certain and not findings:
        findings.append(f"{len(arrivals)} events came")
    if findings:
        culprits = found.certain + found.likely
        culprit = culprits[0] if culprits else _pattern(arrivals, bursts)
        line = f"{findings[0]}; {culprit}"
        return Verdict(True, line, found.notes, tuple(lags), offset_min_ms)
    if lags:
        ordered = sorted(lags)
        timing = (
            f"lag p50 {_percentile(ordered, 0.5):.0f} ms, max {ordered[-1]:.0f} ms "
            "(relative to the fastest event)"
        )
    elif interval:
        timing = f"no burst after a silence (--expected-interval {interval:g} s)"
    else:
        timing = "not a canary stream and no --expected-interval: only the headers were judged"
    duration = delivery.ended_at - delivery.requested_at
    line = f"delivered as sent: {len(arrivals)} events in {duration:.1f} s, {timing}"
    return Verdict(False, line, found.notes, tuple(lags), offset_min_ms)


def lag_report(verdict: Verdict) -> dict[str, float | int | None] | None:
    """The ``lag_ms`` of ``--stats``: percentiles of the canary events' lags."""
    if not verdict.lags_ms:
        return None
    ordered = sorted(verdict.lags_ms)
    return {
        "count": len(ordered),
        "p50": round(_percentile(ordered, 0.50), 3),
        "p90": round(_percentile(ordered, 0.90), 3),
        "p99": round(_percentile(ordered, 0.99), 3),
        "max": round(ordered[-1], 3),
        "offset_min": verdict.offset_min_ms,
    }
