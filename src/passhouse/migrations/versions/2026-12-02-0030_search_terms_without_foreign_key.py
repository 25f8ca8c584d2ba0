"""search terms: no foreign key to passes (a trigger removes a deleted pass's terms)

Revision ID: 0030
Revises: 0022
Create Date: 2026-12-02 05:20:00

The foreign key made PostgreSQL run a referential check per term row: 608 ms of 828 for
15,000 rows, most of a CSV import's wall time (ADR 0019, addendum). Terms are written only
for passes written in the same statement's transaction, so the check found nothing; the
cascade on delete is kept by a trigger (a statement-level one on PostgreSQL).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0030"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FK = "fk_pass_search_terms_pass_id_passes"


def upgrade() -> None:
    with op.batch_alter_table("pass_search_terms") as batch:
        batch.drop_constraint(_FK, type_="foreignkey")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE OR REPLACE FUNCTION passhouse_forget_search_terms() RETURNS trigger"
            " LANGUAGE plpgsql AS $$ BEGIN"
            " DELETE FROM pass_search_terms t USING gone g WHERE t.pass_id = g.id;"
            " RETURN NULL; END $$"
        )
        op.execute(
            "CREATE TRIGGER tr_passes_forget_search_terms AFTER DELETE ON passes"
            " REFERENCING OLD TABLE AS gone FOR EACH STATEMENT"
            " EXECUTE FUNCTION passhouse_forget_search_terms()"
        )
    else:
        op.execute(
            "CREATE TRIGGER tr_passes_forget_search_terms AFTER DELETE ON passes"
            " BEGIN DELETE FROM pass_search_terms WHERE pass_id = old.id; END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS tr_passes_forget_search_terms ON passes")
        op.execute("DROP FUNCTION IF EXISTS passhouse_forget_search_terms()")
    else:
        op.execute("DROP TRIGGER IF EXISTS tr_passes_forget_search_terms")
    op.execute(
        "DELETE FROM pass_search_terms"
        " WHERE NOT EXISTS (SELECT 1 FROM passes WHERE passes.id = pass_search_terms.pass_id)"
    )
    with op.batch_alter_table("pass_search_terms") as batch:
        batch.create_foreign_key(_FK, "passes", ["pass_id"], ["id"], ondelete="CASCADE")
