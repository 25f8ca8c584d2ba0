"""What the admin API answers, as models: its OpenAPI description and FastAPI's check of
every response body both come from these."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from passhouse.pkpass.bundle import PKPASS_MEDIA_TYPE
from passhouse.storage.pass_versions import MAX_KEYS, MAX_VALUE_CHARS, ActorKind, Cause

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


# --- install analytics --------------------------------------------------------------------


class StatsPoint(_Out):
    start: str = Field(description="Start of the hour or day (UTC)", examples=[ISO_EXAMPLE])
    issued: int = Field(description="Passes issued", examples=[120])
    updated: int = Field(
        description="Passes that got a new version (a data change, personalization, or "
        "their template's change)",
        examples=[40],
    )
    voided: int = Field(description="Passes voided", examples=[2])
    installs: int = Field(
        description="Devices that registered for a pass they did not hold", examples=[90]
    )
    uninstalls: int = Field(
        description="Devices that unregistered, or whose push token APNs said is gone",
        examples=[5],
    )
    pushes_sent: int | None = Field(
        description="Pushes APNs accepted (null for a template: a push belongs to a pass type)",
        examples=[300],
    )
    pushes_failed: int | None = Field(
        description="Pushes given up on after their attempts (null for a template)",
        examples=[1],
    )


class StatsTotals(_Out):
    """All-time figures, whatever from and to say."""

    passes: int = Field(description="Passes issued", examples=[1000])
    voided: int = Field(description="Passes voided", examples=[10])
    active_passes: int = Field(description="Passes issued and not voided", examples=[990])
    active_installs: int = Field(
        description="Devices holding a pass now (installs minus uninstalls)", examples=[700]
    )
    installs: int = Field(examples=[750])
    uninstalls: int = Field(examples=[50])
    updated: int = Field(description="New versions of passes", examples=[3000])
    pushes_sent: int | None = Field(description="Null for a template", examples=[9000])
    pushes_failed: int | None = Field(description="Null for a template", examples=[12])


class StatsView(_Out):
    interval: Literal["hour", "day"]
    from_: str = Field(
        alias="from", description="Start of the first point (UTC)", examples=[ISO_EXAMPLE]
    )
    to: str = Field(description="End of the series (excluded)", examples=[ISO_EXAMPLE])
    series: list[StatsPoint] = Field(description="One point per hour or day, oldest first")
    totals: StatsTotals


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
    totals: StatsTotals = Field(description="Its passes, installs and pushes (GET /stats)")


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
    totals: StatsTotals = Field(description="Its passes and installs (GET /stats)")
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
    expires_at: str | None = Field(
        description="The rendered expirationDate, if the pass has one", examples=[ISO_EXAMPLE]
    )
    expired: bool = Field(description="Its expirationDate has passed")
    retired: bool = Field(
        description="Voided or expired longer than PASSHOUSE_RETENTION_DAYS: devices were "
        "told to stop asking for it, and nothing is pushed for it any more"
    )
    personalized: bool
    installs: int = Field(description="Devices that hold the pass now (registered for updates)")
    first_installed_at: str | None = Field(
        description="When a device first registered for the pass; null if none ever did",
        examples=[ISO_EXAMPLE],
    )
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
    transport: str = Field(
        description="How the device is woken: apns, walletpasses, passwallet, pass2u, passworks",
        examples=["apns"],
    )
    app: str = Field(
        description="The wallet app the device registered from", examples=["Apple Wallet"]
    )
    push_service: str | None = Field(
        description="Host of the push service the device named (PassWallet); else null",
        examples=[None],
    )


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
    transport: str = Field(description="apns, or the Android app's relay", examples=["apns"])


class PushAttemptList(_Out):
    items: list[PushAttempt]


class BlockedPassType(_Out):
    pass_type_id: str
    apns_error: str
    apns_error_at_ms: int | None


class TransportStats(_Out):
    queued: int
    sent: int
    retried: int
    failed: int
    skipped: int


class PushStats(_Out):
    stalled: bool = Field(description="Pushes are due and no worker has sent any for a while")
    stall_reason: str | None = Field(description="Why it counts as stalled")
    oldest_due_age_seconds: float = Field(description="How long the earliest due push has waited")
    last_attempt_age_seconds: float | None = Field(description="Since the last push attempt")
    queue_depth: int
    due_now: int
    in_backoff: int
    leased: int
    parked: int = Field(
        description="Held because their relay cannot send (no API key, or a refused one)"
    )
    sent: int
    retried: int
    failed: int
    failed_by_reason: dict[str, int]
    skipped: int = Field(description="Pushes parked because their relay could not send")
    skipped_by_reason: dict[str, int] = Field(
        description="`transport: reason` of the skipped pushes",
        examples=[{"pass2u: RelayNotConfigured: set PASSHOUSE_RELAY_PASS2U_API_KEY": 3}],
    )
    transports: dict[str, TransportStats] = Field(
        description="Queued pushes and recent outcomes per transport"
    )
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


# --- bulk jobs (issue 9) ------------------------------------------------------------------


class BatchItemError(_Out):
    code: str = Field(description="invalid_input or conflict", examples=["invalid_input"])
    message: str = Field(examples=["The pass would be invalid: ..."])


class BatchItemResult(_Out):
    index: int = Field(description="The item's position in `items`, from 0", examples=[0])
    status: Literal["created", "failed"]
    # On "created": the pass, as GET /passes/{pass_type_id}/{serial_number} shows it.
    pass_: PassView | None = Field(None, alias="pass", description="The pass, when created")
    error: BatchItemError | None = Field(None, description="Why the item failed, when it did")


class BatchResult(_Out):
    created: int = Field(description="Items created", examples=[998])
    failed: int = Field(description="Items refused (nothing was made for them)", examples=[2])
    items: list[BatchItemResult] = Field(description="One result per item, in order")


class JobError(_Out):
    row: int | None = Field(
        description="The CSV row (the header is row 1, as a spreadsheet numbers them); "
        "null for a bulk update",
        examples=[17],
    )
    serial_number: str | None = Field(examples=["c0ffee-42"])
    message: str = Field(examples=["The row has 3 fields; the header row has 4."])


class JobView(_Out):
    id: int = Field(examples=[12])
    kind: Literal["import", "bulk_update"]
    status: Literal["queued", "running", "done", "failed"]
    template: str = Field(description="The template's name", examples=["loyalty"])
    mode: Literal["create", "upsert"] | None = Field(description="An import's mode")
    total: int = Field(
        description="Rows of the CSV, or passes of the template (not voided) when the bulk "
        "update was created",
        examples=[100000],
    )
    done: int = Field(description="Rows or passes handled so far", examples=[41500])
    created: int = Field(description="Passes created", examples=[41000])
    updated: int = Field(description="Passes given a new version (and a push)", examples=[0])
    unchanged: int = Field(description="Rows or matching passes that changed nothing")
    failed: int = Field(description="Rows or passes that could not be applied", examples=[3])
    errors: list[JobError] = Field(
        description="The first 100 failures, in row order; all of them: GET .../errors"
    )
    error: str | None = Field(description="Why the job failed, when it did")
    created_at: str = Field(examples=[ISO_EXAMPLE])
    started_at: str | None = Field(examples=[ISO_EXAMPLE])
    finished_at: str | None = Field(examples=[ISO_EXAMPLE])
    url: str = Field(description="Where to follow its progress")


class JobList(_Out):
    items: list[JobView]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next (older) page; null at the end"
    )


class JobErrorList(_Out):
    items: list[JobError]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end"
    )


# --- previews (issue 11) ----------------------------------------------------------------


class Located(_Out):
    path: str = Field(
        description="The key path in pass.json (or file name) the message is about; empty "
        "when it names none",
        examples=["storeCard.primaryFields[0].value"],
    )
    message: str = Field(examples=["required key is missing"])


class GoogleCardView(_Out):
    html: str = Field(
        description="A standalone HTML page (inline CSS, SVG barcode, images as data: URLs, no "
        "script) drawing the Google Wallet card of the pass from `class` and `object`; an "
        "approximation, and it says so. Show it in a sandboxed iframe (srcdoc)."
    )
    type: str = Field(
        description="The Google pass type",
        examples=["loyalty"],
    )
    state: str = Field(
        description="The object's state (ACTIVE, INACTIVE when void, EXPIRED); empty when the "
        "object could not be rendered",
        examples=["ACTIVE"],
    )
    class_: dict[str, Any] = Field(
        alias="class",
        description="The class passhouse sends to Google for the template (empty when it "
        "could not be rendered)",
    )
    object: dict[str, Any] = Field(
        description="The object passhouse sends to Google for this pass (for a draft, what a "
        "pass with this sample data would get)"
    )
    errors: list[Located] = Field(description="What would make Google or passhouse refuse it")
    warnings: list[Located] = Field(
        description="What the Google card cannot carry over, or the preview could not draw"
    )


class PreviewView(_Out):
    html: str = Field(
        description="A standalone HTML page (inline CSS, SVG barcodes, images as data: URLs, "
        "no script) drawing the pass's front and back; an approximation, and it says so. Show "
        "it in a sandboxed iframe (srcdoc)."
    )
    pass_json: dict[str, Any] = Field(
        description="The rendered pass.json the preview was drawn from (for a draft, what a "
        "pass with this sample data would hold; authenticationToken left out)"
    )
    style: str | None = Field(description="The pass style drawn", examples=["storeCard"])
    errors: list[Located] = Field(description="What would make the server or Wallet refuse it")
    warnings: list[Located] = Field(description="What Wallet may show differently or drop")
    placeholders: list[str] = Field(
        description="The draft's {{placeholders}} (empty for an issued pass)",
        examples=[["balance", "member.name"]],
    )
    missing_data: list[str] = Field(
        description="Placeholders the sample data leaves empty (drawn as {{name}})"
    )
    language: Literal["en", "de", "fr", "es"] = Field(
        description="The language labels, dates and numbers are shown in"
    )
    google: GoogleCardView | None = Field(
        None,
        description="The Google Wallet card, where the template is opted in to Google (or "
        "the draft has a `google` section); null otherwise",
    )


class TemplateImpact(_Out):
    template: str = Field(examples=["loyalty"])
    revision: int = Field(description="The template's current revision", examples=[3])
    passes: int = Field(description="Passes a new version changes (each gets a new version)")
    installed_passes: int = Field(description="Of those, passes on at least one device")
    devices: int = Field(description="Devices holding at least one of them")
    registrations: int = Field(description="(device, pass) registrations")
    push_tokens: int = Field(description="Push notifications queued (one per push token)")


class TemplateAssets(_Out):
    assets: dict[str, str] = Field(
        description="File name -> base64 bytes, as PUT /templates/{ref} takes them back",
        examples=[{"icon.png": "iVBORw0KGgo..."}],
    )


# --- pass version history (ADR 0029) ------------------------------------------------------


class VersionActor(_Out):
    kind: ActorKind = Field(
        description="api_key (a key made with `passhouse api-key create`), admin_token "
        "(PASSHOUSE_ADMIN_TOKEN), cli, scheduler (scheduled changes, expiry, retirement), "
        "system (the server itself) or device (Wallet, personalizing the pass)",
        examples=["api_key"],
    )
    key_id: int | None = Field(description="The API key's id (api_key only)", examples=[3])
    name: str | None = Field(description="The API key's name at the time", examples=["shop"])


class DataChange(_Out):
    key: str = Field(description="The data key; nested keys dotted", examples=["member.level"])
    old: Any = Field(None, description="Its value before; absent when the key was added")
    new: Any = Field(None, description="Its value after; absent when the key was removed")
    truncated: bool | None = Field(
        None, description=f"True when a value was cut to its first {MAX_VALUE_CHARS} characters"
    )


class TemplateChange(_Out):
    id: int = Field(examples=[1])
    name: str = Field(examples=["loyalty"])
    revision: int = Field(description="The template's new revision", examples=[4])


class VersionChanges(_Out):
    data: list[DataChange] | None = Field(
        None, description=f"Changed data keys, at most {MAX_KEYS} (issued: every key, as added)"
    )
    more_keys: int | None = Field(None, description=f"Changed keys beyond the {MAX_KEYS} listed")
    template: TemplateChange | None = Field(None, description="A template change's new revision")
    voided: bool | None = Field(None, description="True when this version voided the pass")
    retired: bool | None = Field(None, description="True when this version retired the pass")
    personalization: list[str] | None = Field(
        None,
        description="The personalization fields the holder filled in (their values are not "
        "kept in the history)",
        examples=[["fullName", "emailAddress"]],
    )


class PassVersion(_Out):
    version: int = Field(description="The pass's version (its update tag)", examples=[42])
    at: str = Field(description="When, to the millisecond", examples=["2026-12-02T05:00:00.123Z"])
    cause: Cause = Field(description="What made the version", examples=["data_changed"])
    actor: VersionActor
    by: str = Field(description="The actor in words", examples=["API key shop (id 3)"])
    changes: VersionChanges


class PassVersionList(_Out):
    items: list[PassVersion]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next (older) page; null at the end"
    )
    kept: int = Field(description="Versions kept per pass; older ones are dropped", examples=[100])
