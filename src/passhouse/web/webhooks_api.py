"""/api/v1/webhooks: endpoints that are told what happened, their deliveries, pings."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field

from passhouse.storage.webhooks import EVENT_TYPES
from passhouse.web.admin import MAX_ID, PageCursor, PageLimit, _after_id, _Body
from passhouse.web.admin_schema import ISO_EXAMPLE, error_responses
from passhouse.web.deps import LimitedJsonRoute, ReadConn, RuntimeDep, WriteConn, require_api_key
from passhouse.webhooks import manage

router = APIRouter(
    prefix="/api/v1",
    generate_unique_id_function=lambda route: route.name,
    dependencies=[Depends(require_api_key)],
    route_class=LimitedJsonRoute,
    tags=["webhooks"],
)

EventType = Literal[
    "*",
    "pass.created",
    "pass.updated",
    "pass.voided",
    "pass.installed",
    "pass.uninstalled",
    "push.failed",
    "pass_type.apns_blocked",
    "certificate.expiring",
]
assert set(EventType.__args__) == {"*", *EVENT_TYPES}  # type: ignore[attr-defined]

Url = Annotated[
    str,
    Field(
        min_length=1,
        max_length=2000,
        pattern=r"^https?://[^\s\x00]+$",
        description="Where events are POSTed: https:// to a public address (http:// and "
        "private addresses only with PASSHOUSE_WEBHOOKS_ALLOW_PRIVATE=true)",
        examples=["https://hooks.example.com/passhouse"],
    ),
]
Events = Annotated[
    list[EventType],
    Field(
        min_length=1,
        max_length=len(EVENT_TYPES) + 1,
        description='Event types to receive, or ["*"] for every type',
        examples=[["pass.installed", "pass.uninstalled"]],
    ),
]
WebhookId = Annotated[int, Path(ge=1, le=MAX_ID, description="The webhook's id", examples=[1])]


class WebhookIn(_Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"url": "https://hooks.example.com/passhouse", "events": ["*"]}]
        },
    )

    url: Url
    events: Events


class WebhookPatch(_Body):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"enabled": True}, {"events": ["*"]}]}
    )

    url: Url | None = None
    events: Events | None = None
    enabled: bool | None = Field(
        None, description="false stops deliveries; true resumes them (and clears a failing streak)"
    )


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow")


class DeliveryCounts(_Out):
    pending: int = Field(description="Waiting to be delivered (or retried)")
    delivered: int
    failed: int = Field(description="Given up on after retries (within the kept history)")


class WebhookView(_Out):
    id: int = Field(examples=[1])
    url: str = Field(examples=["https://hooks.example.com/passhouse"])
    events: list[str] = Field(examples=[["*"]])
    enabled: bool
    failing_since: str | None = Field(
        description="When the current run of failed attempts began; null while healthy",
        examples=[None],
    )
    disabled_reason: str | None = Field(
        description="Why passhouse disabled the endpoint, when it did", examples=[None]
    )
    disabled_at: str | None = Field(examples=[None])
    created_at: str | None = Field(examples=[ISO_EXAMPLE])
    updated_at: str | None = Field(examples=[ISO_EXAMPLE])
    deliveries: DeliveryCounts


class WebhookCreated(WebhookView):
    secret: str = Field(
        description="Signs every delivery (Passhouse-Signature); shown only in this answer",
        examples=["whsec_9Yp3oS0k..."],
    )


class WebhookList(_Out):
    items: list[WebhookView]


class DeliveryView(_Out):
    id: int = Field(examples=[42])
    event_id: str = Field(
        description="The event's id: the same in every retry", examples=["evt_3f2c..."]
    )
    event: str = Field(description="The event type", examples=["pass.installed"])
    state: Literal["pending", "delivered", "failed"]
    attempts: int = Field(examples=[1])
    last_status: int | None = Field(description="HTTP status of the last answer", examples=[200])
    last_error: str | None = Field(
        description="Why the last attempt failed (status, timeout, connection)", examples=[None]
    )
    created_at: str | None = Field(examples=[ISO_EXAMPLE])
    last_attempt_at: str | None = Field(examples=[ISO_EXAMPLE])
    finished_at: str | None = Field(examples=[ISO_EXAMPLE])
    next_attempt_at: str | None = Field(description="When a pending delivery is tried next")


class DeliveryList(_Out):
    items: list[DeliveryView]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next (older) page; null at the end"
    )


class PingQueued(_Out):
    event_id: str = Field(examples=["evt_3f2c..."])
    delivery: DeliveryView


@router.post(
    "/webhooks",
    status_code=status.HTTP_201_CREATED,
    response_model=WebhookCreated,
    responses={201: {"description": "Saved; `secret` is shown only here"}, **error_responses(413)},
)
async def create_webhook(body: WebhookIn, runtime: RuntimeDep) -> dict[str, Any]:
    """Add an endpoint to receive events, signed with the `secret` of this answer.

    422 for an unknown event type, an http:// URL or one that resolves to a loopback or
    private address (allowed with PASSHOUSE_WEBHOOKS_ALLOW_PRIVATE=true).
    """
    return await manage.create_webhook(runtime, url=body.url, events=body.events)


@router.get("/webhooks", response_model=WebhookList, responses=error_responses())
async def list_webhooks(conn: ReadConn) -> dict[str, Any]:
    """Every endpoint: its events, whether it is enabled or failing, its delivery counts."""
    return {"items": await manage.list_webhooks(conn)}


@router.get("/webhooks/{webhook_id}", response_model=WebhookView, responses=error_responses(404))
async def get_webhook(webhook_id: WebhookId, conn: ReadConn) -> dict[str, Any]:
    """One endpoint (its secret is never shown again)."""
    return await manage.get_webhook(conn, webhook_id)


@router.patch(
    "/webhooks/{webhook_id}",
    response_model=WebhookView,
    responses=error_responses(404, 413),
)
async def update_webhook(
    webhook_id: WebhookId, body: WebhookPatch, runtime: RuntimeDep
) -> dict[str, Any]:
    """Change the URL, the event types or `enabled`; events from now on follow the change."""
    return await manage.update_webhook(
        runtime, webhook_id, url=body.url, events=body.events, enabled=body.enabled
    )


@router.delete(
    "/webhooks/{webhook_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={204: {"description": "Deleted"}, **error_responses(404)},
)
async def delete_webhook(webhook_id: WebhookId, conn: WriteConn) -> None:
    """Delete an endpoint and its deliveries; nothing more is sent to it."""
    await manage.delete_webhook(conn, webhook_id)


@router.get(
    "/webhooks/{webhook_id}/deliveries",
    response_model=DeliveryList,
    responses=error_responses(404),
)
async def list_webhook_deliveries(
    webhook_id: WebhookId,
    conn: ReadConn,
    limit: PageLimit = 100,
    cursor: PageCursor = None,
    event_id: Annotated[
        str | None,
        Query(
            max_length=40,
            pattern=r"^evt_[0-9a-f]{1,32}$",
            description="Only the delivery of this event",
            examples=["evt_3f2c9a0d4b6e8f10a2c4e6f8b0d2f4a6"],
        ),
    ] = None,
) -> dict[str, Any]:
    """Recent deliveries, newest first: event, attempts, last status or error, times."""
    items, last_id = await manage.list_deliveries(
        conn, webhook_id, limit=limit, before_id=_after_id(cursor), event_id=event_id
    )
    return {"items": items, "next_cursor": None if last_id is None else str(last_id)}


@router.post(
    "/webhooks/{webhook_id}/ping",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=PingQueued,
    responses={
        202: {"description": "Queued; its delivery shows the outcome"},
        **error_responses(404, 409),
    },
)
async def ping_webhook(webhook_id: WebhookId, conn: WriteConn) -> dict[str, Any]:
    """Send a `ping` event to this endpoint (only); follow it in its deliveries.

    409 when the endpoint is disabled.
    """
    return await manage.ping_webhook(conn, webhook_id)
