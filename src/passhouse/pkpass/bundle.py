"""Building, bundling and verifying .pkpass files (apple-wallet.md §3.1, §3.7, §3.8)."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any

from cryptography import x509

from passhouse.pkpass.archive import MemberCache, manifest_and_members, prepare, write_zip
from passhouse.pkpass.certs import (
    is_issued_by,
    load_certificates,
    pass_type_id_of,
    team_id_of,
    wwdr_generation,
)
from passhouse.pkpass.cms import CmsError, check_detached_signature
from passhouse.pkpass.errors import CertificateError, InvalidPass, PkpassError
from passhouse.pkpass.images import check_images
from passhouse.pkpass.json_input import MAX_DEPTH_CAP, parse_json
from passhouse.pkpass.pass_json import STYLE_KEYS, validate_pass_json, validate_personalization
from passhouse.pkpass.report import Report
from passhouse.pkpass.signing import PassSigner
from passhouse.pkpass.strings import is_utf16, read_strings
from passhouse.pkpass.template import check_localizations

PKPASS_MEDIA_TYPE = "application/vnd.apple.pkpass"
PKPASSES_MEDIA_TYPE = "application/vnd.apple.pkpasses"
MAX_PASSES_PER_BUNDLE = 10
MAX_BUNDLE_BYTES = 150 * 1024 * 1024
# A pass we render nests a data value (at most the cap) inside pass.json (at most the cap).
_VERIFY_DEPTH = 2 * MAX_DEPTH_CAP
_RESERVED = {"pass.json", "manifest.json", "signature"}
_MEMBERS = MemberCache()
# Asset checks of recent templates; a key holds names and 24-byte headers only.
_ASSET_PROBLEMS: dict[tuple[tuple[str, bytes], ...], list[str]] = {}
_ASSET_PROBLEMS_KEPT = 256


def build_pkpass(
    pass_json: Mapping[str, Any], assets: Mapping[str, bytes], signer: PassSigner
) -> bytes:
    """Validate, then zip pass.json, its assets and a signed manifest into a .pkpass.

    Raises InvalidPass listing every hard error (pass.json rules, icon, PNGs, certificate
    mismatch); warnings do not stop the build.
    """
    problems = _build_problems(pass_json, assets, signer)
    if problems:
        raise InvalidPass(problems)

    files: dict[str, bytes] = {}
    for name, data in assets.items():
        # Apple asks for UTF-16 pass.strings; templates may well have been saved as UTF-8.
        if name.endswith(".lproj/pass.strings") and not is_utf16(data):
            data = read_strings(data).utf16
        files[name] = data
    # pass.json differs from pass to pass: keeping it would only push assets out.
    digests, members = manifest_and_members(
        files, _MEMBERS, fresh={"pass.json": _to_json(pass_json)}
    )
    manifest = _to_json(digests)
    members += (prepare("manifest.json", manifest), prepare("signature", signer.sign(manifest)))
    members.sort(key=lambda member: member.name)
    return write_zip(members)


def build_pkpasses(pkpasses: Sequence[bytes]) -> bytes:
    """Bundle up to 10 signed passes into one .pkpasses file (application/vnd.apple.pkpasses)."""
    if not pkpasses:
        raise PkpassError("A .pkpasses bundle needs at least one pass.")
    if len(pkpasses) > MAX_PASSES_PER_BUNDLE:
        raise PkpassError(
            f"A .pkpasses bundle holds at most {MAX_PASSES_PER_BUNDLE} passes; "
            f"got {len(pkpasses)}: split them into several bundles."
        )
    if sum(len(data) for data in pkpasses) > MAX_BUNDLE_BYTES:
        raise PkpassError("A .pkpasses bundle may not exceed 150 MB: split it.")
    for index, data in enumerate(pkpasses, start=1):
        if not zipfile.is_zipfile(io.BytesIO(data)):
            raise PkpassError(f"Pass {index} of the bundle is not a .pkpass (zip) file.")
    # Passes are already compressed zips; storing avoids recompressing them for nothing.
    return write_zip(
        [prepare(f"pass{index:02d}.pkpass", data) for index, data in enumerate(pkpasses, 1)]
    )


def _build_problems(
    pass_json: Mapping[str, Any], assets: Mapping[str, bytes], signer: PassSigner
) -> list[str]:
    problems = list(validate_pass_json(pass_json).errors)
    problems.extend(_asset_problems(assets))
    problems.extend(_identity_problems(pass_json, signer.pass_type_id, signer.team_id))
    return problems


def _asset_problems(assets: Mapping[str, bytes]) -> list[str]:
    """File names and images: the same for every pass of a template, so worked out once
    per set of names and PNG headers (all that check_images reads)."""
    key = tuple(
        (name, data[:24] if name.lower().endswith(".png") else b"")
        for name, data in sorted(assets.items())
    )
    found = _ASSET_PROBLEMS.get(key)
    if found is None:
        found = []
        for name in assets:
            parts = PurePosixPath(name).parts
            if name in _RESERVED:
                found.append(f"{name}: reserved name; pass.json is given separately")
            elif name.startswith("/") or ".." in parts or "\\" in name or len(parts) > 2:
                found.append(f"{name}: not a valid file name inside a pass")
            elif len(parts) == 2 and not parts[0].endswith(".lproj"):
                found.append(f"{name}: only <language>.lproj/ folders are allowed")
        found.extend(check_images(dict(assets), None).errors)
        if len(_ASSET_PROBLEMS) >= _ASSET_PROBLEMS_KEPT:
            _ASSET_PROBLEMS.clear()
        _ASSET_PROBLEMS[key] = found
    return found


def _identity_problems(
    pass_json: Mapping[str, Any], pass_type_id: str | None, team_id: str | None
) -> list[str]:
    problems = []
    declared_type = pass_json.get("passTypeIdentifier")
    if isinstance(declared_type, str) and declared_type != pass_type_id:
        problems.append(
            f'passTypeIdentifier: "{declared_type}" does not match the certificate\'s pass '
            f'type id "{pass_type_id}"'
        )
    declared_team = pass_json.get("teamIdentifier")
    if isinstance(declared_team, str) and declared_team != team_id:
        problems.append(
            f'teamIdentifier: "{declared_team}" does not match the certificate\'s team id '
            f'"{team_id}"'
        )
    return problems


def _to_json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _sha1(data: bytes) -> str:
    # Apple fixes the manifest format; SHA-1 here is not a security choice.
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()


def verify_pkpass(
    data: bytes, *, ca_pem: bytes | None = None, now: dt.datetime | None = None
) -> Report:
    """Check a .pkpass from anywhere; every problem is reported, not only the first."""
    report = Report()
    errors, warnings = report.errors, report.warnings
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError):
        errors.append("file: not a zip archive, so not a .pkpass (is the download truncated?)")
        return report

    files: dict[str, bytes] = {}
    with archive:
        if sum(info.file_size for info in archive.infolist()) > MAX_BUNDLE_BYTES:
            errors.append("file: unpacks to more than 150 MB; not checked further")
            return report
        names = [info.filename for info in archive.infolist()]
        for duplicate in sorted({name for name in names if names.count(name) > 1}):
            errors.append(f"{duplicate}: appears more than once in the zip")
        for info in archive.infolist():
            if info.is_dir():
                continue
            try:
                files[info.filename] = archive.read(info)
            except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError):
                errors.append(f"{info.filename}: damaged in the zip (CRC or data error)")
    _check_layout(files, report)

    manifest = _check_manifest(files, report)
    pass_json: Any = None
    if "pass.json" in files:
        try:
            pass_json = parse_json(files["pass.json"].decode("utf-8-sig"), max_depth=_VERIFY_DEPTH)
        except ValueError as error:
            errors.append(f"pass.json: not valid JSON ({error})")
        else:
            pass_report = validate_pass_json(pass_json)
            report.extend(pass_report)
    style = None
    if isinstance(pass_json, dict):
        styles = [key for key in STYLE_KEYS if key in pass_json]
        style = styles[0] if len(styles) == 1 else None
    report.extend(check_images(files, style))
    localizations = check_localizations(files)
    warnings.extend(localizations.errors + localizations.warnings)
    if "personalization.json" in files:
        _check_personalization(files["personalization.json"], pass_json, report)

    if manifest is not None and "signature" in files:
        _check_signature(files["signature"], files["manifest.json"], pass_json, ca_pem, now, report)
    return report


def _check_layout(files: Mapping[str, bytes], report: Report) -> None:
    for required in ("pass.json", "manifest.json", "signature"):
        if required not in files:
            report.errors.append(f"{required}: missing from the pass")
    for name in sorted(files):
        parts = PurePosixPath(name).parts
        if any(part.startswith(".") or part == "__MACOSX" for part in parts):
            report.errors.append(f"{name}: not part of the pass format; leave it out of the zip")
        elif len(parts) > 2 or (len(parts) == 2 and not parts[0].endswith(".lproj")):
            report.errors.append(
                f"{name}: files must be at the top level or in a <language>.lproj/ folder "
                "(was the folder zipped instead of its contents?)"
            )


def _check_manifest(files: Mapping[str, bytes], report: Report) -> dict[str, Any] | None:
    raw = files.get("manifest.json")
    if raw is None:
        return None
    try:
        manifest = parse_json(raw, max_depth=_VERIFY_DEPTH)
    except ValueError as error:
        report.errors.append(f"manifest.json: not valid JSON ({error})")
        return None
    if not isinstance(manifest, dict):
        report.errors.append("manifest.json: must be a JSON object of file name to SHA-1")
        return None
    for name in sorted(set(files) - {"manifest.json", "signature"}):
        expected = manifest.get(name)
        if expected is None:
            report.errors.append(f"{name}: not listed in manifest.json")
        elif not isinstance(expected, str) or expected.lower() != _sha1(files[name]):
            report.errors.append(
                f"{name}: its SHA-1 does not match manifest.json (changed after signing)"
            )
    for name in sorted(set(manifest) - set(files)):
        report.errors.append(f"{name}: listed in manifest.json but missing from the pass")
    return manifest


def _check_personalization(raw: bytes, pass_json: Any, report: Report) -> None:
    try:
        data = parse_json(raw, max_depth=_VERIFY_DEPTH)
    except ValueError as error:
        report.errors.append(f"personalization.json: not valid JSON ({error})")
        return
    report.errors.extend(validate_personalization(data))
    if isinstance(pass_json, dict) and "nfc" not in pass_json:
        report.warnings.append(
            "personalization.json: Wallet only offers sign-up on NFC passes (pass.json has no nfc)"
        )


def _check_signature(
    signature: bytes,
    manifest: bytes,
    pass_json: Any,
    ca_pem: bytes | None,
    now: dt.datetime | None,
    report: Report,
) -> None:
    errors, warnings = report.errors, report.warnings
    try:
        check = check_detached_signature(signature, manifest)
    except (CmsError, IndexError, ValueError, UnicodeDecodeError) as error:
        errors.append(f"signature: not a readable detached PKCS#7 signature ({error})")
        return
    errors.extend(f"signature: {problem}" for problem in check.problems)
    if check.digest_name == "sha1":
        warnings.append("signature: uses SHA-1; current implementations sign with SHA-256")
    signer = check.signer
    if signer is None:
        return

    if isinstance(pass_json, dict):
        mismatches = _identity_problems(pass_json, pass_type_id_of(signer), team_id_of(signer))
        errors.extend(f"signature: {problem}" for problem in mismatches)
    moment = now or dt.datetime.now(dt.UTC)
    if moment > signer.not_valid_after_utc:
        errors.append(
            f"signature: the pass type certificate expired on "
            f"{signer.not_valid_after_utc:%Y-%m-%d}; Wallet will not add this pass"
        )
    if check.signing_time is not None and not (
        signer.not_valid_before_utc <= check.signing_time <= signer.not_valid_after_utc
    ):
        errors.append("signature: signed at a time the certificate was not valid")

    others = [cert for cert in check.certificates if cert != signer]
    wwdr = next((cert for cert in others if is_issued_by(signer, cert)), None)
    if wwdr is None:
        errors.append(
            "signature: the WWDR intermediate certificate is not included; Wallet cannot "
            "verify the chain (sign with --wwdr)"
        )
        return
    generation = wwdr_generation(wwdr)
    if generation is None:
        warnings.append("signature: the intermediate certificate is not an Apple WWDR certificate")
    elif generation != "G4":
        warnings.append(f"signature: the intermediate is WWDR {generation}; G4 is expected")
    if ca_pem is None:
        if not _is_apple(wwdr):
            warnings.append(
                "signature: the chain is not Apple's; the pass will not install on an iPhone "
                "(give --ca to check it against your own root)"
            )
        return
    try:
        roots = load_certificates(ca_pem, "root certificate")
    except CertificateError as error:
        errors.append(f"--ca: {error.message}")
        return
    if not any(is_issued_by(wwdr, root) for root in roots):
        errors.append("signature: the WWDR certificate was not issued by the given root (--ca)")


def _is_apple(cert: x509.Certificate) -> bool:
    organizations = cert.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)
    return any(str(attribute.value) == "Apple Inc." for attribute in organizations)
