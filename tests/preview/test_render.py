"""Pass previews drawn from rendered pass.json: layouts, values, barcodes, and that nothing
from a pass can add markup, CSS or a request to the page that shows it."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest

from passhouse.examples import TEMPLATES
from passhouse.pkpass.template import Template
from passhouse.preview import render_preview
from pkpass.conftest import SAMPLE_DATA, STYLES

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def example(style: str) -> tuple[dict[str, Any], dict[str, bytes]]:
    template = Template.from_directory(TEMPLATES / style)
    return template.render(SAMPLE_DATA[style])


def field_text(page: str, key: str) -> str:
    match = re.search(
        rf'<div class="pkp-field [^"]*" data-key="{re.escape(key)}">'
        r'<span class="pkp-label">(.*?)</span><span class="pkp-value">(.*?)</span>',
        page,
    )
    assert match, key
    return f"{match[1]}|{match[2]}"


@pytest.mark.parametrize("style", STYLES)
def test_each_style_draws_its_fields_colours_images_and_barcode(style: str) -> None:
    pass_json, assets = example(style)

    preview = render_preview(pass_json, assets, now=NOW)

    assert preview.style == style
    assert preview.problems == []
    assert f'class="pkp pkp-{style}"' in preview.html
    structure = pass_json[style]
    for group in ("headerFields", "primaryFields", "secondaryFields", "auxiliaryFields"):
        for field in structure.get(group, []):
            assert f'data-key="{field["key"]}"' in preview.html, (group, field["key"])
    assert f"--pkp-bg:{pass_json['backgroundColor']}" in preview.css
    assert f"--pkp-fg:{pass_json['foregroundColor']}" in preview.css
    assert 'class="pkp-logo" src="data:image/png;base64,' in preview.html
    code = pass_json["barcodes"][0]
    assert f'data-message="{code["message"]}"' in preview.html
    assert '<svg class="pkp-code-svg"' in preview.html
    assert "approximation" in preview.html


def test_a_boarding_pass_shows_its_transit_icon_and_footer() -> None:
    pass_json, assets = example("boardingPass")
    page = render_preview(pass_json, assets, now=NOW).html
    assert 'class="pkp-transit pkp-transit-air"' in page
    assert 'class="pkp-footer"' in page
    assert field_text(page, "from") == "Paris|CDG"
    assert field_text(page, "boarding") == "Boarding|9:40\u202fAM"  # en.lproj says "Boarding"


def test_numbers_and_dates_take_their_styles_and_the_viewers_language() -> None:
    pass_json, assets = example("storeCard")
    field = pass_json["storeCard"]["primaryFields"][0]
    assert field.get("currencyCode"), field
    english = render_preview(pass_json, assets, now=NOW).html
    german = render_preview(pass_json, assets, language="de", now=NOW).html
    assert "€25.50" in field_text(english, field["key"])
    assert "25,50\xa0€" in field_text(german, field["key"])

    pass_json["storeCard"]["secondaryFields"] = [
        {"key": "p", "label": "Share", "value": 0.25, "numberStyle": "PKNumberStylePercent"},
        {"key": "w", "label": "Words", "value": 42, "numberStyle": "PKNumberStyleSpellOut"},
        {
            "key": "d",
            "label": "When",
            "value": "2027-03-01T19:30:00+01:00",
            "dateStyle": "PKDateStyleMedium",
            "timeStyle": "PKDateStyleShort",
        },
    ]
    pass_json["storeCard"]["auxiliaryFields"] = []
    page = render_preview(pass_json, assets, language="fr", now=NOW).html
    assert field_text(page, "p") == "Share|25\xa0%"
    assert field_text(page, "w") == "Words|quarante-deux"
    assert field_text(page, "d") == "When|1 mars 2027, 19:30"


def test_the_pass_strings_of_the_viewers_language_translate_labels() -> None:
    pass_json, assets = example("storeCard")
    german = render_preview(pass_json, assets, language="de", now=NOW).html
    spanish = render_preview(pass_json, assets, language="es", now=NOW).html  # no es.lproj
    assert field_text(german, "points").startswith("Punkte|")
    assert field_text(spanish, "points").startswith("Points|")  # English strings, then


def test_the_poster_layout_when_the_template_asks_for_it() -> None:
    pass_json, assets = example("eventTicket")
    pass_json["preferredStyleSchemes"] = ["posterEventTicket", "eventTicket"]
    pass_json["eventLogoText"] = "Live!"
    page = render_preview(pass_json, assets, now=NOW).html
    assert 'class="pkp pkp-poster"' in page
    assert '<span class="pkp-logo-text">Live!</span>' in page


def test_an_event_ticket_background_is_blurred_behind_the_fields() -> None:
    pass_json, assets = example("eventTicket")
    assets = {k: v for k, v in assets.items() if not k.startswith("strip")}
    assets["background.png"] = assets["logo.png"]
    assets["thumbnail.png"] = assets["logo.png"]
    page = render_preview(pass_json, assets, now=NOW)
    assert 'class="pkp-background"' in page.html
    assert 'class="pkp-thumbnail"' in page.html
    assert ".pkp-background" in page.css
    assert "blur(" in page.css


@pytest.mark.parametrize(
    "format_name", ["PKBarcodeFormatPDF417", "PKBarcodeFormatAztec", "PKBarcodeFormatCode128"]
)
def test_every_wallet_barcode_is_drawn(format_name: str) -> None:
    pass_json, assets = example("generic")
    pass_json["barcodes"] = [
        {"format": format_name, "message": "ABC-123", "messageEncoding": "iso-8859-1"}
    ]
    preview = render_preview(pass_json, assets, now=NOW)
    assert preview.problems == []
    assert 'data-message="ABC-123"' in preview.html
    assert re.search(r'<svg class="pkp-code-svg" viewBox="0 0 \d+ \d+"', preview.html)


def test_a_barcode_that_cannot_be_drawn_is_named_not_invented() -> None:
    pass_json, assets = example("generic")
    pass_json["barcodes"] = [
        {"format": "PKBarcodeFormatCode128", "message": "ünï", "messageEncoding": "ascii"}
    ]
    preview = render_preview(pass_json, assets, now=NOW)
    assert preview.problems == ['barcodes[0]: message cannot be written in "ascii"']
    assert "pkp-code-svg" not in preview.html


def test_nothing_in_a_pass_becomes_markup_css_or_a_request() -> None:
    pass_json, assets = example("generic")
    evil = '<script>alert(1)</script><img src=x onerror=alert(2)>"'
    pass_json["organizationName"] = evil
    pass_json["logoText"] = evil
    pass_json["backgroundColor"] = "red;}body{background:url(https://evil.test/x)"
    pass_json["foregroundColor"] = "rgb(300, 0, 0)"
    pass_json["generic"]["primaryFields"][0]["label"] = evil
    pass_json["generic"]["backFields"] = [
        {"key": "a", "label": "A", "attributedValue": '<a href="javascript:alert(1)">x</a>'},
        {"key": "b", "label": "B", "value": f"see https://ok.test/{evil}"},
    ]
    pass_json["transferURL"] = "javascript:alert(3)"
    pass_json["sellURL"] = "https://tickets.example/sell"
    preview = render_preview(pass_json, assets, now=NOW)

    assert "<script" not in preview.html
    assert "onerror=" not in preview.html.replace("onerror=alert(2)&gt;", "")
    assert "javascript:" not in preview.html.replace(">x<", "")
    assert "evil.test" not in preview.css
    assert "--pkp-bg:rgb(255, 255, 255)" in preview.css
    assert "--pkp-fg:rgb(0, 0, 0)" in preview.css
    assert '<a href="https://tickets.example/sell">Sell</a>' in preview.html
    assert '<a href="https://ok.test/&lt;script' not in preview.html
    hrefs = re.findall(r'(?:src|href)="([^"]*)"', preview.html)
    assert all(
        h.startswith(("data:image/png;base64,", "https://", "mailto:", "tel:")) for h in hrefs
    )


def test_voided_and_expired_passes_say_so() -> None:
    pass_json, assets = example("coupon")
    voided = render_preview({**pass_json, "voided": True}, assets, now=NOW).html
    expired = render_preview(
        {**pass_json, "expirationDate": "2026-01-01T00:00:00Z"}, assets, now=NOW
    ).html
    current = render_preview(
        {**pass_json, "expirationDate": "2027-01-01T00:00:00Z"}, assets, now=NOW
    ).html
    assert '<p class="pkp-state">Void</p>' in voided
    assert '<p class="pkp-state">Expired</p>' in expired
    assert "pkp-state" not in current


def test_a_pass_without_a_style_still_draws_and_says_why_it_is_bare() -> None:
    preview = render_preview({"description": "x"}, {}, now=NOW)
    assert preview.style is None
    assert preview.problems == ["pass.json has no style key, so there is no layout to draw"]
    assert "approximation" in preview.document()
