"""Use case: find passes (search words, filters, sort) a keyset page at a time."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from passhouse.errors import InvalidInput, NotFound
from passhouse.storage import analytics, templates
from passhouse.storage import search as stored

Sort = Literal["created", "-created", "updated", "-updated"]
SORTS: tuple[Sort, ...] = ("-created", "created", "-updated", "updated")
MAX_QUERY_LENGTH = 200
MAX_ID = 2**63 - 1
# A created-order cursor is the last pass's id; an updated-order one is its Last-Modified
# (Unix seconds) and id. Older clients' cursors (a bare id) stay valid in created order.
CURSOR_PATTERN = r"^[0-9]{1,18}(-[0-9]{1,18})?$"
_CURSOR = re.compile(CURSOR_PATTERN)


@dataclass(frozen=True, slots=True)
class PassPage:
    rows: list[sa.Row[Any]]
    installs: dict[int, analytics.PassInstalls]
    template_names: dict[int, str]
    next_cursor: str | None


def query_words(q: str | None) -> tuple[str, ...]:
    if q is None:
        return ()
    if len(q) > MAX_QUERY_LENGTH:
        raise InvalidInput(f"q is longer than {MAX_QUERY_LENGTH} characters.")
    found = tuple(dict.fromkeys(stored.words(q)))
    if len(found) > stored.MAX_QUERY_WORDS:
        raise InvalidInput(f"q has more than {stored.MAX_QUERY_WORDS} words.")
    return found


def _after(cursor: str | None, sort: Sort) -> tuple[int, ...] | None:
    if cursor is None:
        return None
    if not _CURSOR.fullmatch(cursor):
        raise InvalidInput("cursor is not one this API returned.")
    parts = tuple(int(part) for part in cursor.split("-"))
    expected = 1 if sort.endswith("created") else 2
    if len(parts) != expected:
        raise InvalidInput(
            f"cursor belongs to a list in another order than sort={sort}: start again "
            "without a cursor."
        )
    return parts


def _cursor(row: sa.Row[Any], sort: Sort) -> str:
    return str(row.id) if sort.endswith("created") else f"{row.modified_at}-{row.id}"


async def find_passes(
    conn: AsyncConnection,
    *,
    template: str | None = None,
    q: str | None = None,
    voided: bool | None = None,
    installed: bool | None = None,
    sort: Sort = "-created",
    cursor: str | None = None,
    limit: int = 100,
) -> PassPage:
    """A page of passes; `q` matches, by prefix and case-insensitively, each of its words
    against the words of the serial and of the data values (every word must match)."""
    if sort not in SORTS:
        raise InvalidInput(f"sort must be one of {', '.join(SORTS)}.")
    words = query_words(q)
    after = _after(cursor, sort)
    template_id = None
    if template is not None:
        template_row = await templates.get_template(conn, template)
        if template_row is None:
            raise NotFound(f"No template {template!r}.")
        template_id = template_row.id
    if q is not None and not words:
        # Only punctuation or spaces: nothing can match, and the rest of the list is not
        # what was asked for either.
        rows: list[sa.Row[Any]] = []
    else:
        rows = await stored.list_passes(
            conn,
            stored.PassQuery(
                template_id=template_id,
                voided=voided,
                installed=installed,
                words=words,
                sort=sort,
                after=after,
                limit=limit,
            ),
        )
    names = {row.id: row.name for row in await templates.list_templates(conn)}
    return PassPage(
        rows=rows,
        installs=await analytics.pass_installs(conn, [row.id for row in rows]),
        template_names=names,
        next_cursor=_cursor(rows[-1], sort) if rows and len(rows) == limit else None,
    )
