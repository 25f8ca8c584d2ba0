"""Google Wallet: issuer accounts, template opt-ins, objects, the sync queue

Revision ID: 0016
Revises: 0017
Create Date: 2026-12-02 01:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "google_issuers",
        sa.Column("issuer_id", sa.String(32), nullable=False),
        sa.Column("client_email", sa.String(320), nullable=False),
        sa.Column("private_key_id", sa.String(128), nullable=True),
        sa.Column("token_uri", sa.Text, nullable=False),
        sa.Column("project_id", sa.String(128), nullable=True),
        sa.Column("private_key_encrypted", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("issuer_id", name="pk_google_issuers"),
    )
    op.create_table(
        "google_templates",
        sa.Column("template_id", BigId, nullable=False),
        sa.Column("issuer_id", sa.String(32), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("images", sa.JSON, nullable=False),
        sa.Column("class_id", sa.String(255), nullable=False),
        sa.Column("revision", sa.Integer, server_default="1", nullable=False),
        sa.Column("synced_revision", sa.Integer, server_default="0", nullable=False),
        sa.Column("error_status", sa.Integer, nullable=True),
        sa.Column("error_reason", sa.String(255), nullable=True),
        sa.Column("error_message", sa.Text, nullable=True),
        sa.Column("synced_at_ms", sa.BigInteger, nullable=True),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["templates.id"],
            name="fk_google_templates_template_id_templates",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["issuer_id"],
            ["google_issuers.issuer_id"],
            name="fk_google_templates_issuer_id_google_issuers",
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("template_id", name="pk_google_templates"),
        sa.UniqueConstraint("class_id", name="uq_google_templates_class_id"),
    )
    op.create_table(
        "google_objects",
        sa.Column("pass_id", BigId, nullable=False),
        sa.Column("template_id", BigId, nullable=False),
        sa.Column("object_id", sa.String(255), nullable=False),
        sa.Column("synced_version", sa.BigInteger, nullable=True),
        sa.Column("synced_keys", sa.JSON, nullable=True),
        sa.Column("status", sa.String(16), server_default="pending", nullable=False),
        sa.Column("error_status", sa.Integer, nullable=True),
        sa.Column("error_reason", sa.String(255), nullable=True),
        sa.Column("error_message", sa.Text, nullable=True),
        sa.Column("synced_at_ms", sa.BigInteger, nullable=True),
        sa.Column("notified_values", sa.JSON, nullable=True),
        sa.Column("notify_times", sa.JSON, nullable=True),
        sa.Column("messages", sa.JSON, nullable=True),
        sa.Column("saves", sa.Integer, server_default="0", nullable=False),
        sa.Column("deletes", sa.Integer, server_default="0", nullable=False),
        sa.Column("saved", sa.Boolean, server_default=sa.false(), nullable=False),
        sa.Column("last_event_at_ms", sa.BigInteger, nullable=True),
        sa.ForeignKeyConstraint(
            ["pass_id"], ["passes.id"], name="fk_google_objects_pass_id_passes", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["templates.id"],
            name="fk_google_objects_template_id_templates",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pass_id", name="pk_google_objects"),
        sa.UniqueConstraint("object_id", name="uq_google_objects_object_id"),
    )
    op.create_index("ix_google_objects_template_id", "google_objects", ["template_id"])
    op.create_table(
        "google_sync_jobs",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("target_id", sa.BigInteger, nullable=False),
        sa.Column("generation", sa.BigInteger, server_default="1", nullable=False),
        sa.Column("attempts", sa.Integer, server_default="0", nullable=False),
        sa.Column("due_at_ms", sa.BigInteger, nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_google_sync_jobs"),
        sa.UniqueConstraint("kind", "target_id", name="uq_google_sync_jobs_kind_target"),
    )
    op.create_index("ix_google_sync_jobs_due_at_ms", "google_sync_jobs", ["due_at_ms"])
    op.create_table(
        "google_callback_nonces",
        sa.Column("nonce", sa.String(255), nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("nonce", name="pk_google_callback_nonces"),
    )
    op.create_index("ix_google_callback_nonces_at_ms", "google_callback_nonces", ["at_ms"])
    op.create_table(
        "google_images",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("sha256", name="pk_google_images"),
    )


def downgrade() -> None:
    op.drop_table("google_images")
    op.drop_index("ix_google_callback_nonces_at_ms", table_name="google_callback_nonces")
    op.drop_table("google_callback_nonces")
    op.drop_index("ix_google_sync_jobs_due_at_ms", table_name="google_sync_jobs")
    op.drop_table("google_sync_jobs")
    op.drop_index("ix_google_objects_template_id", table_name="google_objects")
    op.drop_table("google_objects")
    op.drop_table("google_templates")
    op.drop_table("google_issuers")
