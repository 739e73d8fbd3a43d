"""EST enrollment and re-enrollment (RFC 7030 4.2): the authenticated paths.

The HTTP layer hands in the request as plain values: the body (base64
PKCS#10), the HTTP Basic credentials if any, and the DER of the TLS client
certificate if the handshake (or a trusted proxy) proved one.  Each call is
one transaction: on any refusal nothing is written.

- ``simpleenroll`` authenticates with a claim (HTTP Basic) or a certificate
  of a bootstrap-only CA whose CN is the CSR's.  The certificate follows the
  project's device profile: only the CSR's key and CN are used.
- ``simplereenroll`` authenticates with the current certificate (ACTIVE,
  issued here, unexpired or within its CA's window after expiry); the CSR's
  subject and SANs must equal it (RFC 7030 4.2.2).  Same key: renew; new
  key: rekey.  The old certificate is superseded after the CA's grace.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
from dataclasses import dataclass

from cryptography import x509
from sqlalchemy import select, update

from ..errors import Conflict, InvalidInput, PermissionDenied, Unauthenticated
from ..ids import validate_client_id
from ..store import CaCertificate, DeviceCertificate, DeviceStatus, Status, repos
from ..store.enrollment_models import EnrollmentClaim, EnrollmentClaimUse
from .. import x509 as px509
from . import audit
from .context import Context
from .devices import (_issuer_material, _issuer_state, device_profile, device_row_values, issuer_template,
                      sign_device)
from .enrollment import _check_enrolling_ca, certs_only, check_claim, est_ca
from .group_commit import GroupCommit
from .managed import ca_signer
from .renewal import check_renewable, grace_of, replace_certificate, sans_of

__all__ = ["simpleenroll", "simplereenroll", "decode_csr", "MAX_EST_BODY"]

#: A PKCS#10 request in base64: an RSA-4096 one is ~2.3 KB; anything past this is not a CSR.
MAX_EST_BODY = 64 * 1024


def decode_csr(body: bytes) -> x509.CertificateSigningRequest:
    """The base64 body (RFC 7030 4.2.1; whitespace allowed) as a checked CSR; 400 on anything else."""
    if len(body) > MAX_EST_BODY:
        raise InvalidInput(f"the body is larger than {MAX_EST_BODY} bytes; a CSR is far smaller",
                           code="request_too_large")
    compact = b"".join(body.split())
    if not compact:
        raise InvalidInput("the body is empty: send a base64 PKCS#10 request", code="empty_input")
    try:
        der = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("the body is not base64: send the DER PKCS#10 request base64-encoded "
                           "(Content-Type application/pkcs10)", code="invalid_base64") from None
    request = px509.load_csr(der)
    px509.check_public_key(request.public_key(), what="CSR key")
    return request


def _single_cn(request: x509.CertificateSigningRequest) -> str:
    cns = px509.common_names(request.subject)
    if len(cns) != 1:
        raise InvalidInput("the CSR subject must hold exactly one CN: the client id", code="missing_client_id")
    return validate_client_id(cns[0])


def _device_by_der(session, ctx: Context, der: bytes, *,
                   lock: bool = False) -> tuple[DeviceCertificate, CaCertificate] | None:
    """The row of exactly this certificate and its CA; with ``lock``, the row FOR UPDATE (a renewal follows)."""
    query = select(DeviceCertificate).where(DeviceCertificate.instance == ctx.instance,
                                            DeviceCertificate.fingerprint_sha256 == px509.fingerprint_sha256_der(der))
    row = session.scalars(query.with_for_update() if lock else query).one_or_none()
    if row is None or bytes(row.cert_der) != der:
        return None
    return row, repos.get_ca_by_id(session, ca_id=row.ca_id)


def _issue_in(session, ctx: Context, ca_row: CaCertificate, *, public_key, client_id: str, now: _dt.datetime):
    state = _issuer_state(session, ctx, ca_row.sn)
    signer = ca_signer(ctx, session, state)
    profile = device_profile(ctx, state, days=None, now=now)
    ca_cert, chain = _issuer_material(ctx, state)
    made = sign_device(profile, issuer_template(ctx, state, profile, ca_cert, signer), signer, public_key=public_key,
                       client_id=client_id)
    cert = made.certificate()
    values = device_row_values(made, instance=ctx.instance, ca_id=state.id, client_id=client_id,
                               key_type=px509.public_key_type(public_key), now=now)
    repos.insert_device_values(session, values)
    return cert, values["sn"]


def simpleenroll(ctx: Context, *, label: str | None, body: bytes, basic: tuple[str, str] | None,
                 client_cert: bytes | None) -> bytes:
    """First enrollment; the answer is the new certificate as a certs-only PKCS#7 (DER)."""
    if basic is None and client_cert is None:
        raise Unauthenticated("enroll with a claim (HTTP Basic: claim id and password) or a bootstrap certificate",
                              code="est_unauthenticated")
    now = ctx.clock.now()
    with ctx.store.transaction() as session:
        claim = None
        if basic is not None:
            claim = check_claim(session, ctx, claim_id=basic[0], password=basic[1], now=now)
        else:
            found = _device_by_der(session, ctx, client_cert)
            if found is None or not found[1].bootstrap_only:
                raise Unauthenticated("the client certificate is not a bootstrap certificate issued here; enroll "
                                      "with a claim, or renew with simplereenroll", code="est_certificate_invalid")
            _check_current(found[0], found[1], now=now, grace=False)
        request = decode_csr(body)
        client_id = _single_cn(request)
        if claim is not None:
            ca_row = repos.get_ca_by_id(session, ca_id=claim.ca_id)
            if label is not None and ca_row.est_label != label:
                raise PermissionDenied(f"claim {claim.claim_id} is for CA {ca_row.sn}, not this EST label",
                                       code="est_wrong_ca")
            _use_claim(session, claim, client_id=client_id, now=now)
        else:
            if px509.common_names(x509.load_der_x509_certificate(client_cert).subject) != [client_id]:
                raise PermissionDenied("a bootstrap certificate enrolls only its own client id (the CSR's CN must be "
                                       "the certificate's)", code="est_wrong_client_id")
            ca_row = est_ca(session, ctx, label=label)
            if ca_row is None:
                raise PermissionDenied("no EST CA for the unlabelled path: use a labelled one",
                                       code="est_wrong_ca")
        _check_enrolling_ca(ca_row, now=now)
        cert, sn = _issue_in(session, ctx, ca_row, public_key=request.public_key(), client_id=client_id, now=now)
        if claim is not None:
            session.add(EnrollmentClaimUse(claim_row_id=claim.id, client_id=client_id, device_sn=sn, used_at=now))
            session.flush()
        audit.record_change(session, ctx, "device.issue", subject=f"{ca_row.sn}/{sn}", client_id=client_id,
                            via="est", claim_id=claim.claim_id if claim is not None else None,
                            bootstrap=None if claim is not None else px509.fingerprint_sha256_der(client_cert))
    return certs_only([cert])


