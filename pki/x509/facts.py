"""What the rest of the project needs to know about a certificate, computed once."""

from __future__ import annotations

import datetime as _dt
import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID

from ..ids import format_serial

__all__ = [
    "CertificateFacts",
    "facts_of",
    "fingerprint_sha256",
    "fingerprint_sha256_der",
    "spki_sha256",
    "public_key_type",
    "common_names",
]

_CURVES = {"secp256r1": "ec-p256", "secp384r1": "ec-p384", "secp521r1": "ec-p521"}


@dataclass(frozen=True)
class CertificateFacts:
    sn: str
    subject: str
    issuer: str
    not_before: _dt.datetime
    not_after: _dt.datetime
    fingerprint_sha256: str
    spki_sha256: str
    key_type: str
    self_issued: bool
    der: bytes


def fingerprint_sha256(cert: x509.Certificate) -> str:
    return fingerprint_sha256_der(cert.public_bytes(serialization.Encoding.DER))


def fingerprint_sha256_der(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def spki_sha256(public_key) -> str:
    """Hash of the SubjectPublicKeyInfo: names a key independently of its certificates."""
    spki = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()


def public_key_type(public_key) -> str:
    """A short name for a key: ``ec-p256``, ``rsa-2048``, ``ed25519``, ``dsa-2048``..."""
    if isinstance(public_key, rsa.RSAPublicKey):
        return f"rsa-{public_key.key_size}"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return _CURVES.get(public_key.curve.name, f"ec-{public_key.curve.name}")
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "ed25519"
    if isinstance(public_key, ed448.Ed448PublicKey):
        return "ed448"
    if isinstance(public_key, dsa.DSAPublicKey):
        return f"dsa-{public_key.key_size}"
    return "unknown"


def common_names(name: x509.Name) -> list[str]:
    return [str(a.value) for a in name.get_attributes_for_oid(NameOID.COMMON_NAME)]


def facts_of(cert: x509.Certificate) -> CertificateFacts:
    return CertificateFacts(
        sn=format_serial(cert.serial_number),
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        fingerprint_sha256=fingerprint_sha256(cert),
        spki_sha256=spki_sha256(cert.public_key()),
        key_type=public_key_type(cert.public_key()),
        self_issued=cert.subject == cert.issuer,
        der=cert.public_bytes(serialization.Encoding.DER),
    )
