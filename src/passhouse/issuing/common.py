"""What every use case shares: values JSON and the database can hold, the clock, the
template lookup. Imports nothing else from the package.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from passhouse.errors import InvalidInput, NotFound
from passhouse.pkpass.json_input import MAX_DEPTH_CAP, MAX_NUMBER_DIGITS
from passhouse.storage import templates

# Keys the server owns in every pass.json: identity and the web service pair.
SERVER_KEYS = (
    "passTypeIdentifier",
    "teamIdentifier",
    "serialNumber",
    "authenticationToken",
    "webServiceURL",
)
MAX_SERIAL_LENGTH = 128


def storable_problem(value: Any, where: str, *, _depth: int = 0) -> str | None:
    """What neither JSON nor the database can hold in `value`, naming where it is; or None.

    Python's JSON reader accepts NaN, Infinity and unpaired surrogates; PostgreSQL text
    cannot hold NUL. Left in, they would fail on save or in every later download. Depth
    and number sizes are bounded by the cap no door's parser may exceed, so whatever is
    stored can always be read back and rendered.
    """
    if isinstance(value, str):
        if "\x00" in value:
            return f"{where} contains a NUL character"
        try:
            value.encode()
        except UnicodeEncodeError:
            return f"{where} contains an unpaired surrogate"
    elif isinstance(value, float):
        if not math.isfinite(value):
            return f"{where} is NaN or Infinity, not a finite number"
    elif isinstance(value, int):
        if abs(value) >= _TOO_MANY_DIGITS:
            return f"{where} is a number of more than {MAX_NUMBER_DIGITS} digits"
    elif isinstance(value, dict | list):
        if _depth >= MAX_DEPTH_CAP:
            return f"{where} is nested more than {MAX_DEPTH_CAP} levels deep"
        if isinstance(value, dict):
            for key, item in value.items():
                problem = storable_problem(key, where) or storable_problem(
                    item, f"{where}.{key}", _depth=_depth + 1
                )
                if problem:
                    return problem
        for index, item in enumerate(value if isinstance(value, list) else ()):
            problem = storable_problem(item, f"{where}[{index}]", _depth=_depth + 1)
            if problem:
                return problem
    return None


_TOO_MANY_DIGITS = 10**MAX_NUMBER_DIGITS


def _require_storable(value: Any, what: str) -> None:
    problem = storable_problem(value, what)
    if problem:
        raise InvalidInput(problem + ".")


def now_seconds() -> int:
    return int(time.time())


def now_ms() -> int:
    return int(time.time() * 1000)


def iso_time(seconds: int) -> str:
    """Unix seconds as the ISO 8601 UTC text the API shows (2026-11-22T14:00:00Z)."""
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat().replace("+00:00", "Z")


async def _template_or_404(conn: AsyncConnection, ref: str | int) -> sa.Row[Any]:
    row = await templates.get_template(conn, ref)
    if row is None:
        raise NotFound(f"No template {ref!r}.")
    return row
