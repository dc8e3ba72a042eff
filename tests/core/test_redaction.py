"""Secrets never reach a recording: the headers and query parameters that carry one are
``***`` (issue 24), and tail's URL redaction works on as before (tests/client/)."""

from __future__ import annotations

from sseplay.redaction import (
    REDACTED,
    SECRET_HEADERS,
    SECRET_QUERY,
    redact_headers,
    redact_query,
    redact_url,
)


def test_secret_headers_are_redacted_in_any_case() -> None:
    headers = [
        ("Authorization", "Bearer sk-1"),
        ("PROXY-AUTHORIZATION", "Basic x"),
        ("Cookie", "a=b"),
        ("Set-Cookie", "s=1"),
        ("X-Api-Key", "k"),
        ("api-key", "k"),
        ("Content-Type", "application/json"),
        ("X-Custom-Token", "t"),
    ]
    assert redact_headers(headers) == (
        ("authorization", REDACTED),
        ("proxy-authorization", REDACTED),
        ("cookie", REDACTED),
        ("set-cookie", REDACTED),
        ("x-api-key", REDACTED),
        ("api-key", REDACTED),
        ("content-type", "application/json"),
        ("x-custom-token", "t"),
    )
    assert redact_headers(headers, ["x-CUSTOM-token"])[-1] == ("x-custom-token", REDACTED)
    assert {"authorization", "set-cookie", "x-api-key"} <= SECRET_HEADERS


def test_secret_query_values_are_redacted_and_the_rest_kept_byte_for_byte() -> None:
    assert redact_query("a=1&key=s1&API_KEY=s2&Token=s3&access_token=s4&b=%20x+y") == (
        "a=1&key=***&API_KEY=***&Token=***&access_token=***&b=%20x+y"
    )
    assert redact_query("session=abc&x=1", extra=["SESSION"]) == "session=***&x=1"
    assert redact_query("ke%79=s") == "ke%79=***", "names are compared percent-decoded"
    assert redact_query("") == ""
    assert redact_query("key") == "key"
    assert {"key", "api_key", "token", "access_token"} <= SECRET_QUERY


def test_urls_are_redacted_as_before() -> None:
    assert redact_url("https://u:p@h/s?token=t&a=1") == "https://u:***@h/s?token=***&a=1"
