"""The OCSP responder (RFC 6960) for managed CAs, signing with a delegated certificate.

Each managed CA gets an OCSP signing certificate (EKU OCSPSigning,
ocsp-nocheck) for a key of its own in custody, made on first use and renewed
when half its life is gone: the CA key itself signs nothing per request.
"""

from __future__ import annotations

import datetime as _dt

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..errors import InvalidInput
from ..ids import format_serial
from ..keys import new_key_id
from ..store import DeviceStatus, Status, artifact_repos, repos
from ..store.artifact_models import OcspSigner
from .. import x509 as px509
from ..x509 import ocsp as pocsp
from .context import Context
from .custody import handle_of, row_of
from .managed import ca_key_handle, ca_signer

__all__ = ["respond", "SIGNER_LIFETIME", "RESPONSE_LIFETIME", "responder_certificate"]

SIGNER_LIFETIME = _dt.timedelta(days=30)
RESPONSE_LIFETIME = _dt.timedelta(hours=1)
_SIGNER_KEY_TYPE = "ec-p256"


def _signer_row(ctx: Context, session, ca, *, now: _dt.datetime) -> OcspSigner:
    row = artifact_repos.get_ocsp_signer(session, ca_id=ca.id, lock=True)
    if row is not None and row.not_after - now > (row.not_after - row.not_before) / 2:
        return row
    ca_cert = x509.load_der_x509_certificate(ca.cert_der)
    key_id = new_key_id()
    # The responder key lives where the CA's does: a CA on a token gets its OCSP key on the same token.
    holder = ctx.custody_for(ca_key_handle(session, ca))
    signer, handle = holder.new_key(_SIGNER_KEY_TYPE, key_id=key_id)
    not_before = max(now.replace(microsecond=0) - px509.build.BACKDATE, ca.not_before)
    not_after = min(now + SIGNER_LIFETIME, ca.not_after)
    cert = ca_signer(ctx, session, ca).sign_certificate(pocsp.build_ocsp_signer_certificate(
        issuer=ca_cert, public_key=signer.public_key(), serial=px509.random_serial(),
        not_before=not_before, not_after=not_after,
    ))
    repos.insert_custody_key(session, row_of(handle, created_at=now))
    if row is None:
        row = OcspSigner(ca_id=ca.id, key_id=key_id, cert_der=b"", not_before=not_before, not_after=not_after,
                         created_at=now)
    row.key_id, row.cert_der = key_id, cert.public_bytes(serialization.Encoding.DER)
    row.not_before, row.not_after, row.created_at = cert.not_valid_before_utc, cert.not_valid_after_utc, now
    return artifact_repos.save_ocsp_signer(session, row)


def responder_certificate(ctx: Context, *, ca: str) -> x509.Certificate:
    """The delegated OCSP signing certificate of a managed CA (made if needed)."""
    from .cas import resolve_ca

    now = ctx.clock.now()
    with ctx.store.transaction() as session:
        row = resolve_ca(session, instance=ctx.instance, ref=ca)
        ca_signer(ctx, session, row)  # refuses a registered CA
        return x509.load_der_x509_certificate(_signer_row(ctx, session, row, now=now).cert_der)


def respond(ctx: Context, request_der: bytes) -> bytes:
    """The DER OCSP response to one DER request; never raises for a bad request.

    ``malformedRequest`` for what does not parse; ``unauthorized`` for a CA
    this responder does not answer for (unknown, registered or INACTIVE).
    """
    try:
        query = pocsp.parse_ocsp_request(request_der)
    except InvalidInput:
        return pocsp.unsuccessful_response("malformed")
    now = ctx.clock.now()
    with ctx.store.transaction() as session:
        match = None
        for ca in artifact_repos.cas_of_instance(session, instance=ctx.instance):
            if ca.status != Status.ACTIVE or ca.key_id is None:
                continue
            cert = x509.load_der_x509_certificate(ca.cert_der)
            if pocsp.issuer_hashes(cert, query.algorithm) == (query.issuer_name_hash, query.issuer_key_hash):
                match = ca
                break
        if match is None:
            return pocsp.unsuccessful_response("unauthorized")
        signer_row = _signer_row(ctx, session, match, now=now)
        responder_cert = x509.load_der_x509_certificate(signer_row.cert_der)
        signer = ctx.signer_for(handle_of(repos.get_custody_key(session, key_id=signer_row.key_id)))
        device = artifact_repos.device_status(session, ca_id=match.id, sn=format_serial(query.serial))
    status, revoked_at, reason = "unknown", None, None
    if device is not None:
        dev_status, dev_reason, dev_revoked_at, changed_at, supersede_after = device
        if dev_status != DeviceStatus.REVOKED and supersede_after is not None and supersede_after <= now:
            # Renewed, its grace over, not yet swept (pki.services.supersede runs at CRL signing): as the CRL will.
            status, revoked_at, reason = "revoked", supersede_after, x509.ReasonFlags.superseded
        elif dev_status == DeviceStatus.ACTIVE:
            status = "good"
        elif dev_status == DeviceStatus.REVOKED:
            status, revoked_at = "revoked", dev_revoked_at or changed_at
            reason = px509.crl.REASONS.get(dev_reason or "unspecified")
        else:  # INACTIVE: on hold, exactly as on the CRL
            status, revoked_at, reason = "revoked", changed_at, x509.ReasonFlags.certificate_hold
    builder = pocsp.build_ocsp_response(
        query=query, status=status, this_update=now, next_update=now + RESPONSE_LIFETIME, revoked_at=revoked_at,
        reason=reason, responder_cert=responder_cert,
    )
    response = signer.sign_ocsp_response(builder, responder_cert=responder_cert)
    return response.public_bytes(serialization.Encoding.DER)
