"""What a device receives with a key made for it: the key as PEM, or key and certificates as one PKCS#12."""

from __future__ import annotations

from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from ..errors import InvalidInput

__all__ = ["private_key_pem", "pkcs12_bundle"]


def private_key_pem(key) -> bytes:
    """Unencrypted PKCS#8 PEM: whoever stores it protects the file (mode 0600), not a passphrase."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def pkcs12_bundle(
    *, name: str, key, certificate: x509.Certificate, chain: Sequence[x509.Certificate], password: bytes
) -> bytes:
    """Key, certificate and chain under ``password`` (cryptography's best available encryption)."""
    if not password:
        raise InvalidInput("a PKCS#12 file needs a password", code="pkcs12_password_required")
    return pkcs12.serialize_key_and_certificates(
        name=name.encode(), key=key, cert=certificate, cas=list(chain),
        encryption_algorithm=serialization.BestAvailableEncryption(password),
    )
