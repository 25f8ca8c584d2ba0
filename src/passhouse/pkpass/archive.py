"""The .pkpass zip, written from members prepared once per file content.

Every pass of a template carries the same images: their SHA-1 (for the manifest), CRC and
compressed bytes are worked out once and kept, keyed by name and content. zipfile's
per-member overhead was a sixth of a download's CPU after a template change (docs/
benchmarks.md, "End to end"); the format written here is the plain one zipfile reads
(PKWARE APPNOTE 4.3: local headers, central directory, end record; no ZIP64: a pass is at
most 150 MB).
"""

from __future__ import annotations

import hashlib
import struct
import threading
import zlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

# 1980-01-01 00:00:00 in MS-DOS form: the same content gives the same bytes.
_DOS_TIME, _DOS_DATE = 0, (1 << 5) | 1
_UNIX_FILE = 0o100644 << 16
_UTF8_NAME = 0x800
_MADE_BY_UNIX = 3 << 8
_LOCAL = struct.Struct("<4s5H3L2H")
_CENTRAL = struct.Struct("<4s6H3L5H2L")
_END = struct.Struct("<4s4H2LH")
# Images and passes are compressed already: storing them measured 3x faster overall.
_STORED_SUFFIXES = (".png", ".pkpass", "signature")
# What the prepared members of recent passes may hold (images of a few templates at most).
_CACHE_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Member:
    """A file as it goes into the zip: its name, digests and (compressed) bytes."""

    name: bytes
    flags: int
    method: int
    crc: int
    size: int
    payload: bytes
    sha1: str


def prepare(name: str, data: bytes) -> Member:
    stored = name.endswith(_STORED_SUFFIXES)
    if stored:
        payload = data
    else:
        deflate = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
        payload = deflate.compress(data) + deflate.flush()
    encoded = name.encode()
    return Member(
        name=encoded,
        flags=0 if encoded.isascii() else _UTF8_NAME,
        method=zlib.DEFLATED * (not stored),
        crc=zlib.crc32(data),
        size=len(data),
        payload=payload,
        # Apple fixes the manifest format; SHA-1 here is not a security choice.
        sha1=hashlib.sha1(data, usedforsecurity=False).hexdigest(),
    )


class MemberCache:
    """Prepared members by (name, content), least recently used out past a byte budget.

    A template's assets are the same bytes objects for every pass it renders, and bytes
    cache their hash, so a hit costs a dict lookup.
    """

    def __init__(self, max_bytes: int = _CACHE_BYTES) -> None:
        self._members: OrderedDict[tuple[str, bytes], Member] = OrderedDict()
        self._bytes = 0
        self._max_bytes = max_bytes
        self._lock = threading.Lock()  # a pass may be built in a thread

    def __len__(self) -> int:
        return len(self._members)

    def get(self, name: str, data: bytes) -> Member:
        key = (name, data)
        with self._lock:
            member = self._members.get(key)
            if member is not None:
                self._members.move_to_end(key)
                return member
        member = prepare(name, data)
        cost = len(data) + len(member.payload)
        if cost <= self._max_bytes // 8:
            with self._lock:
                if key not in self._members:
                    self._members[key] = member
                    self._bytes += cost
                while self._bytes > self._max_bytes:
                    (_, old_data), old = self._members.popitem(last=False)
                    self._bytes -= len(old_data) + len(old.payload)
        return member


def write_zip(members: list[Member]) -> bytes:
    """The members, in the order given, as one zip archive."""
    parts: list[bytes] = []
    central: list[bytes] = []
    offset = 0
    for member in members:
        version = 20 if member.method else 10
        size = len(member.payload)
        # The fields the local header and the central directory both give, in this order.
        shared = (
            version,
            member.flags,
            member.method,
            _DOS_TIME,
            _DOS_DATE,
            member.crc,
            size,
            member.size,
            len(member.name),
        )
        header = _LOCAL.pack(b"PK\x03\x04", *shared, 0)
        parts += (header, member.name, member.payload)
        central += (
            _CENTRAL.pack(
                b"PK\x01\x02", _MADE_BY_UNIX | 20, *shared, 0, 0, 0, 0, _UNIX_FILE, offset
            ),
            member.name,
        )
        offset += len(header) + len(member.name) + size
    directory = b"".join(central)
    end = _END.pack(b"PK\x05\x06", 0, 0, len(members), len(members), len(directory), offset, 0)
    return b"".join(parts) + directory + end


def manifest_and_members(
    files: Mapping[str, bytes], cache: MemberCache, *, fresh: Mapping[str, bytes] | None = None
) -> tuple[dict[str, str], list[Member]]:
    """Each file's SHA-1 by name (the manifest's content) and its member, sorted by name.

    Files of `fresh` (content unlikely to come again) are prepared without the cache.
    """
    members = [cache.get(name, data) for name, data in files.items()]
    members += [prepare(name, data) for name, data in (fresh or {}).items()]
    members.sort(key=lambda member: member.name)  # UTF-8 sorts as the names do
    return {member.name.decode(): member.sha1 for member in members}, members
