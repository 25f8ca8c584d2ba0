"""The dashboard's Jobs pages in real Chromium: a CSV import started from the form, followed
live to its end with the failed rows' numbers and reasons; a bulk update from its form; the
overview's running jobs. The jobs are run by the real job code (bulk.run_job, as a worker
runs it) while the page polls. Each page: axe-core, no sideways scroll at phone width,
screenshots (see test_previews_browser)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from conftest import PASS_TYPE_ID
from passhouse import bulk, issuing
from passhouse.bootstrap import Runtime
from web.test_dashboard import _accept, browser_page, server_url
from web.test_previews_browser import assert_accessible, shots, sign_in

__all__ = ["browser_page", "server_url"]  # fixtures, used by name

# Rows 2-4 and 7 make passes; row 5 has too few fields, row 6 no name for {{name}}.
CSV = (
    "serial_number,name,balance\n"
    "job-1,Ada,10\n"
    "job-2,Grace,20\n"
    "job-3,Alan,30\n"
    "job-4,Short\n"
    "job-5,,50\n"
    "job-6,Edsger,60\n"
)


async def run_one_chunk(runtime: Runtime, builder: issuing.PassBuilder) -> None:
    """A worker that does one chunk of the next job and then stops (it hands the job back,
    still running, part done)."""
    claimed = await bulk.claim_job(runtime.database, runtime.settings)
    assert claimed is not None
    stop = asyncio.Event()
    await bulk.run_claimed(
        runtime.database,
        builder,
        runtime.settings,
        *claimed,
        stop=stop,
        progress=lambda _: stop.set(),
    )


async def run_jobs(runtime: Runtime, builder: issuing.PassBuilder) -> None:
    while (claimed := await bulk.claim_job(runtime.database, runtime.settings)) is not None:
        await bulk.run_claimed(runtime.database, builder, runtime.settings, *claimed)


def _small_chunks(runtime: Runtime) -> Runtime:
    settings = runtime.settings.model_copy(update={"job_chunk_size": 2})
    return Runtime(settings=settings, database=runtime.database, sealer=runtime.sealer)


@pytest.mark.slow
async def test_an_import_from_the_form_is_followed_live_to_its_failed_rows(
    browser_page: Any,
    server_url: str,
    admin: httpx.AsyncClient,
    runtime: Runtime,
    builder: issuing.PassBuilder,
    template: str,
) -> None:
    page = browser_page
    worker = _small_chunks(runtime)
    await sign_in(page, f"{server_url}/dashboard#/jobs")
    await page.get_by_role("heading", name="Jobs").wait_for()
    assert "No jobs yet." in await page.locator("main").inner_text()
    assert (
        await page.locator("#nav").get_by_role("link", name="Jobs").get_attribute("aria-current")
        == "page"
    )

    await page.get_by_role("link", name="Import a CSV").click()
    await page.get_by_role("heading", name="Import passes from a CSV").wait_for()
    await page.get_by_label("Template").select_option(template)
    await page.get_by_label("CSV file").set_input_files(
        {"name": "members.csv", "mimeType": "text/csv", "buffer": CSV.encode()}
    )
    await page.get_by_label("Mode").select_option("create")
    await shots(page, "jobs-import-form")
    await assert_accessible(page, "jobs-import-form")
    await page.get_by_role("button", name="Start import").click()

    # The job's page, queued; then one chunk (2 rows) done: the page shows it unasked.
    heading = page.get_by_role("heading", level=1, name="Job ")
    await heading.wait_for()
    job_id = int((await heading.inner_text()).removeprefix("Job "))
    facts = page.locator("#job-facts")
    await facts.locator('[data-status="queued"]').wait_for()
    assert "0 / 6" in await facts.inner_text()
    await run_one_chunk(worker, builder)
    await facts.get_by_text("2 / 6").wait_for()
    assert await facts.locator('[data-status="running"]').count() == 1
    assert await page.get_by_role("progressbar").get_attribute("value") == "2"

    # The overview lists it while it runs.
    await page.locator("#nav").get_by_role("link", name="Overview").click()
    running = page.locator("#active-jobs tbody tr")
    await running.first.wait_for()
    assert f"Job {job_id}" in await running.first.inner_text()
    await shots(page, "jobs-overview-running")

    # Back on its page, the rest runs; the poll shows it done and the failed rows.
    await page.goto(f"{server_url}/dashboard#/jobs/{job_id}")
    await facts.locator('[data-status="running"]').wait_for()
    await run_jobs(worker, builder)
    await facts.locator('[data-status="done"]').wait_for()
    text = await facts.inner_text()
    assert "6 / 6" in text
    assert await page.locator("#job-failed").inner_text() == "2"
    errors = page.locator("#job-errors tbody tr")
    await errors.nth(1).wait_for()
    rows = [await row.locator("td").all_inner_texts() for row in await errors.all()]
    assert [(row[0], row[1]) for row in rows] == [("5", "—"), ("6", "job-5")]
    assert "The row has 2 fields" in rows[0][2]
    assert "name" in rows[1][2]
    job = (await admin.get(f"/api/v1/jobs/{job_id}")).json()
    assert (job["status"], job["done"], job["created"], job["failed"]) == ("done", 6, 4, 2)
    await shots(page, "jobs-done")
    await assert_accessible(page, "jobs-done")

    # The list: newest first, with its progress and failures.
    await page.locator("#nav").get_by_role("link", name="Jobs").click()
    row = page.locator(f'#job-table tr[data-job="{job_id}"]')
    await row.wait_for()
    cells = await row.locator("td").all_inner_texts()
    assert cells[1:4] == ["CSV import", template, "done"]
    assert "6 / 6" in cells[4]
    assert cells[5] == "2"
    await shots(page, "jobs")
    await assert_accessible(page, "jobs")


@pytest.mark.slow
async def test_a_bulk_update_from_its_form_lands_on_its_job(
    browser_page: Any,
    server_url: str,
    admin: httpx.AsyncClient,
    runtime: Runtime,
    builder: issuing.PassBuilder,
    template: str,
) -> None:
    page = browser_page
    page.on("dialog", _accept)
    for serial, name in (("bu-1", "Ada"), ("bu-2", "Grace"), ("bu-3", "Ada")):
        created = await admin.post(
            "/api/v1/passes",
            json={
                "template": template,
                "serial_number": serial,
                "data": {"name": name, "balance": 1},
            },
        )
        assert created.status_code == 201, created.text

    await sign_in(page, f"{server_url}/dashboard#/jobs/bulk-update")
    await page.get_by_role("heading", name="Bulk update").wait_for()
    form = page.locator("#bulk-form")
    await page.get_by_label("Where").fill('{"name": "Ada"')
    await page.get_by_label("Data (JSON merge patch)").fill('{"balance": 99}')
    await page.get_by_role("button", name="Start bulk update").click()
    refusal = form.get_by_role("alert")
    await refusal.wait_for()
    assert "Where is not valid JSON" in await refusal.inner_text()

    await page.get_by_label("Where").fill('{"name": "Ada"}')
    await shots(page, "jobs-bulk-form")
    await assert_accessible(page, "jobs-bulk-form")
    await page.get_by_role("button", name="Start bulk update").click()
    facts = page.locator("#job-facts")
    await facts.locator('[data-status="queued"]').wait_for()
    await run_jobs(runtime, builder)
    await facts.locator('[data-status="done"]').wait_for()
    assert "Bulk update" in await facts.inner_text()
    assert "No pass has failed." in await page.locator("main").inner_text()
    balances = {}
    for serial in ("bu-1", "bu-2", "bu-3"):
        shown = await admin.get(f"/api/v1/passes/{PASS_TYPE_ID}/{serial}")
        balances[serial] = shown.json()["data"]["balance"]
    assert balances == {"bu-1": 99, "bu-2": 1, "bu-3": 99}


@pytest.mark.slow
async def test_a_job_page_pages_through_many_failed_rows(
    browser_page: Any,
    server_url: str,
    admin: httpx.AsyncClient,
    runtime: Runtime,
    builder: issuing.PassBuilder,
    template: str,
) -> None:
    page = browser_page
    ragged = "".join(f"row-{n},Name {n}\n" for n in range(60))  # 2 fields of 3: all fail
    imported = await admin.post(
        "/api/v1/imports",
        data={"template": template, "mode": "create"},
        files={
            "file": ("many.csv", ("serial_number,name,balance\n" + ragged).encode(), "text/csv")
        },
    )
    assert imported.status_code == 202, imported.text
    await run_jobs(runtime, builder)

    await sign_in(page, f"{server_url}/dashboard#/jobs/{imported.json()['id']}")
    errors = page.locator("#job-errors tbody tr")
    await errors.first.wait_for()
    assert await errors.count() == 50  # the dashboard's page size
    assert await errors.last.locator("td").first.inner_text() == "51"
    await page.get_by_role("button", name="More failed rows").click()
    await errors.nth(59).wait_for()
    assert await errors.count() == 60
    assert await errors.last.locator("td").first.inner_text() == "61"
    assert await page.get_by_role("button", name="More failed rows").is_hidden()
