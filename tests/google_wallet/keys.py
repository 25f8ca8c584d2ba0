"""Throwaway Google credentials for tests: a service account key file and ECv2 callback
keys (a root and an intermediate P-256 key), with the signer Google uses for callbacks."""

from __future__ import annotations

import base64
import json
import struct
import time
import uuid
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

ISSUER_ID = "3388000000012345678"
CLIENT_EMAIL = "passhouse-test@passhouse-test.iam.gserviceaccount.com"


def service_account_info(token_uri: str, key: rsa.RSAPrivateKey | None = None) -> dict[str, Any]:
    key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "type": "service_account",
        "project_id": "passhouse-test",
        "private_key_id": "0123456789abcdef",
        "private_key": pem,
        "client_email": CLIENT_EMAIL,
        "client_id": "112233445566778899",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "universe_domain": "googleapis.com",
    }


def _lv(*parts: str) -> bytes:
    # Written out here, not imported: the tests check passhouse against this.
    return b"".join(struct.pack("<I", len(p.encode())) + p.encode() for p in parts)


def _b64_public(key: ec.EllipticCurvePrivateKey) -> str:
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def _sign(key: ec.EllipticCurvePrivateKey, data: bytes) -> str:
    return base64.b64encode(key.sign(data, ec.ECDSA(hashes.SHA256()))).decode()


@dataclass
class CallbackKeys:
    root: ec.EllipticCurvePrivateKey
    intermediate: ec.EllipticCurvePrivateKey
    root_protocol: str = "ECv2SigningOnly"

    @classmethod
    def generate(cls) -> CallbackKeys:
        return cls(ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1()))

    def keys_document(self) -> dict[str, Any]:
        expires = int(time.time() * 1000) + 86_400_000
        return {
            "keys": [
                {
                    "keyValue": _b64_public(self.root),
                    "protocolVersion": self.root_protocol,
                    "keyExpiration": str(expires),
                }
            ]
        }

    def callback(
        self,
        *,
        class_id: str,
        object_id: str,
        event_type: str,
        nonce: str | None = None,
        recipient: str = ISSUER_ID,
        sender: str = "GooglePayPasses",
        message_expires_in_ms: int = 300_000,
        key_expires_in_ms: int = 86_400_000,
        signing_key: ec.EllipticCurvePrivateKey | None = None,
    ) -> dict[str, Any]:
        now = int(time.time() * 1000)
        signed_key = json.dumps(
            {
                "keyValue": _b64_public(self.intermediate),
                "keyExpiration": str(now + key_expires_in_ms),
            }
        )
        signed_message = json.dumps(
            {
                "classId": class_id,
                "objectId": object_id,
                "eventType": event_type,
                "expTimeMillis": now + message_expires_in_ms,
                "count": 1,
                "nonce": nonce or str(uuid.uuid4()),
            }
        )
        return {
            "signature": _sign(
                signing_key or self.intermediate,
                _lv(sender, recipient, "ECv2SigningOnly", signed_message),
            ),
            "intermediateSigningKey": {
                "signedKey": signed_key,
                "signatures": [_sign(self.root, _lv(sender, "ECv2SigningOnly", signed_key))],
            },
            "protocolVersion": "ECv2SigningOnly",
            "signedMessage": signed_message,
        }
