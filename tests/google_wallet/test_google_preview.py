"""The Google card in the admin preview API and on the landing page, against the fake Google:
the card of a pass is drawn from exactly the class and object the sync wrote to Google; a
draft (the designer's live preview) gets its card from the template's section or its own;
templates not opted in get none; hostile pass data stays text."""

from __future__ import annotations

import re

import httpx

from google_wallet.conftest import drain
from google_wallet.fake_google import FakeGoogle
from google_wallet.keys import ISSUER_ID
from google_wallet.test_google_api import issue, make_template
from passhouse.google_sync import GoogleSync

ANDROID = "Mozilla/5.0 (Linux; Android 15; Pixel 9) AppleWebKit/537.36 Chrome/131 Mobile"
IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15"
DESKTOP = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131 Safari/537.36"


async def test_the_pass_preview_draws_the_object_the_sync_sent(
    admin: httpx.AsyncClient,
    pass_type: str,
    issuer: str,
    fake_google: FakeGoogle,
    google_sync: GoogleSync,
) -> None:
    template = await make_template(admin, pass_type)
    issued = await issue(admin, "prev-1", balance=42)
    await drain(google_sync)

    preview = (await admin.get(f"/api/v1/passes/{pass_type}/prev-1/preview")).json()

    google = preview["google"]
    assert google["type"] == "loyalty"
    assert google["state"] == "ACTIVE"
    assert google["errors"] == []
    object_id = issued["google"]["object_id"]
    sent = dict(fake_google.object_writes(object_id)[-1].body)
    sent.pop("hasUsers")  # set by the fake on insert, as Google does
    assert google["object"] == sent  # the very JSON Google got: the card cannot drift
    class_sent = dict(fake_google.class_writes()[-1].body)
    assert class_sent.pop("reviewStatus") == "APPROVED"  # the fake approves it in place
    assert google["class"].pop("reviewStatus") == "UNDER_REVIEW"  # what passhouse sends
    assert google["class"] == class_sent
    assert google["class"]["id"] == f"{ISSUER_ID}.ph-t{template['id']}"
    html = google["html"]
    assert html.startswith("<!doctype html>")
    assert 'data-id="loyaltyPoints"' in html
    assert '<span class="gwc-value">42</span>' in html
    assert 'class="gwc-logo" src="data:image/png;base64,' in html  # Google's URL, drawn here
    assert "approximation" in html
    assert preview["html"].startswith("<!doctype html>")  # the Apple preview is still there

    assert (await admin.post(f"/api/v1/passes/{pass_type}/prev-1/void")).status_code == 200
    voided = (await admin.get(f"/api/v1/passes/{pass_type}/prev-1/preview")).json()
    assert voided["google"]["state"] == "INACTIVE"
    assert "Inactive" in voided["google"]["html"]


async def test_passes_of_templates_not_opted_in_have_no_card(
    admin: httpx.AsyncClient, pass_type: str, wallet_pass: object
) -> None:
    listed = (await admin.get("/api/v1/passes")).json()["items"]
    one = listed[0]
    preview = await admin.get(
        f"/api/v1/passes/{one['pass_type_id']}/{one['serial_number']}/preview"
    )
    assert preview.status_code == 200
    assert preview.json()["google"] is None
    draft = await admin.post(
        "/api/v1/previews", json={"template": "card", "pass_json": {"formatVersion": 1}}
    )
    assert draft.json()["google"] is None


async def test_a_draft_gets_the_card_of_its_template_or_of_its_own_section(
    admin: httpx.AsyncClient, pass_type: str, issuer: str
) -> None:
    template = await make_template(admin, pass_type)
    pass_json = template["pass_json"]

    stored = await admin.post(
        "/api/v1/previews",
        json={"template": "card", "pass_json": pass_json, "data": {"name": "Zoë", "balance": 3}},
    )
    assert stored.status_code == 200, stored.text
    google = stored.json()["google"]
    assert google["type"] == "loyalty"
    assert google["object"]["loyaltyPoints"]["balance"] == {"string": "3"}
    assert google["class"]["id"] == f"{ISSUER_ID}.ph-t{template['id']}"

    # The designer sends the section it edits: a generic card with an object of its own.
    own = await admin.post(
        "/api/v1/previews",
        json={
            "pass_json": pass_json,
            "pass_type_id": pass_type,
            "data": {"name": "Zoë", "balance": 3},
            "google": {
                "issuer_id": ISSUER_ID,
                "type": "generic",
                "object": {
                    "cardTitle": {"defaultValue": {"language": "en", "value": "Club"}},
                    "header": {"defaultValue": {"language": "en", "value": "{{name}}"}},
                    "hexBackgroundColor": "#123456",
                    "barcode": {"type": "QR_CODE", "value": "M-{{balance}}"},
                },
            },
        },
    )
    assert own.status_code == 200, own.text
    card = own.json()["google"]
    assert card["type"] == "generic"
    assert '<p class="gwc-header">Zoë</p>' in card["html"]
    assert 'data-value="M-3"' in card["html"]
    assert "--gwc-bg:#123456" in card["html"]

    broken = await admin.post(
        "/api/v1/previews",
        json={"pass_json": pass_json, "google": {"issuer_id": "x", "type": "nope"}},
    )
    assert broken.status_code == 200  # a draft's problems are its answer
    paths = [e["path"] for e in broken.json()["google"]["errors"]]
    assert "google.issuer_id" in paths
    assert "google.type" in paths


async def test_hostile_pass_data_stays_text_in_the_card(
    admin: httpx.AsyncClient, pass_type: str, issuer: str, google_sync: GoogleSync
) -> None:
    await make_template(admin, pass_type)
    evil = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    await issue(admin, "evil-1", name=evil, balance=evil)
    await drain(google_sync)
    google = (await admin.get(f"/api/v1/passes/{pass_type}/evil-1/preview")).json()["google"]
    assert google["object"]["loyaltyPoints"]["balance"]["string"] == evil
    assert "<script" not in google["html"]
    assert "<img src=x" not in google["html"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in google["html"]


async def test_the_landing_page_shows_the_card_on_android_and_desktop_not_on_iphone(
    admin: httpx.AsyncClient, pass_type: str, issuer: str
) -> None:
    await make_template(admin, pass_type)
    issued = await issue(admin, "land-2", balance=9)
    share = issued["urls"]["share"]
    for agent, shown in ((ANDROID, True), (DESKTOP, True), (IPHONE, False)):
        page = await admin.get(share, headers={"user-agent": agent})
        assert page.status_code == 200
        assert ('class="gwc gwc-loyalty"' in page.text) is shown, agent
        assert 'class="pkp pkp-storeCard"' in page.text  # the Apple preview stays
        assert "<script" not in page.text
        csp = page.headers["content-security-policy"]
        style = re.search(r"<style>(.*?)</style>", page.text, re.DOTALL)
        assert style
        assert "img-src data:" in csp
    android = (await admin.get(share, headers={"user-agent": ANDROID})).text
    assert android.index('class="gwc ') < android.index('class="pkp ')  # Google first
