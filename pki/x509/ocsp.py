"""OCSP (RFC 6960): reading requests, building responses and the delegated signer's certificate.

Pure: bytes and the time in, builders out; signing is the caller's Signer's
job (it also sets the responder id).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from dataclasses import dataclass

from asn1crypto import keys as _akeys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..errors import InvalidInput
from .build import _aki, _key_usage, leaf_builder

__all__ = [
    "MAX_OCSP_REQUEST_BYTES",
    "OcspQuery",
    "parse_ocsp_request",
    "issuer_hashes",
    "build_ocsp_response",
    "unsuccessful_response",
    "build_ocsp_signer_certificate",
]

#: A request for one certificate is ~100 bytes; a nonce and a signature stay far under this.
MAX_OCSP_REQUEST_BYTES = 8 * 1024

_HASHES = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}


@dataclass(frozen=True)
class OcspQuery:
    issuer_name_hash: bytes
    issuer_key_hash: bytes
    serial: int
    algorithm: hashes.HashAlgorithm
    nonce: bytes | None


def _bad(message: str) -> InvalidInput:
    return InvalidInput(message, code="ocsp_malformed_request")


def parse_ocsp_request(der: bytes) -> OcspQuery:
    """One DER OCSPRequest for one certificate; anything else is malformed."""
    if not isinstance(der, (bytes, bytearray, memoryview)):
        raise TypeError("an OCSP request must be bytes")
    der = bytes(der)
    if not der:
        raise _bad("empty OCSP request")
    if len(der) > MAX_OCSP_REQUEST_BYTES:
        raise _bad(f"OCSP request of {len(der)} bytes; at most {MAX_OCSP_REQUEST_BYTES} are accepted")
    try:
        request = ocsp.load_der_ocsp_request(der)
        algorithm = request.hash_algorithm
        query = OcspQuery(
            issuer_name_hash=request.issuer_name_hash,
            issuer_key_hash=request.issuer_key_hash,
            serial=request.serial_number,
            algorithm=algorithm,
            nonce=None,
        )
        try:
            nonce = request.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
        except x509.ExtensionNotFound:
            nonce = None
    except (ValueError, x509.UnsupportedGeneralNameType) as exc:
        raise _bad(f"not a DER OCSP request for one certificate ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - unsupported hash algorithms and the like
        raise _bad(f"unsupported OCSP request ({type(exc).__name__})") from None
    if algorithm.name not in _HASHES:
        raise _bad(f"CertID hash {algorithm.name} is not supported; use SHA-1 or SHA-256")
    if nonce is not None and not 1 <= len(nonce) <= 32:
        raise _bad("the nonce must be 1 to 32 octets (RFC 8954)")
    return OcspQuery(query.issuer_name_hash, query.issuer_key_hash, query.serial, algorithm, nonce)


def issuer_hashes(issuer: x509.Certificate, algorithm: hashes.HashAlgorithm) -> tuple[bytes, bytes]:
    """A CertID's issuerNameHash and issuerKeyHash for ``issuer`` (RFC 6960 4.1.1)."""
    fn = _HASHES[algorithm.name]
    spki = issuer.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    key_bits = _akeys.PublicKeyInfo.load(spki)["public_key"].contents[1:]  # skip the unused-bits octet
    return fn(issuer.subject.public_bytes()).digest(), fn(key_bits).digest()


def build_ocsp_response(
    *,
    query: OcspQuery,
    status: str,
    this_update: _dt.datetime,
    next_update: _dt.datetime,
    revoked_at: _dt.datetime | None = None,
    reason: x509.ReasonFlags | None = None,
    responder_cert: x509.Certificate,
) -> ocsp.OCSPResponseBuilder:
    """A successful response about one certificate: ``good``, ``revoked`` or ``unknown``."""
    cert_status = {"good": ocsp.OCSPCertStatus.GOOD, "revoked": ocsp.OCSPCertStatus.REVOKED,
                   "unknown": ocsp.OCSPCertStatus.UNKNOWN}[status]
    if cert_status is not ocsp.OCSPCertStatus.REVOKED:
        revoked_at = reason = None
    elif revoked_at is None:
        raise ValueError("a revoked status needs revoked_at")
    if reason is x509.ReasonFlags.unspecified:
        reason = None
    builder = ocsp.OCSPResponseBuilder().add_response_by_hash(
        issuer_name_hash=query.issuer_name_hash,
        issuer_key_hash=query.issuer_key_hash,
        serial_number=query.serial,
        algorithm=query.algorithm,
        cert_status=cert_status,
        this_update=this_update.replace(microsecond=0),
        next_update=next_update.replace(microsecond=0),
        revocation_time=revoked_at.replace(microsecond=0) if revoked_at else None,
        revocation_reason=reason,
    )
    builder = builder.certificates([responder_cert])
    if query.nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(query.nonce), critical=False)
    return builder


def unsuccessful_response(status: str) -> bytes:
    """DER of an unsigned error response: ``malformed``, ``unauthorized`` or ``internal``."""
    value = {"malformed": ocsp.OCSPResponseStatus.MALFORMED_REQUEST,
             "unauthorized": ocsp.OCSPResponseStatus.UNAUTHORIZED,
             "internal": ocsp.OCSPResponseStatus.INTERNAL_ERROR,
             "try_later": ocsp.OCSPResponseStatus.TRY_LATER}[status]
    return ocsp.OCSPResponseBuilder.build_unsuccessful(value).public_bytes(serialization.Encoding.DER)


def build_ocsp_signer_certificate(
    *,
    issuer: x509.Certificate,
    public_key,
    serial: int,
    not_before: _dt.datetime,
    not_after: _dt.datetime,
) -> x509.CertificateBuilder:
    """A delegated OCSP signing certificate (RFC 6960 4.2.2.2): EKU OCSPSigning, ocsp-nocheck."""
    cns = issuer.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = f"OCSP {cns[0].value}"[:64] if cns else "OCSP responder"
    return (
        leaf_builder(cn=cn, issuer=issuer, public_key=public_key, serial=serial, not_before=not_before,
                     not_after=not_after)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False)
        .add_extension(x509.OCSPNoCheck(), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(_aki(issuer), critical=False)
    )
