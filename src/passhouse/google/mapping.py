"""The derived mapping: a Google class and object from an Apple pass.json.

Used when a template opts in to Google Wallet without giving `class` or `object`. Every
Apple key that has no Google counterpart is named in a warning. The table in the README
("Google Wallet", "What is carried over") documents the same mapping.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Apple style -> Google type (Google's own pkpass converter maps them so).
STYLE_TYPES = {
    "storeCard": "loyalty",
    "coupon": "offer",
    "eventTicket": "eventTicket",
    "generic": "generic",
    "boardingPass": "generic",  # flight and transit need itinerary data pass.json lacks
}
BARCODE_TYPES = {
    "PKBarcodeFormatQR": "QR_CODE",
    "PKBarcodeFormatPDF417": "PDF_417",
    "PKBarcodeFormatAztec": "AZTEC",
    "PKBarcodeFormatCode128": "CODE_128",
}
FIELD_GROUPS = (
    "headerFields",
    "primaryFields",
    "secondaryFields",
    "auxiliaryFields",
    "backFields",
    "additionalInfoFields",
)
MAX_TEXT_MODULES = 10  # Google shows at most 10 from the class and 10 from the object
MAX_LOCATIONS = 10
# Apple keys that have no Google counterpart, reported once each when present.
_NOT_CARRIED = (
    "beacons",
    "nfc",
    "foregroundColor",
    "labelColor",
    "associatedStoreIdentifiers",
    "appLaunchURL",
    "userInfo",
    "sharingProhibited",
)
_RGB = re.compile(r"rgb\(\s*(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})\s*\)")


def localized(value: str, language: str = "en") -> dict[str, Any]:
    return {"defaultValue": {"language": language, "value": value}}


def image(uri: str, description: str | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {"sourceUri": {"uri": uri}}
    if description:
        result["contentDescription"] = localized(description)
    return result


def hex_color(apple_color: Any) -> str | None:
    """Apple's rgb(r, g, b) as Google's #rrggbb; None if it is not one."""
    match = _RGB.fullmatch(apple_color.strip()) if isinstance(apple_color, str) else None
    if match is None:
        return None
    parts = [int(part) for part in match.groups()]
    if any(part > 255 for part in parts):
        return None
    return "#" + "".join(f"{part:02x}" for part in parts)


def style_of(pass_json: Mapping[str, Any]) -> str | None:
    styles = [style for style in STYLE_TYPES if isinstance(pass_json.get(style), Mapping)]
    return styles[0] if len(styles) == 1 else None


def derived_type(pass_json: Mapping[str, Any]) -> str:
    style = style_of(pass_json)
    return STYLE_TYPES.get(style or "generic", "generic")


