"""Enrollment settings of CAs, enrollment claims, and which CA an EST path serves (RFC 7030).

- ``update_ca``: a CA's EST label (``/.well-known/est/<label>/``), whether it
  is the instance's default EST CA (the unlabelled path), bootstrap-only (its
  certificates may enroll over EST and do nothing else: they never enter the
  trust bundle), how long after expiry a certificate may still renew itself,
  and the default grace before a renewed certificate is superseded.
- ``create_claim``: a claim id and a random password for HTTP Basic on
  ``simpleenroll``; ``uses`` client ids may enroll with it, each once.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import re
import secrets
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs7
from sqlalchemy import select, update

from ..clock import isoformat
from ..errors import Conflict, InvalidInput, InvalidState, NotFound, Unauthenticated
from ..store import CaCertificate, Status
from ..store.enrollment_models import EnrollmentClaim
from .. import x509 as px509
from . import audit
from .cas import resolve_ca
from .context import Context

__all__ = ["update_ca", "create_claim", "est_ca", "cacerts_der", "check_claim", "DEFAULT_CLAIM_TTL",
           "MAX_CLAIM_USES"]

DEFAULT_CLAIM_TTL = _dt.timedelta(hours=24)
MAX_CLAIM_TTL = _dt.timedelta(days=366)
MAX_CLAIM_USES = 1_000_000
MAX_RENEW_AFTER_EXPIRY = _dt.timedelta(days=366)
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
#: RFC 7030 3.2.2 names these operations; a label equal to one would make /.well-known/est/<op> ambiguous.
_OPERATIONS = {"cacerts", "simpleenroll", "simplereenroll", "fullcmc", "serverkeygen", "csrattrs"}


def _seconds(value: _dt.timedelta | None, *, what: str, most: _dt.timedelta, code: str) -> int | None:
    if value is None:
        return None
    if value < _dt.timedelta(0) or value > most:
        raise InvalidInput(f"{what} must be between 0 and {most.days} days", code=code)
    return int(value.total_seconds())


def update_ca(
    ctx: Context, ref: str, *, est_label: str | None = None, clear_est_label: bool = False,
    est_default: bool | None = None, bootstrap_only: bool | None = None,
    renew_after_expiry: _dt.timedelta | None = None, supersede_after: _dt.timedelta | None = None,
) -> dict[str, Any]:
    """Change a CA's enrollment settings; only what is given changes.  A zero renew_after_expiry turns it off."""
    if est_label is not None and (not _LABEL.match(est_label) or est_label.lower() in _OPERATIONS):
        raise InvalidInput(f"EST label {est_label[:80]!r} must be 1-64 of A-Z a-z 0-9 . _ - (starting with a letter or "
                           "digit) and not an EST operation name", code="invalid_est_label")
    renew_s = _seconds(renew_after_expiry, what="the renewal window after expiry", most=MAX_RENEW_AFTER_EXPIRY,
                       code="invalid_grace")
    supersede_s = _seconds(supersede_after, what="the grace before supersession", most=MAX_RENEW_AFTER_EXPIRY,
                           code="invalid_grace")
    now = ctx.clock.now()
    with ctx.store.transaction() as session:
        row = resolve_ca(session, instance=ctx.instance, ref=ref, lock=True)
        changes: dict[str, Any] = {}
        if est_label is not None or clear_est_label:
            if est_label is not None:
                other = session.scalars(select(CaCertificate).where(
                    CaCertificate.instance == ctx.instance, CaCertificate.est_label == est_label,
                    CaCertificate.id != row.id)).first()
                if other is not None:
                    raise Conflict(f"CA {other.sn} already has the EST label {est_label!r}", code="est_label_exists")
            changes["est_label"] = est_label
        if bootstrap_only is not None:
            changes["bootstrap_only"] = bootstrap_only
        if est_default is not None:
            changes["est_default"] = est_default
        if renew_after_expiry is not None:
            changes["renew_after_expiry_s"] = renew_s or None
        if supersede_after is not None:
            changes["supersede_after_s"] = supersede_s
        final_bootstrap = changes.get("bootstrap_only", row.bootstrap_only)
        if final_bootstrap and (changes.get("est_default", row.est_default) or changes.get("est_label", row.est_label)):
            raise InvalidState(f"CA {row.sn} cannot be bootstrap-only and serve EST enrollment (label or default): "
                               "its certificates never enter the trust bundle", code="ca_bootstrap_only", ca_sn=row.sn)
        if changes.get("est_default"):
            # One default per instance: setting it here clears it elsewhere, in the same transaction.
            session.execute(update(CaCertificate).where(
                CaCertificate.instance == ctx.instance, CaCertificate.id != row.id).values(est_default=False))
        for name, value in changes.items():
            setattr(row, name, value)
        if changes:
            row.updated_at = now
            session.add(row)
            session.flush()
            audit.record_change(session, ctx, "ca.update", subject=row.sn,
                                **{k: v for k, v in changes.items()})
    from .renewal import ca_detail

    return ca_detail(ctx, row.sn)


# -- claims ------------------------------------------------------------------------------------


def _digest(password: str) -> str:
    return hashlib.sha256(password.encode("utf-8", "surrogatepass")).hexdigest()


