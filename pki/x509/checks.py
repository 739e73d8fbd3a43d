"""Checks on CA and verification certificates.

Pure functions: certificates and the time in, :class:`CertificateFacts` or an
:class:`~pki.errors.InvalidInput` with a stable code out.  Each check has its
own code so that scripts and tests can tell the failures apart.
"""

from __future__ import annotations

import datetime as _dt
import unicodedata

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtensionOID

from ..errors import InvalidInput
from ..ids import MAX_SERIAL_OCTETS, validate_name
from .facts import CertificateFacts, common_names, facts_of, public_key_type

__all__ = [
    "check_ca_certificate",
    "check_verification_certificate",
    "check_chain",
    "check_public_key",
    "check_signature_algorithm",
    "check_validity",
    "check_serial",
    "check_subject_text",
    "public_key_of",
    "MIN_RSA_BITS",
    "read_extensions",
]

MIN_RSA_BITS = 2048
_ALLOWED_CURVES = ("secp256r1", "secp384r1", "secp521r1")
_STRONG_HASHES = (hashes.SHA256, hashes.SHA384, hashes.SHA512)

#: Extensions this project understands; any other one marked critical is refused,
#: because RFC 5280 says a relying party must reject what it cannot process.
_KNOWN_EXTENSIONS = frozenset(
    {
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        ExtensionOID.ISSUER_ALTERNATIVE_NAME,
        ExtensionOID.NAME_CONSTRAINTS,
        ExtensionOID.POLICY_CONSTRAINTS,
        ExtensionOID.CERTIFICATE_POLICIES,
        ExtensionOID.POLICY_MAPPINGS,
        ExtensionOID.INHIBIT_ANY_POLICY,
        ExtensionOID.CRL_DISTRIBUTION_POINTS,
        ExtensionOID.FRESHEST_CRL,
        ExtensionOID.AUTHORITY_INFORMATION_ACCESS,
        ExtensionOID.SUBJECT_INFORMATION_ACCESS,
    }
)


def _bad(code: str, message: str, **data) -> InvalidInput:
    return InvalidInput(message, code=code, **data)


def read_extensions(obj, *, what: str) -> x509.Extensions:
    """The decoded extensions of a certificate, CRL or CRL entry; a bad one is ``invalid_extension``.

    cryptography decodes them lazily, on first access, and raises more than ValueError: an extension
    twice (RFC 5280 4.2 allows one instance of each), a general name it cannot represent.  Read them
    while the input is being read, so that a later check never meets an exception of its own.
    """
    try:
        return obj.extensions
    except x509.DuplicateExtension as exc:
        raise _bad("invalid_extension", f"{what}: extension {exc.oid.dotted_string} appears twice") from None
    except x509.UnsupportedGeneralNameType:
        raise _bad(
            "invalid_extension", f"{what}: a general name of a type this PKI does not support (x400Address, "
            "ediPartyName)",
        ) from None
    except ValueError:
        raise _bad("invalid_extension", f"{what}: an extension is malformed (not the DER its type defines)") from None


def check_public_key(public_key, *, what: str) -> str:
    """RSA >= 2048, P-256/P-384/P-521 or Ed25519; returns the key type name."""
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < MIN_RSA_BITS:
            raise _bad(
                "weak_key",
                f"{what}: RSA-{public_key.key_size} is too weak; use RSA-{MIN_RSA_BITS} or more, or EC P-256",
                key_type=public_key_type(public_key),
            )
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        if public_key.curve.name not in _ALLOWED_CURVES:
            raise _bad(
                "weak_key",
                f"{what}: curve {public_key.curve.name} is not accepted; use P-256, P-384 or P-521",
                key_type=public_key_type(public_key),
            )
    elif not isinstance(public_key, ed25519.Ed25519PublicKey):
        raise _bad(
            "weak_key",
            f"{what}: {public_key_type(public_key)} keys are not accepted; use EC P-256, RSA-2048+ or Ed25519",
            key_type=public_key_type(public_key),
        )
    return public_key_type(public_key)


def public_key_of(cert: x509.Certificate, *, what: str):
    try:
        return cert.public_key()
    except (UnsupportedAlgorithm, ValueError) as exc:
        raise _bad("weak_key", f"{what}: its public key algorithm is not supported") from exc


