"""The front and back of a pass, laid out the way Wallet lays out each of the five styles.

Everything from the pass is escaped; colours are re-written from their parsed numbers, and
images are the pass's own PNGs as data: URLs, so nothing in a pass can add markup, CSS or a
request to the page that shows it. It is an approximation and says so.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from passhouse.pkpass.images import PNG_SIGNATURE
from passhouse.pkpass.pass_json import STYLE_KEYS, is_w3c_date
from passhouse.pkpass.strings import StringsError, parse_strings
from passhouse.preview import barcodes
from passhouse.preview.values import format_value

LANGUAGES = ("en", "de", "fr", "es")
_RGB = re.compile(r"^rgb\(\s*(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})\s*\)$")
_LINK = re.compile(r"(https?://[^\s<>\"']+|mailto:[^\s<>\"']+|tel:[+\d][\d\s().-]*\d)")
_ANCHOR = re.compile(r"<a\s+href=[\"']([^\"']*)[\"']\s*>(.*?)</a>", re.IGNORECASE | re.DOTALL)
_TRANSIT = {
    "PKTransitTypeAir": "air",
    "PKTransitTypeBoat": "boat",
    "PKTransitTypeBus": "bus",
    "PKTransitTypeTrain": "train",
    "PKTransitTypeGeneric": "generic",
}
# The links Wallet puts on the back of poster event tickets and boarding passes.
_URL_KEYS = {
    "accessibilityURL": "Accessibility",
    "addOnURL": "Add-ons",
    "bagPolicyURL": "Bag policy",
    "contactVenueEmail": "Email the venue",
    "contactVenuePhoneNumber": "Call the venue",
    "contactVenueWebsite": "Venue website",
    "directionsInformationURL": "Directions",
    "merchandiseURL": "Merchandise",
    "orderFoodURL": "Order food",
    "parkingInformationURL": "Parking",
    "purchaseParkingURL": "Buy parking",
    "sellURL": "Sell",
    "transferURL": "Transfer",
    "transitInformationURL": "Public transport",
    "changeSeatURL": "Change seat",
    "entertainmentURL": "Entertainment",
    "purchaseAdditionalBaggageURL": "Add baggage",
    "purchaseLoungeAccessURL": "Lounge access",
    "purchaseWifiURL": "Wi-Fi",
    "upgradeURL": "Upgrade",
    "managementURL": "Manage booking",
    "registerServiceAnimalURL": "Service animal",
    "reportLostBagURL": "Report a lost bag",
    "requestWheelchairURL": "Wheelchair",
    "trackBagsURL": "Track bags",
    "transitProviderEmail": "Email the carrier",
    "transitProviderPhoneNumber": "Call the carrier",
    "transitProviderWebsiteURL": "Carrier website",
}
_NOTE = {
    "en": "Preview: an approximation of how Wallet shows this pass. The phone's own drawing "
    "differs in fonts, spacing and what fits.",
    "de": "Vorschau: eine Annäherung daran, wie Wallet diesen Pass zeigt. Auf dem Telefon "
    "weichen Schrift, Abstände und Platz ab.",
    "fr": "Aperçu : une approximation de l'affichage de ce pass dans Wallet. Sur le téléphone, "
    "polices, espacements et place disponible diffèrent.",
    "es": "Vista previa: una aproximación de cómo Wallet muestra este pase. En el teléfono "
    "cambian la tipografía, los espacios y lo que cabe.",
}
_WORDS = {
    "en": {"back": "Back of the pass", "void": "Void", "expired": "Expired", "front": "Front"},
    "de": {
        "back": "Rückseite",
        "void": "Ungültig",
        "expired": "Abgelaufen",
        "front": "Vorderseite",
    },
    "fr": {"back": "Verso du pass", "void": "Annulé", "expired": "Expiré", "front": "Recto"},
    "es": {
        "back": "Reverso del pase",
        "void": "Anulado",
        "expired": "Caducado",
        "front": "Anverso",
    },
}


@dataclass(slots=True)
class Preview:
    """An HTML fragment (one <article>) and the CSS it needs, for a page to embed."""

    html: str
    css: str
    style: str | None
    problems: list[str] = field(default_factory=list)  # what could not be drawn, and why

    def document(self, *, title: str = "Pass preview", language: str = "en") -> str:
        """A standalone page holding only this preview (for an iframe's srcdoc)."""
        return (
            f'<!doctype html><html lang="{html.escape(language)}"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title><style>{self.css}</style></head>"
            f'<body class="pkp-page">{self.html}</body></html>'
        )


def base_css() -> str:
    return resources.files("passhouse.preview").joinpath("preview.css").read_text("utf-8")


def render_preview(
    pass_json: Mapping[str, Any],
    assets: Mapping[str, bytes],
    *,
    language: str = "en",
    now: dt.datetime | None = None,
) -> Preview:
    """The preview of a rendered pass.json (placeholders already filled) with its files."""
    language = language if language in LANGUAGES else "en"
    return _Renderer(pass_json, assets, language, now or dt.datetime.now(dt.UTC)).render()


def color(value: Any) -> str | None:
    """A pass colour as CSS, rebuilt from its numbers; None unless it is rgb(r, g, b)."""
    match = _RGB.match(value) if isinstance(value, str) else None
    if match is None or any(int(part) > 255 for part in match.groups()):
        return None
    return "rgb({}, {}, {})".format(*(int(part) for part in match.groups()))


class _Renderer:
    def __init__(
        self,
        pass_json: Mapping[str, Any],
        assets: Mapping[str, bytes],
        language: str,
        now: dt.datetime,
    ) -> None:
        self.pass_json = pass_json
        self.assets = assets
        self.language = language
        self.now = now
        self.problems: list[str] = []
        self.strings = self._strings()
        styles = [key for key in STYLE_KEYS if isinstance(pass_json.get(key), Mapping)]
        self.style = styles[0] if styles else None
        self.structure: Mapping[str, Any] = pass_json.get(self.style, {}) if self.style else {}

    # --- inputs ---------------------------------------------------------------------------

    def _strings(self) -> dict[str, str]:
        """The pass.strings of the viewer's language, else English, else none."""
        for folder in (self.language, "en"):
            raw = self.assets.get(f"{folder}.lproj/pass.strings")
            if raw is not None:
                try:
                    return parse_strings(raw)
                except StringsError:
                    return {}
        return {}

    def text(self, value: Any) -> str:
        if isinstance(value, str):
            return self.strings.get(value, value)
        return "" if value is None else str(value)

    def image(self, base: str) -> str | None:
        """A data: URL of the sharpest variant of an image (localized first), or None."""
        for prefix in (f"{self.language}.lproj/", "en.lproj/", ""):
            for scale in ("@2x", "@3x", ""):
                data = self.assets.get(f"{prefix}{base}{scale}.png")
                if data is not None and data.startswith(PNG_SIGNATURE):
                    return "data:image/png;base64," + base64.b64encode(data).decode()
        return None

    def fields(self, group: str) -> list[Mapping[str, Any]]:
        value = self.structure.get(group)
        if not isinstance(value, list):
            return []
        return [item for item in value if isinstance(item, Mapping)]

    @property
    def poster(self) -> bool:
        schemes = self.pass_json.get("preferredStyleSchemes")
        return (
            self.style == "eventTicket"
            and isinstance(schemes, list)
            and "posterEventTicket" in schemes
        )

    # --- output ---------------------------------------------------------------------------

    def render(self) -> Preview:
        words = _WORDS[self.language]
        description = self.text(self.pass_json.get("description")) or "Pass"
        layout = "poster" if self.poster else (self.style or "unknown")
        if self.style is None:
            self.problems.append("pass.json has no style key, so there is no layout to draw")
        state = self._state(words)
        body = [
            f'<article class="pkp pkp-{layout}" lang="{self.language}" '
            f'aria-label="{html.escape(description)}">',
            f'<div class="pkp-front" role="group" aria-label="{words["front"]}">',
            self._backdrop(),
            self._header(),
            self._primary(),
            self._rows(),
            self._footer(),
            self._barcode(),
            state,
            "</div>",
            self._back(words),
            f'<p class="pkp-note">{html.escape(_NOTE[self.language])}</p>',
            "</article>",
        ]
        return Preview("".join(body), base_css() + self._colors(), self.style, self.problems)

    def _colors(self) -> str:
        background = color(self.pass_json.get("backgroundColor")) or "rgb(255, 255, 255)"
        foreground = color(self.pass_json.get("foregroundColor")) or "rgb(0, 0, 0)"
        label = color(self.pass_json.get("labelColor")) or foreground
        footer = color(self.pass_json.get("footerBackgroundColor")) or background
        return (
            f".pkp{{--pkp-bg:{background};--pkp-fg:{foreground};--pkp-label:{label};"
            f"--pkp-footer-bg:{footer}}}"
        )

    def _state(self, words: Mapping[str, str]) -> str:
        if self.pass_json.get("voided") is True:
            return f'<p class="pkp-state">{words["void"]}</p>'
        expires = self.pass_json.get("expirationDate")
        if isinstance(expires, str) and is_w3c_date(expires):
            moment = dt.datetime.fromisoformat(expires.replace("Z", "+00:00"))
            if moment <= self.now:
                return f'<p class="pkp-state">{words["expired"]}</p>'
        return ""

    def _img(self, base: str, css_class: str, alt: str = "") -> str:
        url = self.image(base)
        if url is None:
            return ""
        return f'<img class="{css_class}" src="{url}" alt="{html.escape(alt)}">'

    def _backdrop(self) -> str:
        if self.style != "eventTicket" or self.image("strip"):
            return ""
        # Wallet blurs an event ticket's background image behind its fields; a poster
        # ticket shows its artwork as it is.
        css_class = "pkp-poster-art" if self.poster else "pkp-background"
        return self._img("background", css_class)

    def _header(self) -> str:
        organization = self.text(self.pass_json.get("organizationName"))
        logo = self._img("logo", "pkp-logo", organization)
        logo_text_key = "eventLogoText" if self.poster else "logoText"
        logo_text = self.pass_json.get(logo_text_key) or (
            self.pass_json.get("logoText") if self.poster else None
        )
        text = (
            f'<span class="pkp-logo-text">{html.escape(self.text(logo_text))}</span>'
            if logo_text
            else ""
        )
        fields = "".join(self._field(f, "header") for f in self.fields("headerFields"))
        return (
            f'<div class="pkp-header">{logo}{text}'
            f'<div class="pkp-header-fields">{fields}</div></div>'
        )

    def _primary(self) -> str:
        primary = self.fields("primaryFields")
        if self.style == "boardingPass":
            transit = _TRANSIT.get(str(self.structure.get("transitType")), "generic")
            icon = (
                f'<span class="pkp-transit pkp-transit-{transit}" role="img" '
                f'aria-label="{transit}">{_TRANSIT_ICONS[transit]}</span>'
            )
            parts = [self._field(primary[0], "primary")] if primary else []
            parts.append(icon)
            parts.extend(self._field(f, "primary pkp-align-right") for f in primary[1:2])
            return f'<div class="pkp-primary pkp-route">{"".join(parts)}</div>'
        strip = "" if self.poster else self._img("strip", "pkp-strip")
        thumbnail = ""
        if self.style in ("generic", "eventTicket") and not strip and not self.poster:
            thumbnail = self._img("thumbnail", "pkp-thumbnail")
        fields = "".join(self._field(f, "primary") for f in primary[:1])
        with_strip = " pkp-on-strip" if strip else ""
        return (
            f'<div class="pkp-primary{with_strip}">{strip}'
            f'<div class="pkp-primary-fields">{fields}</div>{thumbnail}</div>'
        )

    def _rows(self) -> str:
        secondary = self.fields("secondaryFields")
        auxiliary = self.fields("auxiliaryFields")
        if self.style in ("coupon", "storeCard") or (
            self.style == "generic" and self._square_barcode()
        ):
            # One row of at most four: secondary and auxiliary share it.
            both = (secondary + auxiliary)[:4]
            return self._row("secondary", both)
        rows = [self._row("secondary", secondary[:4])]
        if self.style == "boardingPass":
            rows.insert(0, self._row("auxiliary", auxiliary[:5]))
        else:
            rows.append(self._row("auxiliary", auxiliary[:4]))
        return "".join(rows)

    def _row(self, group: str, fields: list[Mapping[str, Any]]) -> str:
        if not fields:
            return ""
        cells = "".join(self._field(f, group) for f in fields)
        return f'<div class="pkp-row pkp-{group}">{cells}</div>'

    def _field(self, content: Mapping[str, Any], group: str) -> str:
        label = self.text(content.get("label"))
        value = format_value(content, self._value(content), self.language, self.now)
        align = {
            "PKTextAlignmentLeft": " pkp-align-left",
            "PKTextAlignmentCenter": " pkp-align-center",
            "PKTextAlignmentRight": " pkp-align-right",
        }.get(str(content.get("textAlignment")), "")
        key = html.escape(str(content.get("key", "")))
        return (
            f'<div class="pkp-field pkp-f-{group}{align}" data-key="{key}">'
            f'<span class="pkp-label">{html.escape(label)}</span>'
            f'<span class="pkp-value">{html.escape(value)}</span></div>'
        )

    def _value(self, content: Mapping[str, Any]) -> Any:
        value = content.get("value")
        return self.text(value) if isinstance(value, str) else value

    def _footer(self) -> str:
        if self.style != "boardingPass":
            return ""
        return self._img("footer", "pkp-footer")

    def _barcodes(self) -> list[Mapping[str, Any]]:
        listed = self.pass_json.get("barcodes")
        if isinstance(listed, list):
            return [item for item in listed if isinstance(item, Mapping)]
        single = self.pass_json.get("barcode")
        return [single] if isinstance(single, Mapping) else []

    def _square_barcode(self) -> bool:
        found = self._barcodes()
        return bool(found) and str(found[0].get("format")) in barcodes.SQUARE

    def _barcode(self) -> str:
        found = self._barcodes()
        if not found:
            return ""
        # Wallet shows the first barcode of the list that the device supports.
        code = found[0]
        format_name = str(code.get("format", ""))
        message = code.get("message")
        if not isinstance(message, str):
            self.problems.append("barcodes[0].message: not a string, so no barcode is drawn")
            return ""
        kind = format_name.removeprefix("PKBarcodeFormat")
        drawn = barcodes.draw(
            format_name, message, str(code.get("messageEncoding", "iso-8859-1")), f"{kind} code"
        )
        if drawn.svg is None:
            self.problems.append(f"barcodes[0]: {drawn.problem}")
            return ""
        shape = (
            "square"
            if format_name in barcodes.SQUARE
            else ("linear" if format_name in barcodes.LINEAR else "wide")
        )
        alt = code.get("altText")
        alt_html = (
            f'<span class="pkp-alt">{html.escape(self.text(alt))}</span>'
            if isinstance(alt, str) and alt
            else ""
        )
        return (
            f'<div class="pkp-barcode pkp-barcode-{shape}" data-format="{html.escape(kind)}" '
            f'data-message="{html.escape(message)}">{drawn.svg}{alt_html}</div>'
        )

    def _back(self, words: Mapping[str, str]) -> str:
        items = []
        for content in self.fields("backFields") + (
            self.fields("additionalInfoFields") if self.poster else []
        ):
            label = html.escape(self.text(content.get("label")))
            attributed = content.get("attributedValue")
            if isinstance(attributed, str):
                value_html = _attributed(self.text(attributed))
            else:
                text = format_value(content, self._value(content), self.language, self.now)
                value_html = _linked(text) if _detects_links(content) else html.escape(text)
            key = html.escape(str(content.get("key", "")))
            items.append(
                f'<div class="pkp-back-field" data-key="{key}"><dt>{label}</dt>'
                f"<dd>{value_html}</dd></div>"
            )
        links = []
        for key, name in _URL_KEYS.items():
            target = self.pass_json.get(key)
            if isinstance(target, str) and target:
                href = _safe_href(_href_for(key, target))
                if href:
                    links.append(f'<li><a href="{html.escape(href)}">{html.escape(name)}</a></li>')
        if not items and not links:
            return ""
        fields_html = f'<dl class="pkp-back-fields">{"".join(items)}</dl>' if items else ""
        links_html = f'<ul class="pkp-links">{"".join(links)}</ul>' if links else ""
        return (
            f'<section class="pkp-back" aria-label="{words["back"]}">'
            f'<h3 class="pkp-back-title">{words["back"]}</h3>{fields_html}{links_html}</section>'
        )


def _detects_links(content: Mapping[str, Any]) -> bool:
    detectors = content.get("dataDetectorTypes")
    # Wallet detects everything unless the list is given; an empty list turns it off.
    return not isinstance(detectors, list) or bool(detectors)


def _href_for(key: str, value: str) -> str:
    if key.endswith("Email") and not value.startswith("mailto:"):
        return f"mailto:{value}"
    if key.endswith("PhoneNumber") and not value.startswith("tel:"):
        return f"tel:{value}"
    return value


def _safe_href(url: str) -> str | None:
    """Only web, mail and phone links; never javascript:, data: or relative ones."""
    return url if re.match(r"^(https?://|mailto:|tel:)", url, re.IGNORECASE) else None


def _linked(text: str) -> str:
    """Escaped text with its web, mail and phone links made clickable."""
    out, last = [], 0
    for match in _LINK.finditer(text):
        out.append(html.escape(text[last : match.start()]))
        url = match[0]
        out.append(f'<a href="{html.escape(url)}" rel="noopener noreferrer">{html.escape(url)}</a>')
        last = match.end()
    out.append(html.escape(text[last:]))
    return "".join(out).replace("\n", "<br>")


def _attributed(text: str) -> str:
    """attributedValue: Wallet supports <a href> alone; everything else is shown as text."""
    out, last = [], 0
    for match in _ANCHOR.finditer(text):
        out.append(html.escape(text[last : match.start()]))
        href = _safe_href(match[1])
        inner = html.escape(re.sub(r"<[^>]*>", "", match[2]))
        if href:
            out.append(f'<a href="{html.escape(href)}" rel="noopener noreferrer">{inner}</a>')
        else:
            out.append(inner)
        last = match.end()
    out.append(html.escape(text[last:]))
    return "".join(out).replace("\n", "<br>")


# Simple glyphs in the style of Wallet's transit icons (drawn here, 24 x 24).
def _icon(path: str) -> str:
    return (
        '<svg viewBox="0 0 24 24" width="28" height="28" aria-hidden="true" '
        f'focusable="false"><path fill="currentColor" d="{path}"/></svg>'
    )


_TRANSIT_ICONS = {
    "air": _icon(
        "M21 16v-2l-8-5V3.5a1.5 1.5 0 0 0-3 0V9l-8 5v2l8-2.5V19l-2 1.5V22l3.5-1 3.5 1v-1.5"
        "L13 19v-5.5z"
    ),
    "boat": _icon(
        "M4 15l1.5-6H11V5h2v4h5.5L20 15c-1 0-2 .6-2.7 1.3C16.6 15.6 15.6 15 14.5 15s-2.1.6"
        "-2.5 1.3C11.6 15.6 10.6 15 9.5 15s-2.1.6-2.8 1.3C6 15.6 5 15 4 15zm0 3c1 0 2-.5 2.7"
        "-1.2.7.7 1.7 1.2 2.8 1.2s2.1-.5 2.5-1.2c.4.7 1.4 1.2 2.5 1.2s2.1-.5 2.8-1.2c.7.7 1.7"
        " 1.2 2.7 1.2v2c-1 0-2-.4-2.7-1-.7.6-1.7 1-2.8 1s-2-.4-2.5-1c-.5.6-1.4 1-2.5 1s-2.1-"
        ".4-2.8-1c-.7.6-1.7 1-2.7 1z"
    ),
    "bus": _icon(
        "M6 3h12a2 2 0 0 1 2 2v11a2 2 0 0 1-1 1.7V20h-3v-2H8v2H5v-2.3A2 2 0 0 1 4 16V5a2 2 "
        "0 0 1 2-2zm0 3v5h12V6zm1.5 7a1.5 1.5 0 1 0 0 3 1.5 1.5 0 0 0 0-3zm9 0a1.5 1.5 0 1 "
        "0 0 3 1.5 1.5 0 0 0 0-3z"
    ),
    "train": _icon(
        "M7 2h10a3 3 0 0 1 3 3v10a3 3 0 0 1-2.2 2.9L20 21h-2.5l-2-3h-7l-2 3H4l2.2-3.1A3 3 0"
        " 0 1 4 15V5a3 3 0 0 1 3-3zm-1 4v4h12V6zm2 7a1.5 1.5 0 1 0 0 3 1.5 1.5 0 0 0 0-3zm8 "
        "0a1.5 1.5 0 1 0 0 3 1.5 1.5 0 0 0 0-3z"
    ),
    "generic": _icon("M3 11h14.2l-4.6-4.6L14 5l7 7-7 7-1.4-1.4 4.6-4.6H3z"),
}
