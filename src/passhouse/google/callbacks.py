"""Verifying Google's save/delete callbacks (ECv2SigningOnly, as Tink's
PaymentMethodTokenRecipient does it), with `cryptography` only.

Tink has no Python port of this protocol; the two PyPI packages that do it are GPL or
EUPL, and each skips a check (the protocol filter on root keys, or message expiry).
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

SENDER_ID = "GooglePayPasses"
PROTOCOL = "ECv2SigningOnly"
# Google's clock and ours: a message is accepted this long after its expiry.
SKEW_MS = 60_000
EVENT_TYPES = {"save", "del"}


class CallbackRejected(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class CallbackEvent:
    class_id: str
    object_id: str
    event_type: str  # "save" or "del"
    nonce: str
    exp_time_ms: int


def length_value(*parts: str) -> bytes:
    """Each part as its UTF-8 byte length (4 bytes, little-endian) and its bytes."""
    out = b""
    for part in parts:
        raw = part.encode()
        out += struct.pack("<I", len(raw)) + raw
    return out


def usable_root_keys(keys_document: Any, *, now_ms: int) -> list[str]:
    """The keyValues of Google's root keys that may verify: ECv2SigningOnly, unexpired."""
    keys = keys_document.get("keys") if isinstance(keys_document, Mapping) else None
    usable = []
    for key in keys if isinstance(keys, list) else ():
        if not isinstance(key, Mapping) or key.get("protocolVersion") != PROTOCOL:
            continue
        expiration = key.get("keyExpiration")
        try:
            if expiration is not None and int(expiration) <= now_ms:
                continue
        except (TypeError, ValueError):
            continue
        if isinstance(key.get("keyValue"), str):
            usable.append(key["keyValue"])
    return usable


def earliest_expiration(keys_document: Any) -> int | None:
    keys = keys_document.get("keys") if isinstance(keys_document, Mapping) else None
    found = []
    for key in keys if isinstance(keys, list) else ():
        try:
            found.append(int(key["keyExpiration"]))
        except (KeyError, TypeError, ValueError):
            continue
    return min(found) if found else None


def _verifies(public_key_b64: str, signature_b64: Any, data: bytes) -> bool:
    try:
        key = serialization.load_der_public_key(base64.b64decode(public_key_b64, validate=True))
        signature = base64.b64decode(str(signature_b64), validate=True)
    except (binascii.Error, ValueError, TypeError):
        return False
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        return False
    try:
        key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def verify_callback(
    body: Any, *, issuer_ids: Sequence[str], root_keys: Sequence[str], now_ms: int
) -> tuple[str, CallbackEvent]:
    """(issuer id, event) of a callback that verifies for one of `issuer_ids`.

    Raises CallbackRejected with the reason otherwise. The recipient is the issuer id as
    a bare decimal string; signed strings are verified as received, byte for byte.
    """
    if not isinstance(body, Mapping) or body.get("protocolVersion") != PROTOCOL:
        raise CallbackRejected(f"protocolVersion is not {PROTOCOL}")
    intermediate = body.get("intermediateSigningKey")
    signed_message = body.get("signedMessage")
    if not isinstance(intermediate, Mapping) or not isinstance(signed_message, str):
        raise CallbackRejected("intermediateSigningKey or signedMessage is missing")
    signed_key = intermediate.get("signedKey")
    signatures = intermediate.get("signatures")
    if not isinstance(signed_key, str) or not isinstance(signatures, list):
        raise CallbackRejected("intermediateSigningKey lacks signedKey or signatures")
    key_bytes = length_value(SENDER_ID, PROTOCOL, signed_key)
    if not any(_verifies(root, sig, key_bytes) for root in root_keys for sig in signatures):
        raise CallbackRejected("the intermediate signing key is not signed by a Google root key")
    try:
        key_info = json.loads(signed_key)
        key_value = key_info["keyValue"]
        key_expiration = int(key_info["keyExpiration"])
    except (ValueError, KeyError, TypeError):
        raise CallbackRejected("signedKey is not a key with an expiration") from None
    if key_expiration <= now_ms:
        raise CallbackRejected("the intermediate signing key has expired")
    recipient = next(
        (
            issuer_id
            for issuer_id in issuer_ids
            if _verifies(
                key_value,
                body.get("signature"),
                length_value(SENDER_ID, issuer_id, PROTOCOL, signed_message),
            )
        ),
        None,
    )
    if recipient is None:
        raise CallbackRejected("the message signature does not verify for a known issuer")
    try:
        message = json.loads(signed_message)
        event = CallbackEvent(
            class_id=str(message["classId"]),
            object_id=str(message["objectId"]),
            event_type=str(message["eventType"]),
            nonce=str(message["nonce"]),
            exp_time_ms=int(message["expTimeMillis"]),
        )
    except (ValueError, KeyError, TypeError):
        raise CallbackRejected(
            "signedMessage lacks classId, objectId, eventType or nonce"
        ) from None
    if event.exp_time_ms + SKEW_MS < now_ms:
        raise CallbackRejected("the message has expired")
    if event.event_type not in EVENT_TYPES:
        raise CallbackRejected(f"eventType {event.event_type!r} is not save or del")
    if not event.object_id.startswith(recipient + "."):
        raise CallbackRejected("the object is not one of the issuer's")
    return recipient, event
