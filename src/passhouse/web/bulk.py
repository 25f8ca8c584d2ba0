"""The admin API's bulk operations (/api/v1): batches, CSV imports, bulk updates, jobs."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Path, Request, UploadFile, status
from pydantic import ConfigDict, Field
from starlette.responses import Response

from passhouse import bulk
from passhouse.errors import NotFound
from passhouse.storage import jobs
from passhouse.web.admin import (
    MAX_ID,
    PageCursor,
    PageLimit,
    _after_id,
    _Body,
    _next_cursor,
    _pass_view,
)
from passhouse.web.admin_schema import (
    NO_NUL,
    BatchResult,
    JobErrorList,
    JobList,
    JobView,
    JsonObject,
    error_responses,
)
from passhouse.web.deps import (
    ActorDep,
    BuilderDep,
    LimitedJsonRoute,
    ReadConn,
    RuntimeDep,
    WriteConn,
    require_api_key,
)
from passhouse.web.idempotency import IdempotencyKey, answer_once

router = APIRouter(
    prefix="/api/v1",
    generate_unique_id_function=lambda route: route.name,
    dependencies=[Depends(require_api_key)],
    route_class=LimitedJsonRoute,
)

JOB_ERRORS_SHOWN = 100

JobIdPath = Annotated[
    int, Path(ge=1, le=MAX_ID, description="The job's id (from the 202 answer)", examples=[12])
]


# --- batches ----------------------------------------------------------------------------


class BatchItem(_Body):
    serial_number: str | None = Field(
        None,
        min_length=1,
        max_length=255,
        pattern=NO_NUL,
        description="Left out: a random one. Letters, digits and - _ . ~ (up to 128); an "
        "item with another serial fails alone",
        examples=["c0ffee-42"],
    )
    data: JsonObject = Field(
        default_factory=dict,
        description="Values for the template's {{placeholders}}",
        examples=[{"name": "Ada", "balance": 12.5}],
    )


class BatchIn(_Body):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "template": "loyalty",
                    "items": [
                        {"serial_number": "c0ffee-42", "data": {"name": "Ada"}},
                        {"data": {"name": "Grace"}},
                    ],
                }
            ]
        }
    )

    template: str = Field(
        min_length=1, pattern=NO_NUL, description="Template name or id", examples=["loyalty"]
    )
    items: list[BatchItem] = Field(
        min_length=1,
        max_length=bulk.MAX_BATCH_ITEMS,
        description=f"1 to {bulk.MAX_BATCH_ITEMS} passes to issue",
    )


@router.post(
    "/passes/batch",
    tags=["bulk"],
    response_model=BatchResult,
    responses={
        200: {"description": "Each item's result: created (with its pass) or failed (why)"},
        **error_responses(400, 404, 409, 413),
    },
)
async def issue_batch(
    body: BatchIn,
    request: Request,
    conn: WriteConn,
    runtime: RuntimeDep,
    builder: BuilderDep,
    actor: ActorDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Issue up to 1,000 passes of one template in one transaction.

    Every valid item is created; each invalid one is answered with its index and why, and
    changes nothing. 409 only when another request created one of the serials at the same
    moment (nothing is created then; retry).
    """
    content = body.model_dump(mode="json")

    async def action() -> dict[str, Any]:
        template_row, applied = await bulk.issue_batch(
            conn, builder, template_ref=body.template, items=content["items"], actor=actor
        )
        return batch_result(applied, runtime.settings.public_url, template_row.name)

    return await answer_once(conn, request, idempotency_key, content, 200, action)


def batch_result(applied: bulk.Applied, public_url: str, template_name: str) -> dict[str, Any]:
    results: list[dict[str, Any]] = [
        {"index": seq, "status": "created", "pass": _pass_view(row, public_url, template_name)}
        for seq, row in applied.created
    ]
    results += [
        {
            "index": seq,
            "status": "failed",
            "error": {"code": error.code, "message": error.message},
        }
        for seq, _, error in applied.errors
    ]
    results.sort(key=lambda result: int(result["index"]))
    return {"created": len(applied.created), "failed": len(applied.errors), "items": results}


# --- imports and bulk updates -----------------------------------------------------------

_ACCEPTED: dict[int | str, dict[str, Any]] = {
    202: {"description": "The job is queued; follow it at its `url`"}
}


async def _job(conn: Any, job_id: int, public_url: str) -> dict[str, Any]:
    job = await jobs.get_job(conn, job_id)
    if job is None:
        raise NotFound(f"No job {job_id}.")
    errors = await jobs.errors_of(conn, job_id, after_seq=None, limit=JOB_ERRORS_SHOWN)
    return bulk.job_view(job, errors, public_url)


