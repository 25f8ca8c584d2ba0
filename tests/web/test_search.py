"""GET /api/v1/passes: search words, filters, sort orders and keyset pages."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from passhouse.bootstrap import Runtime
from passhouse.storage import search
from passhouse.storage.tables import pass_search_terms, passes
from web.test_admin import assert_error

PEOPLE = {
    "p-ada": {"name": "Ada Lovelace", "balance": 10, "member": {"tier": "Gold", "no": 4711}},
    "p-grace": {"name": "Grace Hopper", "balance": 20, "member": {"tier": "Silver"}},
    "p-alan": {"name": "Alan Turing", "balance": 30, "tags": ["ÉCOLE", "bletchley"]},
    "x-adam": {"name": "Adam Smith", "balance": 40},
}


async def issue_people(admin: httpx.AsyncClient, template: str) -> None:
    for serial, data in PEOPLE.items():
        response = await admin.post(
            "/api/v1/passes", json={"template": template, "serial_number": serial, "data": data}
        )
        assert response.status_code == 201, response.text


async def serials(admin: httpx.AsyncClient, **params: str) -> list[str]:
    response = await admin.get("/api/v1/passes", params=params)
    assert response.status_code == 200, response.text
    return [item["serial_number"] for item in response.json()["items"]]


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("ada", ["x-adam", "p-ada"]),  # a prefix of two names, newest first
        ("ADA LOVE", ["p-ada"]),  # every word must match, case-insensitively
        ("lovelace ada", ["p-ada"]),  # in any order
        ("gold", ["p-ada"]),  # a nested value
        ("4711", ["p-ada"]),  # a number
        ("école", ["p-alan"]),  # case folding beyond ASCII, inside a list
        ("p-gr", ["p-grace"]),  # the serial, punctuation and all
        ("x", ["x-adam"]),
        ("hopper turing", []),  # two passes, each with one of the words
        ("balance", []),  # keys are not searched
        ("zzz", []),
        ("...", []),  # no word at all matches nothing
    ],
)
async def test_q_matches_words_of_the_serial_and_data_values_by_prefix(
    admin: httpx.AsyncClient, template: str, q: str, expected: list[str]
) -> None:
    await issue_people(admin, template)

    assert await serials(admin, q=q) == expected


async def test_a_change_of_data_is_searchable_at_once_and_the_old_words_are_gone(
    admin: httpx.AsyncClient, template: str
) -> None:
    await issue_people(admin, template)

    changed = await admin.patch(
        f"/api/v1/passes/{(await first_pass_type(admin))}/p-ada",
        json={"data": {"name": "Augusta King"}},
    )

    assert changed.status_code == 200
    assert await serials(admin, q="augusta") == ["p-ada"]
    assert await serials(admin, q="lovelace") == []
    assert await serials(admin, q="gold") == ["p-ada"]  # the merge patch kept the tier


async def first_pass_type(admin: httpx.AsyncClient) -> str:
    items = (await admin.get("/api/v1/passes")).json()["items"]
    pass_type_id: str = items[0]["pass_type_id"]
    return pass_type_id


async def test_voided_and_installed_filter(
    admin: httpx.AsyncClient, client: httpx.AsyncClient, template: str
) -> None:
    await issue_people(admin, template)
    pass_type_id = await first_pass_type(admin)
    await admin.post(f"/api/v1/passes/{pass_type_id}/p-grace/void")
    ada = (await admin.get(f"/api/v1/passes/{pass_type_id}/p-ada")).json()
    token = await auth_token(admin, ada)
    registered = await client.post(
        f"/passkit/v1/devices/device-1/registrations/{pass_type_id}/p-ada",
        headers={"Authorization": f"ApplePass {token}"},
        json={"pushToken": "push-1"},
    )
    assert registered.status_code == 201

    assert await serials(admin, voided="true") == ["p-grace"]
    assert await serials(admin, voided="false") == ["x-adam", "p-alan", "p-ada"]
    assert await serials(admin, installed="true") == ["p-ada"]
    assert await serials(admin, installed="false") == ["x-adam", "p-alan", "p-grace"]
    assert await serials(admin, installed="false", voided="false", q="a") == ["x-adam", "p-alan"]


async def auth_token(admin: httpx.AsyncClient, view: dict[str, Any]) -> str:
    import io
    import json
    import zipfile

    pkpass = await admin.get(view["urls"]["pkpass"])
    with zipfile.ZipFile(io.BytesIO(pkpass.content)) as archive:
        token: str = json.loads(archive.read("pass.json"))["authenticationToken"]
    return token


async def test_sort_orders(admin: httpx.AsyncClient, template: str, runtime: Runtime) -> None:
    await issue_people(admin, template)
    pass_type_id = await first_pass_type(admin)
    # Last-Modified moves at least a second per change; make the order plain.
    async with runtime.database.transaction() as conn:
        for n, serial in enumerate(["p-alan", "x-adam", "p-ada", "p-grace"]):
            await conn.execute(
                passes.update()
                .where(passes.c.serial_number == serial)
                .values(modified_at=1_700_000_000 + n)
            )
    await admin.patch(f"/api/v1/passes/{pass_type_id}/p-alan", json={"data": {"balance": 31}})

    assert await serials(admin) == ["x-adam", "p-alan", "p-grace", "p-ada"]
    assert await serials(admin, sort="-created") == ["x-adam", "p-alan", "p-grace", "p-ada"]
    assert await serials(admin, sort="created") == ["p-ada", "p-grace", "p-alan", "x-adam"]
    assert await serials(admin, sort="updated") == ["x-adam", "p-ada", "p-grace", "p-alan"]
    assert await serials(admin, sort="-updated") == ["p-alan", "p-grace", "p-ada", "x-adam"]


@pytest.mark.parametrize("sort", ["-created", "created", "-updated", "updated"])
async def test_pages_follow_the_cursor_in_every_order_with_a_search(
    admin: httpx.AsyncClient, template: str, runtime: Runtime, sort: str
) -> None:
    for serial, name in [*((f"s-{n}", f"Ada {n}") for n in range(7)), ("other", "Bob")]:
        response = await admin.post(
            "/api/v1/passes",
            json={
                "template": template,
                "serial_number": serial,
                "data": {"name": name, "balance": 1},
            },
        )
        assert response.status_code == 201
    # Several passes share a Last-Modified second: the id breaks the tie.
    async with runtime.database.transaction() as conn:
        await conn.execute(passes.update().values(modified_at=1_800_000_000 + passes.c.id % 3))
    everything = await serials(admin, sort=sort, q="ada", limit="100")

    seen: list[str] = []
    cursor = None
    while True:
        params = {"sort": sort, "q": "ada", "limit": "3", **({"cursor": cursor} if cursor else {})}
        page = (await admin.get("/api/v1/passes", params=params)).json()
        seen += [item["serial_number"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert sorted(everything) == [f"s-{n}" for n in range(7)]
    assert seen == everything


@pytest.mark.parametrize(
    ("narrow_limit", "chunk_size"), [(0, 1), (1, 1), (2, 1), (100, 1), (100, 500)]
)
async def test_both_ways_of_reading_a_search_find_the_same_passes(
    admin: httpx.AsyncClient,
    template: str,
    runtime: Runtime,
    narrow_limit: int,
    chunk_size: int,
) -> None:
    await issue_people(admin, template)
    found: dict[str, list[str]] = {}

    async with runtime.database.reader() as conn:
        for q in ("ada", "a", "ada love", "gold ada", "gold lovelace", "p", "nothing"):
            query = search.PassQuery(
                words=tuple(search.words(q)),
                narrow_limit=narrow_limit,
                chunk_size=chunk_size,
                limit=2 if chunk_size == 1 else 100,
            )
            rows = await search.list_passes(conn, query)
            if chunk_size == 1:  # a second page, after the first's last pass
                after = replace(query, after=(rows[-1].id,)) if len(rows) == 2 else None
                rows += await search.list_passes(conn, after) if after else []
            found[q] = [row.serial_number for row in rows]

    assert found == {
        "ada": ["x-adam", "p-ada"],
        "a": ["x-adam", "p-alan", "p-ada"],
        "ada love": ["p-ada"],
        "gold ada": ["p-ada"],
        "gold lovelace": ["p-ada"],
        "p": ["p-alan", "p-grace", "p-ada"],
        "nothing": [],
    }


async def test_of_common_single_words_the_sparsest_is_read_in_order(
    admin: httpx.AsyncClient, template: str, runtime: Runtime
) -> None:
    # "gold" on five passes, "ada" (a single term: no "adam" here) on two of them: the
    # search reads "ada"'s entries and checks "gold" per pass; "g" names several terms.
    for n in range(5):
        name = "Ada X" if n in (1, 3) else f"Bo {n}"
        data = {"name": name, "balance": 1, "member": {"tier": "Gold"}}
        response = await admin.post(
            "/api/v1/passes", json={"template": template, "serial_number": f"g{n}", "data": data}
        )
        assert response.status_code == 201, response.text

    async with runtime.database.reader() as conn:
        chosen = await search._rarest_single_terms(conn, ["gold", "ada"])
        several = await search._rarest_single_terms(conn, ["gold", "g"])  # g0 ... gold
        query = search.PassQuery(words=("gold", "ada"), narrow_limit=0, chunk_size=1, limit=1)
        first = await search.list_passes(conn, query)
        second = await search.list_passes(conn, replace(query, after=(first[0].id,)))
        third = await search.list_passes(conn, replace(query, after=(second[0].id,)))

    assert chosen == ("ada", "ada")
    assert several is None
    assert [row.serial_number for row in first + second + third] == ["g3", "g1"]


async def test_a_pass_keeps_at_most_the_term_cap(
    admin: httpx.AsyncClient, template: str, runtime: Runtime
) -> None:
    words = " ".join(f"w{n}" for n in range(search.MAX_TERMS_PER_PASS + 50))
    response = await admin.post(
        "/api/v1/passes",
        json={"template": template, "serial_number": "many", "data": {"name": words, "balance": 1}},
    )
    assert response.status_code == 201

    async with runtime.database.reader() as conn:
        count = await conn.scalar(sa.select(sa.func.count()).select_from(pass_search_terms))

    assert count == search.MAX_TERMS_PER_PASS
    assert await serials(admin, q="w0") == ["many"]


@pytest.mark.parametrize(
    "params",
    [
        {"sort": "name"},
        {"q": "x" * 201},
        {"q": " ".join("abcdefghi")},  # nine words
        {"voided": "maybe"},
        {"installed": "2"},
        {"cursor": "1-2"},  # an updated-order cursor in created order
        {"cursor": "12", "sort": "-updated"},
        {"cursor": "1-2-3"},
    ],
)
async def test_bad_search_parameters_are_422(
    admin: httpx.AsyncClient, template: str, params: dict[str, str]
) -> None:
    response = await admin.get("/api/v1/passes", params=params)

    assert_error(response, 422)


@pytest.mark.parametrize("sort", ["-created", "created", "-updated"])
async def test_installed_passes_page_by_page(
    admin: httpx.AsyncClient, client: httpx.AsyncClient, template: str, runtime: Runtime, sort: str
) -> None:
    held = []
    for n in range(9):
        response = await admin.post(
            "/api/v1/passes",
            json={
                "template": template,
                "serial_number": f"i-{n}",
                "data": {"name": "A", "balance": n},
            },
        )
        view = response.json()
        if n % 3 != 1:
            held.append(view["serial_number"])
            registered = await client.post(
                f"/passkit/v1/devices/dev-{n}/registrations/{view['pass_type_id']}/i-{n}",
                headers={"Authorization": f"ApplePass {await auth_token(admin, view)}"},
                json={"pushToken": f"push-{n}"},
            )
            assert registered.status_code == 201
    async with runtime.database.reader() as conn:
        pages = []
        after = None
        while True:
            query = search.PassQuery(installed=True, sort=sort, limit=2, after=after, chunk_size=1)  # type: ignore[arg-type]
            rows = await search.list_passes(conn, query)
            pages.append([row.serial_number for row in rows])
            if len(rows) < 2:
                break
            last = rows[-1]
            after = (last.id,) if sort.endswith("created") else (last.modified_at, last.id)

    seen = [serial for page in pages for serial in page]
    expected = held if sort == "created" else held[::-1]
    if sort == "-updated":
        assert sorted(seen) == sorted(held)
    else:
        assert seen == expected
    assert all(len(page) == 2 for page in pages[:-1])


async def test_expired_filter(admin: httpx.AsyncClient, template: str, runtime: Runtime) -> None:
    await issue_people(admin, template)
    async with runtime.database.transaction() as conn:
        for serial, expires_at in [("p-ada", 1_000), ("p-grace", 4_000_000_000), ("p-alan", -1)]:
            await conn.execute(
                passes.update()
                .where(passes.c.serial_number == serial)
                .values(expires_at=expires_at)
            )

    assert await serials(admin, expired="true") == ["p-ada"]
    assert await serials(admin, expired="false") == ["x-adam", "p-alan", "p-grace"]
    assert await serials(admin, expired="false", q="ada") == ["x-adam"]


async def test_a_deleted_pass_takes_its_search_terms_along(
    admin: httpx.AsyncClient, template: str, runtime: Runtime
) -> None:
    # pass_search_terms has no foreign key (its per-row check was most of an import's
    # time, migration 0030): a trigger on passes deletes the terms instead.
    await issue_people(admin, template)
    async with runtime.database.transaction() as conn:
        await conn.execute(passes.delete().where(passes.c.serial_number.in_(["p-ada", "p-alan"])))
    async with runtime.database.reader() as conn:
        left = await conn.scalar(sa.select(sa.func.count()).select_from(pass_search_terms))
        orphans = await conn.scalar(
            sa.select(sa.func.count())
            .select_from(pass_search_terms)
            .where(~sa.exists().where(passes.c.id == pass_search_terms.c.pass_id))
        )

    assert orphans == 0
    assert (left or 0) > 0  # the other two passes keep theirs
    assert await serials(admin, q="ada") == ["x-adam"]
