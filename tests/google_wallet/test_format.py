"""The pure Google package: the derived mapping, validation, ids, JWTs, callback checks."""

from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from google_wallet.keys import ISSUER_ID, CallbackKeys, service_account_info
from passhouse.google import callbacks, ids, mapping
from passhouse.google.render import GoogleConfigError, parse_config, render_class, render_object
from passhouse.google.service_account import (
    MAX_SAVE_JWT,
    ServiceAccountError,
    load_service_account,
    save_jwt,
    save_url,
    token_assertion,
)

NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)
IMAGES = {
    "logo": "https://passes.example/google/v1/images/abc.png",
    "strip": "https://passes.example/google/v1/images/def.png",
}
STORE_CARD: dict[str, Any] = {
    "formatVersion": 1,
    "organizationName": "Acme Coffee",
    "description": "Acme rewards",
    "backgroundColor": "rgb(60, 65, 76)",
    "barcodes": [
        {
            "format": "PKBarcodeFormatQR",
            "message": "M-1",
            "messageEncoding": "utf-8",
            "altText": "M-1",
        }
    ],
    "locations": [{"latitude": 48.85, "longitude": 2.35}],
    "expirationDate": "2027-01-01T00:00:00+00:00",
    "beacons": [{"proximityUUID": "E2C56DB5-DFFB-48D2-B060-D0F5A71096E0"}],
    "storeCard": {
        "headerFields": [{"key": "points", "label": "POINTS", "value": 120}],
        "primaryFields": [
            {
                "key": "balance",
                "label": "BALANCE",
                "value": "12.50",
                "changeMessage": "Balance updated to %@",
            }
        ],
        "secondaryFields": [{"key": "name", "label": "NAME", "value": "Ada"}],
        "backFields": [{"key": "terms.v1", "label": "TERMS", "value": "Be nice"}],
    },
}


def config(pass_json: dict[str, Any], **section: Any) -> Any:
    return parse_config({"issuer_id": ISSUER_ID, **section}, pass_json)


def test_store_card_derives_a_loyalty_class_and_object() -> None:
    cfg = config(STORE_CARD)
    assert cfg.type == "loyalty"
    google_class, class_report = render_class(
        cfg, STORE_CARD, IMAGES, template_id=7, callback_url="https://passes.example/cb"
    )
    assert class_report.errors == []
    assert google_class["id"] == f"{ISSUER_ID}.ph-t7"
    assert google_class["programName"] == "Acme rewards"
    assert google_class["issuerName"] == "Acme Coffee"
    assert google_class["programLogo"]["sourceUri"]["uri"] == IMAGES["logo"]
    assert google_class["hexBackgroundColor"] == "#3c414c"
    assert google_class["reviewStatus"] == "UNDER_REVIEW"
    assert google_class["callbackOptions"] == {"url": "https://passes.example/cb"}
    obj, report = render_object(
        cfg,
        STORE_CARD,
        {},
        IMAGES,
        template_id=7,
        pass_type_id="pass.x",
        serial_number="s~1",
        voided=False,
        now=NOW,
    )
    assert report.errors == []
    assert obj["classId"] == google_class["id"]
    assert obj["id"].startswith(f"{ISSUER_ID}.ph-")
    assert obj["id"].endswith("-s_1")
    assert obj["state"] == "ACTIVE"
    assert obj["loyaltyPoints"] == {"label": "BALANCE", "balance": {"string": "12.50"}}
    assert [m["id"] for m in obj["textModulesData"]] == ["points", "name", "terms_v1"]
    assert obj["barcode"] == {"type": "QR_CODE", "value": "M-1", "alternateText": "M-1"}
    assert obj["merchantLocations"] == [{"latitude": 48.85, "longitude": 2.35}]
    assert obj["validTimeInterval"] == {"end": {"date": "2027-01-01T00:00:00+00:00"}}
    assert obj["heroImage"]["sourceUri"]["uri"] == IMAGES["strip"]
    assert any("pass.json.beacons" in w for w in report.warnings)


def test_void_and_expiry_set_the_state() -> None:
    cfg = config(STORE_CARD)
    kwargs: dict[str, Any] = dict(template_id=1, pass_type_id="p", serial_number="s")
    voided, _ = render_object(cfg, STORE_CARD, {}, IMAGES, voided=True, now=NOW, **kwargs)
    assert voided["state"] == "INACTIVE"
    later = dt.datetime(2027, 2, 1, tzinfo=dt.UTC)
    expired, _ = render_object(cfg, STORE_CARD, {}, IMAGES, voided=False, now=later, **kwargs)
    assert expired["state"] == "EXPIRED"


def test_generic_gets_card_title_and_header() -> None:
    pass_json = copy.deepcopy(STORE_CARD)
    pass_json["generic"] = pass_json.pop("storeCard")
    cfg = config(pass_json)
    assert cfg.type == "generic"
    obj, report = render_object(
        cfg,
        pass_json,
        {},
        IMAGES,
        template_id=1,
        pass_type_id="p",
        serial_number="s",
        voided=False,
        now=NOW,
    )
    assert report.errors == []
    assert obj["cardTitle"]["defaultValue"]["value"] == "Acme Coffee"
    assert obj["header"]["defaultValue"]["value"] == "12.50"
    assert obj["hexBackgroundColor"] == "#3c414c"


