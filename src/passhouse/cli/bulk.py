"""`pass import`: issue (or update) passes from a CSV file, with a progress bar."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import click

from passhouse import bulk, issuing, preflight
from passhouse.bootstrap import open_runtime
from passhouse.cli.server import load_settings, pass_group, run, uses_database
from passhouse.settings import Settings
from passhouse.storage import jobs, migrate, pass_versions

ERRORS_SHOWN = 20


@pass_group.command("import")
@click.argument("csv_file", metavar="FILE.csv", type=click.Path(exists=True, dir_okay=False))
@click.option("--template", required=True, help="Template name or id the passes are made from.")
@click.option(
    "--mode",
    type=click.Choice(bulk.MODES),
    default="create",
    show_default=True,
    help="upsert: a row whose serial_number exists updates that pass (merging its cells).",
)
@click.option("--no-wait", is_flag=True, help="Queue the job for the workers and exit.")
@uses_database
def pass_import(csv_file: str, template: str, mode: str, no_wait: bool) -> None:
    """Issue a pass per row of FILE.csv (UTF-8, with a header row).

    A `serial_number` column sets each serial (random otherwise); other columns fill the
    template's placeholders, dotted names nested (`member.name`); an empty cell sets
    nothing. The file is checked and queued as a job, the same as POST /api/v1/imports;
    this command then runs it (or follows a worker that already does) with a progress bar.
    Interrupted, the job carries on from its last chunk when run again by any worker.
    Exits 1 when a row failed, listing the failures.
    """
    settings = load_settings()
    path = Path(csv_file)
    bulk.check_file_size(path.stat().st_size, bulk.CsvLimits.of(settings))
    job = run(_import(settings, path, template, mode, wait=not no_wait))
    _report(job)
    if job["failed"] or job["status"] == jobs.FAILED:
        raise SystemExit(1)


async def _import(
    settings: Settings, path: Path, template: str, mode: str, *, wait: bool
) -> dict[str, Any]:
    runtime = open_runtime(settings)
    try:
        await preflight.check_database(runtime)
        await migrate.upgrade(runtime.database)
        await preflight.check_secret_key(runtime)
        limits = bulk.CsvLimits.of(settings)
        with path.open("rb") as file:
            async with runtime.database.transaction() as conn:
                job_id = await bulk.create_import(
                    conn,
                    template_ref=template,
                    mode=mode,
                    file=file,
                    limits=limits,
                    actor=pass_versions.CLI,
                    file_name=path.name,
                )
        view = await _view(runtime.database, job_id, settings)
        click.echo(f"job {job_id}: {view['total']} rows queued", err=True)
        if not wait:
            click.echo(f"  follow it: GET {view['url']}", err=True)
            return view
        builder = issuing.PassBuilder(runtime.sealer, settings.web_service_url)
        bar: Any = click.progressbar(length=int(view["total"]), label="importing", file=sys.stderr)
        with bar:
            shown = 0

            def progress(row: Any) -> None:
                nonlocal shown
                bar.update(int(row.done) - shown)
                shown = int(row.done)

            while True:
                claimed = await bulk.claim_job(runtime.database, settings, job_id=job_id)
                if claimed is not None:
                    await bulk.run_claimed(
                        runtime.database, builder, settings, *claimed, progress=progress
                    )
                async with runtime.database.reader() as conn:
                    row = await jobs.get_job(conn, job_id)
                assert row is not None
                progress(row)
                if row.status in (jobs.DONE, jobs.FAILED):
                    break
                await asyncio.sleep(0.5)  # a worker runs it: follow its progress
        return await _view(runtime.database, job_id, settings)
    finally:
        await runtime.database.dispose()


async def _view(database: Any, job_id: int, settings: Settings) -> dict[str, Any]:
    async with database.reader() as conn:
        job = await jobs.get_job(conn, job_id)
        assert job is not None
        errors = await jobs.errors_of(conn, job_id, after_seq=None, limit=ERRORS_SHOWN)
    return bulk.job_view(job, errors, settings.public_url)


def _report(job: dict[str, Any]) -> None:
    if job["status"] not in (jobs.DONE, jobs.FAILED):
        return
    click.echo(
        f"job {job['id']} {job['status']}: {job['created']} created, {job['updated']} updated, "
        f"{job['unchanged']} unchanged, {job['failed']} failed"
    )
    if job["error"]:
        click.echo(f"  {job['error']}", err=True)
    for error in job["errors"]:
        serial = f" ({error['serial_number']})" if error["serial_number"] else ""
        click.echo(f"  row {error['row']}{serial}: {error['message']}", err=True)
    if job["failed"] > len(job["errors"]):
        click.echo(f"  ... all {job['failed']} failures: GET {job['url']}/errors", err=True)