def check_signature_algorithm(cert: x509.Certificate, *, what: str) -> None:
    """SHA-256 or better, or Ed25519; SHA-1 and MD5 are refused."""
    try:
        algorithm = cert.signature_hash_algorithm
    except UnsupportedAlgorithm as exc:
        raise _bad(
            "weak_signature_algorithm",
            f"{what}: signature algorithm {cert.signature_algorithm_oid.dotted_string} is not supported",
        ) from exc
    if algorithm is None:  # Ed25519 / Ed448 sign without a separate hash
        return
    if not isinstance(algorithm, _STRONG_HASHES):
        raise _bad(
            "weak_signature_algorithm",
            f"{what}: signed with {algorithm.name.upper()}; re-sign it with SHA-256 or better",
        )


def check_validity(cert: x509.Certificate, *, now: _dt.datetime, what: str, code_prefix: str = "certificate") -> None:
    if now < cert.not_valid_before_utc:
        raise _bad(
            f"{code_prefix}_not_yet_valid",
            f"{what}: not valid before {cert.not_valid_before_utc.isoformat()}; check its dates or the clock",
        )
    if now > cert.not_valid_after_utc:
        raise _bad(
            f"{code_prefix}_expired",
            f"{what}: expired on {cert.not_valid_after_utc.isoformat()}",
        )


def check_serial(cert: x509.Certificate, *, what: str) -> None:
    serial = cert.serial_number
    if serial <= 0:
        raise _bad("invalid_serial", f"{what}: serial number {serial} is not positive (RFC 5280 4.1.2.2)")
    if serial.bit_length() // 8 + 1 > MAX_SERIAL_OCTETS:
        raise _bad("invalid_serial", f"{what}: serial number longer than {MAX_SERIAL_OCTETS} octets")


def _check_names(cert: x509.Certificate, *, what: str) -> None:
    for cn in common_names(cert.subject):
        validate_name(cn, what=f"{what}: subject CN")
    check_subject_text(cert.subject, what=what)


def check_subject_text(name: x509.Name, *, what: str) -> None:
    """No control or invisible character in any attribute of a subject (``invalid_name``).

    The CN has its own rules (pki.ids.validate_name); the other attributes (O, OU, L...) are shown to
    people too, and an ANSI escape, a NUL or a bidi override (U+202E) in them would rewrite a terminal
    or make two names look alike: the categories validate_name refuses, Cc, Cs and Cf.
    """
    for attribute in name:
        if isinstance(attribute.value, str):
            for ch in attribute.value:
                if unicodedata.category(ch) in ("Cc", "Cs", "Cf"):
                    label = getattr(attribute.oid, "_name", None) or attribute.oid.dotted_string
                    raise _bad(
                        "invalid_name",
                        f"{what}: subject {label} contains the control or invisible character U+{ord(ch):04X}",
                    )


def _check_critical_extensions(cert: x509.Certificate, *, what: str) -> x509.Extensions:
    extensions = read_extensions(cert, what=what)
    for ext in extensions:
        if ext.critical and ext.oid not in _KNOWN_EXTENSIONS:
            raise _bad(
                "unknown_critical_extension",
                f"{what}: carries the critical extension {ext.oid.dotted_string}, which this PKI cannot process",
                oid=ext.oid.dotted_string,
            )
    return extensions


def check_ca_certificate(cert: x509.Certificate, *, now: _dt.datetime, what: str = "CA certificate") -> CertificateFacts:
    """Everything a CA must be before it may be trusted here."""
    check_serial(cert, what=what)
    _check_names(cert, what=what)
    extensions = _check_critical_extensions(cert, what=what)
    try:
        bc = extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise _bad("not_a_ca", f"{what}: has no basicConstraints extension, so it is not a CA") from None
    if not bc.ca:
        raise _bad("not_a_ca", f"{what}: basicConstraints says CA:FALSE; give the CA certificate, not a leaf")
    if not extensions.get_extension_for_class(x509.BasicConstraints).critical:
        # RFC 5280 4.2.1.9: a CA whose key verifies certificate signatures MUST mark it critical;
        # cryptography's verifier (pki/x509/leaf.py, webpki_defaults_ca) refuses every leaf under it.
        raise _bad(
            "ca_basic_constraints_not_critical",
            f"{what}: its basicConstraints extension is not marked critical (RFC 5280 4.2.1.9), so no "
            "device certificate under it would verify; reissue it with basicConstraints critical",
        )
    try:
        ku = extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        raise _bad("ca_missing_key_cert_sign", f"{what}: has no keyUsage extension; a CA needs keyCertSign") from None
    if not ku.key_cert_sign:
        raise _bad("ca_missing_key_cert_sign", f"{what}: keyUsage lacks keyCertSign, so it may not sign certificates")
    check_validity(cert, now=now, what=what, code_prefix="ca")
    check_public_key(public_key_of(cert, what=what), what=what)
    check_signature_algorithm(cert, what=what)
    if cert.subject == cert.issuer:
        try:
            cert.verify_directly_issued_by(cert)
        except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
            raise _bad(
                "bad_self_signature",
                f"{what}: self-signed, but the self-signature does not verify; the file is damaged or forged",
            ) from None
    return facts_of(cert)


