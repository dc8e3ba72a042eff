"""Which recording answers a request (issue 24): method, path, query without the
redacted names, and the body, JSON compared as JSON without the --match-ignore paths."""

from __future__ import annotations

from pathlib import Path

from sseplay.exchange import Exchange, RecordedRequest, RecordedResponse
from sseplay.matching import Matcher, match_key


def recorded(name: str, method: str, path: str, query: str = "", body: bytes = b"") -> Exchange:
    request = RecordedRequest(method, path, query, (), body)
    response = RecordedResponse(200, (("content-type", "application/json"),))
    return Exchange(
        Path(name), "http://u", "", request, response, 0.0, False, (), (), (), "complete"
    )


CHAT = b'{"model": "m", "messages": [{"role": "user", "content": "hello", "id": "a1"}]}'


def test_json_bodies_compare_as_json() -> None:
    key = match_key("post", "/v1/x", "", CHAT)
    reordered = b'{"messages":[{"id":"a1","content":"hello","role":"user"}],"model":"m"}'
    assert match_key("POST", "/v1/x", "", reordered) == key
    assert match_key("POST", "/v1/x", "", CHAT.replace(b"hello", b"hi")) != key
    assert key.is_json
    assert not match_key("POST", "/v1/x", "", b"not json").is_json
    assert match_key("POST", "/v1/x", "", b"") == match_key("POST", "/v1/x", "", b"")


def test_query_params_are_sorted_and_secrets_left_out() -> None:
    key = match_key("GET", "/s", "b=2&a=1&key=***", b"")
    assert match_key("GET", "/s", "a=1&key=sk-real&b=2", b"") == key
    assert match_key("GET", "/s", "a=1&b=2", b"") == key
    assert match_key("GET", "/s", "a=1&b=3", b"") != key
    assert match_key("GET", "/s", "a=1&b=2&sess=x", b"", redacted=["SESS"]) == key


def test_ignored_paths_are_left_out() -> None:
    base = b'{"user":"u1","metadata":{"t":1,"r":"x"},"messages":[{"id":"1","c":"hi"}]}'
    other = b'{"user":"u2","metadata":{"t":2},"messages":[{"id":"9","c":"hi"}]}'
    assert match_key("POST", "/", "", base) != match_key("POST", "/", "", other)
    ignore = ["user", "metadata.*", "messages.*.id"]
    assert match_key("POST", "/", "", base, ignore) == match_key("POST", "/", "", other, ignore)
    changed = other.replace(b'"c":"hi"', b'"c":"ho"')
    assert match_key("POST", "/", "", base, ignore) != match_key("POST", "/", "", changed, ignore)
    assert match_key("POST", "/", "", b"[1,2,3]", ["1"]) == match_key("POST", "/", "", b"[1,3]")
    assert match_key("POST", "/", "", b"[1]", ["nothing.here", "0.x"]).body == b"[1]"


def test_the_nth_request_gets_the_nth_recording_then_the_last_again() -> None:
    first = recorded("a.jsonl", "POST", "/v1/x", body=CHAT)
    second = recorded("b.jsonl", "POST", "/v1/x", body=CHAT)
    other = recorded("c.jsonl", "GET", "/health")
    matcher = Matcher([first, second, other])
    found = [matcher.find("POST", "/v1/x", "", CHAT) for _ in range(4)]
    assert found == [first, second, second, second]
    assert matcher.find("GET", "/health", "", b"") is other
    assert matcher.find("GET", "/nothing", "", b"") is None


def test_a_name_the_proxy_redacted_is_left_out_of_the_match() -> None:
    # --redact session at record time: the recording holds session=***.
    exchange = recorded("a.jsonl", "GET", "/s", query="session=***&a=1&api_key=***")
    matcher = Matcher([exchange])
    assert matcher.find("GET", "/s", "a=1&session=live&api_key=sk", b"") is exchange
    assert matcher.find("GET", "/s", "a=2&session=live", b"") is None


def test_explain_names_the_closest_recording_and_the_first_difference() -> None:
    chat = recorded("chat.jsonl", "POST", "/v1/x", body=CHAT)
    other = recorded("other.jsonl", "GET", "/v1/y", query="a=1")
    matcher = Matcher([chat, other], ignore=["messages.*.id"])
    answer = matcher.explain("POST", "/v1/x", "", CHAT.replace(b"hello", b"hi"))
    assert answer["error"] == "no recording matches POST /v1/x"
    assert answer["recorded"] == [
        {"method": "POST", "path": "/v1/x", "body": CHAT.decode()[:80]},
        {"method": "GET", "path": "/v1/y", "body": ""},
    ]
    assert answer["closest"] == "chat.jsonl"
    assert answer["differs"] == "body: messages.0.content: 'hi' != 'hello'"
    missing = matcher.explain("POST", "/v1/x", "", b'{"model":"m","messages":[]}')
    assert missing["differs"].startswith("body: messages.0: missing != {")
    assert matcher.explain("GET", "/v1/y", "a=2", b"")["differs"] == "query: a: '2' != '1'"
    assert matcher.explain("GET", "/v1/y", "", b"")["differs"] == "query: a: missing != '1'"
    assert matcher.explain("PUT", "/v1/y", "a=1", b"")["differs"] == "method: 'PUT' != 'GET'"
    assert matcher.explain("GET", "/v1/z", "a=1", b"")["closest"] == "other.jsonl"
    assert matcher.explain("GET", "/v1/z", "a=1", b"")["differs"] == "path: '/v1/z' != '/v1/y'"
    raw = Matcher([recorded("r.jsonl", "POST", "/r", body=b"abcd")])
    assert raw.explain("POST", "/r", "", b"abXd")["differs"].startswith("body: differs from byte 2")
    assert Matcher([]).explain("GET", "/", "", b"")["differs"] == "nothing is recorded"


def test_a_recording_added_later_is_found() -> None:
    matcher = Matcher([])
    assert matcher.find("GET", "/s", "", b"") is None
    late = recorded("late.jsonl", "GET", "/s")
    matcher.add(late)
    assert matcher.find("GET", "/s", "", b"") is late
