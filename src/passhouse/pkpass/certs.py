"""Reading and checking pass type certificates: what `passhouse certs check` reports."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID, ObjectIdentifier

from passhouse.pkpass.errors import CertificateError

SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

# Apple's "Pass Type ID" extension; its value names the pass type the certificate signs for.
PASS_TYPE_ID_OID = ObjectIdentifier("1.2.840.113635.100.6.1.16")

# pkpassvalidator recognises Apple's G4 intermediate by this serial number.
APPLE_WWDR_G4_SERIAL = 0x13DC77955271E53DC632E8CCFFE521F3CCC5CED2
WWDR_COMMON_NAME_PREFIX = "Apple Worldwide Developer Relations"


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    pass_type_id: str | None
    team_id: str | None
    subject: str
    issuer: str
    not_before: dt.datetime
    not_after: dt.datetime


@dataclass(frozen=True, slots=True)
class Problem:
    message: str
    severity: Literal["error", "warning"] = "error"


@dataclass(slots=True)
class CredentialsCheck:
    """Everything `certs check` prints; `problems` is empty when the credentials are usable."""

    info: CertificateInfo | None = None
    key_matches: bool | None = None
    chain_verifies: bool | None = None
    wwdr_generation: str | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(problem.severity == "error" for problem in self.problems)


def load_certificate(cert_pem: bytes, what: str = "pass type certificate") -> x509.Certificate:
    try:
        if cert_pem.lstrip().startswith(b"-----"):
            return x509.load_pem_x509_certificate(cert_pem)
        return x509.load_der_x509_certificate(cert_pem)
    except ValueError:
        raise CertificateError(
            f"The {what} could not be read: give a PEM or DER X.509 certificate file."
        ) from None


def load_certificates(pem: bytes, what: str) -> list[x509.Certificate]:
    try:
        if pem.lstrip().startswith(b"-----"):
            return x509.load_pem_x509_certificates(pem)
        return [x509.load_der_x509_certificate(pem)]
    except ValueError:
        raise CertificateError(
            f"The {what} could not be read: give a PEM or DER X.509 certificate file."
        ) from None


def load_private_key(key_pem: bytes, password: bytes | None) -> SigningKey:
    try:
        key = serialization.load_pem_private_key(key_pem, password=password)
    except TypeError:
        if password is None:
            raise CertificateError(
                "The private key is encrypted: give its password (--password)."
            ) from None
        raise CertificateError(
            "The private key is not encrypted: leave out the password."
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        if password is not None:
            raise CertificateError(
                "The private key could not be decrypted: the password is wrong "
                "(or the file is not a PEM private key)."
            ) from None
        raise CertificateError(
            "The private key could not be read: give the PEM private key of the pass "
            "type certificate."
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise CertificateError("The private key must be an RSA or EC key, as Apple issues.")
    return key


def pass_type_id_of(cert: x509.Certificate) -> str | None:
    """The pass type id from Apple's extension, else from the subject UID."""
    try:
        extension = cert.extensions.get_extension_for_oid(PASS_TYPE_ID_OID)
    except x509.ExtensionNotFound:
        pass
    else:
        value = extension.value
        if isinstance(value, x509.UnrecognizedExtension):
            decoded = _decode_der_string(value.value)
            if decoded:
                return decoded
    uids = cert.subject.get_attributes_for_oid(NameOID.USER_ID)
    if uids:
        return str(uids[0].value)
    return None


def team_id_of(cert: x509.Certificate) -> str | None:
    units = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    return str(units[0].value) if units else None


def certificate_info(cert: x509.Certificate) -> CertificateInfo:
    return CertificateInfo(
        pass_type_id=pass_type_id_of(cert),
        team_id=team_id_of(cert),
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
    )


def inspect_certificate(cert_pem: bytes) -> CertificateInfo:
    return certificate_info(load_certificate(cert_pem))


def load_p12(data: bytes, password: bytes | None) -> tuple[bytes, bytes, bytes | None]:
    """Split a .p12 export into (certificate PEM, unencrypted key PEM, chain PEM or None)."""
    try:
        key, cert, extra = pkcs12.load_key_and_certificates(data, password)
    except (ValueError, TypeError):
        if password is None:
            raise CertificateError(
                "The .p12 file could not be opened: it probably needs a password (--password), "
                "or it is not a PKCS#12 file."
            ) from None
        raise CertificateError(
            "The .p12 file could not be opened: the password is wrong or the file is not "
            "a PKCS#12 file."
        ) from None
    except UnsupportedAlgorithm:
        raise CertificateError(
            "The .p12 file uses an encryption this system cannot read: re-export it from "
            "Keychain Access with a recent macOS."
        ) from None
    if cert is None or key is None:
        raise CertificateError(
            "The .p12 file must hold the pass type certificate and its private key: "
            "export both from Keychain Access."
        )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    chain = b"".join(extra_cert.public_bytes(pem) for extra_cert in extra) or None
    return cert.public_bytes(pem), key_pem, chain


def key_matches_certificate(key: SigningKey, cert: x509.Certificate) -> bool:
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return key.public_key().public_bytes(*spki) == cert.public_key().public_bytes(*spki)


def is_issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def wwdr_generation(cert: x509.Certificate) -> str | None:
    """Which WWDR intermediate this is ("G4", "G1", ...), or None when it is not one."""
    if cert.serial_number == APPLE_WWDR_G4_SERIAL:
        return "G4"
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names or not str(names[0].value).startswith(WWDR_COMMON_NAME_PREFIX):
        return None
    for unit in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME):
        text = str(unit.value)
        if len(text) == 2 and text[0] == "G" and text[1].isdigit():
            return text
    # The first intermediate carried no generation in its subject; it expired in 2023.
    return "G1"


