"""pass version history: one row per new version of a pass (ADR 0029)

Revision ID: 0022
Revises: 0016
Create Date: 2026-12-02 05:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # A plain ADD COLUMN with a constant default on both databases: no table rewrite.
    # Passes issued before this revision start at 0, with no recorded history.
    op.add_column(
        "passes",
        sa.Column("history_seq", sa.BigInteger(), server_default="0", nullable=False),
    )
    op.create_table(
        "pass_versions",
        sa.Column("pass_id", BigId, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("cause", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=32), nullable=False),
        sa.Column("actor_key_id", sa.BigInteger(), nullable=True),
        sa.Column("actor_name", sa.String(length=200), nullable=True),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["pass_id"],
            ["passes.id"],
            name="fk_pass_versions_pass_id_passes",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pass_id", "seq", name="pk_pass_versions"),
    )


def downgrade() -> None:
    op.drop_table("pass_versions")
    with op.batch_alter_table("passes") as batch:  # batch: SQLite before 3.35 cannot DROP
        batch.drop_column("history_seq")
