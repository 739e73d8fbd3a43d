"""Renewal and rekey of device certificates, and fetching certificates back as PEM.

A renewal issues a new certificate from the same managed CA for the same
client id and SANs, recording ``replaces`` (the old row).  Without a CSR it
keeps the old public key (renew); a CSR or a key generated here brings a new
one (rekey).  The old certificate stays valid for a grace period, then
becomes REVOKED with the reason ``superseded`` (:mod:`.supersede`); a grace
of 0 revokes it in the renewal's own transaction.

The signing reuses the issuance functions of :mod:`.devices` (profile,
signing, row values); only the transaction differs, because the new row and
the old row's supersession must commit together.
"""

from __future__ import annotations

import datetime as _dt
import ssl
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from sqlalchemy import select

from ..errors import Conflict, InvalidInput, InvalidState, PkiError
from ..ids import looks_like_fingerprint, parse_fingerprint, parse_serial
from ..keys import KEY_TYPES, generate_private_key
from ..store import DeviceCertificate, DeviceStatus, http_repos, repos
from .. import x509 as px509
from . import audit
from .cas import resolve_ca
from .context import Context
from .devices import (Issued, _issuer_material, _issuer_state, _resolve_device, device_profile, device_row_values,
                      issuer_template, sign_device)
from .managed import ca_signer
from .schemas import CaPublic, DevicePublic
from .status_change import change_status
from .supersede import SUPERSEDED

__all__ = ["DEFAULT_SUPERSEDE_AFTER", "Renewed", "renew_device", "replace_certificate", "device_detail",
           "ca_detail", "sans_of"]

#: How long a renewed certificate's predecessor stays valid when neither the renewal nor the CA says.
DEFAULT_SUPERSEDE_AFTER = _dt.timedelta(hours=24)
MAX_SUPERSEDE_AFTER = _dt.timedelta(days=366)


@dataclass(frozen=True)
class Renewed:
    issued: Issued
    replaces: str
    supersede_after: _dt.datetime

    def as_json(self) -> dict[str, Any]:
        from ..clock import isoformat

        return {**self.issued.as_json(), "replaces": self.replaces,
                "old_supersede_after": isoformat(self.supersede_after)}


