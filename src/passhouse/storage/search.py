"""Search and lists of passes that stay fast at millions of rows (ADR 0021).

The words of a pass's serial and data values are kept, case-folded, in pass_search_terms,
written in the same transaction as the pass. A search word matches by prefix: a range of
that table's primary key (term, pass_id). Pages are keyset pages: the cursor is the last
row's sort key, so page 10,000 costs what page 1 costs.

Which way a search reads is decided here, not by the planner's statistics (a million
passes just imported have none, ADR 0013):
- narrow: the rarest word matches at most NARROW_LIMIT terms: those pass ids, read from
  the terms index, are the candidates, then sorted and filtered;
- one common word (created order): a word that is a whole term of the index (not the
  prefix of several) has its index entries in pass id order: they are read in the page's
  order, a chunk at a time, the other words checked per pass;
- wide: every word matches many passes: passes are read in the sort order's index and
  each is checked with a lookup per word on (pass_id, term) until the page is full.
installed=true in created order is read from the registrations' pass_id index likewise.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from passhouse.storage.tables import (
    SEARCH_TERM_LENGTH,
    pass_search_terms,
    passes,
    registrations,
)

# A pass keeps at most this many distinct words (serial first, then data values in order).
MAX_TERMS_PER_PASS = 256
# A search of at most this many words.
MAX_QUERY_WORDS = 8
# The rarest word matching at most this many terms makes the search read those candidates.
NARROW_LIMIT = 20_000
FIRST_BOUND = 1_000
# How many of a common word's newest entries tell how sparse it is (choosing which of
# several common words to read in order).
DENSITY_SAMPLE = 250

_WORD = re.compile(r"\w+")
# Above every character a term can hold: the end of a prefix range in code point order
# (PostgreSQL compares the column in "C" order, SQLite in its BINARY order: both UTF-8
# byte order, which is code point order).
_AFTER_EVERYTHING = "\U0010ffff"

_ID_ARRAY = postgresql.ARRAY(sa.BigInteger())

Sort = Literal["created", "-created", "updated", "-updated"]


def words(text: str) -> list[str]:
    """The words of a text as search sees them: runs of letters, digits and _, case-folded,
    at most SEARCH_TERM_LENGTH characters each."""
    return [word[:SEARCH_TERM_LENGTH] for word in _WORD.findall(text.casefold())]


def terms_of(serial_number: str, data: Any) -> list[str]:
    """The distinct words of a serial number and of every value in its data (keys are not
    searched), in order of appearance, at most MAX_TERMS_PER_PASS."""
    seen: dict[str, None] = {}
    for text in _texts(serial_number, data):
        for word in words(text):
            seen.setdefault(word, None)
            if len(seen) >= MAX_TERMS_PER_PASS:
                return list(seen)
    return list(seen)


def _texts(serial_number: str, data: Any) -> Iterable[str]:
    yield serial_number
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            yield value
        elif isinstance(value, bool) or value is None:
            continue
        elif isinstance(value, int | float):
            yield str(value)
        elif isinstance(value, Mapping):
            stack.extend(reversed(list(value.values())))
        elif isinstance(value, list):
            stack.extend(reversed(value))


async def index_passes(
    conn: AsyncConnection, items: Sequence[tuple[int, str, Any]], *, replace: bool = True
) -> None:
    """(Re)write the terms of passes given as (pass id, serial number, data), set-based:
    one DELETE and one INSERT whatever their number. `replace=False` for passes just
    inserted (nothing to delete)."""
    if not items:
        return
    postgres = conn.dialect.name == "postgresql"
    ids = [pass_id for pass_id, _, _ in items]
    if replace:
        await conn.execute(
            pass_search_terms.delete().where(
                pass_search_terms.c.pass_id == sa.any_(sa.bindparam("ids", ids, type_=_ID_ARRAY))
                if postgres
                else pass_search_terms.c.pass_id.in_(ids)
            )
        )
    terms: list[str] = []
    term_ids: list[int] = []
    for pass_id, serial_number, data in items:
        for term in terms_of(serial_number, data):
            terms.append(term)
            term_ids.append(pass_id)
    if not terms:
        return
    if postgres:
        # Two array parameters and one statement: an executemany of 5,000 rows was one
        # protocol round of parse, bind and execute per row (measured: half the wall time
        # of a CSV import).
        await conn.execute(_INSERT_TERMS_PG, {"terms": terms, "ids": term_ids})
    else:
        await conn.execute(
            pass_search_terms.insert(),
            [{"term": t, "pass_id": i} for t, i in zip(terms, term_ids, strict=True)],
        )


_INSERT_TERMS_PG = sa.text(
    "INSERT INTO pass_search_terms (term, pass_id)"
    " SELECT t, i FROM unnest(CAST(:terms AS text[]), CAST(:ids AS bigint[])) AS u(t, i)"
).bindparams(
    sa.bindparam("terms", type_=postgresql.ARRAY(sa.Text())),
    sa.bindparam("ids", type_=_ID_ARRAY),
)


# --- lists --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PassQuery:
    template_id: int | None = None
    voided: bool | None = None
    installed: bool | None = None
    # Rendered expirationDate passed by `now` (Unix seconds; ADR 0020's expires_at).
    expired: bool | None = None
    now: int = 0
    words: tuple[str, ...] = ()
    sort: Sort = "-created"
    # The last row of the previous page: (id,) for created, (modified_at, id) for updated.
    after: tuple[int, ...] | None = None
    limit: int = 100
    narrow_limit: int = NARROW_LIMIT
    chunk_size: int = 500


def _prefix(word: str) -> sa.ColumnElement[bool]:
    return sa.and_(
        pass_search_terms.c.term >= word, pass_search_terms.c.term < word + _AFTER_EVERYTHING
    )


def _checked_one_by_one(subquery: sa.Select[Any], dialect: str) -> sa.ColumnElement[bool]:
    """EXISTS(subquery), evaluated for each row read, as a lookup: PostgreSQL would
    otherwise be free to turn it into a join that reads every matching row first. OFFSET 0
    keeps it a subplan (PostgreSQL does not pull up an EXISTS with an OFFSET)."""
    if dialect == "postgresql":
        subquery = subquery.offset(0)
    return subquery.exists()


def _has_word(word: str, dialect: str) -> sa.ColumnElement[bool]:
    return _checked_one_by_one(
        sa.select(sa.literal(1)).where(pass_search_terms.c.pass_id == passes.c.id, _prefix(word)),
        dialect,
    )


def _is_installed(dialect: str) -> sa.ColumnElement[bool]:
    return _checked_one_by_one(
        sa.select(sa.literal(1)).where(registrations.c.pass_id == passes.c.id), dialect
    )


async def _candidates(
    conn: AsyncConnection, query_words: Sequence[str], narrow_limit: int, *, first: bool = True
) -> tuple[str, list[int]]:
    """(the rarest word, the pass ids it matches) when it matches at most `narrow_limit`
    terms; ("", []) with no such word. Counted with a small bound first, so that a rare
    word is found without counting up to the limit for each common one."""
    bounds = sorted({min(FIRST_BOUND, narrow_limit), narrow_limit})
    # first=False: the small bound was counted already (list_passes, created order).
    for bound in bounds if first else bounds[-1:]:
        best: tuple[int, str] | None = None
        for word in query_words:
            limited = sa.select(sa.literal(1)).where(_prefix(word)).limit(bound + 1).subquery()
            count = int(await conn.scalar(sa.select(sa.func.count()).select_from(limited)) or 0)
            if count <= bound and (best is None or count < best[0]):
                best = (count, word)
        if best is not None:
            ids = await conn.scalars(
                sa.select(pass_search_terms.c.pass_id).where(_prefix(best[1])).distinct()
            )
            return best[1], list(ids)
    return "", []


async def list_passes(conn: AsyncConnection, query: PassQuery) -> list[sa.Row[Any]]:
    """A page of passes in the query's order, after its cursor."""
    driver, ids = "", list[int]()
    in_created_order = query.sort.endswith("created")
    if query.words and in_created_order:
        driver, ids = await _candidates(conn, query.words, min(FIRST_BOUND, query.narrow_limit))
        if driver and not ids:
            return []
        if not driver:
            exact = await _rarest_single_terms(conn, query.words)
            if exact:
                # Every word is common and a single word of the index: the sparsest one's
                # index entries are read in the page's order, the others checked per pass.
                # Counting up to NARROW_LIMIT first cost more than this whole page (a
                # 20,000-pass word: two counts and 20,000 ids read, 330 ms at 1M passes).
                chunks = _term_chunks(conn, exact, query)
                return await _in_chunks(conn, query, chunks, skip_word=exact[0])
    if query.words and not driver:
        driver, ids = await _candidates(
            conn, query.words, query.narrow_limit, first=not in_created_order
        )
        if driver and not ids:
            return []
    if query.words and not driver and in_created_order:
        exact = await _single_term_word(conn, query.words)
        if exact:
            # Every word is common, and this one is a single word of the index: its index
            # entries are in pass id order, so they are read in the page's order.
            chunks = _term_chunks(conn, exact, query)
            return await _in_chunks(conn, query, chunks, skip_word=exact[0])
    if driver and in_created_order:
        # The candidates' ids are their sort keys: read them in that order, a chunk at a
        # time, until the page is full.
        return await _in_chunks(conn, query, _candidate_chunks(ids, query), skip_word=driver)
    if driver:
        statement = list_statement(query, conn.dialect.name, candidates=ids, skip_word=driver)
        return list((await conn.execute(statement)).all())
    if query.installed and in_created_order:
        return await _in_chunks(conn, query, _installed_chunks(conn, query))
    statement = list_statement(query, conn.dialect.name)
    return list((await conn.execute(statement)).all())


