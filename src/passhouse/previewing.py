"""Use cases for pass previews: a template draft rendered without saving, an existing pass
drawn from the very file its devices get, and what saving a template would touch.

Nothing here writes: every function runs in a read transaction of the caller's.
"""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from passhouse import issuing
from passhouse.errors import InvalidInput, NotFound
from passhouse.pkpass.errors import PkpassError
from passhouse.pkpass.json_input import DEFAULT_MAX_DEPTH
from passhouse.pkpass.pass_json import validate_pass_json
from passhouse.pkpass.template import Template, set_data_path
from passhouse.preview import render_preview
from passhouse.preview.render import LANGUAGES
from passhouse.storage import pass_types, templates
from passhouse.storage.database import Database

# What a draft's pass.json gets for the keys the server sets on every real pass.
PREVIEW_SERIAL = "preview"
# Never valid: no pass has it (random tokens are 32 characters of base64url).
PREVIEW_TOKEN = "preview-token-not-a-real-one"  # noqa: S105
PREVIEW_TEAM = "TEAMID0000"


@dataclass(frozen=True, slots=True)
class PreviewResult:
    html: str
    pass_json: dict[str, Any]
    style: str | None
    errors: list[dict[str, str]]
    warnings: list[dict[str, str]]
    placeholders: list[str]
    missing_data: list[str]
    language: str

    def view(self) -> dict[str, Any]:
        return {
            "html": self.html,
            "pass_json": self.pass_json,
            "style": self.style,
            "errors": self.errors,
            "warnings": self.warnings,
            "placeholders": self.placeholders,
            "missing_data": self.missing_data,
            "language": self.language,
        }


def located(message: str) -> dict[str, str]:
    """A validator message ("key.path: what is wrong") as {path, message}."""
    path, separator, rest = message.partition(": ")
    if not separator or " " in path.strip():
        return {"path": "", "message": message}
    return {"path": path, "message": rest}


def _unique(messages: list[str]) -> list[dict[str, str]]:
    return [located(message) for message in dict.fromkeys(messages)]


def _language(language: str | None) -> str:
    return language if language in LANGUAGES else "en"


async def preview_draft(
    conn: AsyncConnection,
    *,
    pass_json: Mapping[str, Any],
    assets: Mapping[str, bytes],
    data: Mapping[str, Any],
    template_ref: str | None = None,
    pass_type_id: str | None = None,
    remove_assets: list[str] | tuple[str, ...] = (),
    language: str | None = None,
    web_service_url: str,
    max_json_depth: int = DEFAULT_MAX_DEPTH,
) -> PreviewResult:
    """A template draft filled with sample data, drawn, and checked as the server would check
    it on save and on issue; nothing is stored. With `template_ref` the draft starts from
    that template's stored files (`assets` add or replace, `remove_assets` take away)."""
    for value, where in ((pass_json, "pass_json"), (data, "data")):
        problem = issuing.storable_problem(value, where)
        if problem:
            raise InvalidInput(problem + ".")
    files: dict[str, bytes] = {}
    if template_ref is not None:
        row = await issuing.get_template_or_404(conn, template_ref)
        files = await templates.get_assets(conn, row.id)
        pass_type_id = pass_type_id or row.pass_type_id
    for name in remove_assets:
        files.pop(name, None)
    files.update(assets)
    team_id = PREVIEW_TEAM
    if pass_type_id is not None:
        row_type = await pass_types.get_pass_type(conn, pass_type_id)
        if row_type is None:
            raise NotFound(f"No pass type {pass_type_id!r}.")
        team_id = row_type.team_id
    overrides = {
        "passTypeIdentifier": pass_type_id or str(pass_json.get("passTypeIdentifier", "")),
        "teamIdentifier": team_id,
        "serialNumber": PREVIEW_SERIAL,
        "authenticationToken": PREVIEW_TOKEN,
        "webServiceURL": web_service_url,
    }
    return await asyncio.to_thread(
        _draft, dict(pass_json), files, dict(data), overrides, _language(language), max_json_depth
    )


