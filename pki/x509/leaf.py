"""Checks on a device certificate issued elsewhere, before it is registered.

Pure: the certificate, its CA's certificate and chain, and the time in; the
client id or an :class:`~pki.errors.InvalidInput` with a stable code out.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store as TrustStore,
    VerificationError,
)

from ..errors import InvalidInput
from ..ids import validate_client_id
from .checks import (
    check_public_key,
    check_serial,
    check_signature_algorithm,
    check_subject_text,
    check_validity,
    public_key_of,
    read_extensions,
)
from .facts import common_names

__all__ = ["check_device_certificate", "check_signature_from", "directly_issued_by", "verify_device_chain"]


def check_device_certificate(cert: x509.Certificate, *, now: _dt.datetime) -> str:
    """What cryptography's verifier does not check (a leaf, clientAuth, one CN); returns the client id."""
    what = "device certificate"
    check_serial(cert, what=what)
    extensions = read_extensions(cert, what=what)
    try:
        bc = extensions.get_extension_for_class(x509.BasicConstraints).value
        if bc.ca:
            raise InvalidInput(f"{what}: basicConstraints says CA:TRUE; a device certificate is a leaf", code="leaf_is_ca")
    except x509.ExtensionNotFound:
        pass
    check_public_key(public_key_of(cert, what=what), what=what)
    check_signature_algorithm(cert, what=what)
    check_subject_text(cert.subject, what=what)
    try:
        eku = extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        eku = []
    if ExtendedKeyUsageOID.CLIENT_AUTH not in eku:
        raise InvalidInput(
            f"{what}: its extended key usage lacks clientAuth, so a broker would refuse it",
            code="leaf_missing_client_auth",
        )
    check_validity(cert, now=now, what=what)
    cns = common_names(cert.subject)
    if len(cns) != 1:
        raise InvalidInput(f"{what}: its subject needs exactly one CN, the client id", code="missing_client_id")
    return validate_client_id(cns[0])


def directly_issued_by(cert: x509.Certificate, issuer_der: bytes) -> bool:
    """Whether the certificate ``issuer_der`` signed ``cert`` (names and signature); any failure means no."""
    try:
        cert.verify_directly_issued_by(x509.load_der_x509_certificate(issuer_der))
    except Exception:  # noqa: BLE001 - whatever fails, this is not the issuer
        return False
    return True


def check_signature_from(cert: x509.Certificate, candidate_ders: Sequence[bytes]) -> None:
    """No candidate issued ``cert``: ``certificate_bad_signature`` when one should have.

    A candidate has ``cert``'s issuer name; when its key is also the one ``cert`` names (its
    authority key identifier, or it names none), the signature itself is wrong: the certificate was
    damaged or forged, and "register its CA first" would send the user the wrong way.
    """
    aki = _authority_key_id(cert)
    for der in candidate_ders:
        candidate = x509.load_der_x509_certificate(der)
        if aki is None or aki == x509.SubjectKeyIdentifier.from_public_key(candidate.public_key()).digest or (
            aki == _subject_key_id(candidate)
        ):
            raise InvalidInput(
                "device certificate: its signature does not verify with the key of the registered CA its issuer "
                "name and authority key identifier point to; the file is damaged or forged",
                code="certificate_bad_signature",
            )


def _authority_key_id(cert: x509.Certificate) -> bytes | None:
    try:
        return cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    except x509.ExtensionNotFound:
        return None


def _subject_key_id(cert: x509.Certificate) -> bytes | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return None


#: Web PKI rules, except that a device's identity is its CN: a SAN is optional.
_DEVICE_EE_POLICY = ExtensionPolicy.webpki_defaults_ee().may_be_present(
    x509.SubjectAlternativeName, Criticality.AGNOSTIC, None
)


def verify_device_chain(
    leaf: x509.Certificate,
    *,
    ca_cert: x509.Certificate,
    chain: Sequence[x509.Certificate],
    now: _dt.datetime,
    ca_name: str,
) -> None:
    """``leaf`` verifies as a client certificate under ``ca_cert`` and its chain (root last).

    The chain's root is the trust anchor (``ca_cert`` itself when it has no
    chain); ``ca_name`` names the CA in the error.
    """
    if leaf.not_valid_after_utc > ca_cert.not_valid_after_utc:
        # The rule issuance applies (pki/services/devices.py): a leaf outliving its CA would be trusted,
        # by the dates it carries, after the CA that vouches for it is gone.
        raise InvalidInput(
            f"device certificate: valid until {leaf.not_valid_after_utc:%Y-%m-%d}, after CA {ca_name} expires "
            f"({ca_cert.not_valid_after_utc:%Y-%m-%d}); reissue it within the CA's validity",
            code="validity_exceeds_ca",
        )
    anchors = [chain[-1]] if chain else [ca_cert]
    intermediates = [ca_cert, *chain[:-1]] if chain else []
    verifier = (
        PolicyBuilder()
        .store(TrustStore(anchors))
        .time(now)
        .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=_DEVICE_EE_POLICY)
        .build_client_verifier()
    )
    try:
        verifier.verify(leaf, intermediates)
    except VerificationError as exc:
        raise InvalidInput(
            f"device certificate does not verify under CA {ca_name}: {exc}", code="chain_verification_failed"
        ) from None
