"""The server-side `passhouse` commands, run the way an operator runs them."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import click
import httpx
import pytest
from click.testing import CliRunner, Result
from pydantic import SecretStr

from certs import openssl_verify, renewed_certificate
from conftest import ADMIN_TOKEN, PASS_TYPE_ID, SECRET_KEY, TEAM_ID, TEMPLATE_JSON
from passhouse import devmode, issuing
from passhouse.bootstrap import open_runtime
from passhouse.cli import main
from passhouse.pkpass.devcerts import DevCredentials, make_dev_credentials
from passhouse.settings import Settings
from passhouse.web.app import create_app


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    # Settings also read ./.env: run from an empty folder so the developer's file is ignored.
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("PASSHOUSE_"):
            monkeypatch.delenv(name)
    return {
        "PASSHOUSE_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "PASSHOUSE_SECRET_KEY": SECRET_KEY,
        "PASSHOUSE_DATA_DIR": str(tmp_path / "data"),
        "PASSHOUSE_PUBLIC_URL": "https://passes.example.test",
    }


@pytest.fixture
def passhouse(env: dict[str, str]) -> CliInvoker:
    return CliInvoker(env)


class CliInvoker:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.runner = CliRunner()

    def __call__(self, *args: str, **env: str) -> Result:
        return self.runner.invoke(main, list(args), env={**self.env, **env}, catch_exceptions=True)

    def ok(self, *args: str) -> str:
        """What a successful command printed on stdout."""
        result = self(*args)
        assert result.exit_code == 0, (result.output, result.exception)
        return result.stdout


@pytest.fixture
def cert_files(tmp_path: Path, credentials: DevCredentials) -> dict[str, Path]:
    files = {
        "cert": (tmp_path / "pass.pem", credentials.cert_pem),
        "key": (tmp_path / "pass-key.pem", credentials.key_pem),
        "wwdr": (tmp_path / "wwdr.pem", credentials.wwdr_cert_pem),
    }
    for path, data in files.values():
        path.write_bytes(data)
    return {name: path for name, (path, _) in files.items()}


@pytest.fixture
def template_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "card.pass"
    folder.mkdir()
    (folder / "pass.json").write_text(json.dumps(TEMPLATE_JSON))
    (folder / "icon.png").write_bytes(devmode.solid_png(29, 29))
    return folder


@pytest.fixture
def with_template(passhouse: CliInvoker, cert_files: dict[str, Path], template_dir: Path) -> str:
    passhouse.ok(
        "pass-type", "add", "--cert", str(cert_files["cert"]), "--key", str(cert_files["key"]),
        "--wwdr", str(cert_files["wwdr"]),
    )  # fmt: skip
    passhouse.ok(
        "template", "add", str(template_dir), "--name", "card", "--pass-type", PASS_TYPE_ID
    )
    return "card"


def assert_one_clean_line(result: Result) -> str:
    """A user error: exit code 1 and one sentence on stderr, never a traceback."""
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    if lines and lines[0].startswith("database: "):
        lines.pop(0)  # said before the command works on it
    assert len(lines) == 1, result.stderr
    return lines[0]


# --- help -------------------------------------------------------------------------------


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in sorted(group.commands.items()):
        yield (*prefix, name)
        if isinstance(command, click.Group):
            yield from all_commands(command, (*prefix, name))


@pytest.mark.parametrize("command", list(all_commands(main)), ids=" ".join)
def test_every_command_has_help(passhouse: CliInvoker, command: tuple[str, ...]) -> None:
    output = passhouse.ok(*command, "--help")

    assert output.startswith("Usage:")


# --- commands ---------------------------------------------------------------------------


def test_migrate_brings_an_empty_database_to_head(passhouse: CliInvoker, tmp_path: Path) -> None:
    output = passhouse.ok("migrate")

    assert output.startswith("database at revision ")
    assert (tmp_path / "cli.db").exists()


def test_a_pass_type_is_added_from_pem_files_and_listed(
    passhouse: CliInvoker, cert_files: dict[str, Path]
) -> None:
    args = ["pass-type", "add", "--cert", str(cert_files["cert"]), "--key", str(cert_files["key"])]

    added = passhouse(*args, "--wwdr", str(cert_files["wwdr"]))
    replaced = passhouse(*args)
    listed = passhouse.ok("pass-type", "list")

    assert added.stdout == f"added pass type {PASS_TYPE_ID}\n"
    assert replaced.stdout == f"replaced certificate of pass type {PASS_TYPE_ID}\n"
    assert "the stored one is kept" in replaced.stderr
    assert listed.startswith(f"{PASS_TYPE_ID}  team {TEAM_ID}  expires ")


def test_pass_type_add_needs_a_certificate_and_key(passhouse: CliInvoker) -> None:
    result = passhouse("pass-type", "add")

    assert result.exit_code == 2
    assert "--p12" in result.output


def test_a_wrong_key_file_is_one_clean_line(
    passhouse: CliInvoker, cert_files: dict[str, Path]
) -> None:
    result = passhouse(
        "pass-type", "add", "--cert", str(cert_files["cert"]), "--key", str(cert_files["wwdr"])
    )

    assert assert_one_clean_line(result).startswith("Error: ")


def test_a_template_is_added_from_a_folder(with_template: str, passhouse: CliInvoker) -> None:
    result = passhouse("template", "add", "nowhere", "--name", "x", "--pass-type", PASS_TYPE_ID)

    assert with_template == "card"
    assert result.exit_code == 2  # the folder does not exist


def test_a_template_for_an_unknown_pass_type_is_one_clean_line(
    passhouse: CliInvoker, template_dir: Path
) -> None:
    result = passhouse("template", "add", str(template_dir), "--name", "c", "--pass-type", "x.y")

    assert "x.y" in assert_one_clean_line(result)


def test_a_pass_is_issued_updated_and_voided(passhouse: CliInvoker, with_template: str) -> None:
    data = json.dumps({"name": "Ada", "balance": 10})

    issued = passhouse.ok(
        "pass", "issue", "--template", with_template, "--data", data, "--serial", "s-1"
    )
    updated = passhouse.ok("pass", "update", PASS_TYPE_ID, "s-1", "balance=20")
    unchanged = passhouse.ok("pass", "update", PASS_TYPE_ID, "s-1", "balance=20")
    voided = passhouse.ok("pass", "void", PASS_TYPE_ID, "s-1")
    after_void = passhouse("pass", "update", PASS_TYPE_ID, "s-1", "balance=30")

    assert issued.startswith(f"issued {PASS_TYPE_ID} s-1 (version ")
    assert "share link: https://passes.example.test/p/" in issued
    assert updated.startswith("updated s-1 to version ")
    assert unchanged == "s-1 already had these values; nothing changed\n"
    assert voided == "voided s-1\n"
    assert "voided" in assert_one_clean_line(after_void)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--data", "{not json"], "--data"),
        (["--data", "[1, 2]"], "--data"),
        (["--data", '{"name": "Ada"}'], "balance"),
        (["--data", '{"name": "Ada", "balance": 1}', "--serial", "has space"], "serial"),
        (["--data", "@missing.json"], "--data"),
    ],
)
def test_bad_pass_input_is_refused_without_a_traceback(
    passhouse: CliInvoker, with_template: str, args: list[str], needle: str
) -> None:
    result = passhouse("pass", "issue", "--template", with_template, *args)

    assert result.exit_code in (1, 2)
    assert isinstance(result.exception, SystemExit)
    assert needle in result.output
    assert "Traceback" not in result.output


DEEP = '{"a": ' * 990 + "1" + "}" * 990
HUGE = "9" * 5_000


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["pass", "issue", "--template", "card", "--data", f'{{"name": {DEEP}}}'], "limit is 32"),
        (["pass", "issue", "--template", "card", "--data", f'{{"name": {HUGE}}}'], "100 digits"),
        (["pass", "update", PASS_TYPE_ID, "s-1", f"name={DEEP}"], "limit is 32"),
        (["pass", "update", PASS_TYPE_ID, "s-1", f"balance={HUGE}"], "100 digits"),
        (["template", "add", "{deep_zip}", "--name", "deep", "--pass-type", PASS_TYPE_ID],
         "limit is 32"),
        (["template", "replace", "card", "{deep_folder}"], "limit is 32"),
    ],
    ids=["issue deep", "issue huge", "update deep", "update huge", "zip", "folder"],
)  # fmt: skip
def test_hostile_json_on_the_command_line_is_one_clean_line(
    passhouse: CliInvoker, with_template: str, tmp_path: Path, args: list[str], needle: str
) -> None:
    passhouse.ok("pass", "issue", "--template", with_template, "--serial", "s-1", "--data",
                 '{"name": "Ada", "balance": 1}')  # fmt: skip
    folder = tmp_path / "deep"
    folder.mkdir()
    (folder / "pass.json").write_text(json.dumps(TEMPLATE_JSON)[:-1] + f', "userInfo": {DEEP}}}')
    (folder / "icon.png").write_bytes(devmode.solid_png(29, 29))
    deep_zip = tmp_path / "deep.zip"
    with zipfile.ZipFile(deep_zip, "w") as archive:
        for file in folder.iterdir():
            archive.write(file, file.name)
    paths = {"{deep_zip}": str(deep_zip), "{deep_folder}": str(folder)}

    result = passhouse(*[paths.get(arg, arg) for arg in args])

    assert result.exit_code in (1, 2), result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert needle in result.output
    assert "Traceback" not in result.output
    assert "int_max_str_digits" not in result.output


def test_api_keys_are_created_listed_and_revoked(passhouse: CliInvoker) -> None:
    created = passhouse.ok("api-key", "create", "--name", "ci")
    key = created.splitlines()[1]
    listed = passhouse.ok("api-key", "list")
    revoked = passhouse.ok("api-key", "revoke", "1")
    again = passhouse("api-key", "revoke", "1")
    listed_after = passhouse.ok("api-key", "list")

    assert created.startswith("created API key 1 (ci)")
    assert key.startswith("ph_")
    assert listed.startswith(f"1  {key[:10]}…  ci  created 20")
    assert listed.endswith("Z  active\n")
    assert revoked == "revoked API key 1\n"
    assert "No active API key has id 1" in assert_one_clean_line(again)
    assert listed_after.endswith("revoked\n")


async def test_a_created_key_works_against_the_api_until_revoked(
    passhouse: CliInvoker, env: dict[str, str], with_template: str
) -> None:
    # The commands run their own event loop, so they run in a thread here.
    created = await asyncio.to_thread(passhouse.ok, "api-key", "create", "--name", "ci")
    key = created.splitlines()[1]
    settings = Settings(
        _env_file=None,
        database_url=env["PASSHOUSE_DATABASE_URL"],
        secret_key=env["PASSHOUSE_SECRET_KEY"],
        data_dir=Path(env["PASSHOUSE_DATA_DIR"]),
    )
    runtime = open_runtime(settings)
    transport = httpx.ASGITransport(app=create_app(runtime))
    headers = {"Authorization": f"Bearer {key}"}
    body = {"template": with_template, "data": {"name": "Ada", "balance": 1}}

    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            issued = await http.post("/api/v1/passes", headers=headers, json=body)
            await asyncio.to_thread(passhouse.ok, "api-key", "revoke", "1")
            refused = await http.get("/api/v1/passes", headers=headers)
    finally:
        await runtime.database.dispose()

    assert issued.status_code == 201, issued.text
    assert refused.status_code == 401


# --- configuration ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "env", "needle"),
    [
        (["migrate"], {"PASSHOUSE_PUBLIC_URL": "ftp://x"}, "PASSHOUSE_PUBLIC_URL"),
        (["serve"], {"PASSHOUSE_PUBLIC_URL": "ftp://x"}, "PASSHOUSE_PUBLIC_URL"),
        (["pass-type", "list"], {"PASSHOUSE_DATABASE_URL": "mysql://x"}, "PASSHOUSE_DATABASE_URL"),
        (["serve"], {"PASSHOUSE_SECRET_KEY": "short"}, "PASSHOUSE_SECRET_KEY"),
        (["migrate"], {"PASSHOUSE_SECRET_KEY": "short"}, "PASSHOUSE_SECRET_KEY"),
        (["serve"], {"PASSHOUSE_PUSH_MAX_ATTEMPTS": "many"}, "PASSHOUSE_PUSH_MAX_ATTEMPTS"),
        (
            ["serve"],
            {"PASSHOUSE_SECRET_KEY": "", "PASSHOUSE_DEV_MODE": "false"},
            "PASSHOUSE_SECRET_KEY",
        ),
    ],
)
def test_invalid_configuration_is_one_clear_line(
    passhouse: CliInvoker, command: list[str], env: dict[str, str], needle: str
) -> None:
    result = passhouse(*command, **env)

    line = assert_one_clean_line(result)
    assert needle in line


def test_a_database_that_cannot_be_opened_is_one_clear_line(
    env: dict[str, str], tmp_path: Path
) -> None:
    # In a process of its own, as an operator sees it, stderr and all.
    process_env = {k: v for k, v in os.environ.items() if not k.startswith("PASSHOUSE_")}
    process_env |= {**env, "PASSHOUSE_DATABASE_URL": "sqlite:////nonexistent/folder/x.db"}

    result = subprocess.run(
        [sys.executable, "-m", "passhouse", "pass-type", "list"],
        cwd=tmp_path,
        env=process_env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("Error: invalid configuration: PASSHOUSE_DATABASE_URL: ")
    assert len(result.stderr.strip().splitlines()) == 1


# --- a real server process --------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_health(base: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("the server did not answer /healthz in time")


@pytest.mark.slow
def test_serve_runs_dev_mode_end_to_end_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PASSHOUSE_")}
    env |= {
        "PASSHOUSE_DATA_DIR": str(data_dir),
        "PASSHOUSE_DATABASE_URL": f"sqlite:///{tmp_path / 'serve.db'}",
    }
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    command = [sys.executable, "-m", "passhouse", "serve", "--port", str(port)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, "--log-level", "warning"], cwd=tmp_path, env=env, stdout=out, stderr=out
        )
    try:
        wait_for_health(base, process)
        token = (data_dir / "admin_token").read_text().strip()
        headers = {"Authorization": f"Bearer {token}"}

        issued = httpx.post(
            f"{base}/api/v1/passes",
            headers=headers,
            json={"template": devmode.DEMO_TEMPLATE, "data": {"name": "Ada", "balance": 12.5}},
            timeout=30,
        )
        pkpass_url = issued.json()["urls"]["pkpass"]
        local = httpx.URL(pkpass_url).copy_with(host="127.0.0.1")  # localhost may be ::1
        download = httpx.get(local, headers=headers, timeout=30)
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = log.read_text()

    assert issued.status_code == 201, issued.text
    assert pkpass_url.startswith(f"http://localhost:{port}/api/v1/passes/")
    assert download.status_code == 200
    assert download.headers["content-type"] == "application/vnd.apple.pkpass"
    # uvicorn shuts down gracefully, then re-raises the signal so supervisors see it.
    assert returncode in (0, -signal.SIGTERM), output
    assert "push_worker_stopped" in output
    assert "DEV MODE" in output
    assert "Traceback" not in output


# --- what an operator changes -------------------------------------------------------


async def api_get(env: dict[str, str], path: str) -> httpx.Response:
    """GET from the admin API of a server on the CLI's database."""
    settings = Settings(
        _env_file=None,
        database_url=env["PASSHOUSE_DATABASE_URL"],
        secret_key=SecretStr(env["PASSHOUSE_SECRET_KEY"]),
        data_dir=Path(env["PASSHOUSE_DATA_DIR"]),
        public_url=env["PASSHOUSE_PUBLIC_URL"],
        admin_token=SecretStr(ADMIN_TOKEN),
    )
    runtime = open_runtime(settings)
    transport = httpx.ASGITransport(app=create_app(runtime))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            response = await http.get(path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    finally:
        await runtime.database.dispose()
    assert response.status_code == 200, response.text
    return response


def served_pkpass(env: dict[str, str], serial: str) -> bytes:
    path = f"/api/v1/passes/{PASS_TYPE_ID}/{serial}/pkpass"
    return asyncio.run(api_get(env, path)).content


def unzip_to(folder: Path, pkpass: bytes) -> Path:
    folder.mkdir()
    with zipfile.ZipFile(io.BytesIO(pkpass)) as archive:
        archive.extractall(folder)
    return folder


# --- renewing a certificate -----------------------------------------------------------


def test_renewing_without_wwdr_keeps_it_and_the_served_pass_still_verifies(
    passhouse: CliInvoker,
    env: dict[str, str],
    with_template: str,
    credentials: DevCredentials,
    tmp_path: Path,
) -> None:
    passhouse.ok("pass", "issue", "--template", with_template, "--serial", "s-1", "--data",
                 json.dumps({"name": "Ada", "balance": 1}))  # fmt: skip
    cert_pem, key_pem = renewed_certificate(credentials)
    (tmp_path / "renewed.pem").write_bytes(cert_pem)
    (tmp_path / "renewed-key.pem").write_bytes(key_pem)
    (tmp_path / "root.pem").write_bytes(credentials.root_cert_pem)

    renewed = passhouse("pass-type", "add", "--cert", str(tmp_path / "renewed.pem"),
                        "--key", str(tmp_path / "renewed-key.pem"))  # fmt: skip
    listed = passhouse.ok("pass-type", "list")
    pkpass = served_pkpass(env, "s-1")
    (tmp_path / "served.pkpass").write_bytes(pkpass)
    verified = passhouse("pkpass", "verify", str(tmp_path / "served.pkpass"),
                         "--ca", str(tmp_path / "root.pem"))  # fmt: skip
    files = unzip_to(tmp_path / "served", pkpass)
    openssl = openssl_verify(files / "signature", files / "manifest.json", tmp_path / "root.pem")

    assert renewed.exit_code == 0, renewed.output
    assert verified.exit_code == 0, verified.output
    assert openssl.returncode == 0, openssl.stderr
    assert renewed.stdout == f"replaced certificate of pass type {PASS_TYPE_ID}\n"
    assert "the stored one is kept (give --wwdr to replace it)" in renewed.stderr
    assert "wwdr_pem" not in renewed.stderr
    assert "error:" not in listed


def test_a_pass_type_without_wwdr_names_the_cli_flag_and_list_shows_the_problem(
    passhouse: CliInvoker, cert_files: dict[str, Path]
) -> None:
    added = passhouse(
        "pass-type", "add", "--cert", str(cert_files["cert"]), "--key", str(cert_files["key"])
    )
    listed = passhouse.ok("pass-type", "list")

    assert added.exit_code == 0, added.output
    assert "give it with --wwdr" in added.stderr
    assert "wwdr_pem" not in added.stderr
    assert "  error: No WWDR intermediate certificate was given" in listed


def test_pass_type_list_shows_a_wrong_wwdr_and_refuses_an_undecryptable_key(
    passhouse: CliInvoker, cert_files: dict[str, Path], tmp_path: Path
) -> None:
    other_wwdr = tmp_path / "other-wwdr.pem"
    other_wwdr.write_bytes(make_dev_credentials(PASS_TYPE_ID, "TESTTEAM42").wwdr_cert_pem)
    passhouse.ok("pass-type", "add", "--cert", str(cert_files["cert"]),
                 "--key", str(cert_files["key"]), "--wwdr", str(other_wwdr))  # fmt: skip

    listed = passhouse.ok("pass-type", "list")
    other_key = passhouse("pass-type", "list", PASSHOUSE_SECRET_KEY="another-secret-key-0123")

    assert "  error: The certificate was not issued by the given WWDR certificate" in listed
    # A wrong secret key stops the command before listing (tests/test_startup_checks.py).
    assert "PASSHOUSE_SECRET_KEY does not decrypt" in assert_one_clean_line(other_key)


def test_a_dotted_key_sets_the_nested_value_and_null_removes_it(
    passhouse: CliInvoker, env: dict[str, str], with_template: str
) -> None:
    data = {"name": "Ada", "balance": 1, "seat": {"number": 7, "section": "A"}, "x": 1}
    passhouse.ok("pass", "issue", "--template", with_template, "--serial", "s-1",
                 "--data", json.dumps(data))  # fmt: skip

    updated = passhouse("pass", "update", PASS_TYPE_ID, "s-1", "seat.number=99", "x=null")
    shown = asyncio.run(api_get(env, f"/api/v1/passes/{PASS_TYPE_ID}/s-1")).json()
    empty_part = passhouse("pass", "update", PASS_TYPE_ID, "s-1", "seat..number=1")

    assert updated.exit_code == 0, updated.output
    assert shown["data"] == {"name": "Ada", "balance": 1, "seat": {"number": 99, "section": "A"}}
    assert empty_part.exit_code == 2


def leaf_commands() -> list[tuple[str, ...]]:
    return [
        path
        for path in all_commands(main)
        if not isinstance(_command_at(path), click.Group) and path[0] not in ("pkpass", "certs")
    ]


def _command_at(path: tuple[str, ...]) -> click.Command:
    command: click.Command = main
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return command


@pytest.mark.parametrize("command", leaf_commands(), ids=" ".join)
def test_every_command_that_opens_the_database_takes_database_url(
    passhouse: CliInvoker, command: tuple[str, ...]
) -> None:
    output = passhouse.ok(*command, "--help")

    assert "--database-url URL" in output


def test_a_command_run_from_another_folder_says_which_database_it_uses(
    passhouse: CliInvoker, env: dict[str, str], with_template: str, tmp_path: Path,
    template_dir: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    args = ["template", "add", str(template_dir), "--name", "card2", "--pass-type", PASS_TYPE_ID]
    no_url = {**env, "PASSHOUSE_DATABASE_URL": None}

    lost = passhouse.runner.invoke(main, args, env=no_url)
    found = passhouse.runner.invoke(
        main, [*args, "--database-url", env["PASSHOUSE_DATABASE_URL"]], env=no_url
    )

    assert lost.exit_code == 1
    assert lost.stderr.splitlines()[0] == (
        f"database: SQLite {elsewhere / 'passhouse.db'} (new: it does not exist yet)"
    )
    assert PASS_TYPE_ID in lost.stderr.splitlines()[1]
    assert found.exit_code == 0, found.output
    assert found.stderr == f"database: SQLite {tmp_path / 'cli.db'}\n"
    assert found.stdout.startswith("added template card2")


def test_a_postgresql_database_is_named_without_its_password(passhouse: CliInvoker) -> None:
    url = "postgresql://issuer:s3cret@127.0.0.1:1/passes"

    result = passhouse("api-key", "list", "--database-url", url)

    assert result.stderr.splitlines()[0] == "database: postgresql://issuer:***@127.0.0.1:1/passes"
    assert "s3cret" not in result.output


def test_pass_issue_says_where_links_point_and_how_to_change_it(
    passhouse: CliInvoker, env: dict[str, str], with_template: str
) -> None:
    data = json.dumps({"name": "Ada", "balance": 1})
    args = ["pass", "issue", "--template", with_template, "--data", data]

    configured = passhouse.ok(*args)
    default = passhouse.runner.invoke(main, args, env={**env, "PASSHOUSE_PUBLIC_URL": None})

    assert "  links use PASSHOUSE_PUBLIC_URL=https://passes.example.test\n" in configured
    assert "share link: http://localhost:8000/p/" in default.stdout
    assert "links use the default address http://localhost:8000: set PASSHOUSE_PUBLIC_URL" in (
        default.stdout
    )


@pytest.mark.slow
def test_serve_at_a_new_public_url_re_versions_the_passes_built_for_the_old_one(
    tmp_path: Path,
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PASSHOUSE_")}
    env |= {
        "PASSHOUSE_DATA_DIR": str(tmp_path / "data"),
        "PASSHOUSE_DATABASE_URL": f"sqlite:///{tmp_path / 'serve.db'}",
        "PASSHOUSE_APNS_URL": "https://127.0.0.1:1",  # never the real APNs
    }
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "passhouse", "serve", "--port", str(port), "--no-worker"]

    def start(public_url: str, log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            process = subprocess.Popen(
                [*command, "--log-level", "warning"],
                cwd=tmp_path,
                env={**env, "PASSHOUSE_PUBLIC_URL": public_url},
                stdout=out,
                stderr=out,
            )
        wait_for_health(base, process)
        return process

    def stop(process: subprocess.Popen[bytes]) -> None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()

    first_server = start(base, tmp_path / "first.log")
    try:
        token = (tmp_path / "data" / "admin_token").read_text().strip()
        issued = httpx.post(
            f"{base}/api/v1/passes",
            headers={"Authorization": f"Bearer {token}"},
            json={"template": devmode.DEMO_TEMPLATE, "data": {"name": "Ada", "balance": 1}},
            timeout=30,
        ).json()
        path = f"{base}/passkit/v1/passes/{issued['pass_type_id']}/{issued['serial_number']}"
        shared = httpx.get(issued["urls"]["pkpass"], headers={"Authorization": f"Bearer {token}"})
        device_token = issuing.pass_json_of(shared.content)["authenticationToken"]
        auth = {"Authorization": f"ApplePass {device_token}"}
        first = httpx.get(path, headers=auth, timeout=30)
    finally:
        stop(first_server)
    moved_server = start(f"http://localhost:{port}", tmp_path / "moved.log")
    try:
        again = httpx.get(
            path, headers={**auth, "If-Modified-Since": first.headers["last-modified"]}, timeout=30
        )
    finally:
        stop(moved_server)
    banner = (tmp_path / "moved.log").read_text()

    assert issuing.pass_json_of(first.content)["webServiceURL"] == f"{base}/passkit"
    assert again.status_code == 200
    assert issuing.pass_json_of(again.content)["webServiceURL"] == (
        f"http://localhost:{port}/passkit"
    )
    assert f"webServiceURL changed: 1 passes of {issued['pass_type_id']}" in banner