async def _rarest_single_terms(
    conn: AsyncConnection, query_words: Sequence[str]
) -> tuple[str, str] | None:
    """(word, term) when every word of the query is the prefix of a single term of the
    index: of those terms, the sparsest among the newest passes (the mean gap between the
    pass ids of its newest DENSITY_SAMPLE entries, counted from the newest pass with terms).
    None when some word is the prefix of several terms (or of none)."""
    distinct = list(dict.fromkeys(query_words))
    if len(distinct) == 1:  # nothing to choose between
        return await _single_term_word(conn, distinct)
    top = await conn.scalar(sa.select(sa.func.max(pass_search_terms.c.pass_id)))
    found: list[tuple[float, str, str]] = []
    for word in distinct:
        single = await _single_term_word(conn, [word])
        if single is None:
            return None
        newest = (
            sa.select(pass_search_terms.c.pass_id)
            .where(pass_search_terms.c.term == single[1])
            .order_by(pass_search_terms.c.pass_id.desc())
            .limit(DENSITY_SAMPLE)
            .subquery()
        )
        count, oldest = (
            await conn.execute(sa.select(sa.func.count(), sa.func.min(newest.c.pass_id)))
        ).one()
        gap = (int(top or 0) - int(oldest or 0) + 1) / max(int(count), 1)
        found.append((gap, single[0], single[1]))
    if not found:
        return None
    _, word, term = max(found)
    return word, term


