"""Throwaway certificates shaped like Apple's, for dev mode and tests.

Passes signed with these never install on a real iPhone: the root is ours, not Apple's.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from passhouse.pkpass.certs import PASS_TYPE_ID_OID

DEV_ORGANIZATION = "passhouse dev"
WWDR_DEV_COMMON_NAME = "Apple Worldwide Developer Relations CA (passhouse dev)"


@dataclass(frozen=True, slots=True)
class DevCredentials:
    root_cert_pem: bytes
    root_key_pem: bytes
    wwdr_cert_pem: bytes
    wwdr_key_pem: bytes
    cert_pem: bytes
    key_pem: bytes


def _new_key() -> rsa.RSAPrivateKey:
    # RSA 2048 like Apple's own certificates, so signing speed measured here is realistic.
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(*attributes: tuple[ObjectIdentifier, str]) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in attributes])


def _ca_certificate(
    subject: x509.Name,
    key: rsa.RSAPrivateKey,
    issuer: x509.Name,
    issuer_key: rsa.RSAPrivateKey,
    *,
    not_before: dt.datetime,
    not_after: dt.datetime,
    path_length: int | None,
) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )


def make_dev_credentials(
    pass_type_id: str = "pass.dev.passhouse",  # noqa: S107 - an identifier, not a secret
    team_id: str = "DEVTEAM123",
    *,
    valid_days: int = 365,
) -> DevCredentials:
    """A root CA, a WWDR-like intermediate and a pass type certificate issued by it.

    A negative `valid_days` gives an already expired pass certificate (for tests).
    """
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    root_key, wwdr_key, pass_key = _new_key(), _new_key(), _new_key()

    root_name = _name(
        (NameOID.COMMON_NAME, "passhouse dev root CA"),
        (NameOID.ORGANIZATION_NAME, DEV_ORGANIZATION),
        (NameOID.COUNTRY_NAME, "US"),
    )
    root = _ca_certificate(
        root_name,
        root_key,
        root_name,
        root_key,
        not_before=now - dt.timedelta(days=1),
        not_after=now + dt.timedelta(days=3650),
        path_length=None,
    )
    wwdr_name = _name(
        (NameOID.COMMON_NAME, WWDR_DEV_COMMON_NAME),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "G4"),
        (NameOID.ORGANIZATION_NAME, DEV_ORGANIZATION),
        (NameOID.COUNTRY_NAME, "US"),
    )
    wwdr = _ca_certificate(
        wwdr_name,
        wwdr_key,
        root_name,
        root_key,
        not_before=now - dt.timedelta(days=1),
        not_after=now + dt.timedelta(days=1825),
        path_length=0,
    )

    if valid_days >= 0:
        not_before, not_after = now - dt.timedelta(minutes=5), now + dt.timedelta(days=valid_days)
    else:
        not_before = now + dt.timedelta(days=valid_days * 2)
        not_after = now + dt.timedelta(days=valid_days)
    subject = _name(
        (NameOID.USER_ID, pass_type_id),
        (NameOID.COMMON_NAME, f"Pass Type ID: {pass_type_id}"),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, team_id),
        (NameOID.ORGANIZATION_NAME, DEV_ORGANIZATION),
        (NameOID.COUNTRY_NAME, "US"),
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(wwdr_name)
        .public_key(pass_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        # clientAuth: the same certificate authenticates to APNs (and to fake APNs in tests).
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.UnrecognizedExtension(PASS_TYPE_ID_OID, _der_utf8_string(pass_type_id)),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(wwdr_key.public_key()),
            critical=False,
        )
        .sign(wwdr_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return DevCredentials(
        root_cert_pem=root.public_bytes(pem),
        root_key_pem=_key_pem(root_key),
        wwdr_cert_pem=wwdr.public_bytes(pem),
        wwdr_key_pem=_key_pem(wwdr_key),
        cert_pem=leaf.public_bytes(pem),
        key_pem=_key_pem(pass_key),
    )


def issue_server_certificate(
    ca_cert_pem: bytes, ca_key_pem: bytes, hostname: str = "localhost"
) -> tuple[bytes, bytes]:
    """A TLS server certificate and key for test servers (SAN DNS:hostname and IP:127.0.0.1)."""
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    if not isinstance(ca_key, rsa.RSAPrivateKey):
        raise TypeError("the dev CA key must be an RSA key")
    key = _new_key()
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name((NameOID.COMMON_NAME, hostname)))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(hostname), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def _der_utf8_string(text: str) -> bytes:
    # Apple encodes the extension value as a DER UTF8String; short length form covers < 128 bytes.
    raw = text.encode()
    if len(raw) < 0x80:
        return b"\x0c" + bytes([len(raw)]) + raw
    length = len(raw).to_bytes((len(raw).bit_length() + 7) // 8, "big")
    return b"\x0c" + bytes([0x80 | len(length)]) + length + raw
