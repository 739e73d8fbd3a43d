"""Helpers that run where a customer's CA key lives: no store, no server."""

from __future__ import annotations

import re

from cryptography.hazmat.primitives import serialization

from ..clock import Clock, SystemClock
from ..errors import InvalidInput
from .. import x509 as px509

__all__ = ["make_verification_certificate"]

_CODE = re.compile(r"^[0-9a-f]{64}$")


def make_verification_certificate(
    *, ca_certificate: bytes, ca_private_key: bytes, code: str, key_password: bytes | None = None,
    clock: Clock | None = None,
) -> bytes:
    """The PEM of a certificate with CN = ``code``, signed by the CA's key."""
    if not _CODE.match(code):
        raise InvalidInput(
            "a register code is 64 lowercase hex characters, exactly as it was handed out",
            code="invalid_register_code",
        )
    now = (clock or SystemClock()).now()
    ca = px509.load_certificate(ca_certificate, what="CA certificate")
    key = px509.load_private_key(ca_private_key, what="CA private key", password=key_password)
    cert = px509.build_verification_certificate(ca_cert=ca, ca_key=key, code=code, now=now)
    return cert.public_bytes(serialization.Encoding.PEM)