def _use_claim(session, claim: EnrollmentClaim, *, client_id: str, now: _dt.datetime) -> None:
    if claim.client_id_prefix and not client_id.startswith(claim.client_id_prefix):
        raise PermissionDenied(f"claim {claim.claim_id} enrolls only client ids starting {claim.client_id_prefix!r}",
                               code="claim_client_id_prefix")
    used = session.scalars(select(EnrollmentClaimUse).where(
        EnrollmentClaimUse.claim_row_id == claim.id, EnrollmentClaimUse.client_id == client_id)).first()
    if used is not None:
        raise Conflict(f"client id {client_id} already enrolled with claim {claim.claim_id}", code="claim_used")
    # Conditional: two enrollments racing for the last use cannot both take it.
    taken = session.execute(update(EnrollmentClaim).where(
        EnrollmentClaim.id == claim.id, EnrollmentClaim.uses < EnrollmentClaim.max_uses).values(
        uses=EnrollmentClaim.uses + 1, updated_at=now)).rowcount
    if not taken:
        raise PermissionDenied(f"claim {claim.claim_id} has no uses left", code="claim_exhausted")


def _check_current(row: DeviceCertificate, ca_row: CaCertificate, *, now: _dt.datetime, grace: bool) -> None:
    """The authenticating certificate: ACTIVE, its CA ACTIVE, unexpired (or within the CA's window)."""
    if row.status != DeviceStatus.ACTIVE or ca_row.status != Status.ACTIVE:
        raise Unauthenticated(f"the client certificate {row.sn} is {row.status}"
                              + ("" if ca_row.status == Status.ACTIVE else f" and its CA is {ca_row.status}"),
                              code="est_certificate_invalid")
    window = _dt.timedelta(seconds=ca_row.renew_after_expiry_s or 0) if grace else _dt.timedelta(0)
    if row.not_after + window <= now:
        raise Unauthenticated(f"the client certificate {row.sn} expired at {row.not_after:%Y-%m-%dT%H:%M:%SZ}"
                              + ("; its CA allows no renewal after expiry" if grace and not window else ""),
                              code="est_certificate_expired")
    if row.not_before > now:
        raise Unauthenticated(f"the client certificate {row.sn} is not valid yet", code="est_certificate_invalid")


