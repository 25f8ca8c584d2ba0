from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from certs import (
    CertFiles,
    encrypted_key_pem,
    issuer_serial,
    openssl_verify,
    p12_bytes,
    sha256_fingerprint,
    signed_data_facts,
)
from passhouse.pkpass.devcerts import make_dev_credentials
from passhouse.pkpass.errors import CertificateError
from passhouse.pkpass.signing import PassSigner

MANIFEST = b'{"icon.png":"0123","pass.json":"4567"}\n'


def test_openssl_accepts_the_signature(
    signer: PassSigner, cert_files: CertFiles, tmp_path: Path
) -> None:
    (tmp_path / "manifest.json").write_bytes(MANIFEST)
    (tmp_path / "signature").write_bytes(signer.sign(MANIFEST))

    result = openssl_verify(tmp_path / "signature", tmp_path / "manifest.json", cert_files.root)

    assert result.returncode == 0, result.stderr


def test_openssl_rejects_a_changed_manifest(
    signer: PassSigner, cert_files: CertFiles, tmp_path: Path
) -> None:
    (tmp_path / "manifest.json").write_bytes(MANIFEST.replace(b"0123", b"9999"))
    (tmp_path / "signature").write_bytes(signer.sign(MANIFEST))

    result = openssl_verify(tmp_path / "signature", tmp_path / "manifest.json", cert_files.root)

    assert result.returncode != 0


def test_signature_is_sha256_detached_with_signing_time_and_wwdr(
    signer: PassSigner, cert_files: CertFiles
) -> None:
    credentials = cert_files.credentials

    facts = signed_data_facts(signer.sign(MANIFEST))

    assert facts.digest_algorithms == ["sha256", "sha256"]
    assert facts.signature_algorithms[0] in ("rsassa_pkcs1v15", "sha256_rsa")
    assert facts.message_digest == hashlib.sha256(MANIFEST).digest()
    assert facts.has_signing_time
    assert facts.detached
    assert facts.certificate_sha256 == {
        sha256_fingerprint(credentials.cert_pem),
        sha256_fingerprint(credentials.wwdr_cert_pem),
    }
    assert facts.signer_issuer_serial == [issuer_serial(credentials.cert_pem)]


def test_signer_exposes_identity(signer: PassSigner) -> None:
    assert (signer.pass_type_id, signer.team_id) == ("pass.test.passhouse", "TESTTEAM42")
    assert signer.not_after.tzinfo is not None


def test_encrypted_pem_key_needs_its_password(cert_files: CertFiles) -> None:
    credentials = cert_files.credentials
    key = encrypted_key_pem(credentials, b"s3cret")

    signer = PassSigner.from_pem(
        credentials.cert_pem, key, credentials.wwdr_cert_pem, password=b"s3cret"
    )

    assert signer.pass_type_id == "pass.test.passhouse"
    with pytest.raises(CertificateError, match="password is wrong"):
        PassSigner.from_pem(credentials.cert_pem, key, password=b"wrong")
    with pytest.raises(CertificateError, match="encrypted: give its password"):
        PassSigner.from_pem(credentials.cert_pem, key)


def test_p12_loads_with_its_chain(cert_files: CertFiles, tmp_path: Path) -> None:
    data = p12_bytes(cert_files.credentials, b"pw")

    signer = PassSigner.from_p12(data, b"pw")
    (tmp_path / "m").write_bytes(MANIFEST)
    (tmp_path / "s").write_bytes(signer.sign(MANIFEST))

    assert len(signer.wwdr) == 1
    assert openssl_verify(tmp_path / "s", tmp_path / "m", cert_files.root).returncode == 0


def test_p12_with_wrong_password_says_so(cert_files: CertFiles) -> None:
    data = p12_bytes(cert_files.credentials, b"pw")

    with pytest.raises(CertificateError, match="password is wrong"):
        PassSigner.from_p12(data, b"nope")


def test_key_of_another_certificate_is_refused(cert_files: CertFiles) -> None:
    credentials = cert_files.credentials

    with pytest.raises(CertificateError, match="does not match the certificate"):
        PassSigner.from_pem(credentials.cert_pem, credentials.wwdr_key_pem)


def test_expired_certificate_is_refused() -> None:
    expired = make_dev_credentials(valid_days=-1)

    with pytest.raises(CertificateError, match="expired on"):
        PassSigner.from_pem(expired.cert_pem, expired.key_pem, expired.wwdr_cert_pem)


def test_certificate_without_pass_type_id_is_refused(cert_files: CertFiles) -> None:
    credentials = cert_files.credentials

    with pytest.raises(CertificateError, match="not a Pass Type ID certificate"):
        PassSigner.from_pem(credentials.root_cert_pem, credentials.root_key_pem)


def test_garbage_certificate_is_refused(cert_files: CertFiles) -> None:
    with pytest.raises(CertificateError, match="could not be read"):
        PassSigner.from_pem(b"not a certificate", cert_files.credentials.key_pem)
