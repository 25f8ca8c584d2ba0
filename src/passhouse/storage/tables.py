"""The schema, as SQLAlchemy Core tables (the device hot path uses Core, not the ORM).

Times that take part in protocol comparisons are integer Unix seconds: both databases
do arithmetic on them the same way, and HTTP dates have one-second resolution anyway.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# BIGINT on PostgreSQL, but INTEGER on SQLite so the column is the rowid alias.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

pass_types = sa.Table(
    "pass_types",
    metadata,
    sa.Column("pass_type_id", sa.String(255), primary_key=True),
    sa.Column("team_id", sa.String(64), nullable=False),
    sa.Column("certificate_pem", sa.Text, nullable=False),
    # Fernet token of the PEM private key, encrypted with the server's secret key.
    sa.Column("private_key_encrypted", sa.LargeBinary, nullable=False),
    sa.Column("wwdr_pem", sa.Text, nullable=True),
    sa.Column("not_after", sa.BigInteger, nullable=False),
    # Optional APNs token auth (.p8), otherwise the pass certificate authenticates.
    sa.Column("apns_key_id", sa.String(32), nullable=True),
    sa.Column("apns_team_id", sa.String(64), nullable=True),
    sa.Column("apns_key_encrypted", sa.LargeBinary, nullable=True),
    # Set by the push worker on a 403 from APNs; sending stops until the cert is replaced.
    sa.Column("apns_error", sa.Text, nullable=True),
    sa.Column("apns_error_at", sa.BigInteger, nullable=True),  # Unix ms
    # The change counter: every change to a pass of this type takes the next value, and
    # the UPDATE's row lock, held until commit, makes versions commit in order.
    sa.Column("last_version", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("dev_mode", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

templates = sa.Table(
    "templates",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column(
        "pass_type_id",
        sa.String(255),
        sa.ForeignKey("pass_types.pass_type_id", ondelete="RESTRICT"),
        nullable=False,
    ),
    sa.Column("pass_json", sa.JSON, nullable=False),
    # Bumped on every edit; rendered passes are cached per (pass, version) anyway.
    sa.Column("revision", sa.Integer, nullable=False, server_default="1"),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)

template_assets = sa.Table(
    "template_assets",
    metadata,
    sa.Column(
        "template_id",
        BigId,
        sa.ForeignKey("templates.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("data", sa.LargeBinary, nullable=False),
)

passes = sa.Table(
    "passes",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column(
        "pass_type_id",
        sa.String(255),
        sa.ForeignKey("pass_types.pass_type_id", ondelete="RESTRICT"),
        nullable=False,
    ),
    sa.Column("serial_number", sa.String(255), nullable=False),
    sa.Column(
        "template_id",
        BigId,
        sa.ForeignKey("templates.id", ondelete="RESTRICT"),
        nullable=False,
        index=True,
    ),
    sa.Column("authentication_token", sa.String(64), nullable=False),
    sa.Column("share_id", sa.String(64), nullable=False, unique=True),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Column("voided", sa.Boolean, nullable=False, server_default=sa.false()),
    # Value of pass_types.last_version taken by the latest change of this pass.
    sa.Column("version", sa.BigInteger, nullable=False),
    # Last-Modified in Unix seconds; strictly increases with every new version.
    sa.Column("modified_at", sa.BigInteger, nullable=False),
    # What the person entered in Wallet's personalization sheet, once they did.
    sa.Column("personalization", sa.JSON, nullable=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    # Expiry and retirement (ADR 0020), Unix seconds. expires_at is the rendered
    # expirationDate (NULL: none; EXPIRY_UNKNOWN: to be worked out again by a worker, after
    # a template change); voided_at when it was voided; retired_at once its devices are
    # told to stop asking for it.
    sa.Column("expires_at", sa.BigInteger, nullable=True),
    sa.Column("voided_at", sa.BigInteger, nullable=True),
    sa.Column("retired_at", sa.BigInteger, nullable=True),
    # How many versions of this pass the history recorded: the seq of its newest
    # pass_versions row, bumped by the same UPDATE as the version (ADR 0029).
    sa.Column("history_seq", sa.BigInteger, nullable=False, server_default="0"),
    sa.UniqueConstraint("pass_type_id", "serial_number", name="uq_passes_type_serial"),
    # The workers' lookups: passes to void at expiry (and with unknown expiry), passes to
    # retire once voided for the retention period; ranges on an index, never a scan.
    sa.Index("ix_passes_voided_expires_at", "voided", "expires_at"),
    sa.Index("ix_passes_retired_at_voided_at", "retired_at", "voided_at"),
)

# passes.expires_at of a pass whose expiry must be rendered again (a template changed).
EXPIRY_UNKNOWN = -1

# Signed .pkpass bytes of a pass's current version; built on first download.
pkpass_cache = sa.Table(
    "pkpass_cache",
    metadata,
    sa.Column("pass_id", BigId, sa.ForeignKey("passes.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("version", sa.BigInteger, nullable=False),
    # What went into the file besides the pass's version (the webServiceURL): a file built
    # for another key is never served (issuing.build_key, ADR 0012).
    sa.Column("build_key", sa.String(64), nullable=False, server_default=""),
    sa.Column("data", sa.LargeBinary, nullable=False),
)

devices = sa.Table(
    "devices",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("device_library_id", sa.String(255), nullable=False, unique=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

registrations = sa.Table(
    "registrations",
    metadata,
    sa.Column(
        "device_id", BigId, sa.ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("pass_id", BigId, sa.ForeignKey("passes.id", ondelete="CASCADE"), primary_key=True),
    # Kept per registration: a device may present a new token with any registration.
    sa.Column("push_token", sa.Text, nullable=False),
    # Unix milliseconds, compared with the timestamp of an APNs 410.
    sa.Column("registered_at_ms", sa.BigInteger, nullable=False),
    # How this device is woken: "apns" (Apple Wallet), or the relay of an Android app
    # (push/transports.py); set from the endpoint and headers of its registration.
    sa.Column("transport", sa.String(16), nullable=False, server_default="apns"),
    # PassWallet's pushServiceUrl (checked against PASSHOUSE_PASSWALLET_PUSH_HOSTS); "" otherwise.
    sa.Column("push_service_url", sa.Text, nullable=False, server_default=""),
    sa.Index("ix_registrations_pass_id", "pass_id"),
    sa.Index("ix_registrations_push_token", "push_token"),
)

# The outbox. One row per (push token, pass type) coalesces bursts of changes; a change
# bumps `generation`, so a worker that finishes sending an older generation sends again.
push_jobs = sa.Table(
    "push_jobs",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("push_token", sa.Text, nullable=False),
    sa.Column("pass_type_id", sa.String(255), nullable=False),
    sa.Column("generation", sa.BigInteger, nullable=False, server_default="1"),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    # When the job may next be claimed; a claim pushes it forward by a lease, so a
    # worker killed mid-send leaves the job to be claimed again after the lease.
    sa.Column("due_at_ms", sa.BigInteger, nullable=False),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    # Which sender delivers it, and where (PassWallet's pushServiceUrl; "" for the others).
    sa.Column("transport", sa.String(16), nullable=False, server_default="apns"),
    sa.Column("push_service_url", sa.Text, nullable=False, server_default=""),
    sa.UniqueConstraint(
        "push_token", "pass_type_id", "transport", "push_service_url", name="uq_push_jobs_target"
    ),
    sa.Index("ix_push_jobs_due_at_ms", "due_at_ms"),
)

# Recent outcomes, for the admin API and stats; pruned by age.
push_attempts = sa.Table(
    "push_attempts",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("push_token", sa.Text, nullable=False),
    sa.Column("pass_type_id", sa.String(255), nullable=False),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("status", sa.Integer, nullable=True),
    sa.Column("reason", sa.String(255), nullable=True),
    sa.Column("latency_ms", sa.Float, nullable=True),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
    sa.Column("transport", sa.String(16), nullable=False, server_default="apns"),
    sa.Index("ix_push_attempts_push_token", "push_token"),
    sa.Index("ix_push_attempts_at_ms", "at_ms"),
)

REMOTE_ADDR_LENGTH = 64

device_logs = sa.Table(
    "device_logs",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("remote_addr", sa.String(REMOTE_ADDR_LENGTH), nullable=True),
    sa.Column("at", sa.BigInteger, nullable=False),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("prefix", sa.String(16), nullable=False),
    # SHA-256 of the whole key: keys are random with 256 bits, so no slow hash is needed.
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("revoked_at", sa.BigInteger, nullable=True),
)

# --- search and install analytics (ADR 0021) ---------------------------------------------

# Lists sorted newest first, page after page, stay on an index whatever their depth: the
# cursor is the last row's sort key, never an OFFSET.
sa.Index("ix_passes_template_id_id", passes.c.template_id, passes.c.id)
sa.Index("ix_passes_modified_at_id", passes.c.modified_at, passes.c.id)
sa.Index(
    "ix_passes_template_id_modified_at_id", passes.c.template_id, passes.c.modified_at, passes.c.id
)

# The words of each pass's serial and data values, case-folded: written in the same
# transaction as the pass (storage/search.py). A prefix is a range of this primary key.
# Byte order ("C") on PostgreSQL, so a prefix range is exact whatever the database locale.
SEARCH_TERM_LENGTH = 64
pass_search_terms = sa.Table(
    "pass_search_terms",
    metadata,
    sa.Column(
        "term",
        sa.String(SEARCH_TERM_LENGTH).with_variant(
            sa.String(SEARCH_TERM_LENGTH, collation="C"), "postgresql"
        ),
        primary_key=True,
    ),
    # No foreign key: its check per row was most of a bulk import's time (migration 0030);
    # a trigger on passes deletes a deleted pass's terms.
    sa.Column("pass_id", BigId, primary_key=True),
    sa.Index("ix_pass_search_terms_pass_id_term", "pass_id", "term"),
)

# Counters per hour, kept as things happen: upserted in the transaction of the event.
# template_id 0 holds what belongs to the pass type alone (pushes go to a device, which
# then fetches every changed pass of the type).
stats_counters = sa.Table(
    "stats_counters",
    metadata,
    sa.Column("pass_type_id", sa.String(255), primary_key=True),
    sa.Column("template_id", sa.BigInteger, primary_key=True),
    sa.Column("bucket", sa.BigInteger, primary_key=True),  # Unix seconds of the hour's start
    sa.Column("issued", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("updated", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("voided", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("installs", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("uninstalls", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("pushes_sent", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("pushes_failed", sa.BigInteger, nullable=False, server_default="0"),
    sa.Index("ix_stats_counters_bucket", "bucket"),
)

# When a device first registered for each pass; written once (INSERT ... DO NOTHING).
pass_first_installs = sa.Table(
    "pass_first_installs",
    metadata,
    sa.Column("pass_id", BigId, sa.ForeignKey("passes.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
)

# Scheduled changes (issue 9): a merge patch or a void, for one pass or for the passes of a
# template matching `where`, applied by the workers at `due_at_ms` (ADR 0020).
scheduled_changes = sa.Table(
    "scheduled_changes",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    # pending, then applied, failed or cancelled; only a pending change may be claimed.
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("pass_type_id", sa.String(255), nullable=True),
    sa.Column("serial_number", sa.String(255), nullable=True),
    # No foreign key: a template deleted meanwhile makes the change fail, with the reason.
    sa.Column("template_id", BigId, nullable=True),
    sa.Column("matching", sa.JSON, nullable=True),  # the request's `where`
    sa.Column("data", sa.JSON, nullable=True),
    sa.Column("void", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("due_at_ms", sa.BigInteger, nullable=False),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.Column("finished_at_ms", sa.BigInteger, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("passes_changed", sa.Integer, nullable=False, server_default="0"),
    sa.Column("passes_failed", sa.Integer, nullable=False, server_default="0"),
    # The first failures of a template change: [{"serial_number", "reason"}, ...].
    sa.Column("failures", sa.JSON, nullable=True),
    sa.Index("ix_scheduled_changes_status_due", "status", "due_at_ms"),
)

# --- webhooks (issue 9, ADR 0018) ---------------------------------------------------------

webhook_endpoints = sa.Table(
    "webhook_endpoints",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("url", sa.Text, nullable=False),
    # Fernet token of the signing secret (the secret must be read back to sign).
    sa.Column("secret_encrypted", sa.LargeBinary, nullable=False),
    # The event types as given (["*"] or names), for display; webhook_subscriptions is
    # what fan-out reads.
    sa.Column("events", sa.JSON, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    # Unix ms of the first failed attempt since the last success; None while healthy.
    sa.Column("failing_since_ms", sa.BigInteger, nullable=True),
    # Set when the worker disabled the endpoint after failing for too long.
    sa.Column("disabled_reason", sa.Text, nullable=True),
    sa.Column("disabled_at", sa.BigInteger, nullable=True),
)

# Which event types an endpoint took, and when: an event goes to the endpoints whose
# interval covers its time, so "subscribed when it happened" holds whenever it is fanned
# out. Closed (until_ms set) by a change of events, a disable, or a delete.
webhook_subscriptions = sa.Table(
    "webhook_subscriptions",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column(
        "endpoint_id",
        BigId,
        sa.ForeignKey("webhook_endpoints.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("event_type", sa.String(64), nullable=False),  # a type, or "*"
    sa.Column("from_ms", sa.BigInteger, nullable=False),
    sa.Column("until_ms", sa.BigInteger, nullable=True),
    sa.Index("ix_webhook_subscriptions_event_type", "event_type", "until_ms"),
)

# The event outbox: written in the transaction of the change that caused the event (only
# when some endpoint takes its type), fanned out to deliveries by the worker.
webhook_events = sa.Table(
    "webhook_events",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    # What receivers see as the event id: random, stable across retries.
    sa.Column("public_id", sa.String(40), nullable=False, unique=True),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.Column("fanned_out", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Index(
        "ix_webhook_events_pending",
        "id",
        sqlite_where=sa.text("NOT fanned_out"),
        postgresql_where=sa.text("NOT fanned_out"),
    ),
    sa.Index("ix_webhook_events_created_at_ms", "created_at_ms"),
)

# One row per (event, endpoint): the delivery queue (leased like push_jobs) and its record.
webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column(
        "event_id", BigId, sa.ForeignKey("webhook_events.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column(
        "endpoint_id",
        BigId,
        sa.ForeignKey("webhook_endpoints.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("state", sa.String(16), nullable=False),  # pending, delivered, failed
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    # When it may next be claimed (a claim moves it forward by a lease); None once done.
    sa.Column("due_at_ms", sa.BigInteger, nullable=True),
    sa.Column("last_status", sa.Integer, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.Column("last_attempt_at_ms", sa.BigInteger, nullable=True),
    sa.Column("finished_at_ms", sa.BigInteger, nullable=True),
    sa.UniqueConstraint("event_id", "endpoint_id", name="uq_webhook_deliveries_event_endpoint"),
    sa.Index("ix_webhook_deliveries_due_at_ms", "due_at_ms"),
    sa.Index("ix_webhook_deliveries_endpoint_id", "endpoint_id", "id"),
)

# certificate.expiring thresholds already announced, per certificate (its not_after).
certificate_notices = sa.Table(
    "certificate_notices",
    metadata,
    sa.Column("pass_type_id", sa.String(255), primary_key=True),
    sa.Column("not_after", sa.BigInteger, primary_key=True),
    sa.Column("days_before", sa.Integer, primary_key=True),
    sa.Column("at", sa.BigInteger, nullable=False),
)

# --- bulk jobs and idempotent calls (issue 9) ---------------------------------------------

# A CSV import or a bulk update, run by the workers in chunks. Each chunk is one
# transaction that also moves `cursor` and the counts, so a worker killed mid-job leaves
# the job exactly where its last committed chunk ended (ADR 0019).
jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(32), nullable=False),  # import | bulk_update
    sa.Column("status", sa.String(16), nullable=False),  # queued | running | done | failed
    # The template is named, not referenced: a job's record outlives its template.
    sa.Column("template_id", BigId, nullable=False),
    sa.Column("template_name", sa.String(200), nullable=False),
    # import: {"mode"}; bulk_update: {"where", "data", "upper_id"}.
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("total", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("done", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("created", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("updated", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("unchanged", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("failed", sa.BigInteger, nullable=False, server_default="0"),
    # The last row number (import) or pass id (bulk update) a committed chunk handled.
    sa.Column("cursor", sa.BigInteger, nullable=False, server_default="0"),
    # Who runs it: a worker holds a lease it renews with every chunk.
    sa.Column("lease_token", sa.String(32), nullable=True),
    sa.Column("lease_until_ms", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("claims", sa.Integer, nullable=False, server_default="0"),
    sa.Column("error", sa.Text, nullable=True),  # why a failed job failed
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("started_at", sa.BigInteger, nullable=True),
    sa.Column("finished_at", sa.BigInteger, nullable=True),
    sa.Index("ix_jobs_status", "status"),
)

# An uploaded CSV's rows, staged by the request that created the import; deleted when
# the job finishes.
job_rows = sa.Table(
    "job_rows",
    metadata,
    sa.Column("job_id", BigId, sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("row_number", sa.BigInteger, primary_key=True),
    sa.Column("serial_number", sa.String(255), nullable=True),
    # The pass data the row makes; NULL when the row itself is unreadable (see problem).
    sa.Column("data", sa.JSON, nullable=True),
    sa.Column("problem", sa.Text, nullable=True),
)

# Each row (import) or pass (bulk update) a job could not apply, and why.
job_errors = sa.Table(
    "job_errors",
    metadata,
    sa.Column("job_id", BigId, sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True),  # the row number, or the pass id
    sa.Column("serial_number", sa.String(255), nullable=True),
    sa.Column("message", sa.Text, nullable=False),
)

# The first answer to a POST sent with an Idempotency-Key, written in the transaction of
# the request it answers: a retry gets this answer back, and of two concurrent requests
# with one key the second waits on the unique key and then replays the first's answer.
idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    # SHA-256 of the API key that sent it: keys are scoped per API key.
    sa.Column("scope", sa.String(64), nullable=False),
    sa.Column("key", sa.String(255), nullable=False),
    # SHA-256 of the method, path and body: the same key with another request is a 422.
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("status_code", sa.Integer, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("scope", "key", name="uq_idempotency_keys_scope_key"),
    sa.Index("ix_idempotency_keys_created_at", "created_at"),
)

# --- Google Wallet (issue 12) ------------------------------------------------------------

# An issuer account and the service account that acts for it.
google_issuers = sa.Table(
    "google_issuers",
    metadata,
    sa.Column("issuer_id", sa.String(32), primary_key=True),
    sa.Column("client_email", sa.String(320), nullable=False),
    sa.Column("private_key_id", sa.String(128), nullable=True),
    sa.Column("token_uri", sa.Text, nullable=False),
    sa.Column("project_id", sa.String(128), nullable=True),
    # Fernet token of the service account's PEM key, as pass_types.private_key_encrypted.
    sa.Column("private_key_encrypted", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

# A template's opt-in to Google Wallet and its class's sync state.
google_templates = sa.Table(
    "google_templates",
    metadata,
    sa.Column(
        "template_id", BigId, sa.ForeignKey("templates.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column(
        "issuer_id",
        sa.String(32),
        sa.ForeignKey("google_issuers.issuer_id", ondelete="RESTRICT"),
        nullable=False,
    ),
    sa.Column("type", sa.String(16), nullable=False),
    # The template's `google` section as given (issuer_id, type, class?, object?).
    sa.Column("config", sa.JSON, nullable=False),
    # Apple image name (logo, strip, thumbnail) -> sha256 of the bytes in google_images.
    sa.Column("images", sa.JSON, nullable=False),
    sa.Column("class_id", sa.String(255), nullable=False, unique=True),
    # Bumped by every template change; the class is written when synced_revision lags.
    sa.Column("revision", sa.Integer, nullable=False, server_default="1"),
    sa.Column("synced_revision", sa.Integer, nullable=False, server_default="0"),
    sa.Column("error_status", sa.Integer, nullable=True),
    sa.Column("error_reason", sa.String(255), nullable=True),
    sa.Column("error_message", sa.Text, nullable=True),
    sa.Column("synced_at_ms", sa.BigInteger, nullable=True),
)

# One pass's Google object: what was last written, and what Google said about it.
google_objects = sa.Table(
    "google_objects",
    metadata,
    sa.Column("pass_id", BigId, sa.ForeignKey("passes.id", ondelete="CASCADE"), primary_key=True),
    sa.Column(
        "template_id",
        BigId,
        sa.ForeignKey("templates.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("object_id", sa.String(255), nullable=False, unique=True),
    # The pass version last written to Google (NULL: never inserted).
    sa.Column("synced_version", sa.BigInteger, nullable=True),
    # Top-level keys last sent: a key the object no longer has is sent as null (removed).
    sa.Column("synced_keys", sa.JSON, nullable=True),
    sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
    sa.Column("error_status", sa.Integer, nullable=True),
    sa.Column("error_reason", sa.String(255), nullable=True),
    sa.Column("error_message", sa.Text, nullable=True),
    sa.Column("synced_at_ms", sa.BigInteger, nullable=True),
    # Values of the fields with a changeMessage at the last sync, and the times (Unix ms)
    # of the notifications sent in the last 24 hours (Google allows 3).
    sa.Column("notified_values", sa.JSON, nullable=True),
    sa.Column("notify_times", sa.JSON, nullable=True),
    sa.Column("messages", sa.JSON, nullable=True),
    # Saves and deletes reported by Google's callbacks.
    sa.Column("saves", sa.Integer, nullable=False, server_default="0"),
    sa.Column("deletes", sa.Integer, nullable=False, server_default="0"),
    sa.Column("saved", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("last_event_at_ms", sa.BigInteger, nullable=True),
)

# The Google outbox: one row per class (kind "class", target = template id) or object
# (kind "object", target = pass id) coalesces bursts; `generation` as in push_jobs.
google_sync_jobs = sa.Table(
    "google_sync_jobs",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("target_id", sa.BigInteger, nullable=False),
    sa.Column("generation", sa.BigInteger, nullable=False, server_default="1"),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("due_at_ms", sa.BigInteger, nullable=False),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("kind", "target_id", name="uq_google_sync_jobs_kind_target"),
    sa.Index("ix_google_sync_jobs_due_at_ms", "due_at_ms"),
)

# Nonces of callbacks already applied (Google may deliver one twice); pruned by age.
google_callback_nonces = sa.Table(
    "google_callback_nonces",
    metadata,
    sa.Column("nonce", sa.String(255), primary_key=True),
    sa.Column("at_ms", sa.BigInteger, nullable=False, index=True),
)

# Template images Google fetches itself, by the SHA-256 of their bytes.
google_images = sa.Table(
    "google_images",
    metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)


# --- pass version history (ADR 0029) ------------------------------------------------------

# One row per new version of a pass: what caused it, who (an API key, or the CLI, the
# scheduler, the server itself, the device), and a bounded diff. Written in the version's
# own transaction; the newest HISTORY_LIMIT rows of each pass are kept
# (storage/pass_versions.py). No index but the key: every read is one pass's rows by seq.
pass_versions = sa.Table(
    "pass_versions",
    metadata,
    sa.Column("pass_id", BigId, sa.ForeignKey("passes.id", ondelete="CASCADE"), primary_key=True),
    # 1, 2, 3... per pass (passes.history_seq); in the order of the versions.
    sa.Column("seq", sa.BigInteger, primary_key=True),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
    sa.Column("cause", sa.String(32), nullable=False),
    # api_key | admin_token | cli | scheduler | system | device; a key's id and its name
    # at the time (a key can be revoked, never renamed, but the history outlives it).
    sa.Column("actor", sa.String(32), nullable=False),
    sa.Column("actor_key_id", sa.BigInteger, nullable=True),
    sa.Column("actor_name", sa.String(200), nullable=True),
    sa.Column("changes", sa.JSON, nullable=False),
)
