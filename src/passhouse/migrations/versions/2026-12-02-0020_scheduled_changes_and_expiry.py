"""scheduled changes; pass expiry and retirement

Revision ID: 0020
Revises: 0021
Create Date: 2026-12-02 01:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("passes") as batch:
        batch.add_column(sa.Column("expires_at", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("voided_at", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("retired_at", sa.BigInteger(), nullable=True))
        batch.create_index("ix_passes_voided_expires_at", ["voided", "expires_at"], unique=False)
        batch.create_index(
            "ix_passes_retired_at_voided_at", ["retired_at", "voided_at"], unique=False
        )
    # Existing passes: their expiry is worked out by the workers (-1: unknown, rendered
    # again; a voided pass never changes, so its expiry no longer matters); a voided pass
    # counts as voided when it last changed.
    op.execute("UPDATE passes SET expires_at = -1 WHERE NOT voided")
    op.execute("UPDATE passes SET voided_at = modified_at WHERE voided")
    op.create_table(
        "scheduled_changes",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("pass_type_id", sa.String(length=255), nullable=True),
        sa.Column("serial_number", sa.String(length=255), nullable=True),
        sa.Column("template_id", BigId, nullable=True),
        sa.Column("matching", sa.JSON(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.Column("void", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("due_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("finished_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("passes_changed", sa.Integer(), server_default="0", nullable=False),
        sa.Column("passes_failed", sa.Integer(), server_default="0", nullable=False),
        sa.Column("failures", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scheduled_changes")),
    )
    op.create_index("ix_scheduled_changes_status_due", "scheduled_changes", ["status", "due_at_ms"])


def downgrade() -> None:
    op.drop_index("ix_scheduled_changes_status_due", table_name="scheduled_changes")
    op.drop_table("scheduled_changes")
    with op.batch_alter_table("passes") as batch:
        batch.drop_index("ix_passes_retired_at_voided_at")
        batch.drop_index("ix_passes_voided_expires_at")
        batch.drop_column("retired_at")
        batch.drop_column("voided_at")
        batch.drop_column("expires_at")
