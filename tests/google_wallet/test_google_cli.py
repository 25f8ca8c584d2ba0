"""`passhouse google-issuer add|list|remove` against the fake Google."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from conftest import SECRET_KEY
from google_wallet.keys import CLIENT_EMAIL, ISSUER_ID
from passhouse.settings import Settings
from passhouse.storage.database import Database


async def _cli(settings: Settings, database_url: str, *args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PASSHOUSE_")}
    env.update(
        PASSHOUSE_DATABASE_URL=database_url,
        PASSHOUSE_SECRET_KEY=SECRET_KEY,
        PASSHOUSE_DEV_MODE="false",
        PASSHOUSE_GOOGLE_API_URL=settings.google_api_url,
        PASSHOUSE_GOOGLE_CA_FILE=str(settings.google_ca_file),
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "passhouse",
        "google-issuer",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_add_list_remove(
    settings: Settings,
    database: Database,  # an empty database (PostgreSQL: truncated)
    database_url: str,
    service_account: dict[str, Any],
    tmp_path: Path,
) -> None:
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps(service_account))
    code, out, err = await _cli(
        settings, database_url, "add", "--issuer-id", ISSUER_ID, "--service-account", str(key_file)
    )
    assert code == 0, err
    assert f"connected Google issuer {ISSUER_ID} as {CLIENT_EMAIL}" in out
    code, out, _ = await _cli(settings, database_url, "list", "--json")
    assert code == 0
    assert [item["issuer_id"] for item in json.loads(out)] == [ISSUER_ID]
    code, out, _ = await _cli(settings, database_url, "remove", ISSUER_ID)
    assert code == 0
    code, out, _ = await _cli(settings, database_url, "list")
    assert "no Google issuers" in out


async def test_a_bad_key_file_is_one_line(
    settings: Settings,
    database: Database,  # an empty database (PostgreSQL: truncated)
    database_url: str,
    service_account: dict[str, Any],
    tmp_path: Path,
) -> None:
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps({**service_account, "private_key": "garbage"}))
    code, _, err = await _cli(
        settings, database_url, "add", "--issuer-id", ISSUER_ID, "--service-account", str(key_file)
    )
    assert code == 1
    assert err.strip().splitlines()[-1].startswith("Error: The key file's private_key")