def create_claim(
    ctx: Context, *, ca: str, uses: int = 1, ttl: _dt.timedelta = DEFAULT_CLAIM_TTL,
    client_id_prefix: str | None = None,
) -> dict[str, Any]:
    """A claim for enrolling over EST; the password is shown here once and kept only as its hash."""
    if not isinstance(uses, int) or not 1 <= uses <= MAX_CLAIM_USES:
        raise InvalidInput(f"uses must be between 1 and {MAX_CLAIM_USES}", code="invalid_limit", field="uses")
    if not _dt.timedelta(minutes=1) <= ttl <= MAX_CLAIM_TTL:
        raise InvalidInput("a claim's ttl must be between 1 minute and 366 days", code="invalid_ttl", field="ttl")
    if client_id_prefix is not None:
        from ..ids import validate_path_name

        validate_path_name(client_id_prefix, what="client id prefix", code="invalid_client_id")
    now = ctx.clock.now()
    claim_id = "clm-" + secrets.token_hex(10)
    password = secrets.token_urlsafe(32)
    with ctx.store.transaction() as session:
        row = resolve_ca(session, instance=ctx.instance, ref=ca)
        _check_enrolling_ca(row, now=now)
        session.add(EnrollmentClaim(
            instance=ctx.instance, claim_id=claim_id, password_sha256=_digest(password), ca_id=row.id,
            max_uses=uses, uses=0, client_id_prefix=client_id_prefix, status=Status.ACTIVE,
            expires_at=now + ttl, created_at=now, updated_at=now))
        session.flush()
        audit.record_change(session, ctx, "claim.create", subject=claim_id, ca_sn=row.sn, uses=uses,
                            client_id_prefix=client_id_prefix)
    return {"claim_id": claim_id, "password": password, "ca_sn": row.sn, "uses": uses,
            "client_id_prefix": client_id_prefix, "expires_at": isoformat(now + ttl)}


def check_claim(session, ctx: Context, *, claim_id: str, password: str, now: _dt.datetime) -> EnrollmentClaim:
    """The claim, locked, if the password is right and it is ACTIVE and unexpired; else 401."""
    row = session.scalars(select(EnrollmentClaim).where(
        EnrollmentClaim.claim_id == claim_id[:64], EnrollmentClaim.instance == ctx.instance).with_for_update()).first()
    # Compare against a digest either way, so an unknown claim id costs what a wrong password does.
    expected = row.password_sha256 if row is not None else "0" * 64
    if not hmac.compare_digest(expected, _digest(password)) or row is None:
        raise Unauthenticated("unknown claim or wrong password", code="claim_invalid")
    if row.status != Status.ACTIVE:
        raise Unauthenticated(f"claim {row.claim_id} is {row.status}", code="claim_invalid")
    if row.expires_at <= now:
        raise Unauthenticated(f"claim {row.claim_id} expired at {isoformat(row.expires_at)}", code="claim_expired")
    return row


# -- which CA an EST path serves ------------------------------------------------------------------


def _check_enrolling_ca(row: CaCertificate, *, now: _dt.datetime) -> None:
    if row.key_id is None:
        raise InvalidState(f"CA {row.sn} is registered: it cannot issue here, so it cannot enroll devices",
                           code="ca_not_managed")
    if row.bootstrap_only:
        raise InvalidState(f"CA {row.sn} is bootstrap-only: its certificates never enter the trust bundle, so it "
                           "does not issue enrolled devices' certificates", code="ca_bootstrap_only",
                           ca_sn=row.sn)


def est_ca(session, ctx: Context, *, label: str | None) -> CaCertificate | None:
    """The CA of ``/.well-known/est/<label>/``; without a label the default, or the single active
    managed CA; None when the unlabelled path names no CA (a reenroll then uses the client's CA)."""
    if label is not None:
        row = session.scalars(select(CaCertificate).where(
            CaCertificate.instance == ctx.instance, CaCertificate.est_label == label)).first()
        if row is None:
            raise NotFound(f"no CA has the EST label {label[:64]!r}", code="est_ca_not_found")
        return row
    row = session.scalars(select(CaCertificate).where(
        CaCertificate.instance == ctx.instance, CaCertificate.est_default.is_(True))).first()
    if row is not None:
        return row
    candidates = session.scalars(select(CaCertificate).where(
        CaCertificate.instance == ctx.instance, CaCertificate.status == Status.ACTIVE,
        CaCertificate.key_id.is_not(None), CaCertificate.bootstrap_only.is_(False)).limit(2)).all()
    return candidates[0] if len(candidates) == 1 else None


def certs_only(certs: list[x509.Certificate]) -> bytes:
    """A degenerate PKCS#7 SignedData holding ``certs`` (RFC 7030 4.1.3, 4.2.3), DER."""
    from cryptography.hazmat.primitives import serialization

    return pkcs7.serialize_certificates(certs, serialization.Encoding.DER)


def cacerts_der(ctx: Context, *, label: str | None) -> bytes:
    """The EST CA and its chain as a certs-only PKCS#7 (``GET cacerts``)."""
    with ctx.store.transaction(readonly=True) as session:
        row = est_ca(session, ctx, label=label)
        if row is None:
            raise NotFound("this instance has no default EST CA: set one, or use a labelled path",
                           code="est_ca_not_found")
        if row.status != Status.ACTIVE:
            raise NotFound(f"the EST CA {row.sn} is INACTIVE", code="est_ca_not_found")
        certs = [x509.load_der_x509_certificate(row.cert_der)]
        if row.chain_pem:
            certs += px509.load_certificates(row.chain_pem.encode(), what="stored chain")
    return certs_only(certs)