def parse_w3c(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def state_of(pass_json: Mapping[str, Any], *, voided: bool, now: dt.datetime) -> str:
    """ACTIVE, INACTIVE (voided) or EXPIRED (expirationDate passed)."""
    if voided or pass_json.get("voided") is True:
        return "INACTIVE"
    expires = parse_w3c(pass_json.get("expirationDate"))
    if expires is not None and expires <= now:
        return "EXPIRED"
    return "ACTIVE"


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _field_label(apple_field: Mapping[str, Any]) -> str:
    label = apple_field.get("label")
    return _text(label) if label not in (None, "") else _text(apple_field.get("key", ""))


@dataclass(slots=True)
class Derived:
    """What the mapping made, and what it could not carry over."""

    google_class: dict[str, Any] = field(default_factory=dict)
    google_object: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def fields_of(pass_json: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(group, field) for every field of the pass's style, in display order."""
    style = style_of(pass_json)
    structure = pass_json.get(style) if style else None
    found: list[tuple[str, Mapping[str, Any]]] = []
    if not isinstance(structure, Mapping):
        return found
    for group in FIELD_GROUPS:
        for item in structure.get(group) or ():
            if isinstance(item, Mapping) and "key" in item:
                found.append((group, item))
    return found


def derive_object(
    pass_json: Mapping[str, Any],
    google_type: str,
    images: Mapping[str, str],
    *,
    voided: bool,
    now: dt.datetime,
) -> Derived:
    """The object half of the mapping, from one pass's rendered pass.json.

    `images` maps Apple image names (logo, strip, thumbnail, icon) to public URLs.
    """
    derived = Derived()
    obj = derived.google_object
    warn = derived.warnings
    obj["state"] = state_of(pass_json, voided=voided, now=now)
    fields = fields_of(pass_json)
    primary = next((f for group, f in fields if group == "primaryFields"), None)
    rest = [(group, f) for group, f in fields if f is not primary]
    if google_type == "generic":
        obj["cardTitle"] = localized(
            _text(pass_json.get("logoText") or pass_json.get("organizationName") or "Pass")
        )
        if primary is not None:
            obj["header"] = localized(_text(primary.get("value", "")) or "-")
            if primary.get("label"):
                obj["subheader"] = localized(_text(primary["label"]))
        else:
            obj["header"] = localized(_text(pass_json.get("description") or "Pass"))
        color = hex_color(pass_json.get("backgroundColor"))
        if color:
            obj["hexBackgroundColor"] = color
        if "logo" in images:
            obj["logo"] = image(images["logo"], _text(pass_json.get("organizationName", "")))
    elif google_type == "loyalty" and primary is not None:
        obj["loyaltyPoints"] = {
            "label": _field_label(primary),
            "balance": {"string": _text(primary.get("value", ""))},
        }
    elif google_type == "giftCard":
        obj["cardNumber"] = _text(
            (_barcode_of(pass_json) or {}).get("message") or pass_json.get("serialNumber", "")
        )
        if primary is not None:
            rest.insert(0, ("primaryFields", primary))
    elif google_type == "eventTicket":
        color = hex_color(pass_json.get("backgroundColor"))
        if color:
            obj["hexBackgroundColor"] = color
        if primary is not None:
            rest.insert(0, ("primaryFields", primary))
    elif primary is not None:
        rest.insert(0, ("primaryFields", primary))
    if "strip" in images:
        obj["heroImage"] = image(images["strip"])
    modules = [
        {"id": _module_id(f), "header": _field_label(f), "body": _text(f.get("value", ""))}
        for _, f in rest
    ]
    if len(modules) > MAX_TEXT_MODULES:
        dropped = ", ".join(m["id"] for m in modules[MAX_TEXT_MODULES:])
        warn.append(
            f"pass.json: Google Wallet shows at most {MAX_TEXT_MODULES} fields; "
            f"not carried over: {dropped}"
        )
        modules = modules[:MAX_TEXT_MODULES]
    if modules:
        obj["textModulesData"] = modules
    barcode = _barcode_of(pass_json)
    if barcode is not None:
        kind = BARCODE_TYPES.get(str(barcode.get("format")))
        if kind is None:
            warn.append(f"pass.json.barcodes: format {barcode.get('format')!r} has no Google type")
        else:
            code: dict[str, Any] = {"type": kind, "value": _text(barcode.get("message", ""))}
            if barcode.get("altText"):
                code["alternateText"] = _text(barcode["altText"])
            obj["barcode"] = code
    locations = [
        {"latitude": loc["latitude"], "longitude": loc["longitude"]}
        for loc in pass_json.get("locations") or ()
        if isinstance(loc, Mapping) and "latitude" in loc and "longitude" in loc
    ]
    if len(locations) > MAX_LOCATIONS:
        warn.append(f"pass.json.locations: Google keeps the first {MAX_LOCATIONS}")
        locations = locations[:MAX_LOCATIONS]
    if locations:
        obj["merchantLocations"] = locations
    interval = _valid_time_interval(pass_json)
    if interval:
        obj["validTimeInterval"] = interval
    for key in _NOT_CARRIED:
        if key in pass_json:
            warn.append(f"pass.json.{key}: Google Wallet has no counterpart; not carried over")
    if "thumbnail" in images and google_type != "generic":
        warn.append("thumbnail.png: Google Wallet has no thumbnail; not carried over")
    return derived


def derive_class(
    pass_json: Mapping[str, Any], google_type: str, images: Mapping[str, str]
) -> Derived:
    """The class half, from the template's pass.json (shared by every pass of it).

    Values that still hold a {{placeholder}} differ per pass and cannot go on a class;
    they are left out, with a warning.
    """
    derived = Derived()
    cls = derived.google_class

    def shared(key: str) -> str | None:
        value = pass_json.get(key)
        if value is None:
            return None
        if "{{" in str(value):
            derived.warnings.append(
                f"pass.json.{key}: differs per pass; a Google class is shared by every pass, "
                "so it is not carried over"
            )
            return None
        return _text(value)

    organization = shared("organizationName")
    description = shared("description")
    logo_text = shared("logoText")
    color = hex_color(pass_json.get("backgroundColor"))
    logo = images.get("logo")
    if google_type != "generic":
        cls["reviewStatus"] = "UNDER_REVIEW"
        if organization:
            cls["issuerName"] = organization
    if google_type == "loyalty":
        cls["programName"] = logo_text or description or organization or ""
        if logo:
            cls["programLogo"] = image(logo, organization)
        if color:
            cls["hexBackgroundColor"] = color
    elif google_type == "offer":
        cls["title"] = description or logo_text or ""
        cls["provider"] = organization or ""
        cls["redemptionChannel"] = "BOTH"
        if logo:
            cls["titleImage"] = image(logo, organization)
    elif google_type == "eventTicket":
        cls["eventName"] = localized(description or logo_text or organization or "")
        if logo:
            cls["logo"] = image(logo, organization)
        if color:
            cls["hexBackgroundColor"] = color
    elif google_type == "giftCard":
        if logo:
            cls["programLogo"] = image(logo, organization)
        if color:
            cls["hexBackgroundColor"] = color
    return derived


def change_messages(pass_json: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """Field key -> (its changeMessage with %@ filled, its value), for fields that have one."""
    found = {}
    for _, f in fields_of(pass_json):
        message = f.get("changeMessage")
        if isinstance(message, str) and message:
            value = _text(f.get("value", ""))
            found[str(f["key"])] = (message.replace("%@", value), value)
    return found


def _module_id(apple_field: Mapping[str, Any]) -> str:
    # Module ids may not hold dots: Google reads them as template field paths.
    return re.sub(r"[^A-Za-z0-9_-]", "_", _text(apple_field["key"]))[:64] or "field"


def _barcode_of(pass_json: Mapping[str, Any]) -> Mapping[str, Any] | None:
    barcodes = pass_json.get("barcodes")
    if isinstance(barcodes, list) and barcodes and isinstance(barcodes[0], Mapping):
        return barcodes[0]
    barcode = pass_json.get("barcode")
    return barcode if isinstance(barcode, Mapping) else None


def _valid_time_interval(pass_json: Mapping[str, Any]) -> dict[str, Any] | None:
    """expirationDate (else the last relevantDates endDate) as the end of validity.

    No start: Apple's relevant dates say when a pass is relevant, not when it becomes
    valid, and a Google object before its start shows as not yet valid (ADR 0016).
    """
    end = parse_w3c(pass_json.get("expirationDate"))
    dates = pass_json.get("relevantDates")
    if end is None and isinstance(dates, list):
        ends = [parse_w3c(d.get("endDate")) for d in dates if isinstance(d, Mapping)]
        end = max((e for e in ends if e is not None), default=None)
    return {"end": {"date": end.isoformat()}} if end is not None else None
