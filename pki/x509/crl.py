"""CRLs: building them (managed and offline-signed) and checking uploaded ones.

Pure: certificates, entries and the time in; builders, CRLs or an
:class:`~pki.errors.InvalidInput` with a stable code out.

The entry list goes to :class:`x509.CertificateRevocationListBuilder` at
construction: ``add_revoked_certificate`` copies the list each call, which is
quadratic in the number of entries (100,000 revocations would take minutes).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import CRLEntryExtensionOID, ExtensionOID

from ..errors import InvalidInput
from ..ids import format_serial
from .build import _aki
from .checks import read_extensions
from .parse import _check_der_framing, _pem_blocks

__all__ = [
    "RevokedEntry",
    "MAX_CRL_BYTES",
    "build_crl",
    "load_crl",
    "check_crl",
    "crl_number_of",
    "REASONS",
    "REVOCATION_REASONS",
    "HOLD",
]

#: 100,000 entries of a 20-octet serial and a reason take ~4 MB of DER.
MAX_CRL_BYTES = 64 * 1024 * 1024

#: Reason names (RFC 5280 5.3.1, as the store keeps them) -> cryptography's flags.
REASONS: dict[str, x509.ReasonFlags] = {
    "unspecified": x509.ReasonFlags.unspecified,
    "keyCompromise": x509.ReasonFlags.key_compromise,
    "cACompromise": x509.ReasonFlags.ca_compromise,
    "affiliationChanged": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessationOfOperation": x509.ReasonFlags.cessation_of_operation,
    "certificateHold": x509.ReasonFlags.certificate_hold,
    "privilegeWithdrawn": x509.ReasonFlags.privilege_withdrawn,
    "aACompromise": x509.ReasonFlags.aa_compromise,
}
HOLD = "certificateHold"
#: The reasons a revocation may give.  certificateHold is not one: a hold is a
#: deactivation (INACTIVE), which can be undone, and goes on the CRL as HOLD.
REVOCATION_REASONS: dict[str, x509.ReasonFlags] = {name: flag for name, flag in REASONS.items() if name != HOLD}

_STRONG_HASHES = (hashes.SHA256, hashes.SHA384, hashes.SHA512)
#: CRL extensions a CRL handed to us may carry; others critical are refused,
#: and a delta CRL or an indirect/partitioned one is not a CA's complete CRL.
_ALLOWED_CRL_EXTENSIONS = frozenset(
    {ExtensionOID.AUTHORITY_KEY_IDENTIFIER, ExtensionOID.CRL_NUMBER, ExtensionOID.ISSUER_ALTERNATIVE_NAME,
     ExtensionOID.AUTHORITY_INFORMATION_ACCESS, ExtensionOID.FRESHEST_CRL}
)


@dataclass(frozen=True, slots=True)
class RevokedEntry:
    """One CRL entry: serial, when, and why (a name of :data:`REASONS`)."""

    serial: int
    revoked_at: _dt.datetime
    reason: str = "unspecified"


#: CRL numbers, like serials, are at most 20 octets of DER INTEGER (RFC 5280 5.2.3): below 2^159.
MAX_CRL_NUMBER = 2**159


def _bad(code: str, message: str, **data) -> InvalidInput:
    return InvalidInput(message, code=code, **data)


def _seconds(moment: _dt.datetime) -> _dt.datetime:
    if moment.tzinfo is None:
        raise ValueError("naive datetime: give timezone-aware UTC")
    return moment.astimezone(_dt.timezone.utc).replace(microsecond=0)


def _revoked(entries: Iterable[RevokedEntry]) -> list[x509.RevokedCertificate]:
    out = []
    # One reasonCode extension object per reason, shared by every entry that has it.
    reason_ext = {
        name: x509.Extension(CRLEntryExtensionOID.CRL_REASON, False, x509.CRLReason(flag))
        for name, flag in REASONS.items() if name != "unspecified"
    }
    for entry in entries:
        if entry.reason not in REASONS:
            raise ValueError(f"unknown revocation reason {entry.reason!r}")
        builder = x509.RevokedCertificateBuilder(
            serial_number=entry.serial,
            revocation_date=_seconds(entry.revoked_at),
            # RFC 5280 5.3.1: leave reasonCode out rather than say "unspecified".
            extensions=[] if entry.reason == "unspecified" else [reason_ext[entry.reason]],
        )
        out.append(builder.build())
    return out


def build_crl(
    *,
    issuer: x509.Certificate,
    entries: Sequence[RevokedEntry],
    crl_number: int,
    this_update: _dt.datetime,
    next_update: _dt.datetime,
) -> x509.CertificateRevocationListBuilder:
    """A complete CRL of ``issuer`` (v2, AKI, CRL number), ready for a Signer."""
    if not isinstance(issuer, x509.Certificate):
        raise TypeError("issuer must be an x509.Certificate")
    if not 0 <= crl_number < MAX_CRL_NUMBER:
        raise ValueError("crl_number must be a non-negative integer of at most 20 octets")
    this_update, next_update = _seconds(this_update), _seconds(next_update)
    if next_update <= this_update:
        raise ValueError("next_update must be after this_update")
    return x509.CertificateRevocationListBuilder(
        issuer_name=issuer.subject,
        last_update=this_update,
        next_update=next_update,
        extensions=[
            x509.Extension(ExtensionOID.AUTHORITY_KEY_IDENTIFIER, False, _aki(issuer)),
            x509.Extension(ExtensionOID.CRL_NUMBER, False, x509.CRLNumber(crl_number)),
        ],
        revoked_certificates=_revoked(entries),
    )


def load_crl(data: bytes, *, what: str = "CRL") -> x509.CertificateRevocationList:
    """Exactly one CRL, PEM ('X509 CRL') or DER, strictly."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"{what} must be bytes")
    data = bytes(data)
    if not data:
        raise _bad("empty_input", f"{what}: the input is empty")
    if len(data) > MAX_CRL_BYTES:
        raise _bad("input_too_large", f"{what}: {len(data)} bytes is more than the {MAX_CRL_BYTES} allowed")
    if data.lstrip().startswith(b"-----BEGIN "):
        blocks = _pem_blocks(data, what=what, max_items=1)
        if blocks[0].label != "X509 CRL":
            raise _bad("wrong_pem_label", f"{what}: got a PEM '{blocks[0].label}', expected 'X509 CRL'")
        der = blocks[0].der
    elif data[:1] == b"\x30":
        der = data
    else:
        raise _bad("invalid_pem", f"{what}: neither PEM nor DER")
    _check_der_framing(der, what=what)
    try:
        crl = x509.load_der_x509_crl(der)
        crl.issuer  # noqa: B018 - decoded lazily; fail here
        entries = list(crl)
    except ValueError as exc:
        raise _bad("invalid_crl", f"{what}: not a valid X.509 CRL ({exc})") from None
    read_extensions(crl, what=what)
    for entry in entries:
        read_extensions(entry, what=f"{what} entry {format_serial(entry.serial_number)}")
    return crl


