from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from certs import CertFiles, openssl_verify
from passhouse.pkpass.bundle import build_pkpass, build_pkpasses, verify_pkpass
from passhouse.pkpass.devcerts import make_dev_credentials
from passhouse.pkpass.errors import InvalidPass, PkpassError
from passhouse.pkpass.signing import PassSigner
from passhouse.pkpass.strings import parse_strings
from passhouse.pkpass.template import Template

from .conftest import SAMPLE_DATA, STYLES, TEMPLATES
from .pngs import minimal_assets

OVERRIDES = {
    "webServiceURL": "https://passes.example.com/",
    "authenticationToken": "0123456789abcdef0123",
}


def golden_pass(style: str, signer: PassSigner) -> bytes:
    template = Template.from_directory(TEMPLATES / style)
    pass_json, assets = template.render(SAMPLE_DATA[style], overrides=OVERRIDES)
    return build_pkpass(pass_json, assets, signer)


def unzip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def rezip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def sign_files(files: dict[str, bytes], signer: PassSigner) -> dict[str, bytes]:
    """Re-manifest and re-sign, to test what verify says about content that is signed."""
    content = {k: v for k, v in files.items() if k not in ("manifest.json", "signature")}
    manifest = json.dumps(
        {name: hashlib.sha1(data).hexdigest() for name, data in content.items()}  # noqa: S324
    ).encode()
    return {**content, "manifest.json": manifest, "signature": signer.sign(manifest)}


@pytest.mark.parametrize("style", STYLES)
def test_golden_pass_verifies_with_openssl_and_verify_pkpass(
    style: str, signer: PassSigner, cert_files: CertFiles, tmp_path: Path
) -> None:
    data = golden_pass(style, signer)

    files = unzip(data)
    (tmp_path / "manifest.json").write_bytes(files["manifest.json"])
    (tmp_path / "signature").write_bytes(files["signature"])
    result = openssl_verify(tmp_path / "signature", tmp_path / "manifest.json", cert_files.root)
    report = verify_pkpass(data, ca_pem=cert_files.credentials.root_cert_pem)

    assert result.returncode == 0, result.stderr
    assert report.errors == []
    assert report.warnings == []
    assert json.loads(files["pass.json"])["serialNumber"] == SAMPLE_DATA[style]["serial"]


def test_manifest_lists_every_file_with_its_sha1(signer: PassSigner) -> None:
    files = unzip(golden_pass("storeCard", signer))

    manifest = json.loads(files["manifest.json"])

    assert set(manifest) == set(files) - {"manifest.json", "signature"}
    assert "de.lproj/pass.strings" in manifest
    for name, digest in manifest.items():
        assert hashlib.sha1(files[name]).hexdigest() == digest  # noqa: S324


def test_pass_strings_are_utf16_in_the_pass(signer: PassSigner) -> None:
    # The storeCard template's de.lproj/pass.strings is saved as UTF-8 on purpose.
    files = unzip(golden_pass("storeCard", signer))

    assert files["de.lproj/pass.strings"][:2] == b"\xff\xfe"
    assert parse_strings(files["de.lproj/pass.strings"])["EXPIRES"] == "Gültig bis"


def test_same_content_gives_same_zip_apart_from_signature(signer: PassSigner) -> None:
    first, second = golden_pass("coupon", signer), golden_pass("coupon", signer)

    first_files, second_files = unzip(first), unzip(second)
    first_files.pop("signature")
    second_files.pop("signature")

    assert first_files == second_files
    with zipfile.ZipFile(io.BytesIO(first)) as archive:
        infos = archive.infolist()
    assert [info.filename for info in infos] == sorted(info.filename for info in infos)
    assert {info.date_time for info in infos} == {(1980, 1, 1, 0, 0, 0)}
    methods = {info.filename: info.compress_type for info in infos}
    assert methods["icon.png"] == zipfile.ZIP_STORED
    assert methods["pass.json"] == zipfile.ZIP_DEFLATED


def test_invalid_pass_lists_every_hard_error(signer: PassSigner) -> None:
    pass_json: dict[str, Any] = {
        "formatVersion": 1,
        "passTypeIdentifier": "pass.other.id",
        "serialNumber": "1",
        "teamIdentifier": "OTHERTEAM",
        "organizationName": "x",
        "description": "x",
        "generic": {"primaryFields": [{"key": "a", "value": 1}, {"key": "a", "value": 2}]},
    }

    with pytest.raises(InvalidPass) as caught:
        build_pkpass(pass_json, {"logo.png": b"nope"}, signer)

    assert caught.value.problems == [
        'generic.primaryFields[1].key: duplicate key "a"',
        "icon.png: required; Wallet shows it in notifications and on the lock screen "
        "(add a 29 x 29 px icon.png, plus icon@2x.png and icon@3x.png)",
        "logo.png: is not a PNG file (wrong signature)",
        'passTypeIdentifier: "pass.other.id" does not match the certificate\'s pass type id '
        '"pass.test.passhouse"',
        'teamIdentifier: "OTHERTEAM" does not match the certificate\'s team id "TESTTEAM42"',
    ]
    assert caught.value.message.startswith("The pass is not valid (5 problem(s)):")


