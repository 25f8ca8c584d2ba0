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
    sa.UniqueConstraint("pass_type_id", "serial_number", name="uq_passes_type_serial"),
)

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
    sa.UniqueConstraint("push_token", "pass_type_id", name="uq_push_jobs_token_type"),
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
