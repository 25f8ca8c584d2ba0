"""Tiny valid PNGs of any size, so tests need no image library."""

from __future__ import annotations

from passhouse.devmode import solid_png


def make_png(width: int, height: int, rgb: tuple[int, int, int] = (40, 90, 160)) -> bytes:
    return solid_png(width, height, rgb)


def image_set(base: str, width: int, height: int) -> dict[str, bytes]:
    """base.png, base@2x.png and base@3x.png for a size in points."""
    return {
        f"{base}{suffix}.png": make_png(width * scale, height * scale)
        for scale, suffix in ((1, ""), (2, "@2x"), (3, "@3x"))
    }


def minimal_assets() -> dict[str, bytes]:
    """The smallest image set that passes every check: icon at three scales."""
    return image_set("icon", 29, 29)