async def _single_term_word(
    conn: AsyncConnection, query_words: Sequence[str]
) -> tuple[str, str] | None:
    """(a search word, the one term it is the prefix of) when a word's range holds a single
    distinct term; None otherwise. Two index probes per word (its range's first and last)."""
    for word in sorted(query_words, key=len, reverse=True):
        first, last = (
            await conn.execute(
                sa.select(
                    sa.func.min(pass_search_terms.c.term), sa.func.max(pass_search_terms.c.term)
                ).where(_prefix(word))
            )
        ).one()
        if first is not None and first == last:
            return word, str(first)
    return None


async def _term_chunks(
    conn: AsyncConnection, exact: tuple[str, str], query: PassQuery
) -> AsyncIterator[list[int]]:
    """The passes holding one term, in created order, a chunk at a time (the terms' primary
    key (term, pass_id) read in order)."""
    descending = query.sort.startswith("-")
    after = query.after[0] if query.after else None
    pass_id = pass_search_terms.c.pass_id
    while True:
        chunk_query = (
            sa.select(pass_id)
            .where(pass_search_terms.c.term == exact[1])
            .order_by(pass_id.desc() if descending else pass_id.asc())
            .limit(max(2 * query.limit, query.chunk_size))
        )
        if after is not None:
            chunk_query = chunk_query.where(pass_id < after if descending else pass_id > after)
        chunk = list((await conn.scalars(chunk_query)).all())
        if not chunk:
            return
        yield chunk
        after = chunk[-1]