@dataclass(frozen=True)
class _Reenroll:
    label: str | None
    client_cert: bytes
    current: x509.Certificate
    request: x509.CertificateSigningRequest | None
    refusal: Exception | None  # the CSR's, raised only once the client is authenticated
    now: _dt.datetime


def simplereenroll(ctx: Context, *, label: str | None, body: bytes, client_cert: bytes | None) -> bytes:
    """Renewal or rekey by the device itself; the answer is the new certificate as a certs-only PKCS#7.

    Parsing happens before the transaction (no lock held for it); reenrollments that arrive together share
    one transaction and one durable commit, as issuances do (pki.services.group_commit): a fleet renewing
    at once pays one flush per batch, and a refused one fails alone.
    """
    if client_cert is None:
        raise Unauthenticated("reenroll with the current certificate as the TLS client certificate",
                              code="est_unauthenticated")
    try:
        request, refusal = decode_csr(body), None
    except InvalidInput as exc:
        request, refusal = None, exc
    job = _Reenroll(label=label, client_cert=client_cert, current=x509.load_der_x509_certificate(client_cert),
                    request=request, refusal=refusal, now=ctx.clock.now())
    return certs_only([_reenroll_group(ctx).submit(job)])


def _reenroll_group(ctx: Context) -> GroupCommit:
    return ctx.memo(("group_commit", "est.reenroll"),
                    lambda: GroupCommit(ctx.store.transaction, lambda session, job: _reenroll(ctx, session, job)))


def _reenroll(ctx: Context, session, job: _Reenroll) -> x509.Certificate:
    now = job.now
    found = _device_by_der(session, ctx, job.client_cert, lock=True)
    if found is None:
        raise Unauthenticated("the client certificate was not issued here", code="est_certificate_invalid")
    old, ca_row = found
    if ca_row.bootstrap_only:
        raise PermissionDenied("a bootstrap certificate can only enroll (simpleenroll), never renew",
                               code="est_bootstrap_only")
    _check_current(old, ca_row, now=now, grace=True)
    if job.label is not None and ca_row.est_label != job.label:
        raise PermissionDenied(f"the client certificate is of CA {ca_row.sn}, not of this EST label",
                               code="est_wrong_ca")
    if job.refusal is not None:
        raise job.refusal
    request, current = job.request, job.current
    if request.subject != current.subject:
        raise InvalidInput(f"the CSR subject {request.subject.rfc4514_string()[:200]!r} is not the current "
                           f"certificate's ({current.subject.rfc4514_string()[:200]!r}); RFC 7030 4.2.2 asks "
                           "for the same", code="est_subject_mismatch")
    try:
        csr_sans = tuple(request.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        csr_sans = ()
    if set(csr_sans) != set(sans_of(current)):
        raise InvalidInput("the CSR's subjectAltName differs from the current certificate's; RFC 7030 4.2.2 "
                           "asks for the same", code="est_subject_mismatch")
    check_renewable(ca_row.sn, old, repeat=True)
    issued, _ = replace_certificate(ctx, session, ca_row=ca_row, old=old, public_key=request.public_key(),
                                    days=None, grace=grace_of(ca_row, None), now=now, via="est")
    return issued.certificate
