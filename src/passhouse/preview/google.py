"""The Google Wallet card of a pass, drawn from the class and object JSON passhouse sends to
Google (google/render.py), approximately as Google Wallet draws each type: the card title
(logo, issuer, title), the header, the rows of the card template, the barcode with its
alternate text and the hero image on the card; the text, info and link modules below it, as
Google's details view lists them. Pure, like the Apple preview; it says it is an
approximation.

Everything from the JSON is escaped; the colour is rebuilt from its digits; images are drawn
only when their URL is one of the template's own images (given as bytes), as data: URLs:
the preview never makes a request, and a page showing it needs no image source but data:.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import re
from collections.abc import Mapping
from importlib import resources
from typing import Any

from babel.dates import format_datetime
from babel.numbers import UnknownCurrencyError, format_currency

from passhouse.pkpass.images import PNG_SIGNATURE
from passhouse.preview import barcodes
from passhouse.preview.render import LANGUAGES, Preview

_HEX = re.compile(r"#([0-9a-fA-F]{6}|[0-9a-fA-F]{3})")
# A card template field path: object.textModulesData['id'] or class.a.b.
_PATH = re.compile(r"(object|class)((?:\.[A-Za-z0-9_]+|\[['\"][^'\"\]]{1,64}['\"]\])+)")
_PART = re.compile(r"\.([A-Za-z0-9_]+)|\[['\"]([^'\"\]]{1,64})['\"]\]")
MAX_ROWS = 3  # Google draws at most three rows on a card
MAX_MODULES = 10  # and at most ten text modules each from the class and the object

_WORDS: dict[str, dict[str, str]] = {
    "en": {
        "card": "Google Wallet card",
        "details": "Details",
        "INACTIVE": "Inactive",
        "EXPIRED": "Expired",
        "COMPLETED": "Completed",
        "note": "Preview: an approximation of how Google Wallet shows this pass, drawn from the "
        "class and object passhouse sends to Google. The phone's own drawing differs.",
        "points": "Points",
        "balance": "Balance",
        "card_number": "Card number",
        "pin": "PIN",
        "account": "Member",
        "member_id": "Member ID",
        "date": "Date",
        "venue": "Venue",
        "seat": "Seat",
        "row": "Row",
        "section": "Section",
        "gate": "Gate",
        "holder": "Ticket holder",
        "ticket": "Ticket",
        "passenger": "Passenger",
        "boarding": "Boarding",
        "group": "Group",
        "departs": "Departs",
        "valid_until": "Valid until",
        "provider": "Provider",
        "image": "Image not drawn",
    },
    "de": {
        "card": "Google Wallet-Karte",
        "details": "Details",
        "INACTIVE": "Inaktiv",
        "EXPIRED": "Abgelaufen",
        "COMPLETED": "Abgeschlossen",
        "note": "Vorschau: eine Annäherung daran, wie Google Wallet diesen Pass zeigt, aus der "
        "Klasse und dem Objekt, die passhouse an Google sendet. Auf dem Telefon sieht er "
        "anders aus.",
        "points": "Punkte",
        "balance": "Guthaben",
        "card_number": "Kartennummer",
        "pin": "PIN",
        "account": "Mitglied",
        "member_id": "Mitgliedsnummer",
        "date": "Datum",
        "venue": "Ort",
        "seat": "Platz",
        "row": "Reihe",
        "section": "Block",
        "gate": "Eingang",
        "holder": "Inhaber",
        "ticket": "Ticket",
        "passenger": "Fluggast",
        "boarding": "Boarding",
        "group": "Gruppe",
        "departs": "Abfahrt",
        "valid_until": "Gültig bis",
        "provider": "Anbieter",
        "image": "Bild nicht gezeichnet",
    },
    "fr": {
        "card": "Carte Google Wallet",
        "details": "Détails",
        "INACTIVE": "Inactif",
        "EXPIRED": "Expiré",
        "COMPLETED": "Terminé",
        "note": "Aperçu : une approximation de l'affichage de ce pass dans Google Wallet, "
        "d'après la classe et l'objet que passhouse envoie à Google. Sur le téléphone, il "
        "diffère.",
        "points": "Points",
        "balance": "Solde",
        "card_number": "Numéro de carte",
        "pin": "Code",
        "account": "Membre",
        "member_id": "N° de membre",
        "date": "Date",
        "venue": "Lieu",
        "seat": "Place",
        "row": "Rang",
        "section": "Section",
        "gate": "Porte",
        "holder": "Titulaire",
        "ticket": "Billet",
        "passenger": "Passager",
        "boarding": "Embarquement",
        "group": "Groupe",
        "departs": "Départ",
        "valid_until": "Valable jusqu'au",
        "provider": "Fournisseur",
        "image": "Image non dessinée",
    },
    "es": {
        "card": "Tarjeta de Google Wallet",
        "details": "Detalles",
        "INACTIVE": "Inactivo",
        "EXPIRED": "Caducado",
        "COMPLETED": "Completado",
        "note": "Vista previa: una aproximación de cómo Google Wallet muestra este pase, a "
        "partir de la clase y el objeto que passhouse envía a Google. En el teléfono cambia.",
        "points": "Puntos",
        "balance": "Saldo",
        "card_number": "Número de tarjeta",
        "pin": "PIN",
        "account": "Socio",
        "member_id": "N.º de socio",
        "date": "Fecha",
        "venue": "Lugar",
        "seat": "Asiento",
        "row": "Fila",
        "section": "Sección",
        "gate": "Puerta",
        "holder": "Titular",
        "ticket": "Billete",
        "passenger": "Pasajero",
        "boarding": "Embarque",
        "group": "Grupo",
        "departs": "Salida",
        "valid_until": "Válido hasta",
        "provider": "Proveedor",
        "image": "Imagen no dibujada",
    },
}


def google_css() -> str:
    return resources.files("passhouse.preview").joinpath("google.css").read_text("utf-8")


def render_google_card(
    google_type: str,
    google_class: Mapping[str, Any],
    google_object: Mapping[str, Any],
    images: Mapping[str, bytes],
    *,
    language: str = "en",
    now: dt.datetime | None = None,
) -> Preview:
    """The card of one object of one class. `images` maps image URLs (as they stand in the
    JSON) to the PNG bytes behind them; any other URL is not drawn, and said so."""
    language = language if language in LANGUAGES else "en"
    card = _Card(google_type, google_class, google_object, images, language)
    return card.render(now or dt.datetime.now(dt.UTC))


def hex_color(value: Any) -> str | None:
    """A Google colour (#rgb or #rrggbb) rebuilt from its digits; None unless it is one."""
    match = _HEX.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        return None
    digits = match[1] if len(match[1]) == 6 else "".join(c * 2 for c in match[1])
    return "#" + digits.lower()


def _foreground(background: str) -> str:
    """Google picks light or dark text for the card colour; so does the preview (WCAG)."""
    channels = [int(background[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    return "#1f1f1f" if luminance > 0.179 else "#ffffff"


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str:
    if value is None or isinstance(value, Mapping | list):
        return ""
    if isinstance(value, bool):
        return "Yes" if value else "No"
    return str(value)


class _Card:
    def __init__(
        self,
        google_type: str,
        google_class: Mapping[str, Any],
        google_object: Mapping[str, Any],
        images: Mapping[str, bytes],
        language: str,
    ) -> None:
        self.type = google_type
        self.cls = google_class
        self.obj = google_object
        self.images = images
        self.language = language
        self.words = _WORDS[language]
        self.problems: list[str] = []

    # --- reading the JSON -----------------------------------------------------------------

    def localized(self, value: Any) -> str:
        """A LocalizedString in the viewer's language (else its default), or a plain string."""
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, Mapping):
            return ""
        for item in _list(value.get("translatedValues")):
            if isinstance(item, Mapping) and str(item.get("language", "")).split("-")[0] == (
                self.language
            ):
                return _str(item.get("value"))
        default = value.get("defaultValue")
        return _str(default.get("value")) if isinstance(default, Mapping) else ""

    def pick(self, *candidates: tuple[Mapping[str, Any], str]) -> str:
        """The first non-empty of (section, key), plain or localized."""
        for section, key in candidates:
            text = self.localized(section.get(key))
            if text:
                return text
        return ""

    def both(self, key: str) -> Any:
        """An object's value, else its class's (Google's own precedence for shared keys)."""
        value = self.obj.get(key)
        return value if value not in (None, "", [], {}) else self.cls.get(key)

    def money(self, value: Any) -> str:
        if not isinstance(value, Mapping):
            return ""
        try:
            micros = int(value.get("micros", 0))
            amount = micros / 1_000_000
        except (TypeError, ValueError, OverflowError):
            return ""
        currency = _str(value.get("currencyCode"))
        try:
            return format_currency(amount, currency, locale=self.language)
        except (UnknownCurrencyError, ValueError):
            return f"{amount:.2f} {currency}".strip()

    def when(self, value: Any) -> str:
        text = _str(value)
        try:
            moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return text
        # Shown in the offset written in the JSON (Wallet uses the venue's or the phone's).
        return format_datetime(moment, "medium", tzinfo=moment.tzinfo, locale=self.language)

    def image(self, value: Any, css_class: str, alt: str = "") -> str:
        if not isinstance(value, Mapping):
            return ""
        source = value.get("sourceUri")
        uri = _str(source.get("uri")) if isinstance(source, Mapping) else ""
        if not uri:
            return ""
        described = self.localized(value.get("contentDescription")) or alt
        data = self.images.get(uri)
        if data is None or not data.startswith(PNG_SIGNATURE):
            self.problems.append(
                f"image {uri}: not one of the template's images, so the preview does not "
                "fetch it (Google will)"
            )
            return (
                f'<span class="{css_class} gwc-missing" role="img" '
                f'aria-label="{html.escape(described or self.words["image"])}"></span>'
            )
        url = "data:image/png;base64," + base64.b64encode(data).decode()
        return f'<img class="{css_class}" src="{url}" alt="{html.escape(described)}">'

    def path_value(self, path: str) -> tuple[str, str]:
        """(label, value) of a card template field path; ("", "") when it names nothing."""
        match = _PATH.fullmatch(path.strip())
        if match is None:
            return "", ""
        current: Any = self.obj if match[1] == "object" else self.cls
        parts = [(m[1], m[2]) for m in _PART.finditer(match[2])]
        label = ""
        for key, module_id in parts:
            if module_id is not None:
                found = (
                    next(
                        (
                            m
                            for m in _list(current)
                            if isinstance(m, Mapping) and m.get("id") == module_id
                        ),
                        None,
                    )
                    if isinstance(current, list)
                    else None
                )
                if found is None:
                    return "", ""
                if "body" in found or "header" in found or "localizedBody" in found:
                    label = self.localized(found.get("header")) or self.localized(
                        found.get("localizedHeader")
                    )
                    value = self.localized(found.get("body")) or self.localized(
                        found.get("localizedBody")
                    )
                    return label, value
                current = found
            else:
                current = current.get(key) if isinstance(current, Mapping) else None
                label = re.sub(r"(?<!^)(?=[A-Z])", " ", key).capitalize()
        if isinstance(current, Mapping) and "micros" in current:
            return label, self.money(current)
        return label, self.localized(current)

    # --- the card -------------------------------------------------------------------------

    def title_parts(self) -> tuple[Any, str, str]:
        """(logo image, issuer line, title) of the card title, per type."""
        c, o = self.cls, self.obj
        if self.type == "generic":
            return o.get("logo"), self.pick((o, "cardTitle")), ""
        if self.type == "loyalty":
            issuer = self.pick((c, "localizedIssuerName"), (c, "issuerName"))
            title = self.pick((c, "localizedProgramName"), (c, "programName"))
            return c.get("programLogo"), issuer, title
        if self.type == "giftCard":
            issuer = self.pick(
                (c, "localizedMerchantName"),
                (c, "merchantName"),
                (c, "localizedIssuerName"),
                (c, "issuerName"),
            )
            return c.get("programLogo"), issuer, self.pick((c, "programName"))
        if self.type == "offer":
            issuer = self.pick((c, "localizedIssuerName"), (c, "issuerName"))
            title = self.pick((c, "localizedTitle"), (c, "title"))
            return c.get("titleImage"), issuer, title
        if self.type == "eventTicket":
            issuer = self.pick((c, "localizedIssuerName"), (c, "issuerName"))
            return c.get("logo"), issuer, ""
        if self.type == "flight":
            header = _map(c.get("flightHeader"))
            carrier = _map(header.get("carrier"))
            issuer = self.pick(
                (carrier, "airlineName"), (c, "localizedIssuerName"), (c, "issuerName")
            )
            number = _str(carrier.get("carrierIataCode")) + _str(header.get("flightNumber"))
            return carrier.get("airlineLogo"), issuer, number
        # transit
        issuer = self.pick(
            (c, "transitOperatorName"), (c, "localizedIssuerName"), (c, "issuerName")
        )
        return c.get("logo"), issuer, self.pick((o, "tripType"))

    def header_parts(self) -> tuple[str, str]:
        """(subheader, header): the large line under the title."""
        c, o = self.cls, self.obj
        if self.type == "generic":
            return self.pick((o, "subheader")), self.pick((o, "header"))
        if self.type == "loyalty":
            return self.pick((o, "accountId")), self.pick((o, "accountName"))
        if self.type == "giftCard":
            return self.words["card_number"], _str(o.get("cardNumber"))
        if self.type == "offer":
            return self.words["provider"], self.pick((c, "provider"))
        if self.type == "eventTicket":
            venue = _map(c.get("venue"))
            return self.pick((venue, "name")), self.pick((c, "eventName"))
        if self.type == "flight":
            origin = _map(c.get("origin"))
            destination = _map(c.get("destination"))
            route = " → ".join(
                part
                for part in (
                    _str(origin.get("airportIataCode")),
                    _str(destination.get("airportIataCode")),
                )
                if part
            )
            return "", route
        leg = self._leg()
        route = " → ".join(
            part
            for part in (self.pick((leg, "originName")), self.pick((leg, "destinationName")))
            if part
        )
        return "", route

    def _leg(self) -> Mapping[str, Any]:
        leg = self.obj.get("ticketLeg")
        if not isinstance(leg, Mapping):
            legs = self.obj.get("ticketLegs")
            leg = (
                legs[0] if isinstance(legs, list) and legs and isinstance(legs[0], Mapping) else {}
            )
        return leg

    def default_rows(self) -> list[list[tuple[str, str, str]]]:
        """The rows Google's default card template draws for the type: (id, label, value)."""
        c, o, w = self.cls, self.obj, self.words
        items: list[tuple[str, str, str]] = []

        def add(item_id: str, label: str, value: str) -> None:
            if value:
                items.append((item_id, label, value))

        if self.type == "loyalty":
            for key in ("loyaltyPoints", "secondaryLoyaltyPoints"):
                points = o.get(key)
                if isinstance(points, Mapping):
                    balance = _map(points.get("balance"))
                    value = (
                        _str(balance.get("string"))
                        or _str(balance.get("int"))
                        or _str(balance.get("double"))
                        or self.money(balance.get("money"))
                    )
                    add(key, self.localized(points.get("label")) or w["points"], value)
        elif self.type == "giftCard":
            add("balance", w["balance"], self.money(o.get("balance")))
            add("pin", w["pin"], _str(o.get("pin")))
        elif self.type == "offer":
            add("validUntil", w["valid_until"], self._interval_end())
        elif self.type == "eventTicket":
            times = _map(c.get("dateTime"))
            add("date", w["date"], self.when(times.get("start")) if times.get("start") else "")
            seat = _map(o.get("seatInfo"))
            for key in ("gate", "section", "row", "seat"):
                add(key, w[key], self.pick((seat, key)))
            add("ticketHolderName", w["holder"], _str(o.get("ticketHolderName")))
        elif self.type == "flight":
            add("passengerName", w["passenger"], _str(o.get("passengerName")))
            boarding = _map(o.get("boardingAndSeatingInfo"))
            add("boardingGroup", w["group"], _str(boarding.get("boardingGroup")))
            add("seatNumber", w["seat"], _str(boarding.get("seatNumber")))
            origin = _map(c.get("origin"))
            add("gate", w["gate"], _str(origin.get("gate")))
            departs = c.get("localBoardingDateTime") or c.get("localScheduledDepartureDateTime")
            add("boarding", w["boarding"], self.when(departs) if departs else "")
        elif self.type == "transit":
            leg = self._leg()
            departs = leg.get("departureDateTime")
            add("departs", w["departs"], self.when(departs) if departs else "")
            names = o.get("passengerNames")
            add("passengerNames", w["passenger"], _str(names))
            add("ticketNumber", w["ticket"], _str(o.get("ticketNumber")))
        return [items[i : i + 3] for i in range(0, len(items), 3)][:MAX_ROWS]

    def template_rows(self) -> list[list[tuple[str, str, str]]] | None:
        """The rows of classTemplateInfo.cardTemplateOverride, when the class has one."""
        info = self.cls.get("classTemplateInfo")
        override = info.get("cardTemplateOverride") if isinstance(info, Mapping) else None
        rows = override.get("cardRowTemplateInfos") if isinstance(override, Mapping) else None
        if not isinstance(rows, list):
            return None
        drawn: list[list[tuple[str, str, str]]] = []
        for row in rows[:MAX_ROWS]:
            if not isinstance(row, Mapping):
                continue
            row_items: list[tuple[str, str, str]] = []
            for kind, slots in (
                ("oneItem", ("item",)),
                ("twoItems", ("startItem", "endItem")),
                ("threeItems", ("startItem", "middleItem", "endItem")),
            ):
                group = row.get(kind)
                if not isinstance(group, Mapping):
                    continue
                for slot in slots:
                    row_items.append(self._template_item(group.get(slot)))
            drawn.append(row_items)
        return drawn

    def _template_item(self, item: Any) -> tuple[str, str, str]:
        selector = item.get("firstValue") if isinstance(item, Mapping) else None
        fields = selector.get("fields") if isinstance(selector, Mapping) else None
        for reference in _list(fields):
            path = _str(reference.get("fieldPath")) if isinstance(reference, Mapping) else ""
            label, value = self.path_value(path)
            if value:  # Google falls back to the next reference when one is empty
                item_id = re.sub(r"[^A-Za-z0-9_-]", "_", path)[:80]
                return item_id, label, value
        return "", "", ""

    def _interval_end(self) -> str:
        interval = self.obj.get("validTimeInterval")
        end = interval.get("end") if isinstance(interval, Mapping) else None
        date = end.get("date") if isinstance(end, Mapping) else None
        return self.when(date) if date else ""

    def state(self, now: dt.datetime) -> str:
        state = _str(self.obj.get("state")).upper() or "ACTIVE"
        interval = self.obj.get("validTimeInterval")
        end = interval.get("end") if isinstance(interval, Mapping) else None
        date = end.get("date") if isinstance(end, Mapping) else None
        if state == "ACTIVE" and isinstance(date, str):
            try:
                moment = dt.datetime.fromisoformat(date.replace("Z", "+00:00"))
            except ValueError:
                moment = None
            if moment is not None and moment.tzinfo is not None and moment <= now:
                state = "EXPIRED"  # Google moves it to expired passes itself
        return state

    # --- output ---------------------------------------------------------------------------

    def render(self, now: dt.datetime) -> Preview:
        w = self.words
        background = hex_color(self.obj.get("hexBackgroundColor")) or hex_color(
            self.cls.get("hexBackgroundColor")
        )
        background = background or "#4285f4"  # Google's own default when none is given
        state = self.state(now)
        logo, issuer, title = self.title_parts()
        subheader, header = self.header_parts()
        rows = self.template_rows()
        if rows is None:
            rows = self.default_rows()
        faded = " gwc-inactive" if state in ("INACTIVE", "EXPIRED", "COMPLETED") else ""
        body = [
            f'<article class="gwc gwc-{html.escape(self.type)}{faded}"'
            f' lang="{self.language}" data-type="{html.escape(self.type)}"'
            f' data-state="{html.escape(state)}" aria-label="{html.escape(w["card"])}">',
            '<div class="gwc-card">',
            '<div class="gwc-title">',
            self.image(logo, "gwc-logo", issuer),
            '<div class="gwc-title-text">',
            f'<span class="gwc-issuer">{html.escape(issuer)}</span>' if issuer else "",
            f'<span class="gwc-card-title">{html.escape(title)}</span>' if title else "",
            "</div></div>",
            f'<p class="gwc-subheader">{html.escape(subheader)}</p>'
            if subheader and header
            else "",
            f'<p class="gwc-header">{html.escape(header or subheader)}</p>'
            if header or subheader
            else "",
            self._rows(rows),
            self._barcode(),
            self.image(self.both("heroImage"), "gwc-hero"),
            f'<p class="gwc-state" role="status">{html.escape(w[state])}</p>' if state in w else "",
            "</div>",
            self._details(),
            f'<p class="gwc-note">{html.escape(w["note"])}</p>',
            "</article>",
        ]
        css = google_css() + f".gwc{{--gwc-bg:{background};--gwc-fg:{_foreground(background)}}}"
        return Preview("".join(body), css, self.type, self.problems)

    def _rows(self, rows: list[list[tuple[str, str, str]]]) -> str:
        out = []
        for row in rows:
            cells = "".join(
                f'<div class="gwc-item" data-id="{html.escape(item_id)}">'
                f'<span class="gwc-label">{html.escape(label)}</span>'
                f'<span class="gwc-value">{html.escape(value)}</span></div>'
                for item_id, label, value in row
                if value
            )
            if cells:
                out.append(f'<div class="gwc-row">{cells}</div>')
        return "".join(out)

    def _barcode(self) -> str:
        code = self.obj.get("barcode")
        if not isinstance(code, Mapping):
            return ""
        kind = _str(code.get("type")).upper()
        value = _str(code.get("value"))
        alternate = _str(code.get("alternateText"))
        alt_html = f'<span class="gwc-alt">{html.escape(alternate)}</span>' if alternate else ""
        if kind == "TEXT_ONLY":
            return f'<div class="gwc-barcode gwc-text-only">{alt_html or html.escape(value)}</div>'
        drawn = barcodes.draw_google(kind, value, f"{kind} code")
        if drawn.svg is None:
            self.problems.append(f"barcode: {drawn.problem}")
            return f'<div class="gwc-barcode">{alt_html}</div>' if alt_html else ""
        shape = (
            "square"
            if kind in barcodes.GOOGLE_SQUARE
            else ("wide" if kind in barcodes.GOOGLE_WIDE else "linear")
        )
        return (
            f'<div class="gwc-barcode gwc-barcode-{shape}" data-type="{html.escape(kind)}" '
            f'data-value="{html.escape(value)}">'
            f"{drawn.svg.replace('pkp-code-svg', 'gwc-code-svg', 1)}{alt_html}</div>"
        )

    def _details(self) -> str:
        items: list[str] = []

        def add(item_id: str, label: str, value: str) -> None:
            if label or value:
                items.append(
                    f'<div class="gwc-module" data-id="{html.escape(item_id)}">'
                    f"<dt>{html.escape(label)}</dt><dd>{html.escape(value)}</dd></div>"
                )

        for source in (self.obj, self.cls):
            for message in _list(source.get("messages")):
                if isinstance(message, Mapping):
                    add(
                        _str(message.get("id")),
                        self.localized(message.get("header"))
                        or self.localized(message.get("localizedHeader")),
                        self.localized(message.get("body"))
                        or self.localized(message.get("localizedBody")),
                    )
        if self.type == "offer":
            add("details", "", self.pick((self.cls, "localizedDetails"), (self.cls, "details")))
            add(
                "finePrint",
                "",
                self.pick((self.cls, "localizedFinePrint"), (self.cls, "finePrint")),
            )
        for source in (self.cls, self.obj):
            modules = source.get("textModulesData")
            for module in (modules if isinstance(modules, list) else [])[:MAX_MODULES]:
                if isinstance(module, Mapping):
                    add(
                        _str(module.get("id")),
                        self.localized(module.get("header"))
                        or self.localized(module.get("localizedHeader")),
                        self.localized(module.get("body"))
                        or self.localized(module.get("localizedBody")),
                    )
            info = source.get("infoModuleData")
            for row in _list(_map(info).get("labelValueRows")):
                for column in _list(_map(row).get("columns")):
                    if isinstance(column, Mapping):
                        add(
                            "",
                            self.localized(column.get("label"))
                            or self.localized(column.get("localizedLabel")),
                            self.localized(column.get("value"))
                            or self.localized(column.get("localizedValue")),
                        )
        links = []
        for source in (self.cls, self.obj):
            module = source.get("linksModuleData")
            for link in _list(_map(module).get("uris")):
                if not isinstance(link, Mapping):
                    continue
                uri = _str(link.get("uri"))
                # Google opens web, mail and phone links only; nor does the preview.
                if re.match(r"^(https?://|mailto:|tel:)", uri, re.IGNORECASE):
                    text = self.localized(link.get("description")) or uri
                    links.append(
                        f'<li><a href="{html.escape(uri)}" rel="noopener noreferrer">'
                        f"{html.escape(text)}</a></li>"
                    )
        if not items and not links:
            return ""
        title = html.escape(self.words["details"])
        modules_html = f'<dl class="gwc-modules">{"".join(items)}</dl>' if items else ""
        links_html = f'<ul class="gwc-links">{"".join(links)}</ul>' if links else ""
        return (
            f'<section class="gwc-details" aria-label="{title}">'
            f'<h3 class="gwc-details-title">{title}</h3>{modules_html}{links_html}</section>'
        )
