"""`template list|show|remove`, `pass list|show|download` and the shipped example templates,
through the CLI, on the test database (SQLite, or PostgreSQL with PASSHOUSE_TEST_DATABASE_URL)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from conftest import PASS_TYPE_ID, SECRET_KEY, TEAM_ID
from passhouse import examples
from passhouse.pkpass.bundle import verify_pkpass
from passhouse.pkpass.devcerts import DevCredentials
from passhouse.storage.database import Database
from passhouse.storage.tables import metadata
from test_cli_server import CliInvoker, assert_one_clean_line

STORE_CARD = {"serial": "barcode-1", "points": 10, "balance": 2.5, "name": "Ada"}


def _empty_postgres(database_url: str) -> None:
    async def truncate() -> None:
        database = Database(database_url)
        try:
            names = ", ".join(table.name for table in metadata.sorted_tables)
            async with database.transaction() as conn:
                await conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        finally:
            await database.dispose()

    asyncio.run(truncate())


@pytest.fixture
def passhouse(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliInvoker:
    monkeypatch.chdir(tmp_path)  # away from a developer's .env
    for name in list(os.environ):
        if name.startswith("PASSHOUSE_"):
            monkeypatch.delenv(name)
    if database_url.startswith("postgresql"):
        _empty_postgres(database_url)
    return CliInvoker(
        {
            "PASSHOUSE_DATABASE_URL": database_url,
            "PASSHOUSE_SECRET_KEY": SECRET_KEY,
            "PASSHOUSE_DATA_DIR": str(tmp_path / "data"),
            "PASSHOUSE_PUBLIC_URL": "https://passes.example.test",
        }
    )


@pytest.fixture
def pass_type(passhouse: CliInvoker, tmp_path: Path, credentials: DevCredentials) -> str:
    files = {"cert": credentials.cert_pem, "key": credentials.key_pem}
    files["wwdr"] = credentials.wwdr_cert_pem
    args = []
    for name, data in files.items():
        (tmp_path / f"{name}.pem").write_bytes(data)
        args += [f"--{name}", str(tmp_path / f"{name}.pem")]
    passhouse.ok("pass-type", "add", *args)
    return PASS_TYPE_ID


@pytest.fixture
def storecard(passhouse: CliInvoker, pass_type: str) -> str:
    output = passhouse.ok("template", "add", "--example", "storecard", "--pass-type", pass_type)
    assert output.startswith("added template storecard (id ")
    return "storecard"


def issue(passhouse: CliInvoker, template: str, serial: str, **data: Any) -> None:
    passhouse.ok(
        "pass", "issue", "--template", template, "--serial", serial,
        "--data", json.dumps({**STORE_CARD, **data}),
    )  # fmt: skip


def as_json(passhouse: CliInvoker, *args: str) -> Any:
    return json.loads(passhouse.ok(*args, "--json"))


# --- the example templates --------------------------------------------------------------


def test_every_example_is_shipped_inside_the_package() -> None:
    names = examples.example_names()

    assert names == ["boardingpass", "coupon", "eventticket", "generic", "storecard"]
    for name in names:
        folder = examples.example_path(name)
        assert folder is not None
        assert folder.is_relative_to(Path(examples.__file__).parent)
        assert (folder / "pass.json").is_file()
        assert (folder / "icon.png").is_file()


@pytest.mark.parametrize("name", ["generic", "coupon", "eventTicket", "boardingPass"])
def test_each_example_is_added_by_name_in_any_case(
    passhouse: CliInvoker, pass_type: str, name: str
) -> None:
    output = passhouse.ok("template", "add", "--example", name, "--pass-type", pass_type)

    assert output.startswith(f"added template {name.lower()} (id ")


def test_the_storecard_example_issues_a_pass_that_verifies(
    passhouse: CliInvoker, storecard: str, credentials: DevCredentials, tmp_path: Path
) -> None:
    issue(passhouse, storecard, "card-1")

    written = passhouse.ok("pass", "download", PASS_TYPE_ID, "card-1", "-o", "card.pkpass")

    assert written.startswith("wrote card.pkpass (")
    data = (tmp_path / "card.pkpass").read_bytes()
    report = verify_pkpass(data, ca_pem=credentials.root_cert_pem)
    assert report.errors == []


def test_an_example_and_a_folder_together_or_neither_is_a_usage_error(
    passhouse: CliInvoker, pass_type: str
) -> None:
    both = passhouse(
        "template", "add", ".", "--example", "storecard", "--name", "x", "--pass-type", pass_type
    )
    neither = passhouse("template", "add", "--name", "x", "--pass-type", pass_type)
    unknown = passhouse("template", "add", "--example", "nope", "--pass-type", pass_type)

    assert (both.exit_code, neither.exit_code, unknown.exit_code) == (2, 2, 2)
    assert "--example NAME (not both)" in both.stderr
    assert "--example NAME (not both)" in neither.stderr
    assert "storecard" in unknown.stderr  # the choices are listed


def test_an_example_takes_another_name(passhouse: CliInvoker, pass_type: str) -> None:
    passhouse.ok(
        "template", "add", "--example", "coupon", "--name", "summer", "--pass-type", pass_type
    )

    assert [t["name"] for t in as_json(passhouse, "template", "list")] == ["summer"]


# --- templates --------------------------------------------------------------------------


def test_templates_are_listed_and_shown_for_people_and_scripts(
    passhouse: CliInvoker, storecard: str
) -> None:
    issue(passhouse, storecard, "card-1")

    lines = passhouse.ok("template", "list")
    listed = as_json(passhouse, "template", "list")
    shown = as_json(passhouse, "template", "show", storecard)
    shown_by_id = as_json(passhouse, "template", "show", str(listed[0]["id"]))
    text = passhouse.ok("template", "show", storecard)

    assert lines == f"{listed[0]['id']}  storecard  {PASS_TYPE_ID}  revision 1  1 passes\n"
    assert [(t["name"], t["pass_count"], t["revision"]) for t in listed] == [("storecard", 1, 1)]
    assert shown == shown_by_id
    assert shown["placeholders"] == ["balance", "name", "points", "serial"]
    assert "icon.png" in shown["assets"]
    assert "en.lproj/pass.strings" in shown["assets"]
    assert shown["pass_json"]["storeCard"]["primaryFields"][0]["value"] == "{{balance}}"
    assert "  placeholders: balance, name, points, serial\n" in text


def test_an_empty_list_says_how_to_add_one(passhouse: CliInvoker) -> None:
    assert passhouse.ok("template", "list") == (
        "no templates (add one with `passhouse template add`)\n"
    )
    assert as_json(passhouse, "template", "list") == []
    assert as_json(passhouse, "pass", "list") == []


def test_an_unknown_template_is_one_clean_line(passhouse: CliInvoker) -> None:
    for args in (("template", "show", "nope"), ("template", "remove", "nope")):
        assert "'nope'" in assert_one_clean_line(passhouse(*args))


def test_a_template_with_passes_is_not_removed(passhouse: CliInvoker, storecard: str) -> None:
    issue(passhouse, storecard, "card-1")

    result = passhouse("template", "remove", storecard)

    assert assert_one_clean_line(result) == (
        "Error: Template 'storecard' is used by 1 passes; it cannot be deleted."
    )
    assert as_json(passhouse, "template", "show", storecard)["pass_count"] == 1


def test_a_template_without_passes_is_removed(passhouse: CliInvoker, storecard: str) -> None:
    removed = passhouse.ok("template", "remove", storecard)

    assert removed == "removed template storecard\n"
    assert as_json(passhouse, "template", "list") == []


# --- passes -----------------------------------------------------------------------------


def test_passes_are_listed_filtered_and_limited(passhouse: CliInvoker, storecard: str) -> None:
    passhouse.ok("template", "add", "--example", "coupon", "--pass-type", PASS_TYPE_ID)
    issue(passhouse, storecard, "card-1")
    issue(passhouse, storecard, "card-2")
    passhouse.ok(
        "pass", "issue", "--template", "coupon", "--serial", "coupon-1",
        "--data", json.dumps({"serial": "c", "percent": 10, "expires": "2027-01-31T23:59:00Z"}),
    )  # fmt: skip
    passhouse.ok("pass", "void", PASS_TYPE_ID, "card-2")

    everything = as_json(passhouse, "pass", "list")
    cards = as_json(passhouse, "pass", "list", "--template", storecard)
    first = as_json(passhouse, "pass", "list", "--limit", "1")
    lines = passhouse.ok("pass", "list", "--template", storecard).splitlines()

    assert [p["serial_number"] for p in everything] == ["card-1", "card-2", "coupon-1"]
    assert [p["serial_number"] for p in cards] == ["card-1", "card-2"]
    assert [p["serial_number"] for p in first] == ["card-1"]
    assert [p["voided"] for p in cards] == [False, True]
    assert lines[0].startswith(f"{PASS_TYPE_ID}  card-1  storecard  version ")
    assert "  active  modified " in lines[0]
    assert "  voided  modified " in lines[1]


def test_a_pass_list_of_an_unknown_template_is_one_clean_line(passhouse: CliInvoker) -> None:
    assert "'nope'" in assert_one_clean_line(passhouse("pass", "list", "--template", "nope"))


def test_a_pass_is_shown_for_people_and_scripts(passhouse: CliInvoker, storecard: str) -> None:
    issue(passhouse, storecard, "card-1", name="Grace")
    passhouse.ok("pass", "update", PASS_TYPE_ID, "card-1", "points=11")

    shown = as_json(passhouse, "pass", "show", PASS_TYPE_ID, "card-1")
    text = passhouse.ok("pass", "show", PASS_TYPE_ID, "card-1")

    assert shown["data"] == {**STORE_CARD, "name": "Grace", "points": 11}
    assert shown["template"] == "storecard"
    assert shown["devices"] == []
    assert shown["urls"]["pkpass"] == (
        f"https://passes.example.test/api/v1/passes/{PASS_TYPE_ID}/card-1/pkpass"
    )
    assert text.startswith(f"pass {PASS_TYPE_ID} card-1 (active, version {shown['version']})\n")
    assert '"name": "Grace"' in text


def test_an_unknown_pass_is_one_clean_line(passhouse: CliInvoker) -> None:
    for command in ("show", "download"):
        line = assert_one_clean_line(passhouse("pass", command, PASS_TYPE_ID, "nope"))
        assert line == f"Error: No pass 'nope' of '{PASS_TYPE_ID}'."


def test_a_downloaded_pass_is_the_current_version_the_server_serves(
    passhouse: CliInvoker, storecard: str, tmp_path: Path
) -> None:
    issue(passhouse, storecard, "card-1")
    passhouse.ok("pass", "update", PASS_TYPE_ID, "card-1", "balance=99")

    passhouse.ok("pass", "download", PASS_TYPE_ID, "card-1")

    data = (tmp_path / "card-1.pkpass").read_bytes()
    pass_json = json.loads(_member(data, "pass.json"))
    assert pass_json["serialNumber"] == "card-1"
    assert pass_json["storeCard"]["primaryFields"][0]["value"] == 99
    assert pass_json["webServiceURL"] == "https://passes.example.test/passkit"


def test_a_download_into_a_missing_folder_is_one_clean_line(
    passhouse: CliInvoker, storecard: str
) -> None:
    issue(passhouse, storecard, "card-1")

    result = passhouse("pass", "download", PASS_TYPE_ID, "card-1", "-o", "no/such/card.pkpass")

    assert "cannot write no/such/card.pkpass" in assert_one_clean_line(result)


def _member(pkpass: bytes, name: str) -> bytes:
    with zipfile.ZipFile(io.BytesIO(pkpass)) as archive:
        return archive.read(name)


# --- the other list commands --------------------------------------------------------------


def test_pass_types_and_api_keys_are_listed_for_scripts(
    passhouse: CliInvoker, pass_type: str
) -> None:
    passhouse.ok("api-key", "create", "--name", "shop")
    passhouse.ok("api-key", "create", "--name", "old")
    passhouse.ok("api-key", "revoke", "2")

    types = as_json(passhouse, "pass-type", "list")
    keys = as_json(passhouse, "api-key", "list")

    assert [(t["pass_type_id"], t["team_id"]) for t in types] == [(PASS_TYPE_ID, TEAM_ID)]
    assert types[0]["certificate"]["not_after"].startswith("20")
    assert [p["severity"] for p in types[0]["problems"]] == ["warning"]  # not Apple's WWDR
    assert [(k["id"], k["name"]) for k in keys] == [(1, "shop"), (2, "old")]
    assert keys[0]["revoked_at"] is None
    assert keys[1]["revoked_at"].endswith("Z")
    assert all(k["prefix"].startswith("ph_") for k in keys)
