"""What `passhouse` says when it cannot start: one sentence, no traceback, a non-zero exit.

Each case runs the real command in a process of its own, the way an operator meets it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from conftest import PASS_TYPE_ID, PG_ENV, SECRET_KEY
from disks import read_only
from passhouse.pkpass.devcerts import DevCredentials
from tcp_proxy import BlackHole

COMMANDS_THAT_OPEN_THE_DATABASE = [
    ["serve"],
    ["migrate"],
    ["worker"],
    ["pass-type", "list"],
    ["api-key", "create", "--name", "ci"],
]


def passhouse(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    process_env = {k: v for k, v in os.environ.items() if not k.startswith("PASSHOUSE_")}
    process_env |= {
        "PASSHOUSE_DATABASE_URL": f"sqlite:///{cwd / 'passhouse.db'}",
        "PASSHOUSE_DATA_DIR": str(cwd / "data"),
        **(env or {}),
    }
    process_env = {k: v for k, v in process_env.items() if v != ""}
    return subprocess.run(
        [sys.executable, "-m", "passhouse", *args],
        cwd=cwd,
        env=process_env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def one_sentence(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    assert result.stdout == "", result.stdout  # no banner, no token, no curl
    lines = result.stderr.splitlines()
    if lines and lines[0].startswith("database: "):
        lines.pop(0)  # which database the command uses, said before it opens it
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert lines[0].endswith("."), lines[0]
    return lines[0].removeprefix("Error: ")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def postgres_url(*, database: str | None = None, username: str | None = None) -> str:
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip("needs a PostgreSQL server (PASSHOUSE_TEST_DATABASE_URL)")
    url = sa.make_url(base).set(drivername="postgresql")
    url = url.set(database=database or url.database, username=username or url.username)
    return url.render_as_string(hide_password=False)


# --- PostgreSQL that cannot be used -----------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS_THAT_OPEN_THE_DATABASE, ids=" ".join)
def test_an_unreachable_postgresql_port_names_the_url_and_the_host(
    command: list[str], tmp_path: Path
) -> None:
    port = free_port()  # nothing listens there once the socket is closed
    url = f"postgresql://passhouse:secret-password@127.0.0.1:{port}/passhouse"

    result = passhouse(*command, cwd=tmp_path, env={"PASSHOUSE_DATABASE_URL": url})

    sentence = one_sentence(result)
    assert sentence.startswith("PASSHOUSE_DATABASE_URL: cannot connect to the PostgreSQL server")
    assert f"127.0.0.1:{port}" in sentence
    assert "Connection refused" in sentence
    assert "secret-password" not in sentence


def test_a_postgresql_server_that_never_answers_is_one_sentence_after_the_timeout(
    tmp_path: Path,
) -> None:
    hole = BlackHole()
    url = f"postgresql://passhouse@127.0.0.1:{hole.port}/passhouse"
    env = {"PASSHOUSE_DATABASE_URL": url, "PASSHOUSE_DATABASE_CONNECT_TIMEOUT_SECONDS": "1"}

    try:
        result = passhouse("pass-type", "list", cwd=tmp_path, env=env)
    finally:
        hole.close()

    assert one_sentence(result) == (
        f"PASSHOUSE_DATABASE_URL: the PostgreSQL server at 127.0.0.1:{hole.port} did not "
        "answer within 1 s (PASSHOUSE_DATABASE_CONNECT_TIMEOUT_SECONDS); check that it is "
        "reachable from here."
    )


@pytest.mark.parametrize("command", COMMANDS_THAT_OPEN_THE_DATABASE, ids=" ".join)
def test_a_postgresql_database_that_does_not_exist_is_one_sentence(
    command: list[str], tmp_path: Path
) -> None:
    name = f"passhouse_missing_{secrets.token_hex(4)}"

    result = passhouse(
        *command, cwd=tmp_path, env={"PASSHOUSE_DATABASE_URL": postgres_url(database=name)}
    )

    sentence = one_sentence(result)
    assert sentence.startswith(f"PASSHOUSE_DATABASE_URL names the database '{name}'")
    assert "does not exist" in sentence
    assert f"createdb {name}" in sentence


@pytest.mark.parametrize("command", COMMANDS_THAT_OPEN_THE_DATABASE, ids=" ".join)
def test_a_postgresql_role_that_does_not_exist_is_one_sentence(
    command: list[str], tmp_path: Path
) -> None:
    role = f"passhouse_nobody_{secrets.token_hex(4)}"

    result = passhouse(
        *command, cwd=tmp_path, env={"PASSHOUSE_DATABASE_URL": postgres_url(username=role)}
    )

    sentence = one_sentence(result)
    assert sentence.startswith("PASSHOUSE_DATABASE_URL: the PostgreSQL server at ")
    assert f'role "{role}" does not exist' in sentence


# --- SQLite the server cannot write -----------------------------------------------------


def test_serve_refuses_a_sqlite_file_it_cannot_write(tmp_path: Path) -> None:
    assert passhouse("migrate", cwd=tmp_path).returncode == 0
    database = tmp_path / "passhouse.db"

    with read_only(database):
        result = passhouse("serve", cwd=tmp_path)

    sentence = one_sentence(result)
    assert sentence.startswith(f"PASSHOUSE_DATABASE_URL: {database} is read-only")


def test_serve_refuses_a_sqlite_folder_it_cannot_write(tmp_path: Path) -> None:
    folder = tmp_path / "db"
    folder.mkdir()
    url = f"sqlite:///{folder / 'passhouse.db'}"
    assert passhouse("migrate", cwd=tmp_path, env={"PASSHOUSE_DATABASE_URL": url}).returncode == 0
    for journal in folder.glob("passhouse.db-*"):  # as after a clean shutdown
        journal.unlink()

    with read_only(folder):
        result = passhouse("serve", cwd=tmp_path, env={"PASSHOUSE_DATABASE_URL": url})

    sentence = one_sentence(result)
    assert sentence.startswith(f"PASSHOUSE_DATABASE_URL: the folder {folder} is read-only")


def test_a_file_that_is_not_a_sqlite_database_is_one_sentence(tmp_path: Path) -> None:
    (tmp_path / "passhouse.db").write_text("these are my notes, not a database\n")

    result = passhouse("pass-type", "list", cwd=tmp_path)

    assert "is not a database" in one_sentence(result)


# --- secret key -------------------------------------------------------------------------


def add_pass_type(tmp_path: Path, credentials: DevCredentials, env: dict[str, str]) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(credentials.cert_pem)
    key.write_bytes(credentials.key_pem)
    added = passhouse(
        "pass-type", "add", "--cert", str(cert), "--key", str(key), cwd=tmp_path, env=env
    )
    assert added.returncode == 0, added.stderr


@pytest.mark.parametrize("command", [["serve"], ["worker"], ["pass-type", "list"]], ids=" ".join)
def test_another_secret_key_than_the_stored_keys_were_sealed_with_stops_the_command(
    command: list[str], tmp_path: Path, credentials: DevCredentials
) -> None:
    add_pass_type(tmp_path, credentials, {"PASSHOUSE_SECRET_KEY": SECRET_KEY})

    result = passhouse(
        *command, cwd=tmp_path, env={"PASSHOUSE_SECRET_KEY": "another-secret-key-0123456789"}
    )

    sentence = one_sentence(result)
    assert sentence.startswith("PASSHOUSE_SECRET_KEY does not decrypt the private keys")
    assert "set PASSHOUSE_SECRET_KEY to the key this database was set up with" in sentence


def test_adding_the_certificate_again_under_the_new_secret_key_replaces_the_stored_key(
    tmp_path: Path, credentials: DevCredentials
) -> None:
    add_pass_type(tmp_path, credentials, {"PASSHOUSE_SECRET_KEY": SECRET_KEY})
    new_key = {"PASSHOUSE_SECRET_KEY": "another-secret-key-0123456789"}

    refused = passhouse("pass-type", "list", cwd=tmp_path, env=new_key)
    add_pass_type(tmp_path, credentials, new_key)
    listed = passhouse("pass-type", "list", cwd=tmp_path, env=new_key)

    assert "pass-type add" in one_sentence(refused)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith(PASS_TYPE_ID)


def test_deleting_the_dev_data_folder_but_keeping_the_database_is_one_sentence(
    tmp_path: Path, credentials: DevCredentials
) -> None:
    # Dev mode: no PASSHOUSE_SECRET_KEY, so one is generated into the data folder.
    add_pass_type(tmp_path, credentials, {})
    shutil.rmtree(tmp_path / "data")

    result = passhouse("serve", cwd=tmp_path)

    sentence = one_sentence(result)
    assert sentence.startswith(f"The secret key generated into {tmp_path / 'data'}")
    assert f"restore the {tmp_path / 'data'} folder" in sentence


# --- files and folders named by the settings --------------------------------------------


def test_an_apns_ca_file_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    result = passhouse("serve", cwd=tmp_path, env={"PASSHOUSE_APNS_CA_FILE": "/nope"})

    assert one_sentence(result) == (
        "PASSHOUSE_APNS_CA_FILE=/nope cannot be read: No such file or directory."
    )


def test_an_apns_ca_file_without_a_certificate_is_refused(tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("not a certificate\n")

    result = passhouse("worker", cwd=tmp_path, env={"PASSHOUSE_APNS_CA_FILE": str(not_pem)})

    assert one_sentence(result) == f"PASSHOUSE_APNS_CA_FILE={not_pem} holds no PEM certificate."


@pytest.mark.parametrize("command", [["serve"], ["pass-type", "list"]], ids=" ".join)
def test_a_data_dir_that_cannot_be_created_is_refused(command: list[str], tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    data_dir = tmp_path / "a-file" / "data"

    result = passhouse(*command, cwd=tmp_path, env={"PASSHOUSE_DATA_DIR": str(data_dir)})

    assert one_sentence(result) == (
        f"PASSHOUSE_DATA_DIR={data_dir} cannot be created or written: Not a directory."
    )


# --- migrate --revision -----------------------------------------------------------------


def tables(database: Path) -> set[str]:
    with sqlite3.connect(database) as db:
        return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def test_migrate_to_an_unknown_revision_is_one_sentence(tmp_path: Path) -> None:
    result = passhouse("migrate", "--revision", "nonsense", cwd=tmp_path)

    sentence = one_sentence(result)
    assert sentence.startswith("unknown revision 'nonsense': give head, base or one of ")
    assert not (tmp_path / "passhouse.db").exists()


def test_migrate_to_base_refuses_without_downgrade_and_drops_the_tables_with_it(
    tmp_path: Path,
) -> None:
    assert passhouse("migrate", cwd=tmp_path).returncode == 0
    database = tmp_path / "passhouse.db"

    refused = passhouse("migrate", "--revision", "base", cwd=tmp_path)
    tables_after_refusal = tables(database)
    downgraded = passhouse("migrate", "--revision", "base", "--downgrade", cwd=tmp_path)
    tables_at_base = tables(database)
    upgraded = passhouse("migrate", cwd=tmp_path)

    assert "add --downgrade to do it" in one_sentence(refused)
    assert "passes" in tables_after_refusal
    assert downgraded.returncode == 0, downgraded.stderr
    assert downgraded.stdout == "database at revision base (no tables)\n"
    assert tables_at_base <= {"alembic_version"}
    assert upgraded.returncode == 0
    assert upgraded.stdout.startswith("database at revision ")
    assert "passes" in tables(database)