def _draft(
    pass_json: dict[str, Any],
    files: dict[str, bytes],
    data: dict[str, Any],
    overrides: dict[str, Any],
    language: str,
    max_json_depth: int,
) -> PreviewResult:
    template = Template(pass_json, files, name="draft")
    errors: list[str] = []
    warnings: list[str] = []
    for name in files:
        if name in ("pass.json", "manifest.json", "signature") or name.startswith("/"):
            errors.append(f"{name}: this file name is reserved for the pass itself")
    report = template.check(max_json_depth=max_json_depth)
    errors.extend(report.errors)
    warnings.extend(report.warnings)
    placeholders = sorted(template.placeholders())
    # A placeholder the sample does not fill is shown as itself, so the draft still draws.
    filled = json.loads(json.dumps(data))
    missing = []
    for name in placeholders:
        found, _ = _lookup(filled, name)
        if not found:
            missing.append(name)
            set_data_path(filled, name, "{{" + name + "}}")
    try:
        rendered, rendered_files = template.render(filled, overrides=overrides)
    except PkpassError as error:
        errors.append(error.message)
        rendered, rendered_files = dict(pass_json), files
    if missing:
        names = ", ".join(missing)
        errors.append(f"data: the sample has no value for {names}; every pass will need one")
    checked = validate_pass_json(rendered)
    errors.extend(checked.errors)
    warnings.extend(checked.warnings)
    preview = render_preview(rendered, rendered_files, language=language)
    warnings.extend(f"preview: {problem}" for problem in preview.problems)
    return PreviewResult(
        html=preview.document(title="Pass preview", language=language),
        pass_json=rendered,
        style=preview.style,
        errors=_unique(errors),
        warnings=_unique(warnings),
        placeholders=placeholders,
        missing_data=missing,
        language=language,
    )


def _lookup(data: Mapping[str, Any], name: str) -> tuple[bool, Any]:
    current: Any = data
    for part in name.split("."):
        if isinstance(current, Mapping) and part in current:
            current = current[part]
        else:
            return (True, data[name]) if name in data else (False, None)
    return True, current


def signed_files(pkpass: bytes) -> tuple[dict[str, Any], dict[str, bytes]]:
    """pass.json and the other files of a signed .pkpass, as a device unpacks them."""
    with zipfile.ZipFile(io.BytesIO(pkpass)) as archive:
        files = {
            info.filename: archive.read(info)
            for info in archive.infolist()
            if not info.is_dir() and info.filename not in ("manifest.json", "signature")
        }
    pass_json: dict[str, Any] = json.loads(files.pop("pass.json"))
    return pass_json, files


async def preview_pass(
    database: Database,
    builder: issuing.PassBuilder,
    pass_row: sa.Row[Any],
    *,
    language: str | None = None,
) -> PreviewResult:
    """The preview of a pass drawn from its current signed file: exactly what Wallet gets."""
    pkpass, _ = await builder.pkpass(database, pass_row.id, pass_row.version)
    pass_json, files = signed_files(pkpass)
    language = _language(language)
    preview = await asyncio.to_thread(render_preview, pass_json, files, language=language)
    checked = validate_pass_json(pass_json)
    return PreviewResult(
        html=preview.document(title=str(pass_json.get("description", "Pass")), language=language),
        pass_json=_without_secrets(pass_json),
        style=preview.style,
        errors=_unique(checked.errors),
        warnings=_unique(checked.warnings + [f"preview: {p}" for p in preview.problems]),
        placeholders=[],
        missing_data=[],
        language=language,
    )


def _without_secrets(pass_json: dict[str, Any]) -> dict[str, Any]:
    # The token is in every copy of the pass; the API still shows it only where it must.
    return {key: value for key, value in pass_json.items() if key != "authenticationToken"}


async def template_impact(conn: AsyncConnection, ref: str) -> dict[str, Any]:
    """What saving a new version of a template touches: its passes, and the devices (and
    registrations) that will be woken to fetch them."""
    row = await issuing.get_template_or_404(conn, ref)
    reach = await templates.count_reach(conn, row.id)
    return {
        "template": row.name,
        "revision": row.revision,
        "passes": await templates.count_passes(conn, row.id),
        **reach,
    }


async def pass_row_or_404(conn: AsyncConnection, pass_type_id: str, serial: str) -> sa.Row[Any]:
    return await issuing.get_pass_or_404(conn, pass_type_id, serial)


def checked_language(value: str | None) -> str | None:
    if value is not None and value not in LANGUAGES:
        raise InvalidInput(f"language must be one of {', '.join(LANGUAGES)}.")
    return value


async def template_files(conn: AsyncConnection, ref: str) -> dict[str, bytes]:
    """A template's stored files (everything but pass.json)."""
    row = await issuing.get_template_or_404(conn, ref)
    return await templates.get_assets(conn, row.id)
