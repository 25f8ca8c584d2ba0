"""What the admin API answers, as models: its OpenAPI description and FastAPI's check of
every response body both come from these."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from passhouse.pkpass.bundle import PKPASS_MEDIA_TYPE

ISO_EXAMPLE = "2026-11-22T14:00:00Z"
NO_NUL = r"^[^\x00]*$"  # PostgreSQL text cannot hold NUL

NoNulText = Annotated[str, StringConstraints(pattern=NO_NUL)]
# Any JSON object. What issuing.storable_problem refuses in it (NUL in text, integers of
# more than 100 digits, nesting past PASSHOUSE_JSON_MAX_DEPTH) is said in words: a
# recursive schema would say it exactly, but client generators (openapi-python-client)
# cannot read one.
JsonObject = Annotated[
    dict[str, Any],
    Field(
        json_schema_extra={
            "description": "A JSON object: text without NUL, integers of at most 100 digits, "
            "nested at most PASSHOUSE_JSON_MAX_DEPTH levels"
        }
    ),
]


class _Out(BaseModel):
    # A field added to a view before its model is updated still reaches clients.
    model_config = ConfigDict(extra="allow")


# --- errors -----------------------------------------------------------------------------


class ErrorDetail(_Out):
    code: str = Field(description="Stable machine-readable code", examples=["not_found"])
    message: str = Field(description="One sentence for a person", examples=["No template 'x'."])


class ErrorBody(_Out):
    """Every 4xx (and a logged 500) carries this body (web/errors.py)."""

    error: ErrorDetail


_ERROR_MEANINGS = {
    400: (
        "The body is not valid JSON, or nests deeper than PASSHOUSE_JSON_MAX_DEPTH.",
        "bad_request",
    ),
    401: ("No API key, or one that is not valid.", "unauthorized"),
    404: ("No such resource.", "not_found"),
    405: (
        "The path exists, not with this method; `Allow` lists the methods.",
        "method_not_allowed",
    ),
    409: ("The request conflicts with what is stored.", "conflict"),
    413: ("The request body is larger than allowed.", "payload_too_large"),
    422: ("A parameter or the body is not valid.", "invalid_input"),
    503: (
        "The database is unreachable, busy, full or read-only (code database_unavailable, "
        "database_busy, disk_full or database_read_only); retry after Retry-After seconds.",
        "database_unavailable",
    ),
}


def error_responses(*status_codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the errors an operation can answer; 400 (a URL holding NUL,
    web/limits.py), 401, 422 (a parameter) and 503 (an outage) are possible everywhere."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status_code in sorted({400, 401, 422, 503, *status_codes}):
        description, code = _ERROR_MEANINGS[status_code]
        responses[status_code] = {
            "model": ErrorBody,
            "description": description,
            "content": {
                "application/json": {"example": {"error": {"code": code, "message": description}}}
            },
        }
    return responses


PKPASS_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The signed .pkpass file (a zip), as Wallet installs it.",
        "content": {PKPASS_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
        "headers": {
            "Content-Disposition": {
                "description": 'attachment; filename="<serial_number>.pkpass"',
                "schema": {"type": "string"},
            }
        },
    }
}


# --- pass types -------------------------------------------------------------------------


class CertificateSummary(_Out):
    subject: str = Field(examples=["UID=pass.com.example.loyalty,CN=Pass Type ID: ..."])
    issuer: str
    not_before: str = Field(examples=["2026-01-01T00:00:00+00:00"])
    not_after: str = Field(examples=["2027-01-01T00:00:00+00:00"])
    sha256: str = Field(description="SHA-256 of the DER certificate, hex")


class ApnsError(_Out):
    reason: str = Field(examples=["BadCertificate"])
    at: str | None = Field(examples=[ISO_EXAMPLE])


class Problem(_Out):
    severity: Literal["error", "warning"]
    message: str


class PassTypeView(_Out):
    pass_type_id: str = Field(examples=["pass.com.example.loyalty"])
    team_id: str = Field(examples=["ABCDE12345"])
    certificate: CertificateSummary
    has_wwdr: bool = Field(description="Whether the Apple WWDR intermediate is stored")
    apns_auth: Literal["token", "certificate"]
    apns_error: ApnsError | None = Field(description="Why APNs refuses this pass type, if it does")
    expired: bool
    dev_mode: bool = Field(description="A throwaway local certificate: not for real iPhones")
    created_at: str | None = Field(examples=[ISO_EXAMPLE])
    problems: list[Problem] = Field(
        description="What makes (error) or may make (warning) Wallet reject its passes"
    )


class PassTypeSaved(PassTypeView):
    warnings: list[str] = Field(description="What to fix about the uploaded credentials")


class PassTypeList(_Out):
    items: list[PassTypeView]


# --- templates --------------------------------------------------------------------------


class TemplateView(_Out):
    id: int = Field(examples=[1])
    name: str = Field(examples=["loyalty"])
    pass_type_id: str = Field(examples=["pass.com.example.loyalty"])
    pass_json: dict[str, Any] = Field(description="pass.json with {{placeholders}}")
    assets: list[str] = Field(description="Asset file names", examples=[["icon.png", "logo.png"]])
    revision: int = Field(description="Goes up by one on every replacement")
    pass_count: int = Field(description="Passes made from this template")
    google: GoogleTemplateState | None = Field(
        None, description="Google Wallet opt-in and class state; null when not opted in"
    )
    created_at: str | None = Field(examples=[ISO_EXAMPLE])
    updated_at: str | None = Field(examples=[ISO_EXAMPLE])


class TemplateReplaced(TemplateView):
    passes_changed: int = Field(description="Passes that got a new version (and a push)")


class TemplateList(_Out):
    items: list[TemplateView]


# --- passes -----------------------------------------------------------------------------


class PassUrls(_Out):
    pkpass: str = Field(description="The .pkpass download (admin API, needs the key)")
    share: str = Field(description="The public share page a holder opens to add the pass")
    google: str | None = Field(
        None, description="The 'Add to Google Wallet' link, for passes of opted-in templates"
    )


class GoogleError(_Out):
    status: int | None = Field(description="Google's HTTP status, if it answered", examples=[400])
    reason: str | None = Field(description="Google's errors[0].reason", examples=["invalid"])
    message: str | None = Field(description="Google's message")


class GooglePassState(_Out):
    save_url: str | None = Field(description="The 'Add to Google Wallet' link")
    object_id: str = Field(examples=["3388000000012345678.ph-1a2b3c4d5e-c0ffee-42"])
    status: Literal["pending", "synced", "failed"] = Field(
        description="pending: not written yet; failed: Google refused it (see error)"
    )
    synced_version: int | None = Field(description="The pass version last written to Google")
    up_to_date: bool = Field(description="Google holds the pass's current version")
    last_sync_at: str | None = Field(examples=[ISO_EXAMPLE])
    error: GoogleError | None
    saves: int = Field(description="Saves reported by Google's callbacks")
    deletes: int = Field(description="Deletes reported by Google's callbacks")
    saved: bool = Field(description="Saved in at least one Google Wallet, as last reported")
    notifications_last_24h: int = Field(description="Of Google's 3 per object per day")


class GoogleTemplateState(_Out):
    issuer_id: str = Field(examples=["3388000000012345678"])
    type: str = Field(examples=["loyalty"])
    class_id: str = Field(examples=["3388000000012345678.ph-t1"])
    class_synced: bool = Field(description="Google holds the class of the current template")
    error: GoogleError | None
    warnings: list[str] = Field(description="What of pass.json Google Wallet cannot show")
    config: dict[str, Any] = Field(description="The template's Google section as given")


class GoogleStats(_Out):
    objects: int
    synced: int
    pending: int
    failed: int
    queued: int = Field(description="Class and object syncs waiting in the queue")
    saved: int = Field(description="Objects saved in a Google Wallet, per the callbacks")


class PassView(_Out):
    pass_type_id: str = Field(examples=["pass.com.example.loyalty"])
    serial_number: str = Field(examples=["c0ffee-42"])
    template: str = Field(description="The template's name", examples=["loyalty"])
    version: int = Field(description="Goes up by one on every real change")
    data: dict[str, Any] = Field(examples=[{"name": "Ada", "balance": 12.5}])
    voided: bool
    personalized: bool
    created_at: str | None = Field(examples=[ISO_EXAMPLE])
    modified_at: str | None = Field(examples=[ISO_EXAMPLE])
    urls: PassUrls
    google: GooglePassState | None = Field(
        None, description="Google Wallet state, for passes of opted-in templates"
    )


class PassChanged(PassView):
    changed: bool = Field(description="False when the request changed nothing (no new version)")


class PassList(_Out):
    items: list[PassView]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end"
    )


class Registration(_Out):
    device_library_id: str = Field(description="Shortened: enough to tell devices apart")
    push_token: str = Field(description="Shortened")
    registered_at: str = Field(examples=[ISO_EXAMPLE])


class RegistrationList(_Out):
    items: list[Registration]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end"
    )


class PushAttempt(_Out):
    at: str = Field(examples=[ISO_EXAMPLE])
    outcome: str = Field(examples=["delivered"])
    status: int | None = Field(description="APNs' HTTP status", examples=[200])
    reason: str | None = Field(description="APNs' reason, when it gave one")
    latency_ms: float | None
    push_token: str = Field(description="Shortened")


class PushAttemptList(_Out):
    items: list[PushAttempt]


class BlockedPassType(_Out):
    pass_type_id: str
    apns_error: str
    apns_error_at_ms: int | None


class PushStats(_Out):
    stalled: bool = Field(description="Pushes are due and no worker has sent any for a while")
    stall_reason: str | None = Field(description="Why it counts as stalled")
    oldest_due_age_seconds: float = Field(description="How long the earliest due push has waited")
    last_attempt_age_seconds: float | None = Field(description="Since the last push attempt")
    queue_depth: int
    due_now: int
    in_backoff: int
    leased: int
    sent: int
    retried: int
    failed: int
    failed_by_reason: dict[str, int]
    oldest_pending_age_seconds: float
    blocked_pass_types: list[BlockedPassType]
    google: GoogleStats | None = Field(None, description="Google Wallet objects and queue")


class DeviceLog(_Out):
    id: int
    message: str
    remote_addr: str | None
    at: str | None = Field(examples=[ISO_EXAMPLE])


class DeviceLogList(_Out):
    items: list[DeviceLog]
