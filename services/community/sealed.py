"""Sensitive register fields sealed at rest: health and care needs,
disability. Stored as Fernet tokens (AES-128-CBC with an HMAC-SHA256 tag,
from the `cryptography` library), so the raw column, a database dump or a
backup holds no plaintext and a tampered value fails to open instead of
reading as something else.

The key comes from LINLI_REGISTER_KEY (any secret of 32+ characters; the
Fernet key is derived from it with HKDF), bound once per app."""
from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app
from sqlalchemy import Text
from sqlalchemy.types import TypeDecorator


def fernet_for(secret: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"linli.register.v1").derive(secret.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def _fernet() -> Fernet:
    ext = current_app.extensions
    if "register_fernet" not in ext:
        ext["register_fernet"] = fernet_for(current_app.config["REGISTER_KEY"])
    return ext["register_fernet"]


class SealedError(RuntimeError):
    """A sealed value that does not open with the configured key."""


class Sealed(TypeDecorator):
    """A text column sealed with the register key; None stays None (and
    says nothing: an empty field and a field never filled look the same)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        return _fernet().encrypt(str(value).encode()).decode("ascii")

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        try:
            return _fernet().decrypt(value.encode("ascii")).decode()
        except InvalidToken:
            raise SealedError("a sealed register field does not open with LINLI_REGISTER_KEY") from None
