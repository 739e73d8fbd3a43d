"""Test-side helpers that build material with cryptography (not with the code under test)."""

from __future__ import annotations

import datetime as _dt
import secrets

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from tests.support import FIXTURES


def load_pair(name: str):
    cert = x509.load_pem_x509_certificate((FIXTURES / f"{name}.pem").read_bytes())
    key = serialization.load_pem_private_key((FIXTURES / f"{name}.key.pem").read_bytes(), None)
    return cert, key


def _hash_for(key):
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size == 384:
        return hashes.SHA384()
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size == 521:
        return hashes.SHA512()
    return hashes.SHA256()


def verification_pem(
    ca_cert,
    signing_key,
    cn: str,
    *,
    now: _dt.datetime | None = None,
    not_before: _dt.datetime | None = None,
    not_after: _dt.datetime | None = None,
    issuer: x509.Name | None = None,
) -> bytes:
    """A verification certificate built independently of pki.x509.build."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(issuer or ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(secrets.randbits(120) | 1)
        .not_valid_before(not_before or now - _dt.timedelta(minutes=5))
        .not_valid_after(not_after or now + _dt.timedelta(days=1))
        .sign(signing_key, _hash_for(signing_key))
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def make_root(cn: str, *, key=None, now=None, days: int = 3650):
    """A fresh self-signed CA (for tests that need many distinct CAs)."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    key = key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(secrets.randbits(120) | 1)
        .not_valid_before(now - _dt.timedelta(days=1))
        .not_valid_after(now + _dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, _hash_for(key))
    )
    return cert, key


def pem(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)