def test_more_than_ten_fields_are_named_in_a_warning() -> None:
    pass_json = copy.deepcopy(STORE_CARD)
    pass_json["storeCard"]["backFields"] = [
        {"key": f"f{i}", "label": "L", "value": "v"} for i in range(12)
    ]
    obj, report = render_object(
        config(pass_json),
        pass_json,
        {},
        IMAGES,
        template_id=1,
        pass_type_id="p",
        serial_number="s",
        voided=False,
        now=NOW,
    )
    assert len(obj["textModulesData"]) == 10
    assert any("not carried over: f8, f9, f10, f11" in w for w in report.warnings)


def test_class_values_with_placeholders_are_left_out_with_a_warning() -> None:
    pass_json = dict(STORE_CARD, organizationName="{{shop}}")
    google_class, report = render_class(
        config(pass_json), pass_json, IMAGES, template_id=1, callback_url="https://x/cb"
    )
    assert "issuerName" not in google_class
    assert "google.class.issuerName: required key is missing" in report.errors
    assert any("pass.json.organizationName: differs per pass" in w for w in report.warnings)


def test_a_loyalty_class_without_a_logo_is_an_error_with_its_key_path() -> None:
    _, report = render_class(
        config(STORE_CARD), STORE_CARD, {}, template_id=1, callback_url="https://x/cb"
    )
    assert report.errors == ["google.class.programLogo: required key is missing"]


def test_explicit_object_takes_placeholders_and_server_keys_win() -> None:
    section = {
        "type": "generic",
        "object": {
            "id": "someone-else",
            "state": "ACTIVE",
            "cardTitle": {"defaultValue": {"language": "en", "value": "Gym"}},
            "header": {"defaultValue": {"language": "en", "value": "{{name}}"}},
        },
    }
    cfg = config(STORE_CARD, **section)
    obj, report = render_object(
        cfg,
        STORE_CARD,
        {"name": "Ada"},
        IMAGES,
        template_id=3,
        pass_type_id="p",
        serial_number="s",
        voided=True,
        now=NOW,
    )
    assert report.errors == []
    assert obj["header"]["defaultValue"]["value"] == "Ada"
    assert obj["id"] == ids.object_id(ISSUER_ID, "p", "s")
    assert obj["state"] == "INACTIVE"
    _, missing = render_object(
        cfg,
        STORE_CARD,
        {},
        IMAGES,
        template_id=3,
        pass_type_id="p",
        serial_number="s",
        voided=False,
        now=NOW,
    )
    assert missing.errors
    assert "{{name}}" in missing.errors[0]


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ({"issuer_id": "abc"}, "google.issuer_id: required"),
        ({"issuer_id": ISSUER_ID, "type": "bus"}, "google.type: must be one of"),
        ({"issuer_id": ISSUER_ID, "type": "flight"}, "google.class: required for flight"),
        ({"issuer_id": ISSUER_ID, "class": {"issuerName": "{{x}}"}}, "cannot use {{placeholders}}"),
        ({"issuer_id": ISSUER_ID, "colour": 1}, "google.colour: unknown key"),
        ({"issuer_id": ISSUER_ID, "object": []}, "google.object: must be a JSON object"),
    ],
)
def test_bad_sections_name_the_key(section: dict[str, Any], expected: str) -> None:
    with pytest.raises(GoogleConfigError) as caught:
        parse_config(section, STORE_CARD)
    assert any(expected in problem for problem in caught.value.problems)


def test_validation_catches_google_rules() -> None:
    cfg = config(
        STORE_CARD,
        type="generic",
        object={
            "cardTitle": {"defaultValue": {"language": "en", "value": "x"}},
            "header": "not localized",
            "hexBackgroundColor": "blue",
            "barcode": {"type": "QR"},
            "textModulesData": [{"id": "a.b", "header": "h" * 40, "body": "b"}],
            "logo": {"sourceUri": {"uri": "http://localhost/logo.png"}},
        },
    )
    _, report = render_object(
        cfg,
        STORE_CARD,
        {},
        IMAGES,
        template_id=1,
        pass_type_id="p",
        serial_number="s",
        voided=False,
        now=NOW,
    )
    text = "\n".join(report.errors)
    assert "google.object.header: must be a localized string" in text
    assert "google.object.hexBackgroundColor" in text
    assert "google.object.barcode.type" in text
    assert "google.object.textModulesData[0].id: may not contain dots" in text
    assert "google.object.logo.sourceUri.uri: must be a public https://" in text
    assert any("textModulesData[0].header: longer than 35" in w for w in report.warnings)


