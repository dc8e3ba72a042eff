"""The pure parts of tail's CI assertions: reading expected files, comparing data with
--ignore paths, schemas, stats figures; and that a plain tail never imports them."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sseplay.client.assertions import (
    Expectation,
    ExpectedStream,
    SchemaSet,
    data_difference,
    first_difference,
    parse_ignore,
    read_expected,
)
from sseplay.client.options import TailOptions
from sseplay.client.stats import MAX_SAMPLES, TailStats, percentile
from sseplay.errors import InputError, Invalid, Mismatch, UsageError
from sseplay.model import Event
from tests.conftest import ROOT
from tests.support import FakeClock


def ignore(*paths: str) -> tuple[tuple[str, ...], ...]:
    return tuple(parse_ignore(path) for path in paths)


# ---------------------------------------------------------------------------
# Comparing data


def test_json_data_ignores_key_order_and_spacing_but_not_types() -> None:
    assert data_difference('{"a": 1, "b": [1, 2]}', '{"b":[1,2],"a":1}') is None
    assert data_difference('{"n": 1}', '{"n": 1.0}') is None  # one JSON number
    assert data_difference('{"n": true}', '{"n": 1}') == "data at n: expected true, got 1"
    assert data_difference('{"n": 0}', '{"n": false}') == "data at n: expected 0, got false"
    assert data_difference('{"n": null}', '{"n": "null"}') == 'data at n: expected null, got "null"'


def test_the_first_difference_names_its_path() -> None:
    want = {"choices": [{"delta": {"content": "a", "role": "x"}}], "id": 1}
    have = {"choices": [{"delta": {"content": "b", "role": "y"}}], "id": 2}
    found = first_difference(want, have)
    assert found is not None
    assert found.describe() == 'data at choices.0.delta.content: expected "a", got "b"'
    assert first_difference({"a": 1}, {"a": 1, "b": 2}).describe() == (  # type: ignore[union-attr]
        "data at b: unexpected value 2"
    )
    assert first_difference({"a": 1, "b": 2}, {"a": 1}).describe() == (  # type: ignore[union-attr]
        "data at b: missing, expected 2"
    )
    assert first_difference([1, 2], [1, 2, 3]).describe() == (  # type: ignore[union-attr]
        "data at 2: unexpected value 3"
    )
    assert first_difference({"a": [1]}, {"a": {"0": 1}}).describe() == (  # type: ignore[union-attr]
        'data at a: expected [1], got {"0": 1}'
    )
    assert first_difference(1, 2).describe() == "data: expected 1, got 2"  # type: ignore[union-attr]


def test_ignored_paths_with_wildcards_leave_whole_subtrees_out() -> None:
    want = {"created": 1, "choices": [{"delta": {"id": "a", "x": 1}}, {"delta": {"id": "b"}}]}
    have = {"created": 2, "choices": [{"delta": {"id": "c", "x": 1}}, {"delta": {"id": "d"}}]}
    assert first_difference(want, have, ignore("created")).path == (  # type: ignore[union-attr]
        "choices",
        "0",
        "delta",
        "id",
    )
    assert first_difference(want, have, ignore("created", "choices.*.delta.id")) is None
    assert first_difference(want, have, ignore("*", "x")) is None  # any top-level key
    # A missing or extra value at an ignored path is left out too.
    assert first_difference({"a": 1, "t": 5}, {"a": 1}, ignore("t")) is None
    assert first_difference({"a": 1}, {"a": 1, "t": 5}, ignore("t")) is None
    assert first_difference({"a": {"t": 1}}, {"a": {"t": 2}}, ignore("a")) is None
    # A path is matched whole: "delta" alone does not reach choices.0.delta.
    assert first_difference(want, have, ignore("created", "delta")) is not None


def test_bad_ignore_paths_are_usage_errors() -> None:
    for bad in ("", "a..b", ".a", "a."):
        with pytest.raises(UsageError, match="--ignore"):
            parse_ignore(bad)


def test_text_data_reports_where_it_differs() -> None:
    assert data_difference("hello world", "hello there") == (
        'data (text) differs at character 7: expected "hello world", got "hello there"'
    )
    # JSON on one side only: compared as text.
    assert data_difference('{"a": 1}', "a: 1") is not None
    assert data_difference("[DONE]", "[DONE]") is None
    # Control characters from the stream are escaped, never sent to the terminal raw.
    shown = data_difference("a", "\x1b]52;c;x\x07")
    assert shown is not None
    assert "\x1b" not in shown
    assert "\\u001b" in shown


# ---------------------------------------------------------------------------
# The expected stream


def test_expected_files_of_every_kind(tmp_path: Path) -> None:
    recording = tmp_path / "r.jsonl"
    recording.write_text(
        '{"sseplay": "recording", "version": 1, "url": "u", "started": "t"}\n'
        '{"offset": 0.1, "event": "goal", "id": "1", "data": "x", "retry": 5}\n'
        "\n"
        '{"offset": 0.2, "event": "message", "id": null, "data": "{\\"a\\": 1}"}\n'
    )
    expected = [Event("x", "goal", "1"), Event('{"a": 1}', "message", None)]
    assert list(read_expected(recording)) == expected
    lines = tmp_path / "j.jsonl"
    lines.write_text(
        "\n".join(
            json.dumps({"time": "t", "type": e.event, "id": e.id, "data": e.data}) for e in expected
        )
    )
    assert list(read_expected(lines)) == expected
    array = tmp_path / "a.json"
    array.write_text("\ufeff" + json.dumps([{"type": "goal", "id": "1", "data": "x"}]))
    assert list(read_expected(array)) == expected[:1]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "it holds no events"),
        ('{"data": 1}\n', 'line 1: an expected event needs "data", a string'),
        ('[{"data": "a"}, 5]', "event 2: an expected event must be an object, not 5"),
        ('{"data": "a", "id": 3}', "line 1: the id must be a string or null, not 3"),
        ('{"data": "a"}\n{nope}\n', "line 2: invalid JSON"),
        ("[1,", "invalid JSON"),
    ],
)
def test_bad_expected_files_say_where(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        read_expected(path)


def test_expectation_event_by_event() -> None:
    stream = ExpectedStream.build([Event("a", "t", "1"), Event("b", "t", "2")], exact=True)
    expectation = Expectation(stream)
    assert expectation.check(Event("a", "t", "1")) is False
    assert expectation.check(Event("b", "t", "2")) is False  # --exact: keep reading
    assert expectation.complete
    expectation.finish("the stream ended")  # all came: fine
    with pytest.raises(Mismatch, match=r"event 3 .* is one more than the 2"):
        expectation.check(Event("c", "t", "3"))
    prefix = Expectation(ExpectedStream.build([Event("a")]))
    assert prefix.check(Event("a")) is True  # without --exact the tail can stop
    early = Expectation(ExpectedStream.build([Event("a"), Event("b")]))
    early.check(Event("a"))
    with pytest.raises(Mismatch, match=r'after 1 of the 2 events .* event 2 .* data "b"'):
        early.finish("the stream ended")


def test_event_types_filter_the_expected_stream_too() -> None:
    stream = ExpectedStream.build(
        [Event("a", "delta"), Event("p", "ping"), Event("b", "delta")],
        event_types=frozenset({"delta"}),
    )
    assert [e.data for e in stream.events] == ["a", "b"]


def test_options_refuse_assertion_flags_without_expect() -> None:
    for flags, name in (({"ignore": ["a"]}, "--ignore"), ({"ignore_id": True}, "--ignore-id")):
        with pytest.raises(UsageError, match=name):
            TailOptions("http://127.0.0.1:1/", **flags)
    with pytest.raises(UsageError, match="--exact"):
        TailOptions("http://127.0.0.1:1/", exact=True)
    with pytest.raises(UsageError, match="--wait"):
        TailOptions("http://127.0.0.1:1/", wait=0)
    with pytest.raises(UsageError, match="stats"):
        TailOptions("http://127.0.0.1:1/", stats=3)


# ---------------------------------------------------------------------------
# Schemas


def test_schema_names_the_event_the_path_and_the_rule(tmp_path: Path) -> None:
    schema = {
        "type": "object",
        "properties": {"items": {"type": "array", "items": {"type": "integer", "minimum": 0}}},
    }
    schemas = SchemaSet([schema])
    schemas.check(1, Event('{"items": [1, 2]}'))
    with pytest.raises(Invalid) as caught:
        schemas.check(4, Event('{"items": [1, -2]}', "tick", "9"))
    assert str(caught.value) == (
        "event 4 (type 'tick', id '9'): data at items.1 breaks --schema a schema "
        "(rule properties/items/items/minimum): -2 is less than the minimum of 0"
    )
    assert caught.value.exit_code == 10


def test_typed_schemas_apply_to_their_type_only(tmp_path: Path) -> None:
    strict = tmp_path / "strict.json"
    strict.write_text(json.dumps({"type": "string"}))
    schemas = SchemaSet([f"done={strict}", ("other", {"type": "number"})])
    schemas.check(1, Event("[1]", "message"))  # no schema for message events
    schemas.check(2, Event("3", "other"))
    with pytest.raises(Invalid, match=f"breaks --schema done={strict}"):
        schemas.check(3, Event("[1]", "done"))


def test_schemas_use_draft_2020_12_unless_they_name_another() -> None:
    # prefixItems exists in 2020-12 only; draft 4 ignores it.
    tuple_schema: dict[str, Any] = {"prefixItems": [{"type": "string"}]}
    with pytest.raises(Invalid, match="prefixItems"):
        SchemaSet([tuple_schema]).check(1, Event("[1]"))
    draft4 = {"$schema": "http://json-schema.org/draft-04/schema#", **tuple_schema}
    SchemaSet([draft4]).check(1, Event("[1]"))


def test_unreadable_and_invalid_schemas_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read it"):
        SchemaSet([str(tmp_path / "missing.json")])
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(UsageError, match="not a JSON schema"):
        SchemaSet([str(broken)])
    with pytest.raises(UsageError, match=r"invalid schema at properties\.a\.type"):
        SchemaSet([{"properties": {"a": {"type": 5}}}])


# ---------------------------------------------------------------------------
# Stats


def test_stats_figures_from_an_injected_clock() -> None:
    clock = FakeClock()
    stats = TailStats(clock)
    stats.start()
    stats.connected()
    clock.now += 0.25
    stats.received(10, 1)  # first event at 250 ms
    for gap_ms in (10, 20, 30, 40):
        clock.now += gap_ms / 1000
        stats.received(5, 1)
    stats.received(7, 0)  # a comment: bytes, no event
    clock.now += 0.1
    stats.received(20, 3)  # three events in one chunk: 100 ms, then 0 and 0
    stats.reconnecting()
    stats.finish(0)
    report = stats.report()
    assert report["events"] == 8
    assert report["bytes"] == 10 + 4 * 5 + 7 + 20
    assert (report["connections"], report["reconnects"]) == (1, 1)
    assert report["first_event_ms"] == 250.0
    gaps = report["inter_arrival_ms"]
    assert gaps["count"] == 7
    assert (gaps["min"], gaps["max"]) == (0.0, 100.0)
    # Nearest rank of [0, 0, 10, 20, 30, 40, 100]
    assert (gaps["p50"], gaps["p90"], gaps["p99"]) == (20.0, 100.0, 100.0)
    assert report["duration_ms"] == 450.0
    assert (report["exit_code"], report["result"]) == (0, "ok")


def test_stats_without_events_and_percentiles() -> None:
    report = TailStats(FakeClock()).report()
    assert report["first_event_ms"] is None
    assert report["inter_arrival_ms"] is None
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0
    assert percentile([5.0], 0.99) == 5.0


def test_stats_memory_is_bounded() -> None:
    clock = FakeClock()
    stats = TailStats(clock)
    stats.start()
    for _ in range(MAX_SAMPLES + 5000):
        clock.now += 0.001
        stats.received(1, 1)
    clock.now += 5
    stats.received(1, 1)
    assert len(stats._gaps) == MAX_SAMPLES
    gaps = stats.report()["inter_arrival_ms"]
    assert gaps["count"] == MAX_SAMPLES + 5000
    assert gaps["max"] == 5000.0  # exact, even when the sample missed it
    assert gaps["p50"] == pytest.approx(1.0)


# ---------------------------------------------------------------------------
# Start-up: what a plain tail imports


LOADED_AT_EXIT = """
import atexit, json, runpy, sys
listing = sys.argv[1]
def write():
    loaded = sorted(name for name, module in sys.modules.items() if module is not None)
    with open(listing, "w") as out:
        json.dump(loaded, out)
