"""Tokens, argument fragments, pacing and turns files of the shapes (issue 25)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sseplay.errors import InputError, UsageError
from sseplay.shapes import (
    Chunking,
    Pacing,
    load_turns,
    split_arguments,
    split_text,
    token_offsets,
    turns_from,
)

AWKWARD = [
    "",
    " ",
    "Hello, world!",
    "  lead and trail  ",
    "a\n\nb\tc",
    "Héllo wörld 🎉👩‍👩‍👧 ok.",
    "日本語のテキスト",
]


@pytest.mark.parametrize("text", AWKWARD)
@pytest.mark.parametrize("chunking", ["words:1", "words:3", "chars:1", "chars:4"])
def test_tokens_join_back_exactly(text: str, chunking: str) -> None:
    tokens = split_text(text, Chunking.parse(chunking))
    assert "".join(tokens) == text
    assert all(tokens)


@given(st.text(), st.sampled_from(["words", "chars"]), st.integers(1, 5))
def test_any_text_joins_back_exactly(text: str, unit: str, size: int) -> None:
    assert "".join(split_text(text, Chunking.parse(f"{unit}:{size}"))) == text


def test_words_carry_the_space_before_them_as_tokenizers_do() -> None:
    assert split_text("Hello, big world!", Chunking()) == ["Hello,", " big", " world!"]
    assert split_text("a b c d e", Chunking("words", 2)) == ["a b", " c d", " e"]
    assert split_text("Hello!", Chunking("chars", 3)) == ["Hel", "lo!"]


@pytest.mark.parametrize("bad", ["", "words:0", "chars:x", "lines:1", "words:-1", "words:1.5"])
def test_a_bad_chunking_is_a_usage_error(bad: str) -> None:
    with pytest.raises(UsageError, match="--chunk must be words:N or chars:N"):
        Chunking.parse(bad)


@given(st.dictionaries(st.text(), st.recursive(st.none() | st.text() | st.integers(), st.lists)))
def test_arguments_come_in_at_least_two_fragments_joined_exactly(value: object) -> None:
    arguments = json.dumps(value, ensure_ascii=False)
    fragments = split_arguments(arguments)
    assert len(fragments) >= 2
    assert "".join(fragments) == arguments


def test_even_empty_arguments_are_two_fragments() -> None:
    assert split_arguments("{}") == ["{", "}"]


def test_offsets_start_at_ttft_and_are_computed_from_the_start() -> None:
    offsets = token_offsets(100_001, Pacing(ttft=0.25, tps=3.0), seed=1)
    assert offsets[0] == 0.25
    # No drift: token i is at ttft + i / tps itself, not a sum of rounded gaps.
    assert offsets[100_000] == 0.25 + 100_000 / 3.0
    assert offsets[7] == 0.25 + 7 / 3.0


def test_jitter_is_seeded_bounded_and_never_makes_a_gap_negative() -> None:
    pacing = Pacing(ttft=0.1, tps=50.0, jitter=1.0)
    offsets = token_offsets(5000, pacing, seed=42)
    assert offsets == token_offsets(5000, pacing, seed=42)
    assert offsets != token_offsets(5000, pacing, seed=43)
    assert offsets[0] == 0.1
    assert all(later >= earlier for earlier, later in itertools.pairwise(offsets))
    for index, offset in enumerate(offsets):
        assert abs(offset - (0.1 + index / 50.0)) <= 0.5 / 50.0 + 1e-12


def test_no_tps_sends_every_token_at_ttft() -> None:
    assert token_offsets(3, Pacing(ttft=0.5), seed=0) == [0.5, 0.5, 0.5]
    assert token_offsets(0, Pacing(ttft=0.5), seed=0) == []


@pytest.mark.parametrize(
    ("options", "flag"),
    [({"ttft": -1}, "--ttft"), ({"tps": float("nan")}, "--tps"), ({"jitter": 1.5}, "--jitter")],
)
def test_bad_pacing_is_a_usage_error_naming_the_flag(options: dict[str, float], flag: str) -> None:
    with pytest.raises(UsageError, match=flag):
        Pacing(**options)


def test_a_turns_file_is_read_line_by_line(tmp_path: Path) -> None:
    path = tmp_path / "turns.jsonl"
    lines = [
        {"text": "Hi", "usage": {"input_tokens": 3}, "tps": 20},
        {"tool_calls": [{"name": "f", "arguments": {"x": 1}}], "stop_reason": "tool_use"},
        {"thinking": "Hmm.", "text": "Yes."},
        {"error": {"type": "overloaded_error", "message": "Overloaded"}},
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n", "utf-8")
    text, call, thought, error = load_turns(path)
    assert (text.text, text.usage, text.tps) == ("Hi", {"input_tokens": 3}, 20.0)
    assert (call.tool_calls[0].name, call.tool_calls[0].arguments) == ("f", {"x": 1})
    assert call.finish_reason == "tool_use"
    assert (thought.thinking, thought.text) == ("Hmm.", "Yes.")
    assert error.error is not None
    assert error.error.type == "overloaded_error"


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("{nope", "not JSON"),
        ('{"txt": "x"}', "unknown key 'txt'"),
        ("{}", "a turn needs text, tool_calls or error"),
        ('{"text": 3}', "text must be a string"),
        ('{"tool_calls": [{"name": "f", "arguments": "x"}]}', "arguments are a JSON object"),
        ('{"error": {"type": "x", "message": "m"}, "text": "t"}', "a turn with an error"),
        ('{"text": "x", "jitter": 2}', "jitter must be between 0 and 1"),
    ],
)
def test_a_bad_turn_says_where_and_how_to_fix(tmp_path: Path, line: str, problem: str) -> None:
    path = tmp_path / "turns.jsonl"
    path.write_text('{"text": "fine"}\n' + line + "\n", "utf-8")
    with pytest.raises(InputError, match=problem) as caught:
        load_turns(path)
    assert caught.value.where == f"{path}:2"


def test_turns_from_values_label_their_place() -> None:
    with pytest.raises(InputError, match="unknown key") as caught:
        turns_from([{"text": "a"}, {"bad": 1}], label="turns")
    assert caught.value.where == "turns:2"
