"""The dashboard's Webhooks page in Chromium: endpoints, their flag, deliveries, actions."""

from __future__ import annotations

from typing import Any

import httpx
import sqlalchemy as sa

from conftest import ADMIN_TOKEN
from passhouse.storage.database import Database
from passhouse.storage.tables import webhook_endpoints
from web.test_dashboard import _assert_reads_cleanly, _nav, browser_page, server_url
from webhooks.receiver import Receiver

__all__ = ["browser_page", "server_url"]  # fixtures, used by name


async def test_webhooks_are_listed_flagged_added_pinged_and_disabled_in_the_browser(
    browser_page: Any, server_url: str, database: Database, receiver: Receiver
) -> None:
    page = browser_page
    async with httpx.AsyncClient(
        base_url=server_url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    ) as api:
        broken = (
            await api.post(
                "/api/v1/webhooks", json={"url": "https://93.184.216.34/broken", "events": ["*"]}
            )
        ).json()
    async with database.transaction() as conn:  # as the worker leaves one after 3 days
        await conn.execute(
            webhook_endpoints.update()
            .where(webhook_endpoints.c.id == broken["id"])
            .values(
                enabled=False,
                disabled_reason="Disabled automatically: every delivery has failed since"
                " 2026-11-28T00:00:00Z.",
            )
        )

    await page.goto(f"{server_url}/dashboard")
    await page.get_by_label("API key").fill(ADMIN_TOKEN)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("heading", name="Overview").wait_for()
    await _nav(page, "Webhooks").click()
    await page.get_by_role("heading", name="Webhooks", exact=True).wait_for()
    listing = await page.locator("main").inner_text()
    await _assert_reads_cleanly(page)

    await page.get_by_label("URL").fill(receiver.url)
    await page.get_by_role("button", name="Add webhook").click()
    await page.get_by_role("heading", name=receiver.url).wait_for()
    notice = await page.locator(".banner.note").first.inner_text()
    await page.get_by_role("button", name="Send a ping").click()
    await page.get_by_text("Ping queued").wait_for()
    deliveries = await page.locator("main table").inner_text()
    await page.get_by_role("button", name="Disable").click()
    await page.get_by_role("button", name="Enable").wait_for()
    detail = await page.locator("main").inner_text()

    assert "https://93.184.216.34/broken" in listing
    assert "disabled automatically" in listing
    assert "every delivery has failed since" in listing
    assert "Signing secret, shown only now: whsec_" in notice
    assert "ping" in deliveries
    assert "pending" in deliveries
    assert "disabled" in detail
    async with database.reader() as conn:
        enabled = dict(
            (
                await conn.execute(sa.select(webhook_endpoints.c.url, webhook_endpoints.c.enabled))
            ).all()
        )
    assert enabled == {"https://93.184.216.34/broken": False, receiver.url: False}
