"""push transports: each registration and queued push says how its device is woken

Revision ID: 0017
Revises: 0019
Create Date: 2026-12-02 01:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _transport_columns() -> list[sa.Column[str]]:
    # Rows written before this revision are Apple Wallet's: APNs, no push service URL.
    return [
        sa.Column("transport", sa.String(length=16), server_default="apns", nullable=False),
        sa.Column("push_service_url", sa.Text(), server_default="", nullable=False),
    ]


def upgrade() -> None:
    with op.batch_alter_table("registrations") as batch:
        for column in _transport_columns():
            batch.add_column(column)
    with op.batch_alter_table("push_jobs") as batch:
        for column in _transport_columns():
            batch.add_column(column)
        batch.drop_constraint("uq_push_jobs_token_type", type_="unique")
        batch.create_unique_constraint(
            "uq_push_jobs_target", ["push_token", "pass_type_id", "transport", "push_service_url"]
        )
    with op.batch_alter_table("push_attempts") as batch:
        batch.add_column(
            sa.Column("transport", sa.String(length=16), server_default="apns", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("push_attempts") as batch:
        batch.drop_column("transport")
    # Relay pushes have no place in the old key: they are dropped, APNs pushes are kept.
    op.execute("DELETE FROM push_jobs WHERE transport <> 'apns'")
    with op.batch_alter_table("push_jobs") as batch:
        batch.drop_constraint("uq_push_jobs_target", type_="unique")
        batch.create_unique_constraint("uq_push_jobs_token_type", ["push_token", "pass_type_id"])
        batch.drop_column("push_service_url")
        batch.drop_column("transport")
    with op.batch_alter_table("registrations") as batch:
        batch.drop_column("push_service_url")
        batch.drop_column("transport")
