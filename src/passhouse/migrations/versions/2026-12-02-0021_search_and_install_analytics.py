"""search terms, keyset indexes, install analytics counters

Revision ID: 0021
Revises: 0012
Create Date: 2026-12-02 01:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from passhouse.storage import search

revision: str = "0021"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 2_000


def upgrade() -> None:
    op.create_index("ix_passes_template_id_id", "passes", ["template_id", "id"])
    op.create_index("ix_passes_modified_at_id", "passes", ["modified_at", "id"])
    op.create_index(
        "ix_passes_template_id_modified_at_id", "passes", ["template_id", "modified_at", "id"]
    )
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "pass_search_terms",
        sa.Column(
            "term",
            sa.String(length=64).with_variant(sa.String(length=64, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column("pass_id", big_id, nullable=False),
        sa.ForeignKeyConstraint(
            ["pass_id"],
            ["passes.id"],
            name="fk_pass_search_terms_pass_id_passes",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("term", "pass_id", name="pk_pass_search_terms"),
    )
    op.create_index("ix_pass_search_terms_pass_id_term", "pass_search_terms", ["pass_id", "term"])
    counter = [
        sa.Column(name, sa.BigInteger(), server_default="0", nullable=False)
        for name in _counter_names()
    ]
    op.create_table(
        "stats_counters",
        sa.Column("pass_type_id", sa.String(length=255), nullable=False),
        sa.Column("template_id", sa.BigInteger(), nullable=False),
        sa.Column("bucket", sa.BigInteger(), nullable=False),
        *counter,
        sa.PrimaryKeyConstraint("pass_type_id", "template_id", "bucket", name="pk_stats_counters"),
    )
    op.create_index("ix_stats_counters_bucket", "stats_counters", ["bucket"])
    op.create_table(
        "pass_first_installs",
        sa.Column("pass_id", big_id, nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["pass_id"],
            ["passes.id"],
            name="fk_pass_first_installs_pass_id_passes",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pass_id", name="pk_pass_first_installs"),
    )
    _backfill()


def _counter_names() -> list[str]:
    return [
        "issued",
        "updated",
        "voided",
        "installs",
        "uninstalls",
        "pushes_sent",
        "pushes_failed",
    ]


def _backfill() -> None:
    """What existing rows tell: every pass's terms; issued per hour of creation, voided per
    hour of the last change of a voided pass, installs per hour of each current
    registration; the first install of each pass is its oldest current registration."""
    bind = op.get_bind()
    after = 0
    while True:
        rows = bind.execute(
            sa.text(
                "SELECT id, serial_number, data FROM passes WHERE id > :after ORDER BY id LIMIT :n"
            ),
            {"after": after, "n": _BATCH},
        ).all()
        if not rows:
            break
        terms = [
            {"term": term, "pass_id": pass_id}
            for pass_id, serial_number, data in rows
            for term in search.terms_of(serial_number, _json(data))
        ]
        if terms:
            bind.execute(
                sa.text("INSERT INTO pass_search_terms (term, pass_id) VALUES (:term, :pass_id)"),
                terms,
            )
        after = rows[-1][0]
    bind.execute(
        sa.text(
            "INSERT INTO stats_counters (pass_type_id, template_id, bucket, issued, voided,"
            " installs)"
            " SELECT pass_type_id, template_id, bucket, sum(issued), sum(voided), sum(installs)"
            " FROM ("
            "  SELECT pass_type_id, template_id, created_at - created_at % 3600 AS bucket,"
            "   1 AS issued, 0 AS voided, 0 AS installs FROM passes"
            "  UNION ALL"
            "  SELECT pass_type_id, template_id, modified_at - modified_at % 3600, 0, 1, 0"
            "  FROM passes WHERE voided"
            "  UNION ALL"
            "  SELECT p.pass_type_id, p.template_id,"
            "   r.registered_at_ms / 1000 - (r.registered_at_ms / 1000) % 3600, 0, 0, 1"
            "  FROM registrations r JOIN passes p ON p.id = r.pass_id"
            " ) AS events GROUP BY pass_type_id, template_id, bucket"
        )
    )
    bind.execute(
        sa.text(
            "INSERT INTO pass_first_installs (pass_id, at_ms)"
            " SELECT pass_id, min(registered_at_ms) FROM registrations GROUP BY pass_id"
        )
    )


def _json(value: object) -> object:
    import json

    return json.loads(value) if isinstance(value, str | bytes) else value


def downgrade() -> None:
    op.drop_table("pass_first_installs")
    op.drop_index("ix_stats_counters_bucket", table_name="stats_counters")
    op.drop_table("stats_counters")
    op.drop_index("ix_pass_search_terms_pass_id_term", table_name="pass_search_terms")
    op.drop_table("pass_search_terms")
    op.drop_index("ix_passes_template_id_modified_at_id", table_name="passes")
    op.drop_index("ix_passes_modified_at_id", table_name="passes")
    op.drop_index("ix_passes_template_id_id", table_name="passes")
