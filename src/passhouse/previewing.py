"""Use cases for pass previews: a template draft rendered without saving, an existing pass
drawn from the very file its devices get, and what saving a template would touch.

Nothing here writes: every function runs in a read transaction of the caller's.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import html
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
from passhouse.google.render import (
    GoogleConfig,
    GoogleConfigError,
    object_inputs,
    parse_config,
    render_class,
    render_object,
)
from passhouse.issuing import google_wallet
from passhouse.pkpass.errors import PkpassError
from passhouse.pkpass.json_input import DEFAULT_MAX_DEPTH
from passhouse.pkpass.pass_json import validate_pass_json
from passhouse.pkpass.template import Template, set_data_path
from passhouse.preview import render_preview
from passhouse.preview.google import render_google_card
from passhouse.preview.render import LANGUAGES
from passhouse.storage import google_wallet as google_store
from passhouse.storage import pass_types, templates
from passhouse.storage.database import Database

# What a draft's pass.json gets for the keys the server sets on every real pass.
PREVIEW_SERIAL = "preview"
# Never valid: no pass has it (random tokens are 32 characters of base64url).
PREVIEW_TOKEN = "preview-token-not-a-real-one"  # noqa: S105
PREVIEW_TEAM = "TEAMID0000"


@dataclass(frozen=True, slots=True)
class GoogleCard:
    """The Google Wallet card of a pass or draft, and the class and object it is drawn from:
    the JSON passhouse sends to Google for it."""

    html: str
    type: str
    state: str
    google_class: dict[str, Any]
    google_object: dict[str, Any]
    errors: list[dict[str, str]]
    warnings: list[dict[str, str]]
    fragment: str = ""  # the card alone (for a page that embeds it), with `css`
    css: str = ""

    def view(self) -> dict[str, Any]:
        return {
            "html": self.html,
            "type": self.type,
            "state": self.state,
            "class": self.google_class,
            "object": self.google_object,
            "errors": self.errors,
            "warnings": self.warnings,
        }


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
    google: GoogleCard | None = None

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
            "google": None if self.google is None else self.google.view(),
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
    google: Mapping[str, Any] | None = None,
    public_url: str = "",
) -> PreviewResult:
    """A template draft filled with sample data, drawn, and checked as the server would check
    it on save and on issue; nothing is stored. With `template_ref` the draft starts from
    that template's stored files (`assets` add or replace, `remove_assets` take away).

    The Google card is drawn from `google` (a template's `google` section), else from the
    stored section of `template_ref` when that template is opted in."""
    for value, where in ((pass_json, "pass_json"), (data, "data"), (google or {}, "google")):
        problem = issuing.storable_problem(value, where)
        if problem:
            raise InvalidInput(problem + ".")
    files: dict[str, bytes] = {}
    template_id = 0  # a draft of no template: its class id says so
    if template_ref is not None:
        row = await issuing.get_template_or_404(conn, template_ref)
        files = await templates.get_assets(conn, row.id)
        pass_type_id = pass_type_id or row.pass_type_id
        template_id = row.id
        if google is None:
            stored = await google_store.get_template_config(conn, row.id)
            google = None if stored is None else stored.config
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
    google_draft = None if google is None else _GoogleDraft(dict(google), template_id, public_url)
    return await asyncio.to_thread(
        _draft,
        dict(pass_json),
        files,
        dict(data),
        overrides,
        _language(language),
        max_json_depth,
        google_draft,
    )


@dataclass(frozen=True, slots=True)
class _GoogleDraft:
    section: dict[str, Any]
    template_id: int
    public_url: str


def _draft(
    pass_json: dict[str, Any],
    files: dict[str, bytes],
    data: dict[str, Any],
    overrides: dict[str, Any],
    language: str,
    max_json_depth: int,
    google: _GoogleDraft | None = None,
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
    card = None
    if google is not None:
        # The images save_template would store for Google, at the URLs it would give them.
        images = google_wallet._best_images(files)
        card = google_card(
            google.section,
            pass_json,
            Template(pass_json, {}, name="draft"),  # as the sync builds it: no files
            filled,
            None,
            images,
            template_id=google.template_id,
            pass_type_id=str(overrides["passTypeIdentifier"]),
            serial_number=PREVIEW_SERIAL,
            voided=False,
            public_url=google.public_url,
            language=language,
        )
    return PreviewResult(
        html=preview.document(title="Pass preview", language=language),
        pass_json=rendered,
        style=preview.style,
        errors=_unique(errors),
        warnings=_unique(warnings),
        placeholders=placeholders,
        missing_data=missing,
        language=language,
        google=card,
    )


def google_card(
    section: Mapping[str, Any],
    template_pass_json: Mapping[str, Any],
    template: Template,
    data: Mapping[str, Any],
    personalization: Mapping[str, Any] | None,
    images: Mapping[str, bytes],
    *,
    template_id: int,
    pass_type_id: str,
    serial_number: str,
    voided: bool,
    public_url: str,
    language: str,
    now: dt.datetime | None = None,
) -> GoogleCard:
    """The class and object of one pass rendered exactly as the Google sync renders them
    (same functions, same inputs), and the card drawn from them. `images` are the
    template's Google images by name (logo, strip, ...)."""
    now = now or dt.datetime.now(dt.UTC)
    errors: list[str] = []
    warnings: list[str] = []
    try:
        config: GoogleConfig = parse_config(section, template_pass_json)
    except GoogleConfigError as error:
        return _no_card(str(section.get("type", "")), error.problems, language)
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in images.items()}
    urls = google_wallet.image_urls(public_url, digests)
    google_class, class_report = render_class(
        config,
        template_pass_json,
        urls,
        template_id=template_id,
        callback_url=public_url + google_wallet.CALLBACK_PATH,
    )
    errors.extend(class_report.errors)
    warnings.extend(class_report.warnings)
    try:
        apple, filled = object_inputs(template, data, personalization, serial_number=serial_number)
    except PkpassError as error:
        return _no_card(config.type, [*errors, f"google.object: {error.message}"], language)
    google_object, object_report = render_object(
        config,
        apple,
        filled,
        urls,
        template_id=template_id,
        pass_type_id=pass_type_id,
        serial_number=serial_number,
        voided=voided,
        now=now,
    )
    errors.extend(object_report.errors)
    warnings.extend(object_report.warnings)
    by_url = {urls[name]: images[name] for name in urls}
    drawn = render_google_card(
        config.type, google_class, google_object, by_url, language=language, now=now
    )
    warnings.extend(f"google preview: {problem}" for problem in drawn.problems)
    return GoogleCard(
        html=drawn.document(title="Google Wallet card preview", language=language),
        type=config.type,
        state=str(google_object.get("state", "")),
        google_class=google_class,
        google_object=google_object,
        errors=_unique(errors),
        warnings=_unique(warnings),
        fragment=drawn.html,
        css=drawn.css,
    )


