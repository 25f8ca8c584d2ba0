from __future__ import annotations

import importlib.metadata
import json
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from certs import CertFiles, encrypted_key_pem, p12_bytes, write_credentials
from passhouse import devmode
from passhouse.cli import main
from passhouse.examples import TEMPLATES as EXAMPLE_TEMPLATES
from passhouse.pkpass.devcerts import make_dev_credentials

TEMPLATES = EXAMPLE_TEMPLATES
STORE_CARD_DATA = {"serial": "CLI-1", "points": 10, "balance": 2.5, "name": "Ada"}


@pytest.fixture(scope="module")
def cert_files(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    return write_credentials(tmp_path_factory.mktemp("cli-certs"))


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback here is a bug: user errors must be messages
    return result.exit_code, result.stdout, result.stderr


def signing_args(files: CertFiles) -> list[str]:
    return ["--cert", str(files.cert), "--key", str(files.key), "--wwdr", str(files.wwdr)]


def test_help_lists_the_commands() -> None:
    assert "pkpass" in run("--help")[1]
    assert "verify" in run("pkpass", "--help")[1]
    assert "--p12" in run("certs", "check", "--help")[1]


def test_build_then_verify(cert_files: CertFiles, tmp_path: Path) -> None:
    data = tmp_path / "data.json"
    data.write_text(json.dumps(STORE_CARD_DATA))
    output = tmp_path / "card.pkpass"

    code, out, _ = run(
        "pkpass", "build", str(TEMPLATES / "storeCard"), "--data", str(data),
        *signing_args(cert_files), "-o", str(output),
    )  # fmt: skip
    verify_code, verify_out, _ = run("pkpass", "verify", str(output), "--ca", str(cert_files.root))

    assert (code, verify_code) == (0, 0), out
    assert "valid pass" in verify_out


def test_build_a_bundle_from_a_list_of_records(cert_files: CertFiles, tmp_path: Path) -> None:
    records = [{**STORE_CARD_DATA, "serial": f"S{index}"} for index in range(3)]
    data = tmp_path / "data.json"
    data.write_text(json.dumps(records))
    output = tmp_path / "cards.pkpasses"

    code, out, _ = run(
        "pkpass", "build", str(TEMPLATES / "storeCard"), "--data", str(data),
        *signing_args(cert_files), "-o", str(output),
    )  # fmt: skip

    assert code == 0, out
    with zipfile.ZipFile(output) as archive:
        assert len(archive.namelist()) == 3


def test_signing_and_bundling_show_progress_on_stderr_only(
    cert_files: CertFiles, tmp_path: Path
) -> None:
    records = [{**STORE_CARD_DATA, "serial": f"S{index}"} for index in range(3)]
    data = tmp_path / "data.json"
    data.write_text(json.dumps(records))
    singles = []
    for index in range(2):
        singles.append(tmp_path / f"{index}.pkpass")
        run(
            "pkpass", "build", str(TEMPLATES / "storeCard"), "--set", f"serial=B{index}",
            "--set", "points=1", "--set", "balance=1", "--set", "name=Ada",
            *signing_args(cert_files), "-o", str(singles[-1]),
        )  # fmt: skip

    _, built_out, built_err = run(
        "pkpass", "build", str(TEMPLATES / "storeCard"), "--data", str(data),
        *signing_args(cert_files), "-o", str(tmp_path / "cards.pkpasses"),
    )  # fmt: skip
    code, bundled_out, bundled_err = run(
        "pkpass", "bundle", *map(str, singles), "-o", str(tmp_path / "two.pkpasses")
    )

    assert code == 0
    assert "signing passes" in built_err
    assert built_out == f"wrote {tmp_path / 'cards.pkpasses'} (3 passes)\n"
    assert "reading passes" in bundled_err
    assert bundled_out == f"wrote {tmp_path / 'two.pkpasses'} (2 passes)\n"


def test_version_is_the_installed_package_version() -> None:
    code, out, _ = run("--version")

    assert code == 0
    assert out == f"passhouse, version {importlib.metadata.version('passhouse')}\n"


def test_missing_placeholder_is_one_sentence_and_exit_1(
    cert_files: CertFiles, tmp_path: Path
) -> None:
    code, _, err = run(
        "pkpass", "build", str(TEMPLATES / "storeCard"), "--set", "serial=1",
        *signing_args(cert_files), "-o", str(tmp_path / "x.pkpass"),
    )  # fmt: skip

    assert code == 1
    assert 'Template "storeCard" needs a value for {{balance}}, {{name}}, {{points}}' in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ('{"name": ' * 990 + "1" + "}" * 990, "the limit is 32"),
        ('{"n": ' + "9" * 5_000 + "}", "100 digits"),
    ],
    ids=["nested 990 deep", "a 5,000-digit integer"],
)
def test_hostile_data_for_build_is_one_sentence_and_exit_1(
    cert_files: CertFiles, tmp_path: Path, data: str, needle: str
) -> None:
    path = tmp_path / "data.json"
    path.write_text(data)

    code, _, err = run(
        "pkpass", "build", str(TEMPLATES / "storeCard"), "--data", str(path),
        *signing_args(cert_files), "-o", str(tmp_path / "x.pkpass"),
    )  # fmt: skip

    assert code == 1
    assert needle in err
    assert "Traceback" not in err