def test_resource_ids() -> None:
    assert ids.resource_id_problem(f"{ISSUER_ID}.ok-1_2.3", ISSUER_ID) is None
    assert ids.resource_id_problem(f"{ISSUER_ID}.bad/slash", ISSUER_ID)
    assert ids.resource_id_problem("999.x", ISSUER_ID)
    long_serial = "s" * 128
    object_id = ids.object_id(ISSUER_ID, "p" * 255, long_serial)
    assert ids.resource_id_problem(object_id, ISSUER_ID) is None


def test_change_messages_fill_the_value() -> None:
    assert mapping.change_messages(STORE_CARD) == {"balance": ("Balance updated to 12.50", "12.50")}


def test_service_account_problems_are_one_sentence() -> None:
    info = service_account_info("https://oauth2.example/token")
    assert load_service_account(info).client_email == info["client_email"]
    for broken, words in [
        ({**info, "type": "authorized_user"}, "not a service account key file"),
        ({**info, "private_key": "nope"}, "not a readable PEM key"),
        ({k: v for k, v in info.items() if k != "client_email"}, "lacks client_email"),
    ]:
        with pytest.raises(ServiceAccountError, match=words):
            load_service_account(broken)


def test_save_jwt_refers_to_the_object_and_is_short() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    account = load_service_account(service_account_info("https://o.example/token", key))
    object_id = ids.object_id(ISSUER_ID, "p" * 255, "s" * 128)
    token = save_jwt(account, "eventTicket", object_id, origins=["passes.example"], now=1_000)
    url = save_url("https://pay.google.com/gp/v/save/", token)
    assert url == "https://pay.google.com/gp/v/save/" + token
    assert len(token) < MAX_SAVE_JWT
    claims = jwt.decode(token, key.public_key(), algorithms=["RS256"], audience="google")
    assert claims["typ"] == "savetowallet"
    assert claims["iat"] == 1_000
    assert claims["payload"] == {"eventTicketObjects": [{"id": object_id}]}
    assert jwt.get_unverified_header(token)["kid"] == "0123456789abcdef"
    assertion = jwt.decode(
        token_assertion(account, now=1_000),
        key.public_key(),
        algorithms=["RS256"],
        audience="https://o.example/token",
        options={"verify_exp": False, "verify_iat": False},
    )
    assert assertion["exp"] - assertion["iat"] == 3600
    assert assertion["scope"] == "https://www.googleapis.com/auth/wallet_object.issuer"
    with pytest.raises(ServiceAccountError, match="above Google's 1800"):
        save_url("https://pay.google.com/gp/v/save/", "x" * 1801)


# --- callbacks ---------------------------------------------------------------------------

KEYS = CallbackKeys.generate()
OBJECT = f"{ISSUER_ID}.ph-abc-s1"


def verify(body: Any, keys: CallbackKeys = KEYS) -> callbacks.CallbackEvent:
    now = dt.datetime.now(dt.UTC).timestamp() * 1000
    roots = callbacks.usable_root_keys(keys.keys_document(), now_ms=int(now))
    issuer, event = callbacks.verify_callback(
        body, issuer_ids=["111", ISSUER_ID], root_keys=roots, now_ms=int(now)
    )
    assert issuer == ISSUER_ID
    return event


def test_a_signed_callback_verifies() -> None:
    body = KEYS.callback(
        class_id=f"{ISSUER_ID}.ph-t1", object_id=OBJECT, event_type="save", nonce="n-1"
    )
    event = verify(body)
    assert (event.object_id, event.event_type, event.nonce) == (OBJECT, "save", "n-1")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"sender": "GoogleWalletPasses"}, "not signed by a Google root key"),
        ({"recipient": "merchant:" + ISSUER_ID}, "does not verify for a known issuer"),
        ({"message_expires_in_ms": -120_000}, "message has expired"),
        ({"key_expires_in_ms": -1}, "intermediate signing key has expired"),
        ({"signing_key": ec.generate_private_key(ec.SECP256R1())}, "does not verify"),
    ],
)
def test_forged_or_expired_callbacks_are_refused(change: dict[str, Any], reason: str) -> None:
    body = KEYS.callback(class_id="c", object_id=OBJECT, event_type="del", **change)
    with pytest.raises(callbacks.CallbackRejected, match=reason):
        verify(body)


def test_a_tampered_message_or_foreign_root_is_refused() -> None:
    body = KEYS.callback(class_id="c", object_id=OBJECT, event_type="save")
    message = json.loads(body["signedMessage"])
    body["signedMessage"] = json.dumps({**message, "objectId": f"{ISSUER_ID}.other"})
    with pytest.raises(callbacks.CallbackRejected):
        verify(body)
    wrong_protocol = CallbackKeys(KEYS.root, KEYS.intermediate, root_protocol="ECv2")
    good = KEYS.callback(class_id="c", object_id=OBJECT, event_type="save")
    with pytest.raises(callbacks.CallbackRejected, match="root key"):
        verify(good, wrong_protocol)
    with pytest.raises(callbacks.CallbackRejected, match="protocolVersion"):
        verify({**good, "protocolVersion": "ECv1"})
