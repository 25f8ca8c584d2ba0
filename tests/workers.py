"""`passhouse worker` as a separate process, for the tests that kill one mid-job."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from conftest import SECRET_KEY


def worker_env(database_url: str, **settings: str) -> dict[str, str]:
    """This process's environment without its PASSHOUSE_ settings, plus the database, the
    test secret key, dev mode off and `settings` (PASSHOUSE_... names)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PASSHOUSE_")}
    env.update(
        PASSHOUSE_DATABASE_URL=database_url,
        PASSHOUSE_SECRET_KEY=SECRET_KEY,
        PASSHOUSE_DEV_MODE="false",
        **settings,
    )
    return env


async def start_worker(env: dict[str, str], cwd: Path, name: str) -> asyncio.subprocess.Process:
    """A worker logging to cwd/<name>.log."""
    with (cwd / f"{name}.log").open("ab") as log:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "passhouse", "worker", env=env, cwd=cwd, stdout=log, stderr=log
        )
