"""PNG checks: real PNGs, readable sizes, and Apple's allotted space per image (§3.5)."""

from __future__ import annotations

import re
import struct

from passhouse.pkpass.report import Report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Allotted space in points (archived Wallet guide); images are scaled to fill, then cropped.
ALLOTTED_POINTS: dict[str, tuple[int, int]] = {
    "icon": (29, 29),
    "logo": (160, 50),
    "strip": (375, 144),
    "thumbnail": (90, 90),
    "background": (180, 220),
    "footer": (286, 15),
    "personalizationLogo": (150, 40),
}
STRIP_POINTS = {"eventTicket": (375, 98), "coupon": (375, 144), "storeCard": (375, 144)}
STYLE_IMAGES = {
    "boardingPass": {"logo", "icon", "footer"},
    "coupon": {"logo", "icon", "strip"},
    "eventTicket": {"logo", "icon", "strip", "background", "thumbnail"},
    "generic": {"logo", "icon", "thumbnail"},
    "storeCard": {"logo", "icon", "strip"},
}

_IMAGE_NAME = re.compile(
    r"^(?:(?P<lproj>[^/]+\.lproj)/)?(?P<base>[^/@]+?)(?:@(?P<scale>[23])x)?\.png$"
)


class NotPng(ValueError):
    pass


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk; NotPng when the bytes are not a PNG."""
    if not data.startswith(PNG_SIGNATURE):
        raise NotPng("is not a PNG file (wrong signature)")
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise NotPng("is a damaged PNG (no IHDR header)")
    width, height = struct.unpack(">II", data[16:24])
    if width == 0 or height == 0:
        raise NotPng("is a damaged PNG (zero width or height)")
    return width, height


def check_images(
    files: dict[str, bytes], style: str | None, *, require_icon: bool = True
) -> Report:
    """Errors for broken PNGs and a missing icon; warnings for sizes and missing variants."""
    report = Report()
    if require_icon and "icon.png" not in files:
        report.errors.append(
            "icon.png: required; Wallet shows it in notifications and on the lock screen "
            "(add a 29 x 29 px icon.png, plus icon@2x.png and icon@3x.png)"
        )
    variants: dict[tuple[str | None, str], set[int]] = {}
    for name, data in sorted(files.items()):
        if not name.lower().endswith(".png"):
            continue
        try:
            width, height = png_size(data)
        except NotPng as error:
            report.errors.append(f"{name}: {error}")
            continue
        match = _IMAGE_NAME.match(name)
        if match is None:
            continue
        base, scale = match["base"], int(match["scale"] or 1)
        variants.setdefault((match["lproj"], base), set()).add(scale)
        _check_size(name, base, scale, width, height, style, report)
        shown = STYLE_IMAGES.get(style or "", set(ALLOTTED_POINTS)) | {"personalizationLogo"}
        if base in ALLOTTED_POINTS and base not in shown:
            report.warnings.append(f"{name}: {style} passes do not show a {base} image")
    for (lproj, base), scales in sorted(variants.items(), key=lambda item: str(item[0])):
        if base not in ALLOTTED_POINTS:
            continue
        prefix = f"{lproj}/" if lproj else ""
        missing = [f"{prefix}{base}@{scale}x.png" for scale in (2, 3) if scale not in scales]
        if missing:
            report.warnings.append(
                f"{prefix}{base}.png: no {' or '.join(missing)}; Retina screens will show a "
                "blurry image"
            )
    top_level = {base for lproj, base in variants if lproj is None}
    for lproj, base in sorted(variants, key=str):
        if lproj is not None and base in top_level:
            report.warnings.append(
                f"{lproj}/{base}.png: never shown, because the top-level {base}.png overrides "
                "localized copies; remove one of them"
            )
    if style == "eventTicket":
        bases = {base for _, base in variants}
        if "strip" in bases and bases & {"background", "thumbnail"}:
            report.warnings.append(
                "strip.png: event tickets with a strip image do not show background or thumbnail"
            )
    return report


def _check_size(
    name: str, base: str, scale: int, width: int, height: int, style: str | None, report: Report
) -> None:
    points = ALLOTTED_POINTS.get(base)
    if points is None:
        return
    if base == "strip" and style in STRIP_POINTS:
        points = STRIP_POINTS[style]
    box_width, box_height = points[0] * scale, points[1] * scale
    if base == "icon" and (width, height) != (box_width, box_height):
        report.warnings.append(
            f"{name}: {width} x {height} px; Apple's space for it is {box_width} x {box_height} px"
        )
    elif width > box_width or height > box_height:
        report.warnings.append(
            f"{name}: {width} x {height} px does not fit the allotted {box_width} x "
            f"{box_height} px; it will be scaled down and cropped"
        )
