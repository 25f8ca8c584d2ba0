"""The Google Wallet card drawn from a class and an object: per type the card title, header,
rows, barcode (decoded back with zxing-cpp), hero image and details land where Google draws
them; the state is shown; nothing from the JSON becomes markup, CSS or a request; and the
card of a pass is drawn from the very class and object the sync renders."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
import zxingcpp
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from passhouse import devmode
from passhouse.examples import TEMPLATES
from passhouse.google.render import parse_config, render_object
from passhouse.pkpass.template import Template
from passhouse.preview.google import hex_color, render_google_card
from passhouse.previewing import google_card
from pkpass.conftest import SAMPLE_DATA

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
ISSUER = "3388000000012345678"
LOGO_URL = "https://passes.example.test/google/v1/images/logo.png"
HERO_URL = "https://passes.example.test/google/v1/images/hero.png"
PNG = devmode.solid_png(60, 60)
HERO = devmode.solid_png(300, 100)
IMAGES = {LOGO_URL: PNG, HERO_URL: HERO}


def text(value: str) -> dict[str, Any]:
    return {"defaultValue": {"language": "en", "value": value}}


def image(uri: str) -> dict[str, Any]:
    return {"sourceUri": {"uri": uri}}


def item(page: str, item_id: str) -> str:
    match = re.search(
        rf'<div class="gwc-item" data-id="{re.escape(item_id)}">'
        r'<span class="gwc-label">(.*?)</span><span class="gwc-value">(.*?)</span>',
        page,
    )
    assert match, (item_id, page)
    return f"{match[1]}|{match[2]}"


def one(page: str, css_class: str) -> str:
    found = re.findall(rf'<(?:p|span) class="{css_class}"[^>]*>(.*?)</(?:p|span)>', page)
    assert len(found) == 1, (css_class, found)
    return str(found[0])


def decoded(svg: str, width: int = 400) -> list[tuple[str, Any]]:
    """The drawn symbol painted from its SVG rectangles (the writer draws only axis-aligned
    boxes, "Mx yhWvHh-WZ") and read back by zxing-cpp: the browser test reads the same
    symbols from Chromium's screenshots."""
    view = re.search(r'viewBox="0 0 (\d+) (\d+)"', svg)
    assert view
    w, h = int(view[1]), int(view[2])
    scale = max(2, width // w)
    canvas = Image.new("L", (w * scale, max(h * scale, 60)), 255)
    paint = ImageDraw.Draw(canvas)
    boxes = re.findall(r"M(\d+) (\d+)h(\d+)v(\d+)", " ".join(re.findall(r'd="([^"]+)"', svg)))
    assert boxes, svg[:300]
    for x, y, dx, dy in boxes:
        x0, y0 = int(x) * scale, int(y) * scale
        paint.rectangle((x0, y0, x0 + int(dx) * scale - 1, y0 + int(dy) * scale - 1), fill=0)
    return [(r.text, r.format) for r in zxingcpp.read_barcodes(canvas)]


CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "generic": (
        {},
        {
            "cardTitle": text("Passhouse Club"),
            "subheader": text("Member"),
            "header": text("Ada Lovelace"),
            "logo": image(LOGO_URL),
            "hexBackgroundColor": "#336699",
            "heroImage": image(HERO_URL),
            "textModulesData": [{"id": "level", "header": "Level", "body": "Gold"}],
            "barcode": {"type": "QR_CODE", "value": "GEN-0001", "alternateText": "GEN 0001"},
        },
    ),
    "loyalty": (
        {
            "issuerName": "Test café",
            "programName": "Café points",
            "programLogo": image(LOGO_URL),
            "hexBackgroundColor": "#fff",
        },
        {
            "accountName": "Ada",
            "accountId": "M-1042",
            "loyaltyPoints": {"label": "Points", "balance": {"int": 1200}},
            "secondaryLoyaltyPoints": {"label": "Stamps", "balance": {"string": "7"}},
            "barcode": {"type": "PDF_417", "value": "CARD-0001"},
        },
    ),
    "offer": (
        {
            "issuerName": "Shop",
            "title": "20% off",
            "provider": "Shop GmbH",
            "titleImage": image(LOGO_URL),
            "details": "One per visit",
            "finePrint": "Not with other offers",
        },
        {
            "validTimeInterval": {"end": {"date": "2027-01-31T23:59:00+00:00"}},
            "barcode": {"type": "AZTEC", "value": "CPN-0001"},
        },
    ),
    "giftCard": (
        {"merchantName": "Books & Co", "programLogo": image(LOGO_URL)},
        {
            "cardNumber": "6000 1234",
            "pin": "9876",
            "balance": {"micros": 25_500_000, "currencyCode": "EUR"},
            "barcode": {"type": "CODE_128", "value": "GIFT-6000"},
        },
    ),
    "eventTicket": (
        {
            "issuerName": "Venue Ltd",
            "eventName": text("Passhouse Live"),
            "venue": {"name": text("Hall 7"), "address": text("1 Road")},
            "dateTime": {"start": "2027-03-01T19:00:00+01:00"},
            "logo": image(LOGO_URL),
            "hexBackgroundColor": "#202124",
        },
        {
            "seatInfo": {"section": text("B"), "row": text("7"), "seat": text("12")},
            "ticketHolderName": "Ada Lovelace",
            "barcode": {"type": "QR_CODE", "value": "TKT-0001"},
        },
    ),
    "flight": (
        {
            "flightHeader": {
                "carrier": {"carrierIataCode": "LX", "airlineName": text("Swiss")},
                "flightNumber": "318",
            },
            "origin": {"airportIataCode": "ZRH", "gate": "A12"},
            "destination": {"airportIataCode": "LHR"},
            "localScheduledDepartureDateTime": "2027-02-10T09:40:00",
        },
        {
            "passengerName": "Ada Lovelace",
            "boardingAndSeatingInfo": {"boardingGroup": "B", "seatNumber": "14C"},
            "reservationInfo": {"confirmationCode": "ABC123"},
            "barcode": {"type": "AZTEC", "value": "M1LOVELACE/ADA"},
        },
    ),
    "transit": (
        {"issuerName": "Rail Co", "transitOperatorName": text("Rail Co"), "logo": image(LOGO_URL)},
        {
            "tripType": "ONE_WAY",
            "passengerNames": "Ada Lovelace",
            "ticketNumber": "T-77",
            "ticketLeg": {
                "originName": text("Basel"),
                "destinationName": text("Bern"),
                "departureDateTime": "2027-02-10T09:40:00",
            },
            "barcode": {"type": "QR_CODE", "value": "RAIL-77"},
        },
    ),
}

