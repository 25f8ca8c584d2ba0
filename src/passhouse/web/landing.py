"""The landing page of a share link (/p/{share id}): the pass preview, who issued it, and the
one button that works on the visitor's phone. Plain HTML and CSS, no script: it shows and
works before anything else loads, on any phone.

Rendering is pure (landing_page); the route in share.py gathers what it shows.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import html
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from babel import Locale
from babel.dates import format_date

from passhouse.pkpass.pass_json import is_w3c_date
from passhouse.preview import barcodes, render_preview
from passhouse.preview.render import LANGUAGES

Platform = Literal["ios", "android", "desktop"]
MAX_ARTWORK_BYTES = 512 * 1024
_IMAGE_TYPES = {".svg": "image/svg+xml", ".png": "image/png", ".jpg": "image/jpeg"}

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "from": "From {issuer}",
        "apple": "Add to Apple Wallet",
        "google": "Add to Google Wallet",
        "download": "Download the pass (.pkpass) for a wallet app",
        "void": "This pass is no longer valid.",
        "expired": "This pass expired on {date}.",
        "dev": "This pass is signed with a local development certificate: Wallet on a real "
        "iPhone will not accept it.",
        "scan": "On a computer? Scan this code with your phone's camera to open this page there.",
        "qr": "QR code of this page's address",
        "preview": "Your pass",
        "apple_preview": "In Apple Wallet",
        "google_preview": "In Google Wallet",
    },
    "de": {
        "from": "Von {issuer}",
        "apple": "Zu Apple Wallet hinzufügen",
        "google": "Zu Google Wallet hinzufügen",
        "download": "Pass (.pkpass) für eine Wallet-App herunterladen",
        "void": "Dieser Pass ist nicht mehr gültig.",
        "expired": "Dieser Pass ist am {date} abgelaufen.",
        "dev": "Dieser Pass ist mit einem lokalen Entwicklungszertifikat signiert: Wallet auf "
        "einem echten iPhone nimmt ihn nicht an.",
        "scan": "Am Computer? Scannen Sie diesen Code mit der Kamera Ihres Telefons, um die "
        "Seite dort zu öffnen.",
        "qr": "QR-Code der Adresse dieser Seite",
        "preview": "Ihr Pass",
        "apple_preview": "In Apple Wallet",
        "google_preview": "In Google Wallet",
    },
    "fr": {
        "from": "De la part de {issuer}",
        "apple": "Ajouter à Apple Wallet",
        "google": "Ajouter à Google Wallet",
        "download": "Télécharger le pass (.pkpass) pour une application de portefeuille",
        "void": "Ce pass n'est plus valable.",
        "expired": "Ce pass a expiré le {date}.",
        "dev": "Ce pass est signé avec un certificat de développement local : Wallet ne "
        "l'acceptera pas sur un vrai iPhone.",
        "scan": "Sur un ordinateur ? Scannez ce code avec l'appareil photo de votre téléphone "
        "pour y ouvrir cette page.",
        "qr": "Code QR de l'adresse de cette page",
        "preview": "Votre pass",
        "apple_preview": "Dans Apple Wallet",
        "google_preview": "Dans Google Wallet",
    },
    "es": {
        "from": "De {issuer}",
        "apple": "Añadir a Apple Wallet",
        "google": "Añadir a Google Wallet",
        "download": "Descargar el pase (.pkpass) para una app de cartera",
        "void": "Este pase ya no es válido.",
        "expired": "Este pase caducó el {date}.",
        "dev": "Este pase está firmado con un certificado de desarrollo local: Wallet no lo "
        "aceptará en un iPhone real.",
        "scan": "¿En un ordenador? Escanea este código con la cámara del teléfono para abrir "
        "esta página allí.",
        "qr": "Código QR de la dirección de esta página",
        "preview": "Tu pase",
        "apple_preview": "En Apple Wallet",
        "google_preview": "En Google Wallet",
    },
}

_STYLE = """
body { margin: 0; font: 16px/1.45 -apple-system, system-ui, "Segoe UI", Roboto, sans-serif;
  background: var(--page-bg); color: var(--page-fg); }
.landing { max-width: 30rem; margin: 0 auto; padding: 1.25rem 1rem 2rem; text-align: center; }
.brand { display: flex; align-items: center; justify-content: center; gap: .6rem;
  margin-bottom: 1rem; }
