"""Dev mode: with no pass type configured, a throwaway CA, pass certificate and demo template.

Passes signed this way run the whole flow on a laptop but will not install on a real
iPhone; every place that shows them says so.
"""

from __future__ import annotations

import secrets
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncConnection

from passhouse import issuing
from passhouse.pkpass.devcerts import make_dev_credentials
from passhouse.storage import pass_types, pass_versions, templates
from passhouse.storage.sealing import Sealer

DEV_PASS_TYPE_ID = "pass.dev.passhouse"  # noqa: S105 (an identifier, not a secret)
DEV_TEAM_ID = "DEVTEAM123"
DEMO_TEMPLATE = "demo"


@dataclass(frozen=True, slots=True)
class DevSetup:
    pass_type_id: str
    created_pass_type: bool
    created_template: bool


def admin_token(data_dir: Path) -> str:
    """The dev admin token, generated once and kept in the data directory."""
    path = data_dir / "admin_token"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    token = "ph_" + secrets.token_urlsafe(32)
    path.touch(mode=0o600)
    path.write_text(token + "\n")
    return token


def _credentials(data_dir: Path) -> issuing.Credentials:
    folder = data_dir / "dev-certs"
    # The same names as `passhouse certs dev` writes.
    files = {name: folder / f"{name}.pem" for name in ("root", "wwdr", "cert", "key")}
    if not all(path.exists() for path in files.values()):
        made = make_dev_credentials(DEV_PASS_TYPE_ID, DEV_TEAM_ID)
        folder.mkdir(parents=True, exist_ok=True)
        contents = {
            "root": made.root_cert_pem,
            "wwdr": made.wwdr_cert_pem,
            "cert": made.cert_pem,
            "key": made.key_pem,
        }
        for name, path in files.items():
            path.touch(mode=0o600)
            path.write_bytes(contents[name])
    return issuing.Credentials(
        certificate_pem=files["cert"].read_bytes(),
        private_key_pem=files["key"].read_bytes(),
        wwdr_pem=files["wwdr"].read_bytes(),
    )


async def ensure_dev_setup(
    conn: AsyncConnection, sealer: Sealer, data_dir: Path
) -> DevSetup | None:
    """Create the dev pass type and demo template when no pass type exists yet."""
    existing = await pass_types.list_pass_types(conn)
    if existing and not any(row.dev_mode for row in existing):
        return None
    created_pass_type = False
    if not existing:
        await issuing.save_pass_type(
            conn, sealer, _credentials(data_dir), dev_mode=True, actor=pass_versions.SYSTEM
        )
        created_pass_type = True
    created_template = False
    if await templates.get_template(conn, DEMO_TEMPLATE) is None:
        await issuing.create_template(
            conn,
            name=DEMO_TEMPLATE,
            pass_type_id=DEV_PASS_TYPE_ID,
            pass_json=DEMO_PASS_JSON,
            assets=demo_assets(),
        )
        created_template = True
    return DevSetup(DEV_PASS_TYPE_ID, created_pass_type, created_template)


DEMO_PASS_JSON = {
    "formatVersion": 1,
    "organizationName": "passhouse demo café",
    "description": "Demo loyalty card",
    "logoText": "Demo café",
    "foregroundColor": "rgb(255, 255, 255)",
    "backgroundColor": "rgb(60, 65, 76)",
    "labelColor": "rgb(200, 200, 200)",
    "storeCard": {
        "primaryFields": [
            {
                "key": "balance",
                "label": "Balance",
                "value": "{{balance}}",
                "currencyCode": "EUR",
                "changeMessage": "Your balance is now %@",
            }
        ],
        "secondaryFields": [{"key": "member", "label": "Member", "value": "{{name}}"}],
        "backFields": [
            {"key": "note", "label": "About", "value": "Issued by a passhouse dev server."}
        ],
    },
    "barcodes": [
        {"format": "PKBarcodeFormatQR", "message": "{{name}}", "messageEncoding": "iso-8859-1"}
    ],
}


def demo_assets() -> dict[str, bytes]:
    return {
        "icon.png": solid_png(29, 29),
        "icon@2x.png": solid_png(58, 58),
        "icon@3x.png": solid_png(87, 87),
        "logo.png": solid_png(160, 50),
        "logo@2x.png": solid_png(320, 100),
        "logo@3x.png": solid_png(480, 150),
    }


def solid_png(width: int, height: int, rgb: tuple[int, int, int] = (60, 65, 76)) -> bytes:
    """A one-colour PNG, enough for a demo icon without an imaging library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height, 9))
        + chunk(b"IEND", b"")
    )
