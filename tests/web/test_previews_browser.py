"""Previews, the designer and the landing page in real Chromium: each style draws its fields
and a barcode that decodes back to its message, the designer follows edits and puts errors
by their key, the landing page offers the right button per phone and a QR code of itself;
phone widths never scroll sideways; axe-core finds no serious violation. Screenshots of each
page at desktop and phone width go to PASSHOUSE_DASHBOARD_SCREENSHOTS, else to
.screenshots/ (ignored by git)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import zxingcpp
from PIL import Image

from conftest import ADMIN_TOKEN, PASS_TYPE_ID, TEMPLATE_JSON
from passhouse import devmode
from passhouse.examples import TEMPLATES
from passhouse.pkpass.template import Template
from passhouse.storage import search as storage_search
from passhouse.storage import tables
from pkpass.conftest import SAMPLE_DATA, STYLES
from web.test_dashboard import (  # the same server and browser as the dashboard's own tests
    CHROMIUM,
    CHROMIUM_ARGS,
    SCREENSHOTS_ENV,
    _accept,
    _browser_or_skip,
    browser_page,
    server_url,
)

__all__ = ["browser_page", "server_url"]  # fixtures, used by name

AXE = (Path(__file__).parent / "vendor" / "axe.min.js").read_text()
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
# One of Wallet's four drawable barcodes per style, so every format is drawn and decoded.
FORMATS = {
    "boardingPass": ("PKBarcodeFormatPDF417", zxingcpp.BarcodeFormat.PDF417),
    "coupon": ("PKBarcodeFormatAztec", zxingcpp.BarcodeFormat.Aztec),
    "eventTicket": ("PKBarcodeFormatQR", zxingcpp.BarcodeFormat.QRCode),
    "generic": ("PKBarcodeFormatCode128", zxingcpp.BarcodeFormat.Code128),
    "storeCard": ("PKBarcodeFormatQR", zxingcpp.BarcodeFormat.QRCode),
}
IPHONE_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"
)
ANDROID_UA = (
    "Mozilla/5.0 (Linux; Android 15; Pixel 9) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36"
)
DESKTOP_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)


def screenshot_folder() -> Path:
    folder = Path(os.environ.get(SCREENSHOTS_ENV) or Path(__file__).parents[2] / ".screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


async def shots(page: Any, name: str) -> None:
    """A screenshot at desktop and at phone width; at phone width nothing scrolls sideways."""
    folder = screenshot_folder()
    for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
        await page.set_viewport_size(size)
        await page.wait_for_timeout(500)  # the layout, and the preview frames repainted
        await page.screenshot(path=str(folder / f"{name}-{label}.png"), full_page=True)
        if label == "phone":
            overflow = await page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"{name}: {overflow} px of horizontal scrolling at 390 px"
    await page.set_viewport_size(DESKTOP)


async def assert_accessible(page: Any, name: str) -> None:
    """axe-core (vendored) in the page: no serious or critical violation."""
    await page.evaluate(AXE)  # through the DevTools protocol: the page's CSP still holds
    result = await page.evaluate(
        "axe.run(document, {resultTypes: ['violations']}).then(r => r.violations.map("
        "v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target)})))"
    )
    serious = [v for v in result if v["impact"] in ("serious", "critical")]
    assert not serious, (name, serious)


async def decode(element: Any) -> list[tuple[str, Any]]:
    png = await element.screenshot()
    image = await asyncio.to_thread(lambda: Image.open(io.BytesIO(png)).convert("L"))
    return [(found.text, found.format) for found in zxingcpp.read_barcodes(image)]


async def sign_in(page: Any, url: str) -> None:
    await page.goto(url)
    await page.get_by_label("API key").fill(ADMIN_TOKEN)
    await page.get_by_role("button", name="Sign in").click()


def example_body(style: str) -> dict[str, Any]:
    template = Template.from_directory(TEMPLATES / style)
    pass_json = json.loads(json.dumps(template.pass_json))
    pass_json["barcodes"][0]["format"] = FORMATS[style][0]
    return {
        "name": f"example-{style.lower()}",
        "pass_type_id": PASS_TYPE_ID,
        "pass_json": pass_json,
        "assets": {k: base64.b64encode(v).decode() for k, v in template.assets.items()},
    }


@pytest.mark.slow
async def test_every_style_previews_its_fields_and_a_barcode_that_decodes(
    browser_page: Any, server_url: str, admin: httpx.AsyncClient, pass_type: str
) -> None:
    page = browser_page
    issued: dict[str, dict[str, Any]] = {}
    for style in STYLES:
        body = example_body(style)
        created = await admin.post("/api/v1/templates", json=body)
        assert created.status_code == 201, created.text
        response = await admin.post(
            "/api/v1/passes",
            json={
                "template": body["name"],
                "serial_number": f"ex-{style}",
                "data": SAMPLE_DATA[style],
            },
        )
        assert response.status_code == 201, response.text
        issued[style] = response.json()
    # A pass on a device: its page lists the device and still opens cleanly.
    boarding = issued["boardingPass"]
    pkpass = await admin.get(f"{passes_path(boarding)}/pkpass")
    await register(pkpass.content, server_url)

    await sign_in(page, f"{server_url}/dashboard")
    await page.get_by_role("heading", name="Overview").wait_for()
    for style in STYLES:
        wallet_pass = issued[style]
        await page.goto(f"{server_url}/dashboard#/passes/{PASS_TYPE_ID}/ex-{style}")
        await page.get_by_role("heading", name=f"ex-{style}").wait_for()
        frame = page.frame_locator("#pass-frame")
        await frame.locator(f"article.pkp-{style}").wait_for()
        structure = (await admin.get(f"{passes_path(wallet_pass)}/preview")).json()["pass_json"][
            style
        ]
        for group in ("headerFields", "primaryFields", "secondaryFields", "auxiliaryFields"):
            for field in structure.get(group, []):
                cell = frame.locator(f'.pkp-field[data-key="{field["key"]}"] .pkp-value')
                assert await cell.count() == 1, (style, field["key"])
                assert (await cell.inner_text()).strip(), (style, field["key"])
        barcode = frame.locator(".pkp-barcode")
        message = await barcode.get_attribute("data-message")
        decoded = await decode(barcode.locator("svg"))
        assert (message, FORMATS[style][1]) in decoded, (style, message, decoded)
        assert "approximation" in await frame.locator(".pkp-note").inner_text()
        await shots(page, f"pass-{style}")
    await page.goto(f"{server_url}/dashboard#/passes/{PASS_TYPE_ID}/ex-boardingPass")
    devices = page.locator("table", has=page.get_by_role("columnheader", name="Registered"))
    await devices.locator("tbody tr").first.wait_for()
    assert "Something went wrong" not in await page.locator("main").inner_text()
    await assert_accessible(page, "pass")

    await page.goto(f"{server_url}/dashboard#/templates")
    await page.get_by_role("heading", name="Templates").wait_for()
    await page.frame_locator("#template-gallery iframe").first.locator("article.pkp").wait_for()
    await shots(page, "templates")
    await assert_accessible(page, "templates")
    await page.goto(f"{server_url}/dashboard#/overview")
    await page.get_by_role("heading", name="Activity").wait_for()
    assert await page.locator("#count-passes").inner_text() == str(len(STYLES))
    await shots(page, "overview")
    await assert_accessible(page, "overview")
    await page.goto(f"{server_url}/dashboard#/passes")
    await page.locator("#pass-table").wait_for()
    await shots(page, "passes")
    await assert_accessible(page, "passes")


def keep_error(message: Any, seen: list[str]) -> None:
    if message.type == "error":
        seen.append(message.text)


def passes_path(wallet_pass: dict[str, Any]) -> str:
    return f"/api/v1/passes/{wallet_pass['pass_type_id']}/{wallet_pass['serial_number']}"


async def register(pkpass: bytes, server_url: str) -> None:
    import zipfile

    with zipfile.ZipFile(io.BytesIO(pkpass)) as archive:
        pass_json = json.loads(archive.read("pass.json"))
    url = (
        f"{server_url}/passkit/v1/devices/{'ab' * 16}/registrations/"
        f"{pass_json['passTypeIdentifier']}/{pass_json['serialNumber']}"
    )
    async with httpx.AsyncClient(trust_env=False) as http:
        response = await http.post(
            url,
            json={"pushToken": "fe" * 32},
            headers={"Authorization": f"ApplePass {pass_json['authenticationToken']}"},
        )
    assert response.status_code == 201, response.text


@pytest.mark.slow
async def test_the_designer_follows_edits_and_puts_errors_by_their_key(
    browser_page: Any, server_url: str, admin: httpx.AsyncClient, template: str
) -> None:
    page = browser_page
    messages: list[str] = []

    async def accept(dialog: Any) -> None:
        messages.append(dialog.message)
        await _accept(dialog)

    page.on("dialog", accept)
    await admin.post(
        "/api/v1/passes", json={"template": template, "data": {"name": "Grace", "balance": 3}}
    )
    await sign_in(page, f"{server_url}/dashboard#/templates/{template}")
    await page.get_by_role("heading", name="Designer").wait_for()
    frame = page.frame_locator("#design-frame")
    # The sample is the newest pass's data: the preview shows it.
    await frame.get_by_text("Grace").first.wait_for()
    await page.locator("#design-status", has_text="No errors").wait_for()

    editor = page.get_by_label("pass.json (with {{placeholders}})")
    text = await editor.input_value()
    wrong = text.replace('"organizationName"', '"organisationName"', 1)
    await editor.fill(wrong)
    near = page.locator("#design-json-problems li", has_text="organizationName")
    await near.wait_for()
    line = next(
        n for n, content in enumerate(wrong.split("\n"), start=1) if "organisationName" in content
    )
    # The required key is missing from the object that starts on line 1; the misspelt key's
    # own line carries its error too when the validator names it.
    flagged = page.locator(".gutter .ln.err")
    assert await flagged.count() >= 1
    assert "organizationName" in (await flagged.first.get_attribute("title") or "")
    assert "line 1" in await near.inner_text() or f"line {line}" in await near.inner_text()
    await shots(page, "designer-error")

    fixed = text.replace('"Demo café"', '"Designed café"')  # logoText
    assert fixed != text
    await editor.fill(fixed)
    await frame.locator(".pkp-logo-text", has_text="Designed café").wait_for()
    assert await page.locator("#design-json-problems li").count() == 0

    # A file by drag and drop (the picker is the same path): its check sits next to it.
    strip = devmode.solid_png(2000, 400)
    await page.locator("#design-files").set_input_files(
        {"name": "strip.png", "mimeType": "image/png", "buffer": strip}
    )
    row = page.locator('tr[data-file="strip.png"]')
    await row.locator("td.file-check li", has_text="2000 x 400 px").wait_for()
    await frame.locator(".pkp-strip").wait_for()
    await assert_accessible(page, "designer")
    await shots(page, "designer")

    await page.get_by_role("button", name="Save as new version").click()
    await page.locator("main > .banner.note", has_text="Saved as revision 2").wait_for()
    assert len(messages) == 1
    assert "revision 2" in messages[0]
    assert "1 pass get" in messages[0] or "1 pass gets" in messages[0] or "1 pass" in messages[0]
    assert "0 devices" in messages[0]
    saved = (await admin.get(f"/api/v1/templates/{template}")).json()
    assert saved["revision"] == 2
    assert saved["pass_json"]["logoText"] == "Designed café"
    assert "strip.png" in saved["assets"]


@pytest.mark.slow
async def test_the_landing_page_offers_the_right_button_and_a_qr_code_of_itself(
    server_url: str, admin: httpx.AsyncClient, template: str
) -> None:
    playwright_api = _browser_or_skip()
    created = await admin.post(
        "/api/v1/passes", json={"template": template, "data": {"name": "Ada", "balance": 7}}
    )
    # The admin client's app has another public URL; the server's page names its own.
    share_url = server_url + httpx.URL(created.json()["urls"]["share"]).path
    cases = [
        ("iphone", IPHONE_UA, "en-US", ["Add to Apple Wallet"]),
        ("android", ANDROID_UA, "de-DE", ["Pass (.pkpass) für eine Wallet-App herunterladen"]),
        ("desktop", DESKTOP_UA, "fr-FR", ["Ajouter à Apple Wallet"]),
    ]
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            for name, agent, language, expected in cases:
                context = await browser.new_context(
                    user_agent=agent,
                    locale=language,
                    extra_http_headers={"Accept-Language": language},
                    java_script_enabled=False,  # it needs none
                )
                page = await context.new_page()
                errors: list[str] = []
                page.on("console", lambda m, seen=errors: keep_error(m, seen))
                response = await page.goto(share_url)
                assert response.status == 200
                links = page.locator(".actions a")
                assert [t.strip() for t in await links.all_inner_texts()] == expected, name
                await page.locator("article.pkp").wait_for()
                assert "Test café" in await page.locator(".issuer").inner_text()
                qr = page.locator(".qr svg")
                if name == "desktop":
                    assert (share_url, zxingcpp.BarcodeFormat.QRCode) in await decode(qr)
                else:
                    assert await qr.count() == 0
                await shots(page, f"landing-{name}")
                await context.close()
                context = await browser.new_context(user_agent=agent, locale=language)
                page = await context.new_page()
                await page.goto(share_url)
                await assert_accessible(page, f"landing-{name}")
                await context.close()
                assert errors == [], errors  # no CSP refusal: every image and style allowed
        finally:
            await browser.close()


@pytest.mark.slow
async def test_search_finds_a_holder_among_ten_thousand_and_the_form_edits_nested_data(
    browser_page: Any, server_url: str, admin: httpx.AsyncClient, runtime: Any, template: str
) -> None:
    page = browser_page
    seats = json.loads(json.dumps(TEMPLATE_JSON))
    seats["storeCard"]["auxiliaryFields"] = [
        {"key": "seat", "label": "Seat", "value": "{{seat.section}}-{{seat.number}}"}
    ]
    created = await admin.post(
        "/api/v1/templates",
        json={
            "name": "seats",
            "pass_type_id": PASS_TYPE_ID,
            "pass_json": seats,
            "assets": {k: base64.b64encode(v).decode() for k, v in devmode.demo_assets().items()},
        },
    )
    assert created.status_code == 201, created.text
    # 10,000 holders written set-based, with the search words the API writes for each.
    await many_passes(runtime, template, 10_000)
    wanted = await admin.post(
        "/api/v1/passes",
        json={
            "template": "seats",
            "serial_number": "zeb-1",
            "data": {"name": "Zebulon Quist", "balance": 2, "seat": {"section": "C", "number": 4}},
        },
    )
    assert wanted.status_code == 201, wanted.text

    await sign_in(page, f"{server_url}/dashboard#/passes")
    rows = page.locator("#pass-table tbody tr")
    await rows.first.wait_for()
    assert "zeb-1" in await rows.first.inner_text()  # newest first
    await page.get_by_label("Search").fill("zebulon")
    await page.get_by_role("button", name="Search", exact=True).click()
    await page.locator("#pass-table tbody tr", has_text="zeb-1").wait_for()
    assert await rows.count() == 1
    await shots(page, "passes-search")

    await page.get_by_role("link", name="zeb-1").click()
    await page.get_by_role("heading", name="zeb-1").wait_for()
    await page.frame_locator("#pass-frame").locator('[data-key="seat"]', has_text="C-4").wait_for()
    assert await page.get_by_role("group", name="seat").count() == 1  # a nested fieldset
    await page.get_by_label("seat.number").fill("17")
    await page.get_by_role("button", name="Save changes").click()
    await page.locator("main > .banner.note", has_text="Saved as version").wait_for()
    saved = (await admin.get(f"/api/v1/passes/{PASS_TYPE_ID}/zeb-1")).json()
    assert saved["data"]["seat"] == {"section": "C", "number": 17}  # still a number
    await page.frame_locator("#pass-frame").locator('[data-key="seat"]', has_text="C-17").wait_for()
    await shots(page, "pass-form")
    await assert_accessible(page, "pass-form")


async def many_passes(runtime: Any, template: str, count: int) -> None:
    """`count` passes in two statements (ids from the table's own sequence), and the search
    words the API writes for each."""
    async with runtime.database.transaction() as conn:
        template_id = await conn.scalar(
            sa.select(tables.templates.c.id).where(tables.templates.c.name == template)
        )
        data = {n: {"name": f"Holder {n:05d}", "balance": n} for n in range(1, count + 1)}
        rows: list[dict[str, Any]] = [
            {
                "pass_type_id": PASS_TYPE_ID,
                "serial_number": f"bulk-{n:05d}",
                "template_id": template_id,
                "authentication_token": f"token-{n:05d}-0123456789",
                "share_id": f"share-bulk-{n:05d}",
                "data": data[n],
                "voided": False,
                "version": n,
                "modified_at": 1_700_000_000 + n,
                "created_at": 1_700_000_000 + n,
            }
            for n in data
        ]
        await conn.execute(tables.passes.insert(), rows)
        ids = await conn.execute(
            sa.select(tables.passes.c.id, tables.passes.c.serial_number).where(
                tables.passes.c.serial_number.like("bulk-%")
            )
        )
        terms: list[dict[str, Any]] = [
            {"term": term, "pass_id": pass_id}
            for pass_id, serial in ids
            for term in storage_search.terms_of(serial, data[int(serial.removeprefix("bulk-"))])
        ]
        await conn.execute(tables.pass_search_terms.insert(), terms)
        await conn.execute(
            sa.update(tables.pass_types).values(
                last_version=tables.pass_types.c.last_version + count
            )
        )
