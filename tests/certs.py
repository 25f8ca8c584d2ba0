"""Throwaway certificates for tests: a root, a WWDR-like intermediate and a pass certificate,
written to files so the real `openssl` binary and the CLI can read them."""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from passhouse.pkpass.devcerts import DevCredentials, make_dev_credentials

PASS_TYPE_ID = "pass.test.passhouse"
TEAM_ID = "TESTTEAM42"


@dataclass(frozen=True)
class CertFiles:
    credentials: DevCredentials
    root: Path
    wwdr: Path
    cert: Path
    key: Path

    @property
    def pass_type_id(self) -> str:
        return PASS_TYPE_ID


def write_credentials(
    directory: Path, credentials: DevCredentials | None = None, *, prefix: str = ""
) -> CertFiles:
    credentials = credentials or make_dev_credentials(PASS_TYPE_ID, TEAM_ID)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, data in (
        ("root.pem", credentials.root_cert_pem),
        ("wwdr.pem", credentials.wwdr_cert_pem),
        ("cert.pem", credentials.cert_pem),
        ("key.pem", credentials.key_pem),
    ):
        path = directory / f"{prefix}{name}"
        path.write_bytes(data)
        paths[name] = path
    return CertFiles(
        credentials, paths["root.pem"], paths["wwdr.pem"], paths["cert.pem"], paths["key.pem"]
    )


def encrypted_key_pem(credentials: DevCredentials, password: bytes) -> bytes:
    key = serialization.load_pem_private_key(credentials.key_pem, password=None)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    )


def p12_bytes(credentials: DevCredentials, password: bytes | None) -> bytes:
    """A Keychain-Access-like export: pass certificate, key and the WWDR intermediate."""
    key = serialization.load_pem_private_key(credentials.key_pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    cert = x509.load_pem_x509_certificate(credentials.cert_pem)
    wwdr = x509.load_pem_x509_certificate(credentials.wwdr_cert_pem)
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return pkcs12.serialize_key_and_certificates(b"pass", key, cert, [wwdr], encryption)


def openssl_verify(signature: Path, content: Path, root: Path) -> subprocess.CompletedProcess[str]:
    """Check a detached DER signature the way Apple's tooling would, with the real openssl."""
    return subprocess.run(
        [
            "openssl",
            "smime",
            "-verify",
            "-inform",
            "DER",
            "-binary",
            "-in",
            str(signature),
            "-content",
            str(content),
            "-CAfile",
            str(root),
            "-purpose",
            "any",
            "-out",
            "/dev/null",
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def renewed_certificate(credentials: DevCredentials) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) of a renewal: a new key and serial from the same WWDR."""
    old = x509.load_pem_x509_certificate(credentials.cert_pem)
    wwdr_key = serialization.load_pem_private_key(credentials.wwdr_key_pem, password=None)
    assert isinstance(wwdr_key, rsa.RSAPrivateKey)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    builder = (
        x509.CertificateBuilder()
        .subject_name(old.subject)
        .issuer_name(old.issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(old.not_valid_before_utc)
        .not_valid_after(old.not_valid_after_utc)
    )
    for extension in old.extensions:
        builder = builder.add_extension(extension.value, extension.critical)
    cert = builder.sign(wwdr_key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


@dataclass(frozen=True)
class SignedDataFacts:
    """What a detached CMS SignedData says, read with asn1crypto (not our own DER reader)."""

    digest_algorithms: list[str]  # of the SignedData and of each signer
    signature_algorithms: list[str]
    certificate_sha256: set[str]  # fingerprints of the certificates it carries
    signer_issuer_serial: list[tuple[bytes, int]]
    message_digest: bytes | None
    has_signing_time: bool
    detached: bool


def signed_data_facts(signature: bytes) -> SignedDataFacts:
    content_info = cms.ContentInfo.load(signature)
    assert content_info["content_type"].native == "signed_data"
    signed = content_info["content"]
    signers = list(signed["signer_infos"])
    digests = [a["algorithm"].native for a in signed["digest_algorithms"]]
    digests += [s["digest_algorithm"]["algorithm"].native for s in signers]
    attributes = {a["type"].native: a["values"] for a in signers[0]["signed_attrs"]}
    issuer_serial = []
    for signer in signers:
        sid = signer["sid"].chosen
        issuer_serial.append((sid["issuer"].dump(), int(sid["serial_number"].native)))
    return SignedDataFacts(
        digest_algorithms=digests,
        signature_algorithms=[s["signature_algorithm"]["algorithm"].native for s in signers],
        certificate_sha256={
            hashlib.sha256(c.chosen.dump()).hexdigest() for c in signed["certificates"]
        },
        signer_issuer_serial=issuer_serial,
        message_digest=attributes["message_digest"][0].native
        if "message_digest" in attributes
        else None,
        has_signing_time="signing_time" in attributes,
        detached=signed["encap_content_info"]["content"].native is None,
    )


def sha256_fingerprint(cert_pem: bytes) -> str:
    cert = x509.load_pem_x509_certificate(cert_pem)
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def issuer_serial(cert_pem: bytes) -> tuple[bytes, int]:
    cert = x509.load_pem_x509_certificate(cert_pem)
    return cert.issuer.public_bytes(), cert.serial_number
