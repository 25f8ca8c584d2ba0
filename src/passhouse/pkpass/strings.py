"""`pass.strings` files: Apple's "key" = "value"; format, written as UTF-16 as Apple asks."""

from __future__ import annotations

import codecs
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "'": "'", "0": "\0"}
_TOKEN = re.compile(
    r"""\s*(?:
        /\*.*?\*/                       # block comment
      | //[^\n]*                        # line comment
      | "(?P<key>(?:[^"\\]|\\.)*)"\s*=\s*"(?P<value>(?:[^"\\]|\\.)*)"\s*;
    )""",
    re.VERBOSE | re.DOTALL,
)


class StringsError(ValueError):
    pass


def decode_strings_bytes(data: bytes) -> tuple[str, str]:
    """(text, encoding name); UTF-16 is recognised by its BOM or by NUL bytes."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    elif data.startswith(codecs.BOM_UTF8):
        encoding = "utf-8-sig"
    elif b"\x00" in data:
        encoding = "utf-16-le" if data[1:2] == b"\x00" else "utf-16-be"
    else:
        encoding = "utf-8"
    try:
        return data.decode(encoding), encoding
    except UnicodeDecodeError:
        raise StringsError(f"cannot be decoded as {encoding}") from None


def parse_strings(data: bytes) -> dict[str, str]:
    text, _ = decode_strings_bytes(data)
    entries: dict[str, str] = {}
    position = 0
    while position < len(text):
        if not text[position:].strip():
            break
        match = _TOKEN.match(text, position)
        if match is None:
            line = text.count("\n", 0, position) + 1
            raise StringsError(f'syntax error near line {line}: expected "key" = "value";')
        if match["key"] is not None:
            entries[_unescape(match["key"])] = _unescape(match["value"])
        position = match.end()
    return entries


@dataclass(frozen=True, slots=True)
class StringsFile:
    """A parsed pass.strings, shared by every pass its template renders (read-only)."""

    entries: Mapping[str, str]
    templated: bool  # some value holds a {{placeholder}}
    utf16: bytes  # the entries as Apple asks for them


@functools.lru_cache(maxsize=256)
def read_strings(data: bytes) -> StringsFile:
    """parse_strings, once per content: parsing and re-encoding was a tenth of a build.

    Raises StringsError as parse_strings does (an error is not kept).
    """
    entries = parse_strings(data)
    return StringsFile(
        entries=MappingProxyType(entries),
        templated=any("{{" in text for text in entries.values()),
        utf16=encode_strings(entries),
    )


def encode_strings(entries: Mapping[str, str]) -> bytes:
    lines = [f'"{_escape(key)}" = "{_escape(value)}";\n' for key, value in entries.items()]
    # "utf-16" writes a BOM, which is how Wallet tells the byte order.
    return "".join(lines).encode("utf-16")


def is_utf16(data: bytes) -> bool:
    return data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))


def _unescape(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        escaped = match.group(1)
        if escaped[0] in "uU":
            return chr(int(escaped[1:], 16))
        return _ESCAPES.get(escaped, escaped)

    return re.sub(r"\\([uU][0-9a-fA-F]{4}|.)", replace, text, flags=re.DOTALL)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