def _no_card(google_type: str, problems: list[str], language: str) -> GoogleCard:
    """What is shown when the class or object cannot be rendered: the reason, no card."""
    items = "".join(f"<li>{html.escape(problem)}</li>" for problem in problems)
    page = (
        f'<!doctype html><html lang="{language}"><head><meta charset="utf-8">'
        "<title>Google Wallet card preview</title></head><body>"
        f"<p>No Google Wallet card: the Google section has problems.</p><ul>{items}</ul>"
        "</body></html>"
    )
    return GoogleCard(page, google_type, "", {}, {}, _unique(problems), [])


async def google_card_for_pass(
    conn: AsyncConnection,
    pass_row: sa.Row[Any],
    *,
    public_url: str,
    language: str,
) -> GoogleCard | None:
    """The Google card of an issued pass of an opted-in template (None for others): the
    class and object the sync sends for it now."""
    config_row = await google_store.get_template_config(conn, pass_row.template_id)
    if config_row is None:
        return None
    template_row = await templates.get_template(conn, pass_row.template_id)
    if template_row is None:
        return None
    images: dict[str, bytes] = {}
    for name, digest in dict(config_row.images or {}).items():
        data = await google_store.get_image(conn, digest)
        if data is not None:
            images[name] = data
    template = Template(dict(template_row.pass_json), {}, name=template_row.name)
    return await asyncio.to_thread(
        google_card,
        config_row.config,
        template_row.pass_json,
        template,
        pass_row.data,
        pass_row.personalization,
        images,
        template_id=template_row.id,
        pass_type_id=pass_row.pass_type_id,
        serial_number=pass_row.serial_number,
        voided=bool(pass_row.voided),
        public_url=public_url,
        language=_language(language),
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
    public_url: str | None = None,
) -> PreviewResult:
    """The preview of a pass drawn from its current signed file: exactly what Wallet gets;
    with `public_url`, and the template opted in to Google, its Google card too."""
    pkpass, _ = await builder.pkpass(database, pass_row.id, pass_row.version)
    pass_json, files = signed_files(pkpass)
    language = _language(language)
    card = None
    if public_url is not None:
        async with database.reader() as conn:
            card = await google_card_for_pass(
                conn, pass_row, public_url=public_url, language=language
            )
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
        google=card,
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
