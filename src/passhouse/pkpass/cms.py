"""Reading a detached PKCS#7 (CMS SignedData) signature, enough to verify a pass.

`cryptography` can write these but not verify them, and pkpass must not shell out to openssl,
so this reads the few DER structures involved (RFC 5652 §5) by hand.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs7

_OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
_OID_CONTENT_TYPE = "1.2.840.113549.1.9.3"
_OID_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
_OID_SIGNING_TIME = "1.2.840.113549.1.9.5"
_DIGESTS: dict[str, tuple[str, hashes.HashAlgorithm]] = {
    "1.3.14.3.2.26": ("sha1", hashes.SHA1()),  # noqa: S303 - old passes; reported, not trusted
    "2.16.840.1.101.3.4.2.1": ("sha256", hashes.SHA256()),
    "2.16.840.1.101.3.4.2.2": ("sha384", hashes.SHA384()),
    "2.16.840.1.101.3.4.2.3": ("sha512", hashes.SHA512()),
}


class CmsError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class SignatureCheck:
    certificates: list[x509.Certificate]
    signer: x509.Certificate | None
    digest_name: str
    signing_time: dt.datetime | None
    problems: list[str]


@dataclass(frozen=True, slots=True)
class _Tlv:
    tag: int
    start: int  # first byte of the header
    body: int  # first byte of the contents
    end: int


def _read(data: bytes, offset: int) -> _Tlv:
    if offset + 2 > len(data):
        raise CmsError("truncated DER")
    tag, length = data[offset], data[offset + 1]
    body = offset + 2
    if length & 0x80:
        size = length & 0x7F
        if size == 0 or size > 4 or body + size > len(data):
            raise CmsError("unsupported DER length")
        length = int.from_bytes(data[body : body + size], "big")
        body += size
    if body + length > len(data):
        raise CmsError("truncated DER")
    return _Tlv(tag, offset, body, body + length)


def _children(data: bytes, parent: _Tlv) -> list[_Tlv]:
    items, offset = [], parent.body
    while offset < parent.end:
        item = _read(data, offset)
        items.append(item)
        offset = item.end
    return items


def _oid(data: bytes, item: _Tlv) -> str:
    if item.tag != 0x06:
        raise CmsError("expected an OBJECT IDENTIFIER")
    raw = data[item.body : item.end]
    parts, value = [], 0
    for byte in raw:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(value)
            value = 0
    first = min(parts[0] // 40, 2)
    return ".".join(str(part) for part in [first, parts[0] - first * 40, *parts[1:]])


def _time(data: bytes, item: _Tlv) -> dt.datetime:
    text = data[item.body : item.end].decode("ascii")
    if item.tag == 0x17:  # UTCTime, YYMMDDHHMMSSZ
        parsed = dt.datetime.strptime(text, "%y%m%d%H%M%SZ")  # noqa: DTZ007 - Z: UTC below
    elif item.tag == 0x18:  # GeneralizedTime
        parsed = dt.datetime.strptime(text[:14], "%Y%m%d%H%M%S")  # noqa: DTZ007 - UTC below
    else:
        raise CmsError("signingTime is not a time")
    return parsed.replace(tzinfo=dt.UTC)


def check_detached_signature(signature: bytes, content: bytes) -> SignatureCheck:
    """Verify a detached SignedData over content; raises CmsError if it cannot be read."""
    try:
        certificates = pkcs7.load_der_pkcs7_certificates(signature)
    except ValueError:
        certificates = []
    top = _read(signature, 0)
    content_info = _children(signature, top)
    if len(content_info) < 2 or _oid(signature, content_info[0]) != _OID_SIGNED_DATA:
        raise CmsError("not a PKCS#7 SignedData structure")
    signed_data = _children(signature, _children(signature, content_info[1])[0])
    encap = _children(signature, signed_data[2])
    problems: list[str] = []
    if len(encap) > 1:
        problems.append("the signature embeds the manifest; it must be detached")
    signer_infos = [item for item in signed_data[3:] if item.tag == 0x31][-1:]
    infos = _children(signature, signer_infos[0]) if signer_infos else []
    if len(infos) != 1:
        raise CmsError(f"expected exactly one signer, found {len(infos)}")
    parts = _children(signature, infos[0])
    sid, digest_algorithm = parts[1], parts[2]
    digest_oid = _oid(signature, _children(signature, digest_algorithm)[0])
    if digest_oid not in _DIGESTS:
        raise CmsError(f"unsupported digest algorithm {digest_oid}")
    digest_name, digest = _DIGESTS[digest_oid]
    signed_attrs = parts[3] if parts[3].tag == 0xA0 else None
    signature_value = parts[-1]

    signer = _find_signer(signature, sid, certificates)
    if signer is None:
        problems.append("the signer's certificate is not included in the signature")

    signing_time = None
    if signed_attrs is None:
        problems.append(
            "the signature has no signed attributes (no signing time, no message digest)"
        )
        signed_bytes = content
    else:
        attributes = {}
        for attribute in _children(signature, signed_attrs):
            oid_item, values = _children(signature, attribute)
            attributes[_oid(signature, oid_item)] = _children(signature, values)
        if _OID_CONTENT_TYPE not in attributes:
            problems.append("the signature has no content-type attribute")
        digest_values = attributes.get(_OID_MESSAGE_DIGEST)
        expected = hashlib.new(digest_name, content).digest()
        if not digest_values:
            problems.append("the signature has no message-digest attribute")
        elif signature[digest_values[0].body : digest_values[0].end] != expected:
            problems.append(
                "the signature does not match manifest.json (the manifest changed after signing)"
            )
        time_values = attributes.get(_OID_SIGNING_TIME)
        if not time_values:
            problems.append(
                'the signature has no signing time; Wallet rejects it ("Signature must contain '
                'a signing date")'
            )
        else:
            signing_time = _time(signature, time_values[0])
        # The signature covers the attributes re-tagged as a SET (RFC 5652 §5.4).
        signed_bytes = b"\x31" + signature[signed_attrs.start + 1 : signed_attrs.end]

    if signer is not None:
        value = signature[signature_value.body : signature_value.end]
        if not _signature_valid(signer, value, signed_bytes, digest):
            problems.append("the PKCS#7 signature is invalid (not made with the signer's key)")
    return SignatureCheck(certificates, signer, digest_name, signing_time, problems)


def _find_signer(
    data: bytes, sid: _Tlv, certificates: list[x509.Certificate]
) -> x509.Certificate | None:
    if sid.tag == 0x30:  # IssuerAndSerialNumber
        issuer, serial = _children(data, sid)
        issuer_der = data[issuer.start : issuer.end]
        serial_number = int.from_bytes(data[serial.body : serial.end], "big", signed=True)
        for cert in certificates:
            if cert.serial_number == serial_number and cert.issuer.public_bytes() == issuer_der:
                return cert
        return None
    key_id = data[sid.body : sid.end]
    for cert in certificates:
        try:
            ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        except x509.ExtensionNotFound:
            continue
        if ski.value.digest == key_id:
            return cert
    return None


def _signature_valid(
    cert: x509.Certificate, value: bytes, signed: bytes, digest: hashes.HashAlgorithm
) -> bool:
    try:
        key = cert.public_key()
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(value, signed, padding.PKCS1v15(), digest)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(value, signed, ec.ECDSA(digest))
        else:
            return False
    except (InvalidSignature, UnsupportedAlgorithm, ValueError):
        return False
    return True