EXPECTED: dict[str, dict[str, Any]] = {
    "generic": {"issuer": "Passhouse Club", "sub": "Member", "header": "Ada Lovelace", "rows": {}},
    "loyalty": {
        "issuer": "Test café",
        "title": "Café points",
        "sub": "M-1042",
        "header": "Ada",
        "rows": {"loyaltyPoints": "Points|1200", "secondaryLoyaltyPoints": "Stamps|7"},
    },
    "offer": {
        "issuer": "Shop",
        "title": "20% off",
        "header": "Shop GmbH",
        "rows": {"validUntil": "Valid until|Jan 31, 2027, 11:59:00\u202fPM"},
    },
    "giftCard": {
        "issuer": "Books &amp; Co",
        "header": "6000 1234",
        "rows": {"balance": "Balance|€25.50", "pin": "PIN|9876"},
    },
    "eventTicket": {
        "issuer": "Venue Ltd",
        "sub": "Hall 7",
        "header": "Passhouse Live",
        "rows": {
            "section": "Section|B",
            "row": "Row|7",
            "seat": "Seat|12",
            "ticketHolderName": "Ticket holder|Ada Lovelace",
        },
    },
    "flight": {
        "issuer": "Swiss",
        "title": "LX318",
        "header": "ZRH → LHR",
        "rows": {"passengerName": "Passenger|Ada Lovelace", "seatNumber": "Seat|14C"},
    },
    "transit": {
        "issuer": "Rail Co",
        "title": "ONE_WAY",
        "header": "Basel → Bern",
        "rows": {"ticketNumber": "Ticket|T-77", "passengerNames": "Passenger|Ada Lovelace"},
    },
}
FORMATS = {
    "QR_CODE": zxingcpp.BarcodeFormat.QRCode,
    "PDF_417": zxingcpp.BarcodeFormat.PDF417,
    "AZTEC": zxingcpp.BarcodeFormat.Aztec,
    "CODE_128": zxingcpp.BarcodeFormat.Code128,
}


