"""Scenarios (issue 26), the pure part: a structure checked into rules with one line per
mistake naming the rule and the field, ``when`` matched against a request, the nth
request's pick, and the per-key counters."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sseplay.errors import InputError, UsageError
from sseplay.mapping import lookup
from sseplay.scenario import Counters, Pick, ScenarioRequest, json_equal
from sseplay.scenario_file import load_scenario, parse_scenario

# Where the first rule, at /chat for any method, is named in errors.
AT = r"^s: routes\[0\] \(\* /chat\): "


def rule(**fields: Any) -> dict[str, Any]:
    return {"path": "/chat", "play": ["a.jsonl"], **fields}


def rules(*given: dict[str, Any]) -> dict[str, Any]:
    return {"routes": list(given)}


def post(body: Any = None, headers: dict[str, str] | None = None, query: str = "") -> Any:
    raw = b"" if body is None else json.dumps(body).encode()
    pairs = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return ScenarioRequest("POST", "/chat", query, pairs, raw)


def test_rules_are_tried_in_order_and_when_reads_body_header_and_query() -> None:
    scenario = parse_scenario(
        rules(
            rule(method="post", when={"body.kind": "x", "header.X-Mode": "~^fast"}),
            rule(when={"query.user": "7", "body.messages.-1.role": "user"}),
            rule(),
        )
    )
    first, second, third = scenario
    assert first.method == "POST"
    assert second.method is None
    assert first.differs(post({"kind": "x"}, {"x-mode": "faster"})) is None
    assert first.differs(post({"kind": "x"}, {"x-mode": "slow"})) == (
        "header.X-Mode: 'slow' does not match ~^fast"
    )
    assert first.differs(post({"kind": "y"})) == "body.kind: 'y' != 'x'"
    assert first.differs(ScenarioRequest("GET", "/chat")) == "method: 'GET' != 'POST'"
    assert first.differs(ScenarioRequest("POST", "/other")) == "path: '/other' != '/chat'"
    messages = {"messages": [{"role": "system"}, {"role": "user"}]}
    assert second.differs(post(messages, query="user=7")) is None
    assert second.differs(post(messages, query="user=8")) == "query.user: '8' != '7'"
    assert second.differs(post(None, query="user=7")) == (
        "body.messages.-1.role: missing (the body is not JSON)"
    )
    assert third.differs(post(b"anything".decode())) is None


def test_a_plain_value_is_json_equality_and_equals_sign_quotes_a_text() -> None:
    (number, literal, flag) = parse_scenario(
        rules(
            rule(when={"body.n": 1, "query.n": 7}),
            rule(when={"body.text": "=~not a pattern"}),
            rule(when={"body.on": True}),
        )
    )
    assert number.differs(post({"n": 1.0}, query="n=7")) is None
    assert number.differs(post({"n": True}, query="n=7")) == "body.n: True != 1"
    assert number.differs(post({"n": 1}, query="n=7.5")) == "query.n: 7.5 != 7"
    assert literal.differs(post({"text": "~not a pattern"})) is None
    assert flag.differs(post({"on": 1})) == "body.on: 1 != True"
    assert json_equal({"a": [1, 2.0]}, {"a": [1.0, 2]})
    assert not json_equal([1], [True])


def test_a_regular_expression_searches_the_text_of_a_json_value() -> None:
    (found,) = parse_scenario(rules(rule(when={"body.tools": '~"name":"search"'})))
    assert found.differs(post({"tools": [{"name": "search"}]})) is None
    assert found.differs(post({"tools": []})) is not None


def test_minus_one_is_the_last_item_of_a_list_in_every_dotted_path() -> None:
    record = {"items": [{"v": 1}, {"v": 2}, {"v": 3}]}
    assert lookup(record, "items.-1.v") == 3
    assert lookup(record, "items.-3.v") == 1
    assert lookup(record, "items.-4.v") is not None  # missing, not an error
    assert lookup(record, "items.-4.v") is lookup(record, "nothing")
    assert lookup({"-1": "key"}, "-1") == "key"  # an exact key still wins


def test_the_nth_request_gets_the_nth_file_then_then() -> None:
    again, gone, down = parse_scenario(
        rules(
            rule(play=["a.jsonl", "b.jsonl"]),
            rule(play=["a.jsonl"], then="404"),
            rule(play=["a.jsonl"], then=503),
        )
    )
    assert [again.pick(n) for n in (1, 2, 3, 4)] == [
        Pick(0, 1, None),
        Pick(1, 1, None),
        Pick(1, 2, None),  # the last file again: a turns file's next turn
        Pick(1, 3, None),
    ]
    assert [gone.pick(n) for n in (1, 2)] == [Pick(0, 1, None), Pick(None, 0, 404)]
    assert down.pick(2) == Pick(None, 0, 503)


def test_play_files_are_resolved_beside_the_scenario() -> None:
    (found,) = parse_scenario(rules(rule(play=["a.jsonl", "/abs/b.jsonl"])), "s", Path("dir"))
    assert found.play == (Path("dir/a.jsonl"), Path("/abs/b.jsonl"))


@pytest.mark.parametrize(
    ("scenario", "said"),
    [
        ([], r'^s: a scenario is \{"routes"'),
        ({"routes": [], "rutes": 1}, r"^s: unknown key 'rutes': did you mean 'routes'\?$"),
        ({"routes": []}, r"^s: routes: list at least one rule$"),
        (rules(rule(), rule(plya=["x"])), r"^s: routes\[1\]: unknown key 'plya': did you mean"),
        (
            rules(rule(when={"body.kind": "~("})),
            AT + r"when.body.kind: bad",
        ),
        (rules(rule(when={"cookie.x": 1})), AT + r"when.cookie.x: name"),
        (rules(rule(then="repeat")), AT + r"then: 'repeat' is not one of"),
        (rules(rule(interval=-1)), AT + r"--interval must be 0 or more"),
        (rules(rule(follow=True)), r"^s: routes\[0\]: unknown key 'follow'"),
        (rules(rule(ttft=1)), AT + r"ttft applies to turns files: add"),
        (rules(rule(shape="openai-chat", interval=0)), r"interval applies to event files"),
        (rules(rule(shape="nope")), AT + r"shape: --shape 'nope' is not"),
        (rules(rule(faults=["explode"])), AT + r"faults: "),
        (rules(rule(method="PO ST")), r"^s: routes\[0\]: method: 'PO ST' is not an HTTP method"),
        (rules({"path": "/chat"}), AT + r"play: list the files"),
        (rules(rule(play=[])), r"play: list the files"),
        (rules(rule(path="chat")), r"^s: routes\[0\]: path: the route 'chat' must start with /"),
        (rules(rule(path="/_sseplay/x")), r"^s: routes\[0\]: path: /_sseplay/ is sseplay's"),
        (rules(rule(path="/healthz")), r"^s: routes\[0\]: path: /healthz is taken"),
        (rules("GET /chat"), r"^s: routes\[0\]: a rule is an object"),
    ],
)
def test_a_bad_scenario_is_one_line_naming_the_rule_and_the_field(scenario: Any, said: str) -> None:
    with pytest.raises(UsageError, match=said) as raised:
        parse_scenario(scenario, "s")
    assert "\n" not in str(raised.value)


def test_a_toml_date_is_not_a_json_value() -> None:
    import datetime

    with pytest.raises(UsageError, match=r"when.body.day: .* is not a JSON value: quote it"):
        parse_scenario(rules(rule(when={"body.day": datetime.date(2026, 1, 1)})), "s")


def test_counters_count_per_key_and_rule_and_forget_the_least_recent() -> None:
    counters = Counters(limit=2)
    assert [counters.next("a", 0) for _ in range(3)] == [1, 2, 3]
    assert counters.next("b", 0) == 1
    assert counters.next("a", 1) == 1  # each rule its own count
    counters.next("c", 0)  # a third key: b, the least recently used, is forgotten
    assert len(counters) == 2
    assert counters.next("b", 0) == 1
    assert counters.next("x" * 10_000, 0) == 1  # a long key is kept as its digest
    assert counters.next("x" * 10_000, 0) == 2
    counters.clear()
    assert counters.next("x" * 10_000, 0) == 1


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_load_reads_json_and_toml_and_every_file_it_plays(tmp_path: Path) -> None:
    write(tmp_path / "a.jsonl", '{"n": 1}\n')
    write(tmp_path / "turn.jsonl", '{"text": "hi"}\n')
    json_file = write(
        tmp_path / "s.json",
        json.dumps(rules(rule(interval=0), rule(shape="openai-chat", play=["turn.jsonl"]))),
    )
    toml_file = write(
        tmp_path / "s.toml",
        '[[routes]]\npath = "/chat"\nplay = ["a.jsonl"]\n[routes.when]\n"body.kind" = "x"\n',
    )
    from_json = load_scenario(json_file)
    assert [type(answer).__name__ for (answer,) in from_json.answers] == ["Replay", "Turns"]
    assert from_json.paths == ("/chat",)
    from_toml = load_scenario(str(toml_file))
    assert from_toml.rules[0].when[0].expected == "x"
    assert from_toml.answers[0][0].file.count == 1  # type: ignore[union-attr]


def test_load_says_which_rule_plays_a_missing_or_bad_file(tmp_path: Path) -> None:
    scenario = write(tmp_path / "s.json", json.dumps(rules(rule(play=["a.jsonl", "b.jsonl"]))))
    write(tmp_path / "a.jsonl", '{"n": 1}\n')
    with pytest.raises(UsageError, match=r"s.json: routes\[0\] \(\* /chat\): play\[1\]: no file"):
        load_scenario(scenario)
    write(tmp_path / "b.jsonl", "{not json\n")
    with pytest.raises(InputError, match=r"routes\[0\] \(\* /chat\): play\[1\]: .*b.jsonl"):
        load_scenario(scenario)


@pytest.mark.parametrize(
    ("name", "text", "said"),
    [
        ("s.json", '{"routes": [\n', r"s.json:2: not JSON"),
        ("s.toml", "[[routes]\n", r"s.toml: not TOML"),
        ("s.json", "\udcff", r"not UTF-8"),
    ],
)
def test_a_file_that_is_not_json_or_toml_is_one_line(
    tmp_path: Path, name: str, text: str, said: str
) -> None:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(UsageError, match=said) as raised:
        load_scenario(path)
    assert "\n" not in str(raised.value)


def test_a_dict_plays_files_from_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "a.jsonl", '{"n": 1}\n')
    monkeypatch.chdir(tmp_path)
    scenario = load_scenario(rules(rule()))
    assert scenario.label == "scenario"
    assert scenario.match(post({})) is scenario.rules[0]
    with pytest.raises(UsageError, match="takes a file"):
        load_scenario(42)  # type: ignore[arg-type]