def crl_number_of(crl: x509.CertificateRevocationList) -> int | None:
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return None


def check_crl(
    crl: x509.CertificateRevocationList,
    *,
    ca: x509.Certificate,
    now: _dt.datetime,
    what: str = "CRL",
) -> int:
    """Issuer, signature, extensions and freshness of a CRL handed to us; returns its number.

    Whether it lists enough, and whether its number grew, needs the store:
    the service checks that.
    """
    if crl.issuer != ca.subject:
        raise _bad(
            "crl_wrong_issuer",
            f"{what}: issued by {crl.issuer.rfc4514_string()}, not by this CA ({ca.subject.rfc4514_string()}); "
            "sign it with this CA's key",
        )
    try:
        algorithm = crl.signature_hash_algorithm
    except UnsupportedAlgorithm:
        raise _bad("weak_signature_algorithm", f"{what}: its signature algorithm is not supported") from None
    if algorithm is not None and not isinstance(algorithm, _STRONG_HASHES):
        raise _bad("weak_signature_algorithm", f"{what}: signed with {algorithm.name.upper()}; use SHA-256 or better")
    try:
        valid = crl.is_signature_valid(ca.public_key())
    except (InvalidSignature, UnsupportedAlgorithm, TypeError, ValueError):
        valid = False
    if not valid:
        raise _bad("crl_bad_signature", f"{what}: its signature does not verify with this CA's key")
    for ext in crl.extensions:
        if ext.oid == ExtensionOID.DELTA_CRL_INDICATOR or ext.oid == ExtensionOID.ISSUING_DISTRIBUTION_POINT:
            raise _bad(
                "crl_not_complete",
                f"{what}: a delta or partitioned CRL ({ext.oid.dotted_string}); give the CA's complete CRL",
            )
        if ext.critical and ext.oid not in _ALLOWED_CRL_EXTENSIONS:
            raise _bad(
                "unknown_critical_extension",
                f"{what}: carries the critical extension {ext.oid.dotted_string}, which this PKI cannot process",
            )
    try:
        aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        expected = _aki(ca).key_identifier
        if aki.key_identifier is not None and expected is not None and aki.key_identifier != expected:
            raise _bad("crl_wrong_issuer", f"{what}: its authority key identifier names another key of this CA")
    except x509.ExtensionNotFound:
        pass
    number = crl_number_of(crl)
    if number is None:
        raise _bad("crl_missing_number", f"{what}: has no CRL number; give a v2 CRL with cRLNumber (RFC 5280 5.2.3)")
    if not 0 <= number < MAX_CRL_NUMBER:
        # Stored, it could never be followed: no larger number is allowed (RFC 5280 5.2.3).
        raise _bad("crl_number_too_large", f"{what}: its CRL number is negative or longer than 20 octets "
                   "(RFC 5280 5.2.3); sign one with a number below 2^159")
    this_update = crl.last_update_utc
    next_update = crl.next_update_utc
    if next_update is None:
        raise _bad("crl_missing_next_update", f"{what}: has no nextUpdate; a broker cannot tell when it expires")
    if this_update > now + _dt.timedelta(minutes=5):
        raise _bad("crl_not_yet_valid", f"{what}: thisUpdate {this_update.isoformat()} is in the future; check the clock")
    if next_update <= now:
        raise _bad(
            "crl_stale",
            f"{what}: expired at {next_update.isoformat()} (nextUpdate); sign a new one from a fresh CRL request",
        )
    return number
