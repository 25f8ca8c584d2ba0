"""parse_json: the one reader for JSON from outside, bounded before any recursion."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from passhouse.pkpass.json_input import JsonRejected, parse_json

ACCEPTED: list[tuple[bytes | str, Any]] = [
    (b'{"a": [1, {"b": 2}]}', {"a": [1, {"b": 2}]}),
    ("[" * 32 + "]" * 32, json.loads("[" * 32 + "]" * 32)),
    # Brackets and quotes inside strings are text, not nesting.
    (json.dumps({"s": "[" * 100 + '"\\'}), {"s": "[" * 100 + '"\\'}),
    (json.dumps({"k" * 5: "{" * 1000}), {"kkkkk": "{" * 1000}),
    ('{"id": "' + "9" * 5_000 + '"}', {"id": "9" * 5_000}),  # long digits in a string
    (json.dumps({"big": int("9" * 100)}), {"big": int("9" * 100)}),
    ('{"x": "[["}'.encode("utf-16"), {"x": "[["}),  # bytes in UTF-16, as json.loads reads
    ('["\\ud83c\\udfab"]', ["🎫"]),  # a surrogate pair, as ensure_ascii writes it
    ('["\\\\ud800"]', ["\\ud800"]),  # an escaped backslash, then text
]
REJECTED: list[tuple[str | bytes, str]] = [
    ("[" * 33 + "]" * 33, "nested 33 levels deep; the limit is 32"),
    ('{"a": ' * 990 + "1" + "}" * 990, "nested 990 levels deep"),
    ("[" * 100_000, "nested 100000 levels deep"),  # never closed: still not parsed
    ('"x"' + "[" * 40, "the limit is 32"),  # after a string
    (json.dumps({"n": 1}).replace("1", "9" * 101), "more than 100 digits"),
    ("[-" + "1" * 5_000 + "]", "more than 100 digits"),
    ("[1." + "0" * 5_000 + "]", "more than 100 digits"),
    ('{"name": "a\\ud800b"}', "unpaired surrogate"),
    ('["\\udc00\\ud800"]', "unpaired surrogate"),  # low then high is no pair
    ('["\ud800"]'.encode("utf-8", "surrogatepass"), "unpaired surrogate"),
]
INVALID = [b"", b"{", b'"unterminated [[[', b"\xff\xfe\xff", b'{"a": 1} x']


@pytest.mark.parametrize(("raw", "expected"), ACCEPTED)
def test_json_within_the_limits_reads_like_json_loads(raw: bytes | str, expected: Any) -> None:
    assert parse_json(raw) == expected


@pytest.mark.parametrize(("raw", "words"), REJECTED)
def test_json_past_a_limit_is_rejected_naming_it(raw: str | bytes, words: str) -> None:
    with pytest.raises(JsonRejected) as caught:
        parse_json(raw)

    assert words in caught.value.message
    assert "int_max_str_digits" not in caught.value.message


@pytest.mark.parametrize("raw", INVALID)
def test_invalid_json_is_a_value_error(raw: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - JSONDecodeError or UnicodeDecodeError
        parse_json(raw)


def test_the_depth_is_a_parameter() -> None:
    assert parse_json("[[[1]]]", max_depth=3) == [[[1]]]
    with pytest.raises(JsonRejected):
        parse_json("[[[[1]]]]", max_depth=3)


def test_the_scan_stays_linear_on_quote_heavy_text() -> None:
    # Each escaped quote could restart a naive string match from its position (quadratic:
    # hours for this size); the scan reads the text once.
    raw = '"' + '\\"' * 500_000 + "[" * 40

    started = time.monotonic()
    with pytest.raises(ValueError):  # noqa: PT011 - an unterminated string
        parse_json(raw)

    assert time.monotonic() - started < 10