async def _candidate_chunks(ids: Sequence[int], query: PassQuery) -> AsyncIterator[list[int]]:
    descending = query.sort.startswith("-")
    ordered = sorted(set(ids), reverse=descending)
    if query.after is not None:
        after = query.after[0]
        ordered = [i for i in ordered if (i < after if descending else i > after)]
    size = max(2 * query.limit, query.chunk_size)
    for start in range(0, len(ordered), size):
        yield ordered[start : start + size]


async def _installed_chunks(conn: AsyncConnection, query: PassQuery) -> AsyncIterator[list[int]]:
    """Installed passes in created order, from the registrations' pass_id index read in that
    order: every pass read is installed, however few of all passes are (walking the passes
    would check each one in between)."""
    descending = query.sort.startswith("-")
    after = query.after[0] if query.after else None
    pass_id = registrations.c.pass_id
    while True:
        chunk_query = (
            sa.select(pass_id)
            .distinct()
            .order_by(pass_id.desc() if descending else pass_id.asc())
            .limit(max(2 * query.limit, query.chunk_size))
        )
        if after is not None:
            chunk_query = chunk_query.where(pass_id < after if descending else pass_id > after)
        chunk = list((await conn.scalars(chunk_query)).all())
        if not chunk:
            return
        yield chunk
        after = chunk[-1]


async def _in_chunks(
    conn: AsyncConnection,
    query: PassQuery,
    chunks: AsyncIterator[list[int]],
    *,
    skip_word: str = "",
) -> list[sa.Row[Any]]:
    """The page, from chunks of candidate ids given in the page's (created) order; the
    installed filter is the chunks' when they come from the registrations."""
    rows: list[sa.Row[Any]] = []
    installed = query.installed if skip_word else None
    async for chunk in chunks:
        page = replace(query, installed=installed, after=None, limit=query.limit - len(rows))
        statement = list_statement(page, conn.dialect.name, candidates=chunk, skip_word=skip_word)
        rows.extend((await conn.execute(statement)).all())
        if len(rows) >= query.limit:
            break
    return rows


def list_statement(
    query: PassQuery,
    dialect: str,
    *,
    candidates: Sequence[int] | None = None,
    skip_word: str = "",
) -> sa.Select[Any]:
    """The page's SELECT: among `candidates` (pass ids; `skip_word` is the word they were
    found by) or, without them, read in the sort order's index, with a lookup per search
    word and for `installed`."""
    where: list[sa.ColumnElement[bool]] = []
    if query.template_id is not None:
        where.append(passes.c.template_id == query.template_id)
    if query.voided is not None:
        voided: sa.ColumnElement[Any] = passes.c.voided
        if dialect == "sqlite":
            # Not through ix_passes_voided_expires_at, which is not in the page's order: a
            # function of the column keeps SQLite on the sort order's index.
            voided = sa.func.coalesce(passes.c.voided, sa.false())
        where.append(voided.is_(query.voided))
    if query.installed is not None:
        installed = _is_installed(dialect)
        where.append(installed if query.installed else ~installed)
    if query.expired is not None:
        expired = sa.and_(passes.c.expires_at >= 0, passes.c.expires_at <= query.now)
        where.append(expired if query.expired else sa.not_(sa.func.coalesce(expired, False)))
    if candidates is not None:
        if dialect == "postgresql":  # one array parameter: one statement text, one plan
            where.append(
                passes.c.id
                == sa.any_(sa.bindparam("candidates", list(candidates), type_=_ID_ARRAY))
            )
        else:
            where.append(passes.c.id.in_(list(candidates)))
    where.extend(
        _has_word(word, dialect) for word in dict.fromkeys(query.words) if word != skip_word
    )
    descending = query.sort.startswith("-")
    keys: list[sa.ColumnElement[Any]] = (
        [passes.c.id] if query.sort.endswith("created") else [passes.c.modified_at, passes.c.id]
    )
    if query.after is not None:
        position = sa.tuple_(*keys) if len(keys) > 1 else keys[0]
        bound = sa.tuple_(*query.after) if len(keys) > 1 else sa.literal(query.after[0])
        where.append(position < bound if descending else position > bound)
    order = [key.desc() if descending else key.asc() for key in keys]
    return sa.select(passes).where(*where).order_by(*order).limit(query.limit)
