"""Schema migrations (Alembic scripts shipped inside the package), run on our async engine."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import Connection

from passhouse.storage.database import Database

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
# Any constant works; it only has to be the same in every passhouse process.
_PG_LOCK = 0x70617373


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("file_template", "%%(year)d-%%(month).2d-%%(day).2d-%%(rev)s_%%(slug)s")
    config.attributes["connection"] = connection
    return config


class UnknownRevision(ValueError):
    pass


def resolve_revision(revision: str) -> str | None:
    """The id that `revision` names (head, base, an id or its prefix); None stands for base."""
    script = ScriptDirectory.from_config(alembic_config())
    try:
        found = script.get_revision(revision)
    except CommandError:
        known = ", ".join(r.revision for r in script.walk_revisions())
        raise UnknownRevision(
            f"unknown revision {revision!r}: give head, base or one of {known}."
        ) from None
    return None if found is None else found.revision


def is_older(target: str | None, current: str | None) -> bool:
    """Whether reaching `target` from `current` means going back (a downgrade)."""
    script = ScriptDirectory.from_config(alembic_config())
    order = [None, *(r.revision for r in reversed(list(script.walk_revisions())))]
    if current not in order:
        raise UnknownRevision(
            f"the database is at revision {current!r}, which this passhouse does not know: "
            "a newer version migrated it."
        )
    return order.index(target) < order.index(current)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def current_revision(database: Database) -> str | None:
    async with database.engine.connect() as conn:
        return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())


async def upgrade(database: Database, revision: str = "head") -> None:
    """Apply migrations; safe to run from several processes at once on PostgreSQL."""
    async with database.engine.begin() as conn:
        if database.dialect == "postgresql":
            await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK})
        await conn.run_sync(lambda c: command.upgrade(alembic_config(c), revision))


async def downgrade(database: Database, revision: str) -> None:
    async with database.engine.begin() as conn:
        await conn.run_sync(lambda c: command.downgrade(alembic_config(c), revision))
