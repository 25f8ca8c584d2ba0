"""Encryption at rest for private keys, with the server's secret key."""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken


class Sealer:
    """Seals bytes with a key derived from the server's secret key (Fernet: AES-CBC + HMAC)."""

    def __init__(self, secret_key: str) -> None:
        digest = hashlib.sha256(b"passhouse/sealing/v1\x00" + secret_key.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def seal(self, plaintext: bytes) -> bytes:
        return self._fernet.encrypt(plaintext)

    def open(self, sealed: bytes) -> bytes:
        try:
            return self._fernet.decrypt(sealed)
        except InvalidToken:
            raise ValueError(
                "a stored private key cannot be decrypted: PASSHOUSE_SECRET_KEY is not the key "
                "it was stored with"
            ) from None