atexit.register(write)
sys.argv = ["sseplay", *sys.argv[2:]]
runpy.run_module("sseplay", run_name="__main__")
"""


def imported_modules(tmp_path: Path, *args: str) -> set[str]:
    """The modules loaded when ``sseplay ARGS`` exits (ones marked absent do not count)."""
    listing = tmp_path / "modules.json"
    subprocess.run(
        [sys.executable, "-c", LOADED_AT_EXIT, str(listing), *args],
        capture_output=True,
        timeout=30,
        cwd=ROOT,
    )
    return set(json.loads(listing.read_text()))


# What tail's start-up used to import without using it: pydantic (Typer's value
# conversion), httpx's own command line (click, rich, pygments), trio and h2 (httpcore's
# trio and HTTP/2 support), and the assertion modules and jsonschema.
NOT_FOR_A_PLAIN_TAIL = (
    "pydantic",
    "httpx._main",
    "click",
    "rich",
    "pygments",
    "trio",
    "h2",
    "jsonschema",
    "sseplay.client.assertions",
)


def test_a_plain_tail_imports_only_what_its_options_need(tmp_path: Path) -> None:
    schema = tmp_path / "s.json"
    schema.write_text("{}")
    plain = imported_modules(tmp_path, "tail", "http://127.0.0.1:9/", "--count", "1", "-f", "json")
    assert {"sseplay.client.reconnect", "httpx", "httpcore"} <= plain
    assert [name for name in NOT_FOR_A_PLAIN_TAIL if name in plain] == []
    helped = imported_modules(tmp_path, "tail", "--help")
    assert [name for name in NOT_FOR_A_PLAIN_TAIL if name in helped] == []
    checked = imported_modules(tmp_path, "tail", "http://127.0.0.1:9/", "--schema", str(schema))
    assert {"jsonschema", "sseplay.client.assertions"} <= checked
    pretty = imported_modules(tmp_path, "tail", "http://127.0.0.1:9/", "-f", "pretty")
    assert "rich.console" in pretty  # the pretty format uses rich


def typer_converts_without_pydantic() -> bool:
    """Whether this Typer has the hook sseplay replaces (Typer 0.29's pydantic conversion)."""
    return importlib.util.find_spec("typer._coercion") is not None


def test_flag_values_are_still_checked_without_typers_conversion() -> None:
    for flag, value, message in (
        ("--count", "abc", "Invalid value for '--count': 'abc' is not a whole number"),
        ("--count", "1.5", "Invalid value for '--count': '1.5' is not a whole number"),
        ("--timeout", "soon", "Invalid value for '--timeout': 'soon' is not a number"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "sseplay", "tail", "http://127.0.0.1:9/", flag, value],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=ROOT,
        )
        assert result.returncode == 2
        if typer_converts_without_pydantic():
            assert result.stderr == (
                f"sseplay: error: sseplay tail: {message}; see 'sseplay tail --help'\n"
            )
        else:  # an older Typer converts the value itself: its words, on one line
            assert result.stderr.startswith(
                f"sseplay: error: sseplay tail: Invalid value for '{flag}'"
            )
            assert len(result.stderr.splitlines()) == 1
