"""Tiny valid PNGs of any size, so tests need no image library."""

from __future__ import annotations

import struct
import zlib


def make_png(width: int, height: int, rgb: tuple[int, int, int] = (40, 90, 160)) -> bytes:
    row = b"\x00" + bytes(rgb) * width  # filter byte 0, then RGB pixels

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body))
            + kind
            + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height, 9))
        + chunk(b"IEND", b"")
    )


def image_set(base: str, width: int, height: int) -> dict[str, bytes]:
    """base.png, base@2x.png and base@3x.png for a size in points."""
    return {
        f"{base}{suffix}.png": make_png(width * scale, height * scale)
        for scale, suffix in ((1, ""), (2, "@2x"), (3, "@3x"))
    }


def minimal_assets() -> dict[str, bytes]:
    """The smallest image set that passes every check: icon at three scales."""
    return image_set("icon", 29, 29)