@pytest.mark.parametrize("google_type", list(CASES))
def test_each_type_puts_its_fields_where_google_draws_them(google_type: str) -> None:
    google_class, google_object = CASES[google_type]
    expected = EXPECTED[google_type]

    card = render_google_card(google_type, google_class, google_object, IMAGES, now=NOW)

    assert card.problems == []
    assert card.style == google_type
    page = card.html
    assert f'class="gwc gwc-{google_type}"' in page
    assert one(page, "gwc-issuer") == expected["issuer"]
    if "title" in expected:
        assert one(page, "gwc-card-title") == expected["title"]
    assert one(page, "gwc-header") == expected["header"]
    if "sub" in expected:
        assert one(page, "gwc-subheader") == expected["sub"]
    for item_id, shown in expected["rows"].items():
        assert item(page, item_id) == shown
    assert 'src="data:image/png;base64,' in page or google_type == "flight"
    code = google_object["barcode"]
    assert f'data-value="{code["value"]}"' in page
    svg = re.search(r'<svg class="gwc-code-svg".*?</svg>', page, re.DOTALL)
    assert svg, page
    assert (code["value"], FORMATS[code["type"]]) in decoded(svg[0])
    assert "approximation" in page
    assert 'data-state="ACTIVE"' in page
    assert "gwc-state" not in page


def test_the_card_colour_text_modules_hero_and_alternate_text() -> None:
    google_class, google_object = CASES["generic"]
    card = render_google_card("generic", google_class, google_object, IMAGES, now=NOW)
    assert "--gwc-bg:#336699;--gwc-fg:#ffffff" in card.css
    assert '<span class="gwc-alt">GEN 0001</span>' in card.html
    assert re.search(r'<img class="gwc-hero" src="data:image/png;base64,[^"]+" alt="">', card.html)
    assert '<div class="gwc-module" data-id="level"><dt>Level</dt><dd>Gold</dd></div>' in card.html
    light = render_google_card("loyalty", *CASES["loyalty"], IMAGES, now=NOW)
    assert "--gwc-bg:#ffffff;--gwc-fg:#1f1f1f" in light.css  # #fff, dark text on it
    offer = render_google_card("offer", *CASES["offer"], IMAGES, now=NOW).html
    assert "<dd>One per visit</dd>" in offer
    assert "<dd>Not with other offers</dd>" in offer


def test_a_card_template_override_puts_the_modules_it_names_in_rows() -> None:
    google_class = {
        "classTemplateInfo": {
            "cardTemplateOverride": {
                "cardRowTemplateInfos": [
                    {
                        "twoItems": {
                            "startItem": {
                                "firstValue": {
                                    "fields": [{"fieldPath": "object.textModulesData['level']"}]
                                }
                            },
                            "endItem": {
                                "firstValue": {
                                    "fields": [
                                        {"fieldPath": "object.textModulesData['missing']"},
                                        {"fieldPath": "class.textModulesData['since']"},
                                    ]
                                }
                            },
                        }
                    }
                ]
            }
        },
        "textModulesData": [{"id": "since", "header": "Since", "body": "2024"}],
    }
    google_object = {
        **CASES["generic"][1],
        "textModulesData": [{"id": "level", "header": "Level", "body": "Gold"}],
    }
    page = render_google_card("generic", google_class, google_object, IMAGES, now=NOW).html
    row = re.search(r'<div class="gwc-row">(.*?)</div></div>', page)
    assert row
    assert item(page, "object_textModulesData__level__") == "Level|Gold"
    assert item(page, "class_textModulesData__since__") == "Since|2024"  # the fallback


