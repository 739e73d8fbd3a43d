"""A managed CA's subject from text, and the CSR that asks an outside CA to sign a managed key.

Subjects are written as openssl prints them (``openssl x509 -subject``, ``openssl req -subj``): the
most significant attribute first, ``C=DE,O=Acme,CN=Line 3`` or ``/C=DE/O=Acme/CN=Line 3``; the
certificate holds them in that order.  RFC 4514 strings list the same RDNs the other way round (and
that is how the CA's ``subject`` field shows them: ``CN=Line 3,O=Acme,C=DE``).  Escaping is RFC
4514's (``\\,`` for a comma in a value).
"""

from __future__ import annotations

from collections.abc import Callable

from asn1crypto import algos as _algos
from asn1crypto import core as _core
from asn1crypto import csr as _acsr
from asn1crypto import keys as _akeys
from asn1crypto import x509 as _ax509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from ..errors import InvalidInput
from ..ids import validate_name
from .checks import check_subject_text

__all__ = ["parse_subject", "build_csr_der", "MAX_SUBJECT_CHARS"]

MAX_SUBJECT_CHARS = 1024
#: RFC 5280 appendix A upper bounds, by attribute, in characters.
_UPPER_BOUNDS = {NameOID.COUNTRY_NAME: 2, NameOID.COMMON_NAME: 64, NameOID.ORGANIZATION_NAME: 64,
                 NameOID.ORGANIZATIONAL_UNIT_NAME: 64, NameOID.LOCALITY_NAME: 128,
                 NameOID.STATE_OR_PROVINCE_NAME: 128, NameOID.SERIAL_NUMBER: 64}


def _bad(message: str) -> InvalidInput:
    return InvalidInput(message, code="invalid_subject", field="subject")


def parse_subject(text: str) -> x509.Name:
    """``C=DE,O=Acme,CN=Line 3`` (or ``/C=DE/O=Acme/CN=Line 3``) as a Name in that order; one CN required."""
    if not isinstance(text, str) or not text.strip():
        raise _bad("the subject is empty; write it as C=DE,O=Acme,CN=Line 3")
    if len(text) > MAX_SUBJECT_CHARS:
        raise _bad(f"the subject is longer than {MAX_SUBJECT_CHARS} characters")
    written = text.strip()
    if written.startswith("/"):  # openssl's -subj form: /C=DE/O=Acme/CN=Line 3 (no escaping of ',' needed)
        parts = [p for p in written[1:].split("/") if p]
        written = ",".join(p.replace("\\", "\\\\").replace(",", "\\,").replace("+", "\\+") for p in parts)
    try:
        parsed = x509.Name.from_rfc4514_string(written)
    except ValueError as exc:
        raise _bad(f"the subject {text!r} is not attribute=value pairs separated by commas ({exc}); "
                   "write it as C=DE,O=Acme,CN=Line 3") from None
    # RFC 4514 writes the last RDN first; this text is written first-RDN-first, as openssl prints it.
    try:
        name = x509.Name(list(reversed(parsed.rdns)))
    except ValueError as exc:
        raise _bad(f"the subject {text!r} is not valid: {exc}") from None
    cns = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(cns) != 1:
        raise _bad(f"the subject needs exactly one CN (it has {len(cns)}): the CA's name on every certificate "
                   "it signs")
    for attribute in name:
        if not isinstance(attribute.value, str) or not attribute.value:
            raise _bad(f"the subject's {attribute.oid._name} is empty")
        bound = _UPPER_BOUNDS.get(attribute.oid)
        if bound is not None and len(attribute.value) > bound:
            raise _bad(f"the subject's {attribute.oid._name} is longer than {bound} characters (RFC 5280 "
                       "appendix A)")
    validate_name(str(cns[0].value), what="subject CN")
    check_subject_text(name, what="subject")
    return name


def _signature_algorithm(public_key) -> _algos.SignedDigestAlgorithm:
    """The algorithm a Signer's ``sign_bytes`` uses for this key (pki.keys.types.signature_hash_for)."""
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return _algos.SignedDigestAlgorithm({"algorithm": "ed25519"})
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        digest = {384: "sha384", 521: "sha512"}.get(public_key.curve.key_size, "sha256")
        return _algos.SignedDigestAlgorithm({"algorithm": f"{digest}_ecdsa"})
    if isinstance(public_key, rsa.RSAPublicKey):
        return _algos.SignedDigestAlgorithm({"algorithm": "sha256_rsa", "parameters": _core.Null()})
    raise InvalidInput("this key type cannot sign a CSR here", code="unsupported_key_type")


def build_csr_der(*, subject: x509.Name, public_key, sign: Callable[[bytes], bytes]) -> bytes:
    """A PKCS#10 request (RFC 2986) for ``public_key``, signed by ``sign`` (a custody Signer's
    ``sign_bytes``: the private key never leaves custody).  Checked with cryptography before it is returned."""
    info = _acsr.CertificationRequestInfo({
        "version": "v1",
        "subject": _ax509.Name.load(subject.public_bytes()),
        "subject_pk_info": _akeys.PublicKeyInfo.load(public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)),
        "attributes": [],
    })
    der = _acsr.CertificationRequest({
        "certification_request_info": info,
        "signature_algorithm": _signature_algorithm(public_key),
        "signature": sign(info.dump()),
    }).dump()
    if not x509.load_der_x509_csr(der).is_signature_valid:
        raise InvalidInput("the CSR's signature does not verify: the custody key does not match its public key",
                           code="key_mismatch")
    return der
