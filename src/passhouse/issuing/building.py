"""Building the signed file: PassBuilder (render, sign, the byte-budget caches), build
keys, and republishing passes built for another key.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from passhouse.errors import Conflict, InvalidInput, NotFound
from passhouse.issuing.common import _template_or_404, expiry_of, now_ms, now_seconds
from passhouse.metrics import PASSES_SIGNED
from passhouse.pkpass.bundle import build_pkpass
from passhouse.pkpass.errors import PkpassError
from passhouse.pkpass.pass_json import validate_pass_json
from passhouse.pkpass.signing import PassSigner
from passhouse.pkpass.template import Template
from passhouse.storage import pass_types, pass_versions, passes, push_jobs, templates
from passhouse.storage.database import Database
from passhouse.storage.faults import database_fault
from passhouse.storage.pass_versions import Change
from passhouse.storage.sealing import Sealer

log = structlog.get_logger("passhouse.issuing")


def pass_json_of(pkpass: bytes) -> dict[str, Any]:
    """pass.json of a built .pkpass (for pages that show its description)."""
    with zipfile.ZipFile(io.BytesIO(pkpass)) as archive:
        loaded: dict[str, Any] = json.loads(archive.read("pass.json"))
    return loaded


async def republish_for_build_key(conn: AsyncConnection, key: str) -> dict[str, int]:
    """New versions for passes whose current signed file was built for another key.

    Run when a server starts: after PASSHOUSE_PUBLIC_URL changed, a device holding the old
    file would otherwise get a 304 for ever, and changed-serials would not list the pass.
    The new version moves Last-Modified forward and queues a push, so a device that still
    reaches the server (an old address kept during a move) fetches the file with the new
    webServiceURL. Returns pass type -> passes changed (ADR 0012).
    """
    counts = await passes.count_built_for_another_key(conn, key)
    now = now_seconds()
    for pass_type_id in counts:
        # Queued before the bump: afterwards the versions no longer match the cached files.
        await push_jobs.enqueue_for_built_for_another_key(conn, pass_type_id, key, now_ms=now_ms())
        version = await pass_types.next_version(conn, pass_type_id)
        await passes.bump_built_for_another_key(
            conn,
            pass_type_id,
            key,
            version=version,
            now=now,
            change=Change("republished", pass_versions.SYSTEM),
        )
    return counts


@dataclass(slots=True)
class _ByteBudgetCache:
    """LRU of values up to a total size in bytes."""

    budget: int
    _items: OrderedDict[Any, tuple[Any, int]] = field(default_factory=OrderedDict)
    _size: int = 0

    def get(self, key: Any) -> Any:
        item = self._items.get(key)
        if item is None:
            return None
        self._items.move_to_end(key)
        return item[0]

    def put(self, key: Any, value: Any, size: int) -> None:
        if size > self.budget:
            return
        old = self._items.pop(key, None)
        if old is not None:
            self._size -= old[1]
        self._items[key] = (value, size)
        self._size += size
        while self._size > self.budget:
            _, (_, evicted) = self._items.popitem(last=False)
            self._size -= evicted

    def discard_where(self, predicate: Any) -> None:
        for key in [k for k in self._items if predicate(k)]:
            self._size -= self._items.pop(key)[1]


def build_key(web_service_url: str) -> str:
    """A value naming everything that goes into a signed file besides the pass's version.

    The version covers the pass's data, template and certificate; the webServiceURL comes
    from the server's settings, so a server moved to another address must not serve (or
    answer 304 for) files built for the old one (ADR 0012).
    """
    inputs = json.dumps({"webServiceURL": web_service_url}, sort_keys=True)
    return hashlib.sha256(inputs.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class RenderChecked:
    """What a bulk job needs of one pass's render: why it would be invalid (None: it is
    valid), and its expires_at as issue_pass and change_pass_data record it."""

    problem: str | None
    expires_at: int | None = None


RenderCheck = Callable[..., RenderChecked]


def _render_data(
    data: Mapping[str, Any], personalization: Mapping[str, Any] | None
) -> dict[str, Any]:
    """What a pass's placeholders are filled from: its data, and what the holder gave when
    personalizing it (as `personalization`, unless the data has that key)."""
    render_data = dict(data)
    if personalization:
        render_data.setdefault("personalization", dict(personalization))
    return render_data


async def _keep_signed_file(
    database: Database, pass_id: int, version: int, build_key: str, data: bytes
) -> None:
    """Store a freshly signed file for every process, when the database lets us.

    The file is already signed and correct: a write lock held by another process (SQLite)
    or a database fault must not turn the device's download into a 503. The next download
    signs it again, or finds it stored by then.
    """
    try:
        await database.hot.store_pkpass(pass_id, version, build_key, data)
    except Exception as error:
        fault = database_fault(error)
        if fault is None:
            raise
        log.warning("signed_file_not_stored", pass_id=pass_id, version=version, fault=fault.value)


class PassBuilder:
    """Renders and signs passes, caching templates, signers and signed bytes in memory.

    A .pkpass is signed once per (pass, version, build key): the bytes go to the
    pkpass_cache table (shared by every server process) and to an in-process LRU for the
    hot path.
    """

    def __init__(
        self, sealer: Sealer, web_service_url: str, *, cache_bytes: int = 256 * 1024 * 1024
    ) -> None:
        self._sealer = sealer
        self._web_service_url = web_service_url
        self.build_key = build_key(web_service_url)
        self._files = _ByteBudgetCache(cache_bytes)
        self._templates = _ByteBudgetCache(64 * 1024 * 1024)
        self._signers: dict[str, tuple[tuple[str, str | None, bytes], PassSigner]] = {}
        self._building: dict[tuple[int, int], asyncio.Future[tuple[bytes, int]]] = {}

    def cached_pkpass(self, pass_id: int, version: int) -> bytes | None:
        data: bytes | None = self._files.get((pass_id, version, self.build_key))
        return data

    async def pkpass(self, database: Database, pass_id: int, version: int) -> tuple[bytes, int]:
        """Signed bytes of a pass at `version` or newer, and the version they are of."""
        data = self.cached_pkpass(pass_id, version)
        if data is not None:
            return data, version
        # Single flight: concurrent downloads of one uncached version sign it once.
        key = (pass_id, version)
        pending = self._building.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[tuple[bytes, int]] = asyncio.get_running_loop().create_future()
        self._building[key] = future
        try:
            result = await self._load_or_build(database, pass_id, version)
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # retrieved here, so a lone caller does not leave it unread
            raise
        else:
            future.set_result(result)
            return result
        finally:
            del self._building[key]

    async def _load_or_build(
        self, database: Database, pass_id: int, version: int
    ) -> tuple[bytes, int]:
        # The pass, its credentials and any signed file in one round trip on the driver
        # (SQLAlchemy's async layer cost more than the signature: see docs/benchmarks.md).
        for _ in range(3):
            found = await database.hot.build_inputs(pass_id, self.build_key)
            if found is None:
                raise NotFound("The pass no longer exists.")
            key = (found.id, found.version, self.build_key)
            if found.cached is not None:
                self._files.put(key, found.cached, len(found.cached))
                return found.cached, found.version
            template = self._templates.get((found.template_id, found.template_revision))
            if template is None:
                async with database.reader() as conn:
                    template_row = await _template_or_404(conn, found.template_id)
                    if template_row.revision != found.template_revision:
                        continue  # edited meanwhile: the pass has a newer version now
                    template = await self.template(conn, template_row)
            stored = (found.certificate_pem, found.wwdr_pem, found.private_key_encrypted)
            signer = self._signer_for(found.pass_type_id, stored)
            pass_json, assets = self._render_with(
                template,
                found.pass_type_id,
                found.team_id,
                serial_number=found.serial_number,
                token=found.authentication_token,
                data=found.data,
                personalization=found.personalization,
                voided=found.voided,
                retired=found.retired,
            )
            PASSES_SIGNED.inc()
            # Built outside any transaction: signing must not hold SQLite's write lock.
            data = build_pkpass(pass_json, assets, signer)
            await _keep_signed_file(database, found.id, found.version, self.build_key, data)
            self._files.put(key, data, len(data))
            return data, found.version
        raise Conflict("The pass's template keeps changing; try again.")

    async def build(self, conn: AsyncConnection, row: sa.Row[Any]) -> bytes:
        pass_json, assets = await self._render_row(conn, row)
        signer = await self.signer(conn, row.pass_type_id)
        PASSES_SIGNED.inc()
        return build_pkpass(pass_json, assets, signer)

    async def rendered_expiries(
        self, conn: AsyncConnection, rows: list[sa.Row[Any]]
    ) -> dict[int, int | None]:
        """Each pass's rendered expirationDate (by pass id), from that one field: a template
        change makes the workers read it for every pass, so the rest is not rendered. None:
        no date, or the pass data lacks a value the date needs."""
        found: dict[int, int | None] = {}
        designs: dict[int, Template] = {}
        for row in rows:
            template = designs.get(row.template_id)
            if template is None:
                template_row = await _template_or_404(conn, row.template_id)
                template = designs[row.template_id] = await self.template(conn, template_row)
            try:
                value = template.render_key(
                    "expirationDate", _render_data(row.data, row.personalization)
                )
            except PkpassError:
                found[row.id] = None
            else:
                found[row.id] = expiry_of({"expirationDate": value})
        return found

    async def _render_row(
        self, conn: AsyncConnection, row: sa.Row[Any]
    ) -> tuple[dict[str, Any], dict[str, bytes]]:
        template_row = await _template_or_404(conn, row.template_id)
        return await self._render(
            conn,
            template_row,
            serial_number=row.serial_number,
            token=row.authentication_token,
            data=row.data,
            personalization=row.personalization,
            voided=row.voided,
            retired=row.retired_at is not None,
        )

    async def check_renders(
        self,
        conn: AsyncConnection,
        template_row: sa.Row[Any],
        *,
        serial_number: str,
        token: str,
        data: Mapping[str, Any],
        personalization: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Refuse data that would make an invalid pass, before anything is saved; returns
        the rendered pass.json."""
        pass_json, _ = await self._render(
            conn,
            template_row,
            serial_number=serial_number,
            token=token,
            data=data,
            personalization=personalization,
            voided=False,
        )
        report = validate_pass_json(pass_json)
        if report.errors:
            raise InvalidInput("The pass would be invalid: " + "; ".join(report.errors))
        return pass_json

    async def _render(
        self,
        conn: AsyncConnection,
        template_row: sa.Row[Any],
        *,
        serial_number: str,
        token: str,
        data: Mapping[str, Any],
        personalization: Mapping[str, Any] | None,
        voided: bool,
        retired: bool = False,
    ) -> tuple[dict[str, Any], dict[str, bytes]]:
        template = await self.template(conn, template_row)
        team_id = await pass_types.team_id(conn, template_row.pass_type_id)
        return self._render_with(
            template,
            template_row.pass_type_id,
            team_id,
            serial_number=serial_number,
            token=token,
            data=data,
            personalization=personalization,
            voided=voided,
            retired=retired,
        )

    async def render_checker(self, conn: AsyncConnection, template_row: sa.Row[Any]) -> RenderCheck:
        """check_renders for many passes of one template (bulk jobs): the template and team
        are read once, and the returned function (no I/O, safe in a thread) gives the
        reason a pass would be invalid (or None) with its rendered expiry."""
        template = await self.template(conn, template_row)
        team_id = await pass_types.team_id(conn, template_row.pass_type_id)

        def problem(
            serial_number: str,
            token: str,
            data: Mapping[str, Any],
            personalization: Mapping[str, Any] | None = None,
        ) -> RenderChecked:
            try:
                pass_json, _ = self._render_with(
                    template,
                    template_row.pass_type_id,
                    team_id,
                    serial_number=serial_number,
                    token=token,
                    data=data,
                    personalization=personalization,
                    voided=False,
                )
            except InvalidInput as error:
                return RenderChecked(error.message)
            report = validate_pass_json(pass_json)
            if report.errors:
                return RenderChecked("The pass would be invalid: " + "; ".join(report.errors))
            return RenderChecked(None, expiry_of(pass_json))

        return problem

    def _render_with(
        self,
        template: Template,
        pass_type_id: str,
        team_id: str | None,
        *,
        serial_number: str,
        token: str,
        data: Mapping[str, Any],
        personalization: Mapping[str, Any] | None,
        voided: bool,
        retired: bool = False,
    ) -> tuple[dict[str, Any], dict[str, bytes]]:
        overrides: dict[str, Any] = {
            "passTypeIdentifier": pass_type_id,
            "teamIdentifier": team_id,
            "serialNumber": serial_number,
            "authenticationToken": token,
            "webServiceURL": self._web_service_url,
        }
        if voided:
            overrides["voided"] = True
        if retired:
            # Apple's advice for passes the server is done with: a voided pass with neither
            # webServiceURL nor authenticationToken, so Wallet stops asking (ADR 0020).
            overrides.update(voided=True, webServiceURL=None, authenticationToken=None)
        try:
            return template.render(
                _render_data(data, personalization),
                overrides=overrides,
                personalized=bool(personalization),
            )
        except PkpassError as error:
            raise InvalidInput(error.message) from None

    async def template(self, conn: AsyncConnection, template_row: sa.Row[Any]) -> Template:
        key = (template_row.id, template_row.revision)
        cached: Template | None = self._templates.get(key)
        if cached is not None:
            return cached
        assets = await templates.get_assets(conn, template_row.id)
        template = Template(dict(template_row.pass_json), assets, name=template_row.name)
        self._templates.discard_where(lambda k: k[0] == template_row.id)
        self._templates.put(key, template, sum(map(len, assets.values())) + 1024)
        return template

    async def signer(self, conn: AsyncConnection, pass_type_id: str) -> PassSigner:
        row = await pass_types.get_pass_type(conn, pass_type_id)
        if row is None:
            raise NotFound(f"No pass type {pass_type_id!r}.")
        # Keyed by everything the signer is made of: a renewal may change only the WWDR.
        stored = (row.certificate_pem, row.wwdr_pem, bytes(row.private_key_encrypted))
        return self._signer_for(pass_type_id, stored)

    def _signer_for(self, pass_type_id: str, stored: tuple[str, str | None, bytes]) -> PassSigner:
        cached = self._signers.get(pass_type_id)
        if cached is not None and cached[0] == stored:
            return cached[1]
        certificate_pem, wwdr_pem, key_encrypted = stored
        key_pem = self._sealer.open(key_encrypted)
        wwdr = wwdr_pem.encode() if wwdr_pem else None
        signer = PassSigner.from_pem(certificate_pem.encode(), key_pem, wwdr)
        self._signers[pass_type_id] = (stored, signer)
        return signer