def test_inactive_and_expired_objects_say_so() -> None:
    google_class, google_object = CASES["loyalty"]
    voided = render_google_card(
        "loyalty", google_class, {**google_object, "state": "INACTIVE"}, IMAGES, now=NOW
    ).html
    assert 'data-state="INACTIVE"' in voided
    assert '<p class="gwc-state" role="status">Inactive</p>' in voided
    assert "gwc-inactive" in voided
    ended = {**google_object, "validTimeInterval": {"end": {"date": "2026-01-01T00:00:00Z"}}}
    expired = render_google_card("loyalty", google_class, ended, IMAGES, now=NOW).html
    assert '<p class="gwc-state" role="status">Expired</p>' in expired
    german = render_google_card(
        "loyalty", google_class, {**google_object, "state": "EXPIRED"}, IMAGES, language="de"
    ).html
    assert '<p class="gwc-state" role="status">Abgelaufen</p>' in german
    assert "Annäherung" in german


def test_hostile_values_stay_text_and_no_image_is_fetched() -> None:
    evil = '<script>alert(1)</script><img src=x onerror=alert(2)>"'
    google_object = {
        "cardTitle": text(evil),
        "header": text(evil),
        "subheader": evil,
        "hexBackgroundColor": "red;}body{background:url(https://evil.test/x)",
        "logo": image("https://evil.test/logo.png"),
        "heroImage": image('javascript:alert(1)" onerror="alert(3)'),
        "textModulesData": [{"id": evil, "header": evil, "body": evil}],
        "linksModuleData": {
            "uris": [
                {"uri": "javascript:alert(4)", "description": "bad"},
                {"uri": "https://ok.test/page", "description": evil},
            ]
        },
        "barcode": {"type": "QR_CODE", "value": evil, "alternateText": evil},
    }
    card = render_google_card("generic", {}, google_object, IMAGES, now=NOW)

    assert "<script" not in card.html
    assert "<img src=x" not in card.html
    assert "onerror=" not in card.html.replace("onerror=alert(2)&gt;", "")
    assert "javascript:" not in card.html
    assert "evil.test" not in card.html + card.css
    assert "--gwc-bg:#4285f4" in card.css  # the colour is refused, Google's default drawn
    assert '<a href="https://ok.test/page" rel="noopener noreferrer">&lt;script&gt;' in card.html
    srcs = re.findall(r'(?:src|href)="([^"]*)"', card.html)
    assert all(s.startswith(("data:image/png;base64,", "https://ok.test/")) for s in srcs), srcs
    assert any("not one of the template's images" in p for p in card.problems)
    svg = re.search(r'<svg class="gwc-code-svg".*?</svg>', card.html, re.DOTALL)
    assert svg
    assert (evil, zxingcpp.BarcodeFormat.QRCode) in decoded(svg[0], 600)


def test_colours_are_rebuilt_from_their_digits() -> None:
    assert hex_color("#AbC") == "#aabbcc"
    assert hex_color(" #336699 ") == "#336699"
    assert hex_color("#33669") is None
    assert hex_color("rgb(1, 2, 3)") is None
    assert hex_color(None) is None


def test_a_barcode_google_cannot_hold_is_named_and_text_only_is_text() -> None:
    google_object = {"header": text("x"), "barcode": {"type": "EAN_13", "value": "not digits"}}
    card = render_google_card("generic", {}, google_object, {}, now=NOW)
    assert card.problems
    assert card.problems[0].startswith("barcode: ")
    assert "gwc-code-svg" not in card.html
    text_only = {"header": text("x"), "barcode": {"type": "TEXT_ONLY", "value": "ABC 123"}}
    page = render_google_card("generic", {}, text_only, {}, now=NOW).html
    assert '<div class="gwc-barcode gwc-text-only">ABC 123</div>' in page