@router.post(
    "/imports",
    status_code=status.HTTP_202_ACCEPTED,
    tags=["bulk"],
    response_model=JobView,
    responses={**_ACCEPTED, **error_responses(400, 404, 413)},
)
async def create_import(
    request: Request,
    conn: WriteConn,
    runtime: RuntimeDep,
    actor: ActorDep,
    template: Annotated[
        str,
        Form(
            min_length=1,
            max_length=200,
            pattern=NO_NUL,
            description="Template name or id",
            examples=["loyalty"],
        ),
    ],
    file: Annotated[
        UploadFile,
        File(
            description="A CSV (UTF-8) with a header row. A `serial_number` column sets each "
            "pass's serial; dotted names nest (`member.name` -> {member: {name}}); an empty "
            "cell sets nothing. Bounded by PASSHOUSE_IMPORT_MAX_BYTES, _MAX_ROWS and "
            "_MAX_COLUMNS."
        ),
    ],
    mode: Annotated[
        Literal["create", "upsert"],
        Form(
            description="create: a row whose serial exists fails; upsert: such a row is "
            "merged into the pass (a new version and a push, when it changes anything)",
            examples=["create"],
        ),
    ] = "create",
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Import passes from a CSV file: answers 202 with a job the workers run.

    The file is checked (encoding, header, limits) and its rows stored before the answer;
    each row that cannot be applied is listed in the job with its row number and why.
    """
    limits = bulk.CsvLimits.of(runtime.settings)
    bulk.check_file_size(bulk.file_size(file.file), limits)
    content = {
        "template": template,
        "mode": mode,
        "file_sha256": await _sha256(file),
    }

    async def action() -> dict[str, Any]:
        job_id = await bulk.create_import(
            conn,
            template_ref=template,
            mode=mode,
            file=file.file,
            limits=limits,
            actor=actor,
            file_name=file.filename,
        )
        return await _job(conn, job_id, runtime.settings.public_url)

    return await answer_once(conn, request, idempotency_key, content, 202, action)


async def _sha256(file: UploadFile) -> str:
    return await asyncio.to_thread(bulk.sha256_of_file, file.file)


class BulkUpdateIn(_Body):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "template": "loyalty",
                    "where": {"member.tier": "gold", "voided": False},
                    "data": {"offer": "Double points this week"},
                }
            ]
        }
    )

    template: str = Field(
        min_length=1, pattern=NO_NUL, description="Template name or id", examples=["loyalty"]
    )
    where: JsonObject = Field(
        default_factory=dict,
        description="Data values the passes must have, by dotted key ({'member.tier': "
        "'gold'}); `voided` (only false: voided passes cannot change). Empty: every pass",
        examples=[{"member.tier": "gold"}],
    )
    data: JsonObject = Field(
        description="A JSON Merge Patch (RFC 7396) applied to each matching pass's data",
        examples=[{"offer": "Double points this week"}],
    )


@router.post(
    "/passes/bulk-update",
    status_code=status.HTTP_202_ACCEPTED,
    tags=["bulk"],
    response_model=JobView,
    responses={**_ACCEPTED, **error_responses(400, 404, 413)},
)
async def bulk_update(
    body: BulkUpdateIn, conn: WriteConn, runtime: RuntimeDep, actor: ActorDep
) -> dict[str, Any]:
    """Change every pass of a template that matches `where`: answers 202 with a job.

    Each pass the patch changes gets one new version and its devices one push; a pass the
    patch would make invalid is listed in the job's errors and left as it was.
    """
    job_id = await bulk.create_bulk_update(
        conn, template_ref=body.template, where=body.where, data=body.data, actor=actor
    )
    return await _job(conn, job_id, runtime.settings.public_url)


# --- jobs -------------------------------------------------------------------------------


@router.get("/jobs", tags=["bulk"], response_model=JobList, responses=error_responses())
async def list_jobs(
    conn: ReadConn, runtime: RuntimeDep, limit: PageLimit = 100, cursor: PageCursor = None
) -> dict[str, Any]:
    """Imports and bulk updates, newest first, a page at a time (without their errors)."""
    rows = await jobs.list_jobs(conn, before_id=_after_id(cursor), limit=limit)
    public_url = runtime.settings.public_url
    return {
        "items": [bulk.job_view(row, [], public_url) for row in rows],
        "next_cursor": _next_cursor(rows[-1].id if rows else None, len(rows), limit),
    }


@router.get("/jobs/{job_id}", tags=["bulk"], response_model=JobView, responses=error_responses(404))
async def get_job(job_id: JobIdPath, conn: ReadConn, runtime: RuntimeDep) -> dict[str, Any]:
    """One job: its status, progress, counts and first failures."""
    return await _job(conn, job_id, runtime.settings.public_url)


@router.get(
    "/jobs/{job_id}/errors",
    tags=["bulk"],
    response_model=JobErrorList,
    responses=error_responses(404),
)
async def list_job_errors(
    job_id: JobIdPath, conn: ReadConn, limit: PageLimit = 100, cursor: PageCursor = None
) -> dict[str, Any]:
    """Every row or pass a job could not apply, and why, a page at a time."""
    job = await jobs.get_job(conn, job_id)
    if job is None:
        raise NotFound(f"No job {job_id}.")
    rows = await jobs.errors_of(conn, job_id, after_seq=_after_id(cursor), limit=limit)
    return {
        "items": [bulk.error_view(job, row) for row in rows],
        "next_cursor": _next_cursor(rows[-1].seq if rows else None, len(rows), limit),
    }