def sans_of(cert: x509.Certificate) -> tuple[x509.GeneralName, ...]:
    try:
        return tuple(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return ()


def grace_of(ca_row, supersede_after: _dt.timedelta | None) -> _dt.timedelta:
    if supersede_after is None:
        seconds = getattr(ca_row, "supersede_after_s", None)
        supersede_after = _dt.timedelta(seconds=seconds) if seconds is not None else DEFAULT_SUPERSEDE_AFTER
    if supersede_after < _dt.timedelta(0) or supersede_after > MAX_SUPERSEDE_AFTER:
        raise InvalidInput("the grace before supersession must be between 0 and 366 days", code="invalid_grace",
                           field="supersede_after")
    return supersede_after


def check_renewable(ca_sn: str, old: DeviceCertificate, *, repeat: bool = False) -> None:
    """ACTIVE, and (unless ``repeat``) not renewed already.  A device renewing over EST may repeat a renewal
    whose answer it lost: see :func:`replace_certificate`."""
    if old.status == DeviceStatus.REVOKED:
        raise InvalidState(f"device certificate {old.sn} is REVOKED, which is final; issue a new one",
                           code="device_revoked")
    if old.status != DeviceStatus.ACTIVE:
        raise InvalidState(f"device certificate {old.sn} is {old.status}; activate it before renewing it",
                           code="device_inactive")
    if old.supersede_after is not None and not repeat:
        raise Conflict(f"device certificate {old.sn} was renewed already; renew its newest replacement instead",
                       code="device_already_renewed", ca_sn=ca_sn)


def replace_certificate(
    ctx: Context, session, *, ca_row, old: DeviceCertificate, public_key, days: int | None,
    grace: _dt.timedelta, now: _dt.datetime, via: str,
) -> tuple[Issued, _dt.datetime]:
    """Sign the replacement of ``old`` (locked, checked renewable) in ``session``: insert, supersede, audit."""
    state = _issuer_state(session, ctx, ca_row.sn)  # FOR SHARE: a concurrent deactivation waits
    signer = ca_signer(ctx, session, state)
    profile = device_profile(ctx, state, days=days, now=now)
    ca_cert, chain = _issuer_material(ctx, state)
    old_cert = x509.load_der_x509_certificate(old.cert_der)
    made = sign_device(profile, issuer_template(ctx, state, profile, ca_cert, signer), signer, public_key=public_key,
                       client_id=old.client_id, sans=sans_of(old_cert))
    cert = made.certificate()
    values = device_row_values(made, instance=ctx.instance, ca_id=state.id, client_id=old.client_id,
                               key_type=px509.public_key_type(public_key), now=now)
    values["replaces_id"] = old.id
    repos.insert_device_values(session, values)
    until = now + grace
    lost = []
    if old.supersede_after is not None:
        # A repeated renewal: the device never installed the earlier replacement (it lost the answer, or was
        # killed before its swap), so that one is superseded now; the old certificate's grace is not extended.
        until = min(until, old.supersede_after)
        for prior in session.scalars(select(DeviceCertificate).where(
                DeviceCertificate.replaces_id == old.id, DeviceCertificate.status != DeviceStatus.REVOKED,
                DeviceCertificate.sn != values["sn"]).with_for_update()).all():
            if change_status(session, prior, DeviceStatus.REVOKED, what=f"device certificate {prior.sn}",
                             updated_at=now, status_changed_at=now, revocation_reason=SUPERSEDED, revoked_at=now,
                             supersede_after=now):
                lost.append(prior.sn)
    rekey = px509.spki_sha256(public_key) != px509.spki_sha256(old_cert.public_key())
    if until > now:
        old.supersede_after, old.updated_at = until, now
        session.add(old)
        session.flush()
        revoked_now = False
    else:
        revoked_now = change_status(session, old, DeviceStatus.REVOKED, what=f"device certificate {old.sn}",
                                    updated_at=now, status_changed_at=now, revocation_reason=SUPERSEDED,
                                    revoked_at=now, supersede_after=now)
    audit.record_change(session, ctx, "device.renew", subject=f"{state.sn}/{values['sn']}", client_id=old.client_id,
                        replaces=old.sn, rekey=rekey, via=via, supersede_after=until.isoformat())
    for sn in ([old.sn] if revoked_now else []) + lost:
        audit.record_change(session, ctx, "device.revoke", subject=f"{state.sn}/{sn}",
                            status=DeviceStatus.REVOKED, reason=SUPERSEDED, by="supersession")
    device = DevicePublic(ca_sn=state.sn, revocation_reason=None, revoked_at=None,
                          **{k: values[k] for k in ("sn", "client_id", "status", "source", "fingerprint_sha256",
                                                    "key_type", "not_before", "not_after", "created_at",
                                                    "updated_at", "status_changed_at")})
    return Issued(device=device, certificate=cert, chain=(ca_cert, *chain)), until


def renew_device(
    ctx: Context, *, ca: str, sn: str, csr: bytes | None = None, generate: bool = False, days: int | None = None,
    supersede_after: _dt.timedelta | None = None, key_type: str = "ec-p256",
) -> Renewed:
    """Operator-driven renewal (no CSR, no key: the old key) or rekey (a CSR's key, or one made here)."""
    if csr is not None and generate:
        raise InvalidInput("give a CSR or ask for a generated key, not both", code="invalid_request", field="generate")
    private_key = None
    public_key = None
    if csr is not None:
        request = px509.load_csr(csr)
        public_key = request.public_key()
        px509.check_public_key(public_key, what="CSR key")
    elif generate:
        if key_type not in KEY_TYPES:
            raise InvalidInput(f"key type {key_type!r} is not one of {', '.join(KEY_TYPES)}",
                               code="unsupported_key_type")
        private_key = generate_private_key(key_type)
        public_key = private_key.public_key()
    now = ctx.clock.now()
    with ctx.store.transaction() as session:
        ca_row, old = _resolve_device(session, ctx, ca=ca, sn=sn, lock=True)
        check_renewable(ca_row.sn, old)
        grace = grace_of(ca_row, supersede_after)
        if public_key is None:
            public_key = x509.load_der_x509_certificate(old.cert_der).public_key()
        issued, until = replace_certificate(ctx, session, ca_row=ca_row, old=old, public_key=public_key, days=days,
                                            grace=grace, now=now, via="operator")
    if private_key is not None:
        issued = Issued(device=issued.device, certificate=issued.certificate, chain=issued.chain,
                        private_key=private_key)
    return Renewed(issued=issued, replaces=old.sn, supersede_after=until)


# -- fetching back ---------------------------------------------------------------------------


def _pem(der: bytes) -> str:
    return x509.load_der_x509_certificate(der).public_bytes(px509.PEM).decode("ascii")


def device_detail(ctx: Context, *, ca: str, sn: str) -> dict[str, Any]:
    """A device certificate with its PEM, its CA chain, and its chain of replacements both ways."""
    from ..clock import isoformat

    # GET /v1/cas/{ca_sn}/devices/{sn}'s path: one joined Core read (and one for the replacements);
    # the ORM below made a GET cost nearly twice the server CPU (scripts/bench_service.py, GET device).
    try:
        ca_ref = {"ca_fingerprint": parse_fingerprint(ca)} if looks_like_fingerprint(ca) else {"ca_sn": parse_serial(ca)}
        serial = parse_serial(sn)
    except PkiError:
        found = None  # the ORM path says what is wrong, in its order (the CA first)
    else:
        with ctx.store.core_transaction(readonly=True) as conn:
            found = http_repos.device_detail_row(conn, instance=ctx.instance, sn=serial, **ca_ref)
            later = http_repos.replaced_by(conn, device_id=found.id) if found is not None else []
    if found is not None:
        return {
            **DevicePublic.of(found, ca_sn=found.ca_sn).as_json(),
            "replaces": found.replaces,
            "replaced_by": later,
            "supersede_after": isoformat(found.supersede_after) if found.supersede_after is not None else None,
            # the standard library's encoder writes cryptography's PEM byte for byte (pki/services/quick.py)
            "certificate_pem": ssl.DER_cert_to_PEM_cert(found.cert_der),
            "chain_pem": ssl.DER_cert_to_PEM_cert(found.ca_cert_der) + (found.ca_chain_pem or ""),
        }
    # Missing: the ORM path says which (the CA or the device), or finds one inserted meanwhile.
    with ctx.store.transaction(readonly=True) as session:
        ca_row, row = _resolve_device(session, ctx, ca=ca, sn=sn)
        replaces = session.get(DeviceCertificate, row.replaces_id) if row.replaces_id is not None else None
        replaced_by = session.scalars(
            select(DeviceCertificate.sn).where(DeviceCertificate.replaces_id == row.id).order_by(DeviceCertificate.id)
        ).all()
        chain_pem = _pem(ca_row.cert_der) + (ca_row.chain_pem or "")
        return {
            **DevicePublic.of(row, ca_sn=ca_row.sn).as_json(),
            "replaces": replaces.sn if replaces is not None else None,
            "replaced_by": list(replaced_by),
            "supersede_after": isoformat(row.supersede_after) if row.supersede_after is not None else None,
            "certificate_pem": _pem(row.cert_der),
            "chain_pem": chain_pem,
        }


def ca_detail(ctx: Context, ref: str) -> dict[str, Any]:
    """A CA with its PEM, its chain, and its enrollment settings."""
    with ctx.store.transaction(readonly=True) as session:
        row = resolve_ca(session, instance=ctx.instance, ref=ref)
        return {
            **CaPublic.of(row).as_json(),
            "est_label": row.est_label, "est_default": bool(row.est_default),
            "bootstrap_only": bool(row.bootstrap_only),
            "renew_after_expiry_s": row.renew_after_expiry_s, "supersede_after_s": row.supersede_after_s,
            "certificate_pem": _pem(row.cert_der),
            "chain_pem": row.chain_pem or "",
        }
