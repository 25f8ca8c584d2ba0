from __future__ import annotations

import copy
from typing import Any

import pytest

from passhouse.pkpass.pass_json import PassJson, validate_pass_json

VALID: dict[str, Any] = {
    "formatVersion": 1,
    "passTypeIdentifier": "pass.test.passhouse",
    "serialNumber": "S1",
    "teamIdentifier": "TESTTEAM42",
    "organizationName": "Passhouse",
    "description": "A card",
    "storeCard": {
        "primaryFields": [{"key": "balance", "label": "Balance", "value": 12.5}],
        "backFields": [{"key": "terms", "value": "None"}],
    },
}


def changed(**changes: Any) -> dict[str, Any]:
    pass_json = copy.deepcopy(VALID)
    for key, value in changes.items():
        if value is None:
            del pass_json[key]
        else:
            pass_json[key] = value
    return pass_json


def test_a_valid_pass_has_no_problems() -> None:
    report = validate_pass_json(VALID)

    assert (report.errors, report.warnings) == ([], [])


def test_typed_model_reads_apple_keys() -> None:
    model = PassJson.model_validate(changed(backgroundColor="rgb(1, 2, 3)"))

    assert model.store_card is not None
    assert model.store_card.primary_fields is not None
    assert model.store_card.primary_fields[0].value == 12.5
    assert model.background_color == "rgb(1, 2, 3)"


def test_duplicate_field_key_names_its_path() -> None:
    store_card = {
        "headerFields": [{"key": "balance", "value": 1}],
        "primaryFields": [{"key": "balance", "value": 2}],
    }

    report = validate_pass_json(changed(storeCard=store_card))

    assert report.errors == ['storeCard.primaryFields[0].key: duplicate key "balance"']


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"serialNumber": None}, "serialNumber: required key is missing"),
        ({"formatVersion": 2}, "formatVersion: input should be 1"),
        ({"formatVersion": "1"}, "formatVersion: input should be 1"),
        ({"passTypeIdentifier": "com.example"}, 'passTypeIdentifier: "com.example" must start'),
        ({"storeCard": None}, "exactly one style key is required"),
        ({"coupon": {}}, "found coupon, storeCard"),
        ({"backgroundColor": "#ff0000"}, 'backgroundColor: "#ff0000" is not a color'),
        ({"labelColor": "rgb(1, 2, 256)"}, "labelColor:"),
        ({"relevantDate": "2026-05-01T10:00"}, 'relevantDate: "2026-05-01T10:00" is not a W3C'),
        ({"expirationDate": "2026-05-01"}, "expirationDate:"),
        ({"authenticationToken": "short", "webServiceURL": "https://x.test"}, "at least 16"),
        ({"webServiceURL": "https://x.test"}, "webServiceURL: authenticationToken is required"),
        ({"authenticationToken": "a" * 16}, "authenticationToken: webServiceURL is required"),
        ({"webServiceURL": "ftp://x", "authenticationToken": "a" * 16}, "must start with https"),
        ({"voided": "yes"}, "voided: input should be a valid boolean"),
        ({"locations": [{"latitude": 1.0, "longitude": 2.0}] * 11}, "locations: list should"),
        ({"locations": [{"latitude": 1.0}]}, "locations[0].longitude: required key is missing"),
        ({"beacons": [{"major": 1}]}, "beacons[0].proximityUUID: required key is missing"),
        (
            {"barcodes": [{"format": "QR", "message": "x", "messageEncoding": "utf-8"}]},
            "barcodes[0].format: input should be 'PKBarcodeFormatQR'",
        ),
        ({"barcodes": [{"format": "PKBarcodeFormatQR"}]}, "barcodes[0].message: required"),
        ({"relevantDates": [{"startDate": "2026-05-01T10:00Z"}]}, "relevantDates[0].endDate"),
        ({"nfc": {"encryptionPublicKey": "x"}}, "nfc.message: required key is missing"),
        ({"sharingProhibited": 1}, "sharingProhibited:"),
        ({"associatedStoreIdentifiers": ["123"]}, "associatedStoreIdentifiers[0]:"),
    ],
)
def test_hard_rules_are_errors_with_key_paths(changes: dict[str, Any], expected: str) -> None:
    report = validate_pass_json(changed(**changes))

    assert any(expected in error for error in report.errors), report.errors


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ({"value": 1}, "storeCard.primaryFields[0].key: required key is missing"),
        ({"key": "k"}, "storeCard.primaryFields[0].value: required key is missing"),
        ({"key": "k", "value": True}, "value: must be a string, a number or a date"),
        ({"key": "k", "value": 1, "numberStyle": "Decimal"}, "numberStyle: input should be"),
        ({"key": "k", "value": "x", "dateStyle": "PKDateStyleShort"}, "is not a W3C date"),
        ({"key": "k", "value": "2026-01-01T10:00", "timeStyle": "PKDateStyleShort"}, "W3C"),
        ({"key": "k", "value": 1, "textAlignment": "left"}, "textAlignment: input should be"),
        ({"key": "k", "value": 1, "dataDetectorTypes": ["Link"]}, "dataDetectorTypes[0]"),
    ],
)
def test_field_rules(field: dict[str, Any], expected: str) -> None:
    report = validate_pass_json(changed(storeCard={"primaryFields": [field]}))

    assert any(expected in error for error in report.errors), report.errors