def check_credentials(
    cert_pem: bytes,
    key_pem: bytes | None = None,
    wwdr_pem: bytes | None = None,
    *,
    password: bytes | None = None,
    ca_pem: bytes | None = None,
    now: dt.datetime | None = None,
) -> list[Problem]:
    return check_credentials_in_detail(
        cert_pem, key_pem, wwdr_pem, password=password, ca_pem=ca_pem, now=now
    ).problems


def check_credentials_in_detail(
    cert_pem: bytes,
    key_pem: bytes | None = None,
    wwdr_pem: bytes | None = None,
    *,
    password: bytes | None = None,
    ca_pem: bytes | None = None,
    now: dt.datetime | None = None,
    wwdr_option: str = "--wwdr",
) -> CredentialsCheck:
    """Every problem with a certificate, key and WWDR chain, each saying what to do.

    `wwdr_option` names how the user gives a WWDR where they are (a flag, an API field).
    """
    now = now or dt.datetime.now(dt.UTC)
    result = CredentialsCheck()
    problems = result.problems
    try:
        cert = load_certificate(cert_pem)
    except CertificateError as error:
        problems.append(Problem(error.message))
        return result
    info = result.info = certificate_info(cert)

    if info.pass_type_id is None:
        problems.append(
            Problem(
                "The certificate names no pass type id: create a Pass Type ID certificate "
                "in the Apple developer portal."
            )
        )
    elif not info.pass_type_id.startswith("pass."):
        problems.append(
            Problem(f'The pass type id "{info.pass_type_id}" should start with "pass.".', "warning")
        )
    if info.team_id is None:
        problems.append(Problem("The certificate names no team id (subject OU)."))
    if now > info.not_after:
        problems.append(
            Problem(
                f"The certificate expired on {info.not_after:%Y-%m-%d}: create a new Pass Type "
                "ID certificate in the Apple developer portal."
            )
        )
    elif now < info.not_before:
        problems.append(Problem(f"The certificate is not valid before {info.not_before:%Y-%m-%d}."))
    elif info.not_after - now < dt.timedelta(days=30):
        problems.append(
            Problem(
                f"The certificate expires on {info.not_after:%Y-%m-%d}: renew it soon.", "warning"
            )
        )

    if key_pem is not None:
        try:
            key = load_private_key(key_pem, password)
        except CertificateError as error:
            problems.append(Problem(error.message))
        else:
            result.key_matches = key_matches_certificate(key, cert)
            if not result.key_matches:
                problems.append(
                    Problem(
                        "The private key does not match the certificate: use the key the "
                        "certificate signing request was made with."
                    )
                )

    if wwdr_pem is None:
        problems.append(
            Problem(
                "No WWDR intermediate certificate was given: download Apple's WWDR G4 "
                f"certificate and give it with {wwdr_option} (passes without it do not "
                "install)."
            )
        )
        return result
    try:
        chain = load_certificates(wwdr_pem, "WWDR certificate")
    except CertificateError as error:
        problems.append(Problem(error.message))
        return result
    issuer = next((candidate for candidate in chain if is_issued_by(cert, candidate)), None)
    if issuer is None:
        result.chain_verifies = False
        problems.append(
            Problem(
                "The certificate was not issued by the given WWDR certificate: download the "
                "WWDR intermediate named in the certificate's issuer (G4 for pass certificates)."
            )
        )
        return result
    result.wwdr_generation = wwdr_generation(issuer)
    if result.wwdr_generation is None:
        problems.append(Problem("The intermediate is not an Apple WWDR certificate.", "warning"))
    elif result.wwdr_generation != "G4":
        problems.append(
            Problem(
                f"The intermediate is WWDR {result.wwdr_generation}; pass certificates chain "
                "to G4: download WWDR G4 from Apple.",
                "warning",
            )
        )
    if result.wwdr_generation == "G4" and issuer.serial_number != APPLE_WWDR_G4_SERIAL:
        problems.append(
            Problem(
                "The intermediate is named like Apple's WWDR G4 but is not Apple's (its serial "
                "number differs): passes signed with it will not install on an iPhone. Fine "
                "for local development (`certs dev`, dev mode).",
                "warning",
            )
        )
    if not issuer.not_valid_before_utc <= now <= issuer.not_valid_after_utc:
        problems.append(
            Problem(
                f"The WWDR certificate is not valid now (valid until "
                f"{issuer.not_valid_after_utc:%Y-%m-%d}): download the current one from Apple."
            )
        )
    result.chain_verifies = True
    if ca_pem is not None:
        roots = load_certificates(ca_pem, "root certificate")
        if not any(is_issued_by(issuer, root) for root in roots):
            result.chain_verifies = False
            problems.append(
                Problem("The WWDR certificate was not issued by the given root certificate.")
            )
    return result


def _decode_der_string(der: bytes) -> str | None:
    # The extension holds one DER string (Apple uses UTF8String); read its length and text.
    if len(der) < 2 or der[0] not in (0x0C, 0x13, 0x16):
        return None
    length, offset = der[1], 2
    if length & 0x80:
        size = length & 0x7F
        length = int.from_bytes(der[2 : 2 + size], "big")
        offset = 2 + size
    try:
        return der[offset : offset + length].decode()
    except UnicodeDecodeError:
        return None
