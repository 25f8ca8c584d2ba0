"""signed-file cache keyed by what the version does not cover

Revision ID: 0012
Revises: 0001
Create Date: 2026-12-01 19:55:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("pkpass_cache") as batch:
        # Files cached before this revision carry no key: they never match, so each pass is
        # signed again once, for the webServiceURL the server now has.
        batch.add_column(
            sa.Column("build_key", sa.String(length=64), server_default="", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("pkpass_cache") as batch:
        batch.drop_column("build_key")
