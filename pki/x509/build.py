"""Building certificates: the offline verification-certificate helper."""

from __future__ import annotations

import datetime as _dt
import secrets

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, ed448, rsa
from cryptography.x509.oid import NameOID

from ..errors import InvalidInput

__all__ = ["build_verification_certificate", "hash_for_key", "random_serial"]

#: Backdating absorbs clock skew between the signing host and the registry.
BACKDATE = _dt.timedelta(minutes=5)


def random_serial() -> int:
    """159 random bits, positive, at most 20 octets (RFC 5280 4.1.2.2)."""
    return secrets.randbits(159) | 1


def hash_for_key(private_key) -> hashes.HashAlgorithm | None:
    """The signature hash that matches the key's strength; None for EdDSA."""
    if isinstance(private_key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        return None
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        return {384: hashes.SHA384(), 521: hashes.SHA512()}.get(private_key.curve.key_size, hashes.SHA256())
    if isinstance(private_key, rsa.RSAPrivateKey):
        return hashes.SHA256()
    raise InvalidInput("this private key type cannot sign here; use EC, RSA or Ed25519", code="unsupported_key_type")


def build_verification_certificate(
    *,
    ca_cert: x509.Certificate,
    ca_key,
    code: str,
    now: _dt.datetime,
    lifetime: _dt.timedelta = _dt.timedelta(days=1),
) -> x509.Certificate:
    """A certificate with CN = register code, signed by the CA's key.

    Its own key pair is throwaway: only the CA's signature matters.
    """
    if ca_key.public_key() != ca_cert.public_key():
        raise InvalidInput(
            "the CA private key does not belong to the CA certificate; give the matching pair",
            code="key_mismatch",
        )
    subject_key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, code)]))
        .issuer_name(ca_cert.subject)
        .public_key(subject_key.public_key())
        .serial_number(random_serial())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()), critical=False
        )
    )
    return builder.sign(ca_key, hash_for_key(ca_key))
