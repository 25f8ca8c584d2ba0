"""The pass page's version history in real Chromium: what changed, when, by which key."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import ADMIN_TOKEN, PASS_TYPE_ID
from passhouse import issuing
from passhouse.bootstrap import Runtime
from passhouse.storage import api_keys
from web.test_dashboard import SCREENSHOTS_ENV, _accept, browser_page, server_url

__all__ = ["browser_page", "server_url"]  # fixtures, used by name

KEY = "ph_browser-history-key-abcdefghijklmnop"


@pytest.mark.slow
async def test_the_pass_page_shows_each_version_its_changes_and_who_made_it(
    browser_page: Any,
    server_url: str,
    admin: httpx.AsyncClient,
    runtime: Runtime,
    template: str,
) -> None:
    page = browser_page
    page.on("dialog", _accept)
    async with runtime.database.transaction() as conn:
        key_id = await api_keys.add_key(conn, name="shop", key=KEY, now=issuing.now_seconds())
    base = f"/api/v1/passes/{PASS_TYPE_ID}/hist-1"
    headers = {"Authorization": f"Bearer {KEY}"}
    issued = await admin.post(
        "/api/v1/passes",
        json={
            "template": template,
            "serial_number": "hist-1",
            "data": {"name": "Ada", "balance": 5},
        },
        headers=headers,
    )
    assert issued.status_code == 201
    assert (await admin.patch(base, json={"data": {"balance": 7}})).status_code == 200

    await page.goto(f"{server_url}/dashboard")
    await page.get_by_label("API key").fill(ADMIN_TOKEN)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("heading", name="Overview").wait_for()
    await page.goto(f"{server_url}/dashboard#/passes/{PASS_TYPE_ID}/hist-1")
    rows = page.locator("#history-table tbody tr")
    await rows.nth(1).wait_for()

    assert await rows.count() == 2
    latest, first = await rows.nth(0).inner_text(), await rows.nth(1).inner_text()
    assert "Data changed" in latest
    assert "balance 5 → 7" in latest
    assert "the admin token" in latest
    assert "Issued" in first
    assert f"API key shop (id {key_id})" in first
    assert 'name set to "Ada"' in first
    assert await rows.nth(0).locator("time").count() == 1
    assert "keeps the current version only" not in await page.locator("main").inner_text()

    # Saving from the page adds a row on top, by the key the page signed in with.
    await page.get_by_label("Data").fill('{"name": "Ada", "balance": 9}')
    await page.get_by_role("button", name="Save data").click()
    await page.locator("#history-table tbody tr", has_text="balance 7 → 9").wait_for()
    assert "balance 7 → 9" in await rows.nth(0).inner_text()
    await page.get_by_role("button", name="Void pass").click()
    await page.locator("#history-table tbody tr", has_text="Voided").wait_for()
    assert await rows.count() == 4
    folder = os.environ.get(SCREENSHOTS_ENV)
    if folder:
        await page.screenshot(path=str(Path(folder) / "dashboard-pass-history.png"), full_page=True)
