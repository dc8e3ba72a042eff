"""The journal (bounded in bytes, gaps per client) and the verdicts over its entries, pure:
a fake clock, entries opened and ended by hand."""

from __future__ import annotations

import pytest

from sseplay.config import ServerConfig
from sseplay.errors import UsageError
from sseplay.journal import ENTRY_OVERHEAD, Entry, Journal
from sseplay.presets import PRESETS, preset_of
from sseplay.verdict import Referee, line_of, parse_rules


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def request(
    journal: Journal,
    client: str = "127.0.0.1",
    last_event_id: str | None = None,
    method: str = "GET",
    headers: dict[str, str] | None = None,
) -> Entry:
    return journal.open(
        route="/events",
        client=client,
        connection=journal._seq + 1,
        method=method,
        path="/events",
        query="",
        headers=headers or {},
        body="",
        last_event_id=last_event_id,
    )


class Judged:
    """A journal and a referee, fed together as the HTTP layer feeds them."""

    def __init__(self, *rules: str) -> None:
        self.clock = Clock()
        self.journal = Journal(clock=self.clock)
        self.referee = Referee(parse_rules(rules))

    def connect(self, at_ms: float, last_event_id: str | None = None, **kw: object) -> Entry:
        self.clock.now = 1000.0 + at_ms / 1000
        entry = request(self.journal, last_event_id=last_event_id, **kw)  # type: ignore[arg-type]
        headers = kw.get("headers") or {}
        self.referee.opened(entry, headers)  # type: ignore[arg-type]
        return entry

    def end(
        self,
        entry: Entry,
        at_ms: float,
        ended: str = "fault:drop",
        last_id: str | None = None,
        retry: int | None = None,
    ) -> None:
        self.clock.now = 1000.0 + at_ms / 1000
        status = 204 if ended == "204" else 200
        self.journal.end(entry, ended=ended, status=status, last_id=last_id, retry_ms=retry)
        self.referee.ended(entry)

    def messages(self) -> list[str]:
        return [broken["message"] for broken in self.referee.broken]


def test_gap_is_measured_from_the_same_clients_previous_end() -> None:
    clock = Clock()
    journal = Journal(clock=clock)
    first = request(journal)
    other = request(journal, client="tab-2")
    clock.now += 0.25
    journal.end(first, ended="end", status=200)
    clock.now += 0.5
    again = request(journal)
    assert first.gap_ms is None
    assert other.gap_ms is None
    assert again.gap_ms == 500.0
    assert [e.seq for e in journal.entries] == [1, 2, 3]


def test_a_step_of_the_wall_clock_does_not_bend_a_gap() -> None:
    wall, steady = Clock(), Clock()
    journal = Journal(clock=wall, monotonic=steady)
    journal.end(request(journal), ended="fault:drop", status=200)
    wall.now -= 3600  # the wall clock is set back an hour
    steady.now += 0.2
    again = request(journal)
    assert again.gap_ms == 200.0
    assert again.time == wall.now


def test_the_journal_is_bounded_in_bytes_and_counts_what_it_dropped() -> None:
    journal = Journal(max_bytes=20 * (ENTRY_OVERHEAD + 200))
    told: list[tuple[str, object]] = []
    journal.listeners.append(lambda kind, what: told.append((kind, what)))
    for n in range(500):
        request(journal, headers={"x-big": "v" * 150, "n": str(n)})
    assert journal.size <= journal.max_bytes
    assert 10 <= len(journal.entries) < 500
    assert journal.dropped == 500 - len(journal.entries)
    assert journal.entries[-1].seq == 500  # the newest are kept
    assert ("dropped", journal.dropped) in told


def test_a_body_is_kept_up_to_4_kib() -> None:
    journal = Journal()
    entry = journal.open(
        route="/e",
        client="c",
        connection=1,
        method="POST",
        path="/e",
        query="",
        headers={},
        body="x" * 10_000,
        last_event_id=None,
    )
    assert len(entry.body) == 4096


def test_resumes_wants_the_last_id_sent_to_that_client() -> None:
    judged = Judged("resumes")
    first = judged.connect(0)
    judged.end(first, 100, last_id="7")
    judged.connect(200, last_event_id="4")
    second_ok = Judged("resumes")
    entry = second_ok.connect(0)
    second_ok.end(entry, 100, last_id="7")
    second_ok.connect(200, last_event_id="7")
    assert judged.messages() == ["sent Last-Event-ID '4', expected '7'"]
    assert line_of(judged.referee.broken[0]) == (
        "client 127.0.0.1, connection 2: sent Last-Event-ID '4', expected '7'"
    )
    assert second_ok.referee.ok


def test_resumes_without_an_id_names_it() -> None:
    judged = Judged("resumes")
    judged.end(judged.connect(0), 10, last_id="3")
    judged.connect(20)
    assert judged.messages() == ["sent no Last-Event-ID, expected '3'"]


