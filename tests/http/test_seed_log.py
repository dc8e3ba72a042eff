"""``-v`` names the drawn ``--seed`` only when a fault draws from it (``p=``, and ``jitter=``
of ``delay``), and says which of them does: a server with no such fault says nothing of it."""

from __future__ import annotations

import re

import httpx

from tests.conftest import ServeProcess

SEED_LINE = re.compile(r".*--seed \d+.*")
FLAGS = ("samples/llm.jsonl", "--interval", "0", "--ping", "0", "-v")


def seed_lines(*args: str, requests: tuple[dict[str, str], ...] = ()) -> list[str]:
    with ServeProcess(*FLAGS, *args) as serve:
        for headers in requests:
            httpx.get(serve.url, headers=headers, timeout=10)
        code, _, err = serve.stop()
    assert code == 0, err
    return SEED_LINE.findall(err)


def test_no_seed_is_mentioned_when_no_fault_draws_from_it() -> None:
    assert seed_lines("--fault-header") == []
    assert seed_lines("--fault", "drop:after=2,conn=1") == []
    # A request that names a fault without p= or jitter= draws nothing either.
    assert seed_lines("--fault-header", requests=({"Sseplay-Fault": "drop:after=2"},)) == []


def test_the_seed_is_named_with_what_draws_from_it() -> None:
    (line,) = seed_lines("--fault", "drop:after=2,p=0.5")
    assert "p=" in line
    assert "jitter" not in line
    (line,) = seed_lines("--fault", "delay:ms=1,jitter=5")
    assert "jitter=" in line
    assert "p=" not in line


def test_a_request_fault_with_p_names_the_seed_once() -> None:
    named = {"Sseplay-Fault": "drop:after=2,p=1"}
    (line,) = seed_lines("--fault-header", requests=(named, named))
    assert "p=" in line


def test_a_seed_that_was_given_or_is_logged_already_is_not_named_again() -> None:
    named = {"Sseplay-Fault": "drop:after=2,p=1"}
    assert seed_lines("--fault-header", "--seed", "7", requests=(named,)) == []
    both = ("--fault-header", "--fault", "drop:after=3,p=0.5")
    (line,) = seed_lines(*both, requests=(named,))
    assert "a request's" not in line
