from __future__ import annotations

import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certs import CertFiles
from passhouse.pkpass.certs import PASS_TYPE_ID_OID, inspect_certificate, pass_type_id_of
from passhouse.pkpass.devcerts import issue_server_certificate


def test_pass_certificate_is_shaped_like_apples(cert_files: CertFiles) -> None:
    cert = x509.load_pem_x509_certificate(cert_files.credentials.cert_pem)

    subject = {attribute.oid: attribute.value for attribute in cert.subject}

    assert subject[NameOID.USER_ID] == "pass.test.passhouse"
    assert subject[NameOID.COMMON_NAME] == "Pass Type ID: pass.test.passhouse"
    assert subject[NameOID.ORGANIZATIONAL_UNIT_NAME] == "TESTTEAM42"
    assert cert.extensions.get_extension_for_oid(PASS_TYPE_ID_OID).value is not None
    assert pass_type_id_of(cert) == "pass.test.passhouse"
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in usage


def test_wwdr_intermediate_is_marked_as_dev(cert_files: CertFiles) -> None:
    info = inspect_certificate(cert_files.credentials.wwdr_cert_pem)

    assert "Apple Worldwide Developer Relations" in info.subject
    assert "O=passhouse dev" in info.subject


def test_openssl_verifies_the_chain(cert_files: CertFiles) -> None:
    result = subprocess.run(
        [
            "openssl",
            "verify",
            "-CAfile",
            str(cert_files.root),
            "-untrusted",
            str(cert_files.wwdr),
            str(cert_files.cert),
        ],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stderr


def test_server_certificate_names_localhost(cert_files: CertFiles, tmp_path: Path) -> None:
    credentials = cert_files.credentials

    cert_pem, key_pem = issue_server_certificate(
        credentials.root_cert_pem, credentials.root_key_pem
    )

    cert = x509.load_pem_x509_certificate(cert_pem)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    (tmp_path / "server.pem").write_bytes(cert_pem)
    result = subprocess.run(
        ["openssl", "verify", "-CAfile", str(cert_files.root), str(tmp_path / "server.pem")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