def test_pkpasses_bundles_up_to_ten(signer: PassSigner) -> None:
    one = golden_pass("generic", signer)

    bundle = build_pkpasses([one, one])

    assert sorted(unzip(bundle)) == ["pass01.pkpass", "pass02.pkpass"]
    with pytest.raises(PkpassError, match="at most 10 passes"):
        build_pkpasses([one] * 11)
    with pytest.raises(PkpassError, match=r"not a \.pkpass"):
        build_pkpasses([b"hello"])


def test_verify_finds_a_file_changed_after_signing(signer: PassSigner) -> None:
    files = unzip(golden_pass("generic", signer))
    files["pass.json"] = files["pass.json"].replace(b"Gold", b"Platinum")

    report = verify_pkpass(rezip(files))

    assert "pass.json: its SHA-1 does not match manifest.json (changed after signing)" in (
        report.errors
    )


def test_verify_finds_a_changed_manifest(signer: PassSigner) -> None:
    files = unzip(golden_pass("generic", signer))
    files["manifest.json"] = files["manifest.json"].replace(b"{", b'{"extra.png":"00",', 1)

    report = verify_pkpass(rezip(files))

    assert "extra.png: listed in manifest.json but missing from the pass" in report.errors
    assert any("the manifest changed after signing" in error for error in report.errors)


def test_verify_lists_every_problem(signer: PassSigner) -> None:
    files = unzip(golden_pass("storeCard", signer))
    del files["icon.png"]
    files["logo.png"] = b"not a png"
    files[".DS_Store"] = b""
    files["pass.json"] = b'{"formatVersion": 2}'

    report = verify_pkpass(rezip(files))

    errors = "\n".join(report.errors)
    for expected in (
        "icon.png: listed in manifest.json but missing",
        "icon.png: required",
        "logo.png: is not a PNG file",
        ".DS_Store: not part of the pass format",
        ".DS_Store: not listed in manifest.json",
        "formatVersion: input should be 1",
        "serialNumber: required key is missing",
        "pass.json: its SHA-1 does not match",
    ):
        assert expected in errors


def test_verify_reports_a_corrupt_zip() -> None:
    report = verify_pkpass(b"PK\x03\x04garbage")

    assert report.errors == [
        "file: not a zip archive, so not a .pkpass (is the download truncated?)"
    ]


def test_verify_reports_bad_pass_json(signer: PassSigner) -> None:
    files = sign_files({"pass.json": b"{not json", **minimal_assets()}, signer)

    report = verify_pkpass(rezip(files))

    assert len(report.errors) == 1
    assert report.errors[0].startswith("pass.json: not valid JSON")


def test_verify_requires_wwdr_in_the_signature(cert_files: CertFiles) -> None:
    credentials = cert_files.credentials
    no_wwdr = PassSigner.from_pem(credentials.cert_pem, credentials.key_pem)

    report = verify_pkpass(golden_pass("generic", no_wwdr))

    assert any("WWDR intermediate certificate is not included" in e for e in report.errors)


def test_verify_checks_signer_matches_pass_json(signer: PassSigner) -> None:
    files = unzip(golden_pass("generic", signer))
    pass_json = json.loads(files["pass.json"])
    pass_json["passTypeIdentifier"] = "pass.someone.else"
    files["pass.json"] = json.dumps(pass_json).encode()

    report = verify_pkpass(rezip(sign_files(files, signer)))

    assert report.errors == [
        'signature: passTypeIdentifier: "pass.someone.else" does not match the certificate\'s '
        'pass type id "pass.test.passhouse"'
    ]


def test_verify_checks_the_root_when_given(signer: PassSigner) -> None:
    other_root = make_dev_credentials().root_cert_pem

    report = verify_pkpass(golden_pass("generic", signer), ca_pem=other_root)

    assert report.errors == [
        "signature: the WWDR certificate was not issued by the given root (--ca)"
    ]


def test_verify_reports_a_garbled_signature(signer: PassSigner) -> None:
    files = unzip(golden_pass("generic", signer))
    files["signature"] = b"\x30\x03\x02\x01\x01"

    report = verify_pkpass(rezip(files))

    assert len(report.errors) == 1
    assert report.errors[0].startswith("signature: not a readable detached PKCS#7 signature")


def test_verify_reports_missing_required_files() -> None:
    report = verify_pkpass(rezip({"pass.json": b"{}"}))

    assert "manifest.json: missing from the pass" in report.errors
    assert "signature: missing from the pass" in report.errors


def test_verify_checks_web_service_pair(signer: PassSigner) -> None:
    template = Template.from_directory(TEMPLATES / "generic")
    pass_json, assets = template.render(SAMPLE_DATA["generic"])
    pass_json["webServiceURL"] = "https://passes.example.com/"
    files = unzip(build_pkpass({**pass_json, **OVERRIDES}, assets, signer))
    stripped = json.loads(files["pass.json"])
    del stripped["authenticationToken"]
    files["pass.json"] = json.dumps(stripped).encode()

    report = verify_pkpass(rezip(sign_files(files, signer)))

    assert report.errors == ["webServiceURL: authenticationToken is required with webServiceURL"]


def test_verify_reports_json_nested_past_any_limit_without_recursing(
    signer: PassSigner,
) -> None:
    files = unzip(golden_pass("storeCard", signer))
    files["pass.json"] = b'{"a": ' * 5_000 + b"1" + b"}" * 5_000

    report = verify_pkpass(rezip(files))

    assert any("pass.json: not valid JSON" in e and "levels deep" in e for e in report.errors)