def test_every_style_and_field_key_is_accepted() -> None:
    field = {
        "key": "when",
        "label": "When",
        "value": "2026-05-01T10:00:00+02:00",
        "attributedValue": "<a href='https://x.test'>link</a>",
        "changeMessage": "Now %@",
        "dateStyle": "PKDateStyleLong",
        "timeStyle": "PKDateStyleShort",
        "isRelative": True,
        "ignoresTimeZone": False,
        "textAlignment": "PKTextAlignmentCenter",
        "semantics": {"eventStartDate": "2026-05-01T10:00:00+02:00"},
    }
    extras = {
        "webServiceURL": "https://passes.example.com/",
        "authenticationToken": "0123456789abcdef",
        "foregroundColor": "rgb(255,255,255)",
        "relevantDates": [
            {"date": "2026-05-01T10:00:00Z"},
            {"startDate": "2026-05-01T10:00:00Z", "endDate": "2026-05-01T12:00:00Z"},
        ],
        "beacons": [{"proximityUUID": "E2C56DB5-DFFB-48D2-B060-D0F5A71096E0", "major": 1}],
        "nfc": {"message": "hello", "requiresAuthentication": False},
        "userInfo": {"anything": [1, 2]},
        "expirationDate": "2027-01-01T00:00:00Z",
        "voided": False,
        "sharingProhibited": True,
        "associatedStoreIdentifiers": [123456],
        "appLaunchURL": "app://open",
        "barcodes": [
            {"format": f"PKBarcodeFormat{name}", "message": "1", "messageEncoding": "iso-8859-1"}
            for name in ("QR", "PDF417", "Aztec", "Code128", "Code39", "Codabar", "EAN13", "I2of5")
        ],
    }
    for style in ("generic", "storeCard", "coupon", "eventTicket", "boardingPass"):
        structure: dict[str, Any] = {"secondaryFields": [field]}
        if style == "boardingPass":
            structure["transitType"] = "PKTransitTypeTrain"
        pass_json = {**changed(storeCard=None), style: structure, **extras}

        report = validate_pass_json(pass_json)

        assert report.errors == [], (style, report.errors)


def test_boarding_pass_needs_transit_type() -> None:
    report = validate_pass_json(changed(storeCard=None, boardingPass={"primaryFields": []}))

    assert report.errors == ["boardingPass.transitType: required on boarding passes"]


def test_unknown_keys_pass_through() -> None:
    pass_json = changed(futureAppleKey={"x": 1})
    pass_json["storeCard"]["primaryFields"][0]["futureFieldKey"] = True

    report = validate_pass_json(pass_json)

    assert report.errors == []


def test_display_guidelines_are_warnings() -> None:
    fields = [{"key": f"k{index}", "value": index} for index in range(3)]
    store_card = {
        "primaryFields": fields,
        "backFields": [
            {
                "key": "b",
                "value": "x",
                "changeMessage": "changed",
                "textAlignment": "PKTextAlignmentLeft",
            }
        ],
    }

    report = validate_pass_json(changed(storeCard=store_card))

    assert report.errors == []
    assert any("storeCard.primaryFields: 3 fields" in warning for warning in report.warnings)
    assert any("changeMessage: should contain %@" in warning for warning in report.warnings)
    assert any("textAlignment: ignored in backFields" in warning for warning in report.warnings)


def test_not_an_object_is_an_error() -> None:
    report = validate_pass_json([])  # type: ignore[arg-type]

    assert report.errors == ["pass.json: must be a JSON object"]