def test_a_new_start_after_the_client_left_is_not_a_reconnect() -> None:
    judged = Judged("resumes", "honours-retry")
    judged.end(judged.connect(0), 10, ended="client left", last_id="3", retry=500)
    judged.connect(20)
    assert judged.referee.ok


def test_honours_retry_allows_10_ms_of_slack() -> None:
    judged = Judged("honours-retry")
    judged.end(judged.connect(0), 100, retry=300)
    judged.end(judged.connect(392), 400)  # 292 ms: within the slack
    judged.connect(450)  # 50 ms
    assert judged.messages() == [
        "reconnected 50 ms after connection 2 ended, expected at least 300 ms (retry: 300)"
    ]


def test_stops_on_204_within_twice_the_retry() -> None:
    judged = Judged("stops-on-204")
    judged.end(judged.connect(0), 10, ended="end", retry=500)
    judged.end(judged.connect(520), 530, ended="204")
    judged.connect(900)  # 370 ms after the 204: within 1000
    assert judged.messages() == [
        "requested again 370 ms after a 204, expected no request within 1000 ms (twice retry: 500)"
    ]
    late = Judged("stops-on-204")
    late.end(late.connect(0), 10, ended="204", retry=100)
    late.connect(300)
    assert late.referee.ok


def test_backoff_breaks_when_a_wait_shrinks_over_consecutive_failures() -> None:
    judged = Judged("backoff")
    judged.end(judged.connect(0), 0)
    judged.end(judged.connect(100), 100)  # waited 100
    judged.end(judged.connect(300), 300)  # 200: growing
    judged.connect(350)  # 50: shrank
    assert judged.messages() == [
        "waited 50 ms after a failure, less than the 200 ms before (backoff)"
    ]


def test_backoff_starts_anew_after_a_connection_that_did_not_fail() -> None:
    judged = Judged("backoff")
    judged.end(judged.connect(0), 0)
    judged.end(judged.connect(500), 500, ended="end")  # waited 500, then a whole stream
    judged.end(judged.connect(510), 510)
    judged.connect(530)
    assert judged.referee.ok


def test_max_reconnects_method_and_header() -> None:
    judged = Judged("max-reconnects=1", "method=post", "header=X-Mode:fast")
    judged.end(judged.connect(0, method="POST", headers={"x-mode": "fast"}), 1)
    judged.end(judged.connect(2, method="POST", headers={"x-mode": "fast"}), 3)
    judged.connect(4, method="GET", headers={"x-mode": "slow"})
    assert judged.messages() == [
        "sent GET, expected POST",
        "sent x-mode 'slow', expected 'fast'",
        "reconnected 2 times, expected at most 1",
    ]


def test_a_secret_header_sent_is_never_shown() -> None:
    judged = Judged("header=Authorization:Bearer right")
    judged.connect(0, headers={"authorization": "Bearer wrong-secret"})
    assert judged.messages() == ["sent authorization ***, expected '***'"]


def test_the_verdict_as_json() -> None:
    judged = Judged("resumes,honours-retry")
    assert judged.referee.verdict() == {
        "ok": True,
        "rules": ["resumes", "honours-retry"],
        "broken": [],
    }


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("resume", "--expect-client 'resume': no such rule; the rules are resumes, "),
        ("max-reconnects=x", "N must be a whole number"),
        ("max-reconnects", "write max-reconnects=N"),
        ("resumes=1", "resumes takes no value"),
        ("header=x-mode", "write header=NAME:VALUE"),
        ("method=P O", "write a method like method=POST"),
    ],
)
def test_a_bad_rule_is_one_line(text: str, said: str) -> None:
    with pytest.raises(UsageError) as raised:
        parse_rules([text])
    assert said in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_preset_adds_its_fault_and_rules() -> None:
    config = ServerConfig(scenario_preset="sse-retry", expect_client=("stops-on-204",))
    assert [f.text for f in config.faults] == ["drop:after=3,retry=500"]
    assert [r.text for r in config.expect_client] == ["resumes", "honours-retry", "stops-on-204"]
    assert config.journal
    assert preset_of("stop-on-204:retry=100").faults == ("drop:after=0,retry=100,conn=1",)
    assert set(PRESETS) == {"sse-retry", "resume-before-id", "stop-on-204"}


def test_a_bad_preset_names_the_presets() -> None:
    with pytest.raises(
        UsageError, match="the presets are sse-retry, resume-before-id, stop-on-204"
    ):
        ServerConfig(scenario_preset="sse-retries")


def test_redact_names_must_be_names() -> None:
    with pytest.raises(UsageError, match="--redact 'a b'"):
        ServerConfig(expect_client=("resumes",), redact=("a b",))