@pytest.mark.parametrize(("style", "google_type"), [("storeCard", "loyalty"), ("coupon", "offer")])
def test_the_card_of_a_pass_is_drawn_from_the_object_the_sync_renders(
    style: str, google_type: str
) -> None:
    template = Template.from_directory(TEMPLATES / style)
    section = {"issuer_id": ISSUER, "type": google_type}
    data = SAMPLE_DATA[style]

    card = google_card(
        section,
        template.pass_json,
        Template(template.pass_json, {}),
        data,
        None,
        {"logo": PNG},
        template_id=7,
        pass_type_id="pass.test",
        serial_number="s1",
        voided=False,
        public_url="https://passes.example.test",
        language="en",
        now=NOW,
    )

    # The same object, from the same functions the sync calls (google_sync._sync_one).
    apple, _ = Template(template.pass_json, {}).render(
        data, overrides={"serialNumber": "s1", "voided": None}
    )
    logo_key = "programLogo" if google_type == "loyalty" else "titleImage"
    logo = card.google_class[logo_key]["sourceUri"]["uri"]
    assert logo.startswith("https://passes.example.test/google/v1/images/")
    sent, _ = render_object(
        parse_config(section, template.pass_json),
        apple,
        data,
        {"logo": logo},
        template_id=7,
        pass_type_id="pass.test",
        serial_number="s1",
        voided=False,
        now=NOW,
    )
    assert card.google_object == sent
    assert card.errors == []
    assert card.state == "ACTIVE"
    assert 'class="gwc-logo" src="data:image/png;base64,' in card.fragment  # mapped back
    code = sent["barcode"]["value"]
    assert f'data-value="{code}"' in card.fragment
    voided = google_card(
        section,
        template.pass_json,
        Template(template.pass_json, {}),
        data,
        None,
        {},
        template_id=7,
        pass_type_id="pass.test",
        serial_number="s1",
        voided=True,
        public_url="https://passes.example.test",
        language="en",
        now=NOW,
    )
    assert voided.state == "INACTIVE"
    assert "Inactive" in voided.fragment


def test_a_section_with_problems_draws_no_card_and_says_why() -> None:
    card = google_card(
        {"issuer_id": "not-digits", "type": "loyalty"},
        {"storeCard": {}},
        Template({"storeCard": {}}, {}),
        {},
        None,
        {},
        template_id=0,
        pass_type_id="pass.test",
        serial_number="s1",
        voided=False,
        public_url="https://passes.example.test",
        language="en",
    )
    assert card.google_object == {}
    assert card.errors[0]["path"] == "google.issuer_id"
    assert "No Google Wallet card" in card.html


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "defaultValue",
                    "value",
                    "language",
                    "translatedValues",
                    "sourceUri",
                    "uri",
                    "micros",
                    "currencyCode",
                    "balance",
                    "label",
                    "string",
                    "start",
                    "end",
                    "date",
                    "id",
                    "header",
                    "body",
                    "type",
                    "fields",
                    "fieldPath",
                    "firstValue",
                    "cardTemplateOverride",
                    "cardRowTemplateInfos",
                    "twoItems",
                    "startItem",
                ]
            ),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)
_TOP = st.dictionaries(
    st.sampled_from(
        [
            "cardTitle",
            "header",
            "subheader",
            "logo",
            "hexBackgroundColor",
            "heroImage",
            "textModulesData",
            "barcode",
            "loyaltyPoints",
            "balance",
            "programLogo",
            "eventName",
            "venue",
            "dateTime",
            "seatInfo",
            "flightHeader",
            "origin",
            "ticketLeg",
            "ticketLegs",
            "validTimeInterval",
            "state",
            "classTemplateInfo",
            "linksModuleData",
            "infoModuleData",
            "messages",
            "issuerName",
            "programName",
            "cardNumber",
        ]
    ),
    _JSON,
    max_size=8,
)


@settings(max_examples=200, deadline=None)
@given(google_type=st.sampled_from(list(CASES)), google_class=_TOP, google_object=_TOP)
def test_any_json_shape_draws_without_failing(
    google_type: str, google_class: dict[str, Any], google_object: dict[str, Any]
) -> None:
    card = render_google_card(google_type, google_class, google_object, IMAGES, now=NOW)
    assert card.html.startswith('<article class="gwc ')
    assert "<script" not in card.html
