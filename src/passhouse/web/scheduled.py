"""The admin API's scheduled changes (/api/v1/scheduled-changes): store, list, cancel.

The workers apply them (lifecycle.apply_due_change); these handlers only parse, call one
use case and answer.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from passhouse import issuing, lifecycle
from passhouse.web.admin import MAX_ID, PageCursor, PageLimit, _after_id, _next_cursor
from passhouse.web.admin_schema import ISO_EXAMPLE, NO_NUL, JsonObject, _Out, error_responses
from passhouse.web.deps import LimitedJsonRoute, ReadConn, WriteConn, require_api_key

router = APIRouter(
    prefix="/api/v1",
    generate_unique_id_function=lambda route: route.name,
    dependencies=[Depends(require_api_key)],
    route_class=LimitedJsonRoute,
    tags=["scheduled changes"],
)

Scalar = str | int | float | bool | None
# storage.scheduled_changes.STATUSES, spelled out for the OpenAPI description.
Status = Literal["pending", "applied", "failed", "cancelled"]


class ScheduledChangeIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "pass_type_id": "pass.com.example.loyalty",
                    "serial_number": "c0ffee-42",
                    "at": "2026-12-24T18:00:00+01:00",
                    "data": {"balance": 50},
                },
                {
                    "template": "loyalty",
                    "where": {"member.level": "gold"},
                    "at": "2027-01-01T00:00:00Z",
                    "void": True,
                },
            ]
        },
    )

    pass_type_id: str | None = Field(
        None,
        min_length=1,
        max_length=255,
        pattern=NO_NUL,
        description="With serial_number: the one pass to change",
        examples=["pass.com.example.loyalty"],
    )
    serial_number: str | None = Field(
        None, min_length=1, max_length=255, pattern=NO_NUL, examples=["c0ffee-42"]
    )
    template: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        pattern=NO_NUL,
        description="Instead of a pass: every pass of this template (name or id) that "
        "matches `where` when the change is applied",
        examples=["loyalty"],
    )
    where: dict[Annotated[str, Field(pattern=NO_NUL)], Scalar] | None = Field(
        None,
        description='Dotted data keys and the values they must hold ({"member.level": '
        '"gold"}); "voided" matches the pass\'s state. Only with template.',
        examples=[{"member.level": "gold"}],
    )
    at: dt.datetime = Field(
        description="When to apply it: ISO 8601 with a zone (Z or an offset). A time in the "
        "past is applied at once.",
        examples=["2026-12-24T18:00:00+01:00"],
    )
    data: JsonObject | None = Field(
        None,
        description="A JSON Merge Patch (RFC 7396) applied to the pass data (null removes "
        "a key); or give void",
        examples=[{"balance": 50}],
    )
    void: bool = Field(False, description="true: void the passes instead of changing data")

    @field_validator("at")
    @classmethod
    def _has_zone(cls, value: dt.datetime) -> dt.datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(
                "must carry a time zone (Z or an offset such as +01:00): a time without one "
                "could mean any zone"
            )
        return value

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        problem = issuing.storable_problem(value, "body")
        if problem:
            raise ValueError(problem)
        return value


class ScheduledChangeFailure(_Out):
    serial_number: str = Field(examples=["c0ffee-42"])
    reason: str = Field(examples=["The pass would be invalid: {{name}} has no value"])


class ScheduledChangeView(_Out):
    id: int = Field(examples=[1])
    status: Status = Field(
        description="pending until the workers apply it; then applied or failed; or cancelled"
    )
    at: str | None = Field(description="When it is (was) due", examples=[ISO_EXAMPLE])
    pass_type_id: str | None = Field(examples=["pass.com.example.loyalty"])
    serial_number: str | None = Field(examples=["c0ffee-42"])
    template: str | None = Field(description="The template's name, for a template change")
    where: dict[str, Any] | None = Field(examples=[{"member.level": "gold"}])
    data: dict[str, Any] | None = Field(description="The merge patch", examples=[{"balance": 50}])
    void: bool
    created_at: str | None = Field(examples=[ISO_EXAMPLE])
    finished_at: str | None = Field(
        description="When it was applied, failed or cancelled", examples=[ISO_EXAMPLE]
    )
    error: str | None = Field(description="Why it failed: nothing of it was saved or pushed")
    passes_changed: int = Field(description="Passes that got a new version (and a push)")
    passes_failed: int = Field(description="Passes of a template change left unchanged")
    failures: list[ScheduledChangeFailure] = Field(
        description=f"The first {lifecycle.MAX_FAILURES_LISTED} of those, with the reason"
    )


class ScheduledChangeList(_Out):
    items: list[ScheduledChangeView]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end"
    )


ChangeId = Annotated[
    int, Path(ge=1, le=MAX_ID, description="The scheduled change's id", examples=[1])
]


async def _view(conn: Any, row: Any) -> dict[str, Any]:
    return lifecycle.change_view(row, await lifecycle.template_names(conn))


@router.post(
    "/scheduled-changes",
    status_code=status.HTTP_201_CREATED,
    response_model=ScheduledChangeView,
    responses={201: {"description": "Scheduled"}, **error_responses(404, 409, 413)},
)
async def schedule_change(body: ScheduledChangeIn, conn: WriteConn) -> dict[str, Any]:
    """Schedule a merge patch of the data, or a void, of one pass or of the passes of a
    template matching `where`. The workers apply it at `at` (within about a second), once,
    as an API change would be (a new version and a push); a change whose result would be
    an invalid pass is recorded as failed with the reason. 404 when the pass or template
    is unknown, 409 when the pass is voided, 422 for a time without a zone."""
    row = await lifecycle.schedule_change(
        conn,
        lifecycle.ChangeRequest(
            at=body.at,
            pass_type_id=body.pass_type_id,
            serial_number=body.serial_number,
            template=body.template,
            where=body.where,
            data=body.data,
            void=body.void,
        ),
    )
    return await _view(conn, row)


@router.get(
    "/scheduled-changes",
    response_model=ScheduledChangeList,
    responses=error_responses(),
)
async def list_scheduled_changes(
    conn: ReadConn,
    status_filter: Annotated[
        Status | None,
        Query(alias="status", description="Only the changes in this state", examples=["pending"]),
    ] = None,
    limit: PageLimit = 100,
    cursor: PageCursor = None,
) -> dict[str, Any]:
    """Scheduled changes, a page at a time, oldest first."""
    rows = await lifecycle.list_changes(
        conn, status=status_filter, after_id=_after_id(cursor), limit=limit
    )
    names = await lifecycle.template_names(conn)
    return {
        "items": [lifecycle.change_view(row, names) for row in rows],
        "next_cursor": _next_cursor(rows[-1].id if rows else None, len(rows), limit),
    }


@router.get(
    "/scheduled-changes/{change_id}",
    response_model=ScheduledChangeView,
    responses=error_responses(404),
)
async def get_scheduled_change(change_id: ChangeId, conn: ReadConn) -> dict[str, Any]:
    """One scheduled change: its state, and once applied what it changed or why it failed."""
    return await _view(conn, await lifecycle.get_change_or_404(conn, change_id))


@router.delete(
    "/scheduled-changes/{change_id}",
    response_model=ScheduledChangeView,
    responses=error_responses(404, 409),
)
async def cancel_scheduled_change(change_id: ChangeId, conn: WriteConn) -> dict[str, Any]:
    """Cancel a pending change (it is kept, as cancelled). 409 once it was applied, failed
    or cancelled: a change being applied finishes first."""
    return await _view(conn, await lifecycle.cancel_change(conn, change_id))