.brand img { max-height: 48px; max-width: 60%; }
.brand span { font-weight: 600; }
h1 { font-size: 1.5rem; margin: .25rem 0; overflow-wrap: anywhere; }
.issuer { margin: 0 0 1rem; font-size: 1rem; }
.state { margin: 1rem 0; padding: .8rem 1rem; border-radius: .6rem; background: #fff3cd;
  color: #3d2e00; font-weight: 600; border: 1px solid #d9b100; }
.state.void { background: #fde2e1; color: #5c0b07; border-color: #c4302b; }
.actions { display: flex; flex-direction: column; align-items: center; gap: 12px;
  margin: 1.25rem 0; }
.add { display: inline-flex; align-items: center; justify-content: center; min-height: 48px;
  min-width: 220px; padding: 0 1.25rem; border-radius: 10px; background: #000; color: #fff;
  font-weight: 600; text-decoration: none; border: 1px solid #a6a6a6; }
.add img { display: block; height: 48px; width: auto; }
.add.art { background: transparent; border: 0; padding: 0; min-width: 0; }
.add:focus-visible { outline: 3px solid #0a64d6; outline-offset: 3px; }
.download { color: inherit; }
.note { font-size: .85rem; margin: .25rem 0 0; }
.qr { margin: 1.5rem auto; max-width: 16rem; }
.qr .pkp-code-svg { width: 176px; margin: 0 auto; background: #fff; padding: 8px;
  border-radius: 8px; }
.qr p { font-size: .9rem; }
.pass-preview { margin-top: 1.5rem; text-align: left; }
.pass-preview h2, .pass-preview-title { font-size: 1rem; text-align: center;
  margin: 1.5rem 0 .75rem; }
.landing.both { max-width: 48rem; }
.previews { display: flex; flex-wrap: wrap; gap: 1.5rem; justify-content: center; }
.previews .pass-preview { flex: 1 1 300px; max-width: 360px; min-width: 0; }
.previews h3 { font-size: .95rem; text-align: center; margin: 0 0 .5rem; font-weight: 600; }
"""


@dataclass(frozen=True, slots=True)
class Brand:
    logo: str | None = None  # a data: URL
    name: str | None = None
    background: str = "#f5f5f7"
    text: str = "#1d1d1f"


@dataclass(frozen=True, slots=True)
class GoogleCardPart:
    """The Google Wallet card of the pass (passhouse.preview.google) for the page to embed."""

    html: str
    css: str


@dataclass(frozen=True, slots=True)
class LandingPage:
    html: str
    style: str

    @property
    def style_hash(self) -> str:
        return base64.b64encode(hashlib.sha256(self.style.encode()).digest()).decode()


def platform_of(user_agent: str) -> Platform:
    """Which wallet the visitor's device has: iPhone/iPad/iPod are Apple Wallet, Android is
    Google Wallet (or a pkpass app); anything else is a computer (or a phone we cannot tell)."""
    if re.search(r"\b(iPhone|iPad|iPod)\b", user_agent):
        return "ios"
    if "Android" in user_agent:
        return "android"
    return "desktop"


def language_of(accept_language: str) -> str:
    """The best of en, de, fr, es for an Accept-Language header (RFC 9110 12.5.4)."""
    ranked: list[tuple[float, int, str]] = []
    for index, item in enumerate(accept_language.split(",")[:50]):
        tag, *params = (part.strip() for part in item.split(";"))
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if tag and 0 < q <= 1:
            ranked.append((-q, index, tag.replace("_", "-")))
    for _, _, tag in sorted(ranked):
        base = tag.split("-")[0].lower()
        if base in LANGUAGES:
            return base
    return "en"


@lru_cache(maxsize=64)
def _data_url(path: str, mtime_ns: int) -> str | None:
    file = Path(path)
    media_type = _IMAGE_TYPES.get(file.suffix.lower())
    if media_type is None:
        return None
    data = file.read_bytes()
    if len(data) > MAX_ARTWORK_BYTES:
        return None
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def image_data_url(path: Path | None) -> str | None:
    """A small image file as a data: URL (read again when it changes); None when absent."""
    if path is None:
        return None
    try:
        return _data_url(str(path), path.stat().st_mtime_ns)
    except OSError:
        return None


def button_artwork(folder: Path | None, wallet: str, language: str) -> str | None:
    """The operator's copy of a wallet's official button, in the language or in English."""
    if folder is None:
        return None
    for lang in (language, "en"):
        for suffix in (".svg", ".png"):
            found = image_data_url(folder / f"add-to-{wallet}-wallet-{lang}{suffix}")
            if found:
                return found
    return None


def _expired_on(pass_json: Mapping[str, Any], now: dt.datetime) -> dt.datetime | None:
    value = pass_json.get("expirationDate")
    if isinstance(value, str) and is_w3c_date(value):
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        if moment <= now:
            return moment
    return None


def landing_page(
    *,
    pass_json: Mapping[str, Any],
    files: Mapping[str, bytes],
    page_url: str,
    download_url: str,
    google_url: str | None,
    voided: bool,
    dev_mode: bool,
    platform: Platform,
    language: str,
    brand: Brand,
    apple_art: str | None = None,
    google_art: str | None = None,
    now: dt.datetime | None = None,
    google_card: GoogleCardPart | None = None,
) -> LandingPage:
    """The page; `google_card` (the Google Wallet card of the pass, where its template is
    opted in) is shown beside the Apple preview on Android and computers, first on Android."""
    now = now or dt.datetime.now(dt.UTC)
    words = TEXT[language if language in TEXT else "en"]
    preview = render_preview(pass_json, files, language=language, now=now)
    description = str(pass_json.get("description") or words["preview"])
    issuer = str(pass_json.get("organizationName") or "")
    card = google_card if platform != "ios" else None
    wide = " both" if card is not None else ""
    parts: list[str] = [f'<main class="landing{wide}" lang="{language}">']
    if brand.logo or brand.name:
        logo = f'<img src="{brand.logo}" alt="">' if brand.logo else ""
        name = f"<span>{html.escape(brand.name)}</span>" if brand.name else ""
        parts.append(f'<header class="brand">{logo}{name}</header>')
    parts.append(f"<h1>{html.escape(description)}</h1>")
    if issuer:
        parts.append(f'<p class="issuer">{html.escape(words["from"].format(issuer=issuer))}</p>')
    expired = _expired_on(pass_json, now)
    if voided:
        parts.append(f'<p class="state void" role="status">{words["void"]}</p>')
    elif expired is not None:
        date = format_date(expired, "long", locale=Locale.parse(language))
        text = html.escape(words["expired"].format(date=date))
        parts.append(f'<p class="state void" role="status">{text}</p>')
    else:
        if dev_mode:
            parts.append(f'<p class="state" role="status">{words["dev"]}</p>')
        parts.append(_buttons(words, platform, download_url, google_url, apple_art, google_art))
        if platform == "desktop":
            parts.append(_qr(words, page_url))
    if card is None:
        parts.append(
            f'<section class="pass-preview" aria-labelledby="preview-title">'
            f'<h2 id="preview-title">{words["preview"]}</h2>{preview.html}</section>'
        )
    else:
        apple_part = (
            f'<section class="pass-preview" aria-labelledby="apple-title">'
            f'<h3 id="apple-title">{words["apple_preview"]}</h3>{preview.html}</section>'
        )
        google_part = (
            f'<section class="pass-preview" aria-labelledby="google-title">'
            f'<h3 id="google-title">{words["google_preview"]}</h3>{card.html}</section>'
        )
        ordered = [google_part, apple_part] if platform == "android" else [apple_part, google_part]
        parts.append(
            f'<section class="all-previews" aria-labelledby="preview-title">'
            f'<h2 id="preview-title" class="pass-preview-title">{words["preview"]}</h2>'
            f'<div class="previews">{"".join(ordered)}</div></section>'
        )
    parts.append("</main>")
    style = _STYLE + f":root{{--page-bg:{brand.background};--page-fg:{brand.text}}}\n" + preview.css
    if card is not None:
        style += card.css
    return LandingPage("\n".join(parts), style)


def _button(css: str, href: str, label: str, art: str | None) -> str:
    if art:
        return (
            f'<a class="add art {css}" href="{html.escape(href)}">'
            f'<img src="{art}" alt="{html.escape(label)}"></a>'
        )
    return f'<a class="add" href="{html.escape(href)}">{html.escape(label)}</a>'


def _buttons(
    words: Mapping[str, str],
    platform: Platform,
    download_url: str,
    google_url: str | None,
    apple_art: str | None,
    google_art: str | None,
) -> str:
    apple = _button("apple", download_url, words["apple"], apple_art)
    google = _button("google", google_url, words["google"], google_art) if google_url else ""
    if platform == "ios":
        buttons = [apple]
    elif platform == "android":
        # Google Wallet where the pass has a Google twin; pkpass apps read the file.
        buttons = [google] if google else []
        buttons.append(
            f'<a class="download" href="{html.escape(download_url)}">{words["download"]}</a>'
        )
    else:
        buttons = [apple, google] if google else [apple]
    return f'<div class="actions">{"".join(buttons)}</div>'


def _qr(words: Mapping[str, str], page_url: str) -> str:
    drawn = barcodes.draw("PKBarcodeFormatQR", page_url, "utf-8", words["qr"])
    if drawn.svg is None:
        return ""
    url = html.escape(page_url)
    return f'<div class="qr" data-url="{url}">{drawn.svg}<p>{words["scan"]}</p></div>'
