"""The Google Wallet card in real Chromium, for a template opted in to Google (the fake Google
on loopback): beside the Apple preview on the pass page with the Google state and last sync,
its barcode decoding back to the object's value; in the designer, following the sample data
as it is typed; on the landing page for an Android phone, with no script. axe-core finds no
serious violation; phone widths never scroll sideways (screenshots as in the other browser
tests)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import zxingcpp

from google_wallet.conftest import drain
from google_wallet.test_google_api import issue, make_template
from passhouse.google_sync import GoogleSync
from web.test_dashboard import CHROMIUM, CHROMIUM_ARGS, _browser_or_skip, browser_page, server_url
from web.test_previews_browser import (
    ANDROID_UA,
    assert_accessible,
    decode,
    keep_error,
    shots,
    sign_in,
)

__all__ = ["browser_page", "server_url"]  # fixtures, used by name


@pytest.mark.slow
async def test_the_google_card_shows_beside_the_apple_preview_and_its_barcode_decodes(
    browser_page: Any,
    server_url: str,
    admin: httpx.AsyncClient,
    pass_type: str,
    issuer: str,
    google_sync: GoogleSync,
) -> None:
    page = browser_page
    await make_template(admin, pass_type)
    issued = await issue(admin, "g-1", name="Grace Hopper", balance=31)
    await drain(google_sync)
    preview = (await admin.get(f"/api/v1/passes/{pass_type}/g-1/preview")).json()
    value = preview["google"]["object"]["barcode"]["value"]
    assert value == "Grace Hopper"

    await sign_in(page, f"{server_url}/dashboard#/passes/{pass_type}/g-1")
    await page.get_by_role("heading", name="g-1").wait_for()
    apple = page.frame_locator("#pass-frame")
    google = page.frame_locator("#pass-google-frame")
    await apple.locator("article.pkp-storeCard").wait_for()
    await google.locator("article.gwc-loyalty").wait_for()
    assert await google.locator('[data-id="loyaltyPoints"] .gwc-value').inner_text() == "31"
    assert "approximation" in await google.locator(".gwc-note").inner_text()
    barcode = google.locator(".gwc-barcode")
    assert await barcode.get_attribute("data-value") == value
    assert (value, zxingcpp.BarcodeFormat.QRCode) in await decode(barcode.locator("svg"))
    # Beside: side by side at desktop width, Google's to the right of Apple's.
    apple_box = await page.locator("#pass-frame").bounding_box()
    google_box = await page.locator("#pass-google-frame").bounding_box()
    assert apple_box
    assert google_box
    assert google_box["x"] >= apple_box["x"] + apple_box["width"]
    assert abs(google_box["y"] - apple_box["y"]) < 40
    # The Google state and last sync, in their own block.
    block = page.locator("#pass-google")
    assert await block.locator("#google-sync").inner_text() == "synced"
    assert await block.locator("#google-state").inner_text() == "ACTIVE"
    assert await block.locator("#google-last-sync time").count() == 1
    assert issued["google"]["object_id"] in await block.inner_text()
    await assert_accessible(page, "pass-google")
    await shots(page, "pass-google")

    # The designer: the card follows the sample data as it is typed.
    await page.goto(f"{server_url}/dashboard#/templates/card")
    await page.get_by_role("heading", name="Designer").wait_for()
    design_google = page.frame_locator("#design-google-frame")
    await design_google.locator("article.gwc-loyalty").wait_for()
    await page.locator("#design-data").fill('{"name": "Ada", "balance": 77}')
    await design_google.locator('[data-id="loyaltyPoints"] .gwc-value', has_text="77").wait_for()
    await design_google.locator('.gwc-barcode[data-value="Ada"]').wait_for()
    await assert_accessible(page, "designer-google")
    await shots(page, "designer-google")

    # Void: the card says so.
    assert (await admin.post(f"/api/v1/passes/{pass_type}/g-1/void")).status_code == 200
    await page.goto(f"{server_url}/dashboard#/passes/{pass_type}/g-1")
    await page.get_by_role("heading", name="g-1").wait_for()
    await (
        page.frame_locator("#pass-google-frame")
        .locator(".gwc-state", has_text="Inactive")
        .wait_for()
    )
    assert await page.locator("#google-state").inner_text() == "INACTIVE"


@pytest.mark.slow
async def test_the_landing_page_shows_the_google_card_to_an_android_phone_without_script(
    server_url: str, admin: httpx.AsyncClient, pass_type: str, issuer: str
) -> None:
    playwright_api = _browser_or_skip()
    await make_template(admin, pass_type)
    issued = await issue(admin, "g-land", name="Lin", balance=5)
    share_url = server_url + httpx.URL(issued["urls"]["share"]).path
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            context = await browser.new_context(user_agent=ANDROID_UA, java_script_enabled=False)
            page = await context.new_page()
            errors: list[str] = []
            page.on("console", lambda m: keep_error(m, errors))
            response = await page.goto(share_url)
            assert response.status == 200
            card = page.locator("article.gwc-loyalty")
            await card.wait_for()
            assert await page.locator("article.pkp").count() == 1  # Apple's too, for pkpass apps
            barcode = card.locator(".gwc-barcode")
            assert ("Lin", zxingcpp.BarcodeFormat.QRCode) in await decode(barcode.locator("svg"))
            await shots(page, "landing-android-google")
            await context.close()
            context = await browser.new_context(user_agent=ANDROID_UA)
            page = await context.new_page()
            await page.goto(share_url)
            await assert_accessible(page, "landing-android-google")
            await context.close()
            assert errors == [], errors  # no CSP refusal: every image and style allowed
        finally:
            await browser.close()
