"""PassSigner: the detached PKCS#7 signature Wallet expects over manifest.json."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from passhouse.pkpass.certs import (
    SigningKey,
    key_matches_certificate,
    load_certificate,
    load_certificates,
    load_p12,
    load_private_key,
    pass_type_id_of,
    team_id_of,
)
from passhouse.pkpass.errors import CertificateError

# Binary: sign the bytes as they are; without it the manifest is canonicalised to CRLF text and
# the signature no longer matches the file in the zip.
_OPTIONS = [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary]


@dataclass(frozen=True, slots=True)
class PassSigner:
    """Certificate, key and WWDR intermediate, loaded once and reused for every signature."""

    certificate: x509.Certificate
    private_key: SigningKey
    wwdr: tuple[x509.Certificate, ...]
    pass_type_id: str
    team_id: str

    @property
    def not_after(self) -> dt.datetime:
        return self.certificate.not_valid_after_utc

    @classmethod
    def from_pem(
        cls,
        cert_pem: bytes,
        key_pem: bytes,
        wwdr_pem: bytes | None = None,
        *,
        password: bytes | None = None,
        now: dt.datetime | None = None,
    ) -> PassSigner:
        certificate = load_certificate(cert_pem)
        private_key = load_private_key(key_pem, password)
        wwdr = tuple(load_certificates(wwdr_pem, "WWDR certificate")) if wwdr_pem else ()
        return cls.from_objects(certificate, private_key, wwdr, now=now)

    @classmethod
    def from_p12(
        cls,
        data: bytes,
        password: bytes | None,
        wwdr_pem: bytes | None = None,
        *,
        now: dt.datetime | None = None,
    ) -> PassSigner:
        """A .p12 from Keychain Access; its chain (if any) stands in for a missing wwdr_pem."""
        cert_pem, key_pem, chain_pem = load_p12(data, password)
        return cls.from_pem(cert_pem, key_pem, wwdr_pem or chain_pem, now=now)

    @classmethod
    def from_objects(
        cls,
        certificate: x509.Certificate,
        private_key: SigningKey,
        wwdr: tuple[x509.Certificate, ...] = (),
        *,
        now: dt.datetime | None = None,
    ) -> PassSigner:
        pass_type_id = pass_type_id_of(certificate)
        team_id = team_id_of(certificate)
        if pass_type_id is None or team_id is None:
            raise CertificateError(
                "The certificate is not a Pass Type ID certificate (it names no pass type id "
                "or team id): create one in the Apple developer portal."
            )
        if not key_matches_certificate(private_key, certificate):
            raise CertificateError(
                "The private key does not match the certificate: use the key the "
                "certificate signing request was made with."
            )
        now = now or dt.datetime.now(dt.UTC)
        if now > certificate.not_valid_after_utc:
            raise CertificateError(
                f"The pass type certificate expired on "
                f"{certificate.not_valid_after_utc:%Y-%m-%d}: create a new one in the Apple "
                "developer portal."
            )
        return cls(certificate, private_key, wwdr, pass_type_id, team_id)

    def sign(self, data: bytes) -> bytes:
        """Detached DER PKCS#7, SHA-256, with signing time; signer and WWDR certs included."""
        builder = (
            pkcs7.PKCS7SignatureBuilder()
            .set_data(data)
            .add_signer(self.certificate, self.private_key, hashes.SHA256())
        )
        for intermediate in self.wwdr:
            builder = builder.add_certificate(intermediate)
        return builder.sign(serialization.Encoding.DER, _OPTIONS)
