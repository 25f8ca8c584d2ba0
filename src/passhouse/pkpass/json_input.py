"""Reading JSON that comes from outside (request bodies, template files, CLI input).

Python's JSON reader recurses once per nesting level and hits the interpreter's
recursion limit (a RecursionError, so a 500) near 1,000 levels; everything that later
walks the value (validation, rendering, pydantic's serializer, which stops at 255) fails
sooner. And it turns integers of more than 4,300 digits into a ValueError that suggests
`sys.set_int_max_str_digits()`. So the raw text is scanned first: nesting depth and
number lengths are checked before any parsing recursion starts. Unpaired surrogates
(`"\\ud800"`), which JSON allows and neither UTF-8 nor a database column can hold, are
refused after parsing.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

DEFAULT_MAX_DEPTH = 32
# The largest depth a deployment may configure. A value stored under any allowed limit
# stays well inside every later reader's reach (the API's own answers add three levels),
# so what was accepted once can always be read back.
MAX_DEPTH_CAP = 64
# No pass field or data value needs more; Wallet reads numbers as 64-bit values anyway.
MAX_NUMBER_DIGITS = 100

# A JSON string, or an unterminated one up to the end of the text. Every quote starts a
# match that cannot fail, so the scan stays linear whatever the input.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_LONG_NUMBER = re.compile(rf"[0-9]{{{MAX_NUMBER_DIGITS + 1},}}")
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
# A surrogate, escaped or raw: text that may hold one that is unpaired.
_SURROGATE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}|[\ud800-\udfff]")


class JsonRejected(ValueError):
    """Valid or not, the JSON breaks one of our rules; `.message` says which."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def parse_json(raw: bytes | str, *, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """json.loads within our limits.

    Raises JsonRejected for JSON nested more than `max_depth` levels (each object or
    array is one), holding a number of more than MAX_NUMBER_DIGITS digits, or a string
    with an unpaired surrogate (which no database or UTF-8 text can hold), and the usual
    UnicodeDecodeError or json.JSONDecodeError (all ValueErrors) otherwise.
    """
    if isinstance(raw, bytes | bytearray):
        # What json.loads does with bytes (UTF-8, -16 or -32), done first so the scan
        # below sees the same characters as the parser.
        raw = raw.decode(json.detect_encoding(raw), "surrogatepass")
    problem = json_limit_problem(raw, max_depth=max_depth)
    if problem is not None:
        raise JsonRejected(problem)
    value = json.loads(raw)
    if _SURROGATE.search(raw) and _holds_unpaired_surrogate(value):
        raise JsonRejected("The JSON holds an unpaired surrogate (such as \\ud800), not text.")
    return value


def json_limit_problem(text: str, *, max_depth: int) -> str | None:
    """The sentence saying which limit `text` breaks, or None."""
    # Counted over the whole text, strings included, these bound what the scan would find:
    # most bodies (a device's push token, a log line) are done here.
    if text.count("[") + text.count("{") <= max_depth and not _LONG_NUMBER.search(text):
        return None
    outside_strings = _STRING.sub('""', text)
    brackets = _NOT_BRACKET.sub("", outside_strings)
    depth = _nesting(brackets)
    if depth > max_depth:
        return f"The JSON is nested {depth} levels deep; the limit is {max_depth} levels."
    if _LONG_NUMBER.search(outside_strings):
        return (
            f"The JSON holds a number of more than {MAX_NUMBER_DIGITS} digits; "
            "send such values as strings."
        )
    return None


def _nesting(brackets: str) -> int:
    # The deepest running count of opened minus closed brackets. For the prefix the parser
    # reads before it finds a syntax error, this is exactly how deep it recurses.
    return max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0)


def _holds_unpaired_surrogate(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return True
    return False