def check_chain(cert: x509.Certificate, chain: list[x509.Certificate], *, now: _dt.datetime) -> None:
    """An intermediate's chain: each certificate issued by the next, ending at a root."""
    current = cert
    seen = {cert.fingerprint(hashes.SHA256())}
    for position, issuer in enumerate(chain, start=1):
        what = f"chain certificate {position}"
        if issuer.fingerprint(hashes.SHA256()) in seen:
            raise _bad(
                "chain_repeated_certificate",
                f"{what} repeats a certificate given before it; give each issuer once, ending at the root",
            )
        seen.add(issuer.fingerprint(hashes.SHA256()))
        if current is not cert and current.subject == current.issuer:
            raise _bad(
                "chain_broken",
                f"chain certificate {position - 1} is a self-signed root, but the chain goes on; end it at the root",
            )
        check_ca_certificate(issuer, now=now, what=what)
        _check_path_length(issuer, below=position, what=what)
        try:
            current.verify_directly_issued_by(issuer)
        except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
            raise _bad(
                "chain_broken",
                f"{what} ({issuer.subject.rfc4514_string()}) did not issue the certificate before it; "
                "give the chain in order, issuer after subject",
            ) from None
        current = issuer
    if chain and current.subject != current.issuer:
        raise _bad("chain_incomplete", "the chain does not end at a self-signed root; add the root")


def _check_path_length(issuer: x509.Certificate, *, below: int, what: str) -> None:
    """``below`` CA certificates sit under ``issuer`` (the registered CA, then the chain before it).

    pathLenConstraint counts the intermediates between a CA and the end entity (RFC 5280 4.2.1.9):
    all of them are, so a chain that exceeds it makes every device certificate fail verification.
    """
    limit = read_extensions(issuer, what=what).get_extension_for_class(x509.BasicConstraints).value.path_length
    if limit is not None and below > limit:
        raise _bad(
            "chain_path_length_exceeded",
            f"{what} allows {limit} intermediate CA(s) below it (pathLenConstraint), but the chain puts {below} "
            "there; no device certificate under this CA would verify",
        )


def check_verification_certificate(
    vcert: x509.Certificate, ca: x509.Certificate, *, now: _dt.datetime
) -> str:
    """Proof of possession: ``vcert`` was signed with ``ca``'s key; returns its CN."""
    what = "verification certificate"
    ca_public = ca.public_key()
    if vcert == ca or vcert.public_key() == ca_public:
        raise _bad(
            "verification_is_ca_certificate",
            f"{what}: this is the CA certificate (or uses its key); sign a new certificate "
            "whose CN is the register code with the CA key",
        )
    # Before the signature: cryptography will not verify SHA-1 at all, and the
    # user should hear "weak algorithm", not "wrong signer".
    check_signature_algorithm(vcert, what=what)
    try:
        vcert.verify_directly_issued_by(ca)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        raise _bad(
            "verification_wrong_signer",
            f"{what}: not signed by the CA being registered; sign it with that CA's private key",
        ) from None
    check_validity(vcert, now=now, what=what, code_prefix="verification")
    check_subject_text(vcert.subject, what=what)
    names = common_names(vcert.subject)
    if len(names) != 1:
        raise _bad(
            "verification_code_mismatch",
            f"{what}: its subject must hold exactly one CN, the register code",
        )
    return names[0]