def test_pass_type_mismatch_is_reported(tmp_path: Path) -> None:
    other = write_credentials(tmp_path, make_dev_credentials("pass.other.id", "TESTTEAM42"))
    data = tmp_path / "data.json"
    data.write_text(json.dumps(STORE_CARD_DATA))

    code, _, err = run(
        "pkpass", "build", str(TEMPLATES / "storeCard"), "--data", str(data),
        *signing_args(other), "-o", str(tmp_path / "x.pkpass"),
    )  # fmt: skip

    assert code == 1
    assert 'does not match the certificate\'s pass type id "pass.other.id"' in err


def test_verify_lists_problems_and_fails(tmp_path: Path) -> None:
    broken = tmp_path / "broken.pkpass"
    broken.write_bytes(b"not a zip")

    code, out, err = run("pkpass", "verify", str(broken))

    assert code == 1
    assert "error: file: not a zip archive" in out
    assert "is not a valid pass (1 error(s))" in err


def test_template_check_lists_placeholders() -> None:
    code, out, _ = run("pkpass", "check", str(TEMPLATES / "boardingPass"))

    assert code == 0
    assert "placeholders: boarding, from, from_city, gate" in out


def test_certs_check_prints_identity(cert_files: CertFiles) -> None:
    code, out, _ = run("certs", "check", *signing_args(cert_files), "--ca", str(cert_files.root))

    assert code == 0, out
    assert "pass type id:   pass.test.passhouse" in out
    assert "team id:        TESTTEAM42" in out
    assert "key matches:    yes" in out
    assert "chain verifies: yes" in out
    assert "WWDR:           G4 (G4 expected)" in out


def test_certs_check_with_p12(cert_files: CertFiles, tmp_path: Path) -> None:
    p12 = tmp_path / "cert.p12"
    p12.write_bytes(p12_bytes(cert_files.credentials, b"pw"))

    good = run("certs", "check", "--p12", str(p12), "--password", "pw")
    wrong = run("certs", "check", "--p12", str(p12), "--password", "nope")

    assert good[0] == 0, good[1]
    assert wrong[0] == 1
    assert "the password is wrong" in wrong[2]


def test_certs_check_reports_expired_and_mismatched(cert_files: CertFiles, tmp_path: Path) -> None:
    expired = write_credentials(tmp_path, make_dev_credentials(valid_days=-1))

    code, out, _ = run(
        "certs", "check", "--cert", str(expired.cert), "--key", str(cert_files.key),
        "--wwdr", str(expired.wwdr),
    )  # fmt: skip

    assert code == 1
    assert "error: The certificate expired on" in out
    assert "error: The private key does not match the certificate" in out


def test_encrypted_key_needs_password(cert_files: CertFiles, tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_bytes(encrypted_key_pem(cert_files.credentials, b"pw"))

    code, out, _ = run("certs", "check", "--cert", str(cert_files.cert), "--key", str(key))

    assert code == 1
    assert "The private key is encrypted: give its password (--password)." in out


def test_certs_dev_writes_usable_files(tmp_path: Path) -> None:
    code, _, _ = run("certs", "dev", str(tmp_path / "dev"))
    check = run(
        "certs", "check", "--cert", str(tmp_path / "dev/cert.pem"),
        "--key", str(tmp_path / "dev/key.pem"), "--wwdr", str(tmp_path / "dev/wwdr.pem"),
    )  # fmt: skip

    assert (code, check[0]) == (0, 0)


def readme_template(folder: Path) -> Path:
    """A template as the README describes it: no identity keys, the server sets those."""
    folder.mkdir()
    pass_json = {
        **devmode.DEMO_PASS_JSON,
        "barcodes": [{"format": "PKBarcodeFormatQR", "message": "{{member.id}}",
                      "messageEncoding": "iso-8859-1"}],
    }  # fmt: skip
    (folder / "pass.json").write_text(json.dumps(pass_json))
    for name, data in devmode.demo_assets().items():
        (folder / name).write_bytes(data)
    return folder


def test_build_fills_identity_from_the_certificate_and_the_serial(
    cert_files: CertFiles, tmp_path: Path
) -> None:
    template = readme_template(tmp_path / "card")
    given, generated = tmp_path / "given.pkpass", tmp_path / "generated.pkpass"
    values = ["--set", "name=Ada", "--set", "balance=1", "--set", "member.id=M-7"]

    code, out, _ = run("pkpass", "build", str(template), *values, "--serial", "S-1",
                       *signing_args(cert_files), "-o", str(given))  # fmt: skip
    code_generated, out_generated, _ = run(
        "pkpass", "build", str(template), *values, *signing_args(cert_files), "-o", str(generated)
    )
    verify_code, verify_out, _ = run("pkpass", "verify", str(given), "--ca", str(cert_files.root))

    assert (code, code_generated, verify_code) == (0, 0, 0), (out, out_generated, verify_out)
    given_json = json.loads(zipfile.ZipFile(given).read("pass.json"))
    generated_json = json.loads(zipfile.ZipFile(generated).read("pass.json"))
    assert given_json["passTypeIdentifier"] == cert_files.pass_type_id
    assert given_json["teamIdentifier"] == "TESTTEAM42"
    assert given_json["serialNumber"] == "S-1"
    assert given_json["barcodes"][0]["message"] == "M-7"  # --set member.id=... is nested
    assert len(generated_json["serialNumber"]) == 16
    assert f"generated serial numbers: {generated_json['serialNumber']}" in out_generated
