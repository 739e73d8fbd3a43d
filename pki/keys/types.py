"""Key types by name, their signature hashes, and the ``Signer`` protocol.

Key types are named by short strings (``ec-p256``...) because those names
appear on the command line, in JSON and in the database.
"""

from __future__ import annotations

from typing import Protocol, Union, runtime_checkable

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509 import ocsp

from ..errors import InvalidInput

__all__ = [
    "KEY_TYPES",
    "PrivateKey",
    "PublicKey",
    "Signer",
    "generate_private_key",
    "key_type_of",
    "signature_hash_for",
]

#: The key types this project generates, strongest-default first.
KEY_TYPES: tuple[str, ...] = ("ec-p256", "ec-p384", "ed25519", "rsa-2048", "rsa-3072", "rsa-4096")

PrivateKey = Union[ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey, rsa.RSAPrivateKey]
PublicKey = Union[ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey, rsa.RSAPublicKey]

_CURVES = {"ec-p256": ec.SECP256R1, "ec-p384": ec.SECP384R1}
# P-521 is recognised (customers' registered CAs use it) but not offered for
# generation: README.md (Managed CAs) lists the types we create, and it is not one of them.
_CURVE_NAMES = {"secp256r1": "ec-p256", "secp384r1": "ec-p384", "secp521r1": "ec-p521"}
_RSA_EXPONENT = 65537


def _unsupported(what: str) -> InvalidInput:
    return InvalidInput(
        f"unsupported key type {what}; use one of: {', '.join(KEY_TYPES)}",
        code="unsupported_key_type",
    )


def generate_private_key(key_type: str) -> PrivateKey:
    """A fresh private key of one of :data:`KEY_TYPES`."""
    if key_type in _CURVES:
        return ec.generate_private_key(_CURVES[key_type]())
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if key_type in KEY_TYPES and key_type.startswith("rsa-"):
        return rsa.generate_private_key(public_exponent=_RSA_EXPONENT, key_size=int(key_type[4:]))
    raise _unsupported(repr(key_type))


def _as_public(key):
    # Accept either half of a pair: callers hold whichever they have.
    if isinstance(key, (ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey, rsa.RSAPrivateKey)):
        return key.public_key()
    return key


def key_type_of(key) -> str:
    """The name of a public (or private) key's type, wider than :data:`KEY_TYPES`.

    Registered CAs bring keys we would not generate (P-521, RSA-1024...);
    naming them lets policy code reject them with a clear message.
    """
    public = _as_public(key)
    if isinstance(public, ec.EllipticCurvePublicKey):
        name = _CURVE_NAMES.get(public.curve.name)
        if name is None:
            raise _unsupported(f"EC curve {public.curve.name}")
        return name
    if isinstance(public, ed25519.Ed25519PublicKey):
        return "ed25519"
    if isinstance(public, rsa.RSAPublicKey):
        return f"rsa-{public.key_size}"
    raise _unsupported(type(public).__name__)


def signature_hash_for(key) -> hashes.HashAlgorithm | None:
    """The hash matching the key's strength, as ``builder.sign`` wants it.

    None for Ed25519, which hashes internally.
    """
    key_type = key_type_of(key)
    if key_type == "ed25519":
        return None
    if key_type == "ec-p384":
        return hashes.SHA384()
    if key_type == "ec-p521":
        return hashes.SHA512()
    return hashes.SHA256()


@runtime_checkable
class Signer(Protocol):
    """What services need from a CA key: sign, never reveal.

    Methods take cryptography's builders rather than TBS bytes so the software
    keystore stays a one-liner.  An HSM (PKCS#11) implementation can honour
    the same contract without holding the key: sign the builder with a
    throwaway key of the same type, take ``tbs_certificate_bytes`` /
    ``tbs_certlist_bytes`` / ``tbs_response_bytes``, have the token sign
    those, and splice its signature into the DER.
    """

    key_id: str
    key_type: str

    def public_key(self) -> PublicKey: ...

    def sign_certificate(self, builder: x509.CertificateBuilder) -> x509.Certificate: ...

    def sign_crl(
        self, builder: x509.CertificateRevocationListBuilder
    ) -> x509.CertificateRevocationList: ...

    def sign_ocsp_response(
        self,
        builder: ocsp.OCSPResponseBuilder,
        *,
        responder_cert: x509.Certificate,
        encoding: ocsp.OCSPResponderEncoding = ocsp.OCSPResponderEncoding.HASH,
    ) -> ocsp.OCSPResponse:
        """Set the responder id from ``responder_cert`` and sign.

        The signer sets the responder id itself (callers must not) because
        it must name the certificate of the key that signs.
        """
        ...

    def sign_bytes(self, data: bytes) -> bytes:
        """A raw signature with the key's natural algorithm.

        ECDSA with :func:`signature_hash_for` (DER encoded), Ed25519, or
        RSA PKCS#1 v1.5 with SHA-256.
        """
        ...
