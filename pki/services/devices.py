"""Device certificates: issue, register, lifecycle, lookup."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..errors import Conflict, InvalidInput, InvalidState, NotFound
from ..ids import looks_like_fingerprint, parse_fingerprint, parse_serial, validate_client_id
from ..keys import KEY_TYPES, generate_private_key
from ..store import CaCertificate, DeviceCertificate, DeviceStatus, Status, repos
from .. import x509 as px509
from ..x509.bundles import pkcs12_bundle, private_key_pem
from ..x509.crl import REVOCATION_REASONS
from ..x509.sans import parse_sans
from .cas import resolve_ca
from .paging import after_position, page_limit, page_of, parse_status
from . import audit
from .context import Context
from .device_profile import (DeviceProfile, _issuer_material, device_profile,  # noqa: F401 (re-exported)
                             device_row_values, device_template, issuer_template, sign_device)
from .group_commit import GroupCommit
from .managed import ca_signer
from .schemas import DevicePublic, Page
from .status_change import change_status

__all__ = [
    "Issued", "DeviceProfile", "REVOCATION_REASONS", "issue_device", "register_device", "show_device",
    "find_devices", "list_devices", "activate_device", "deactivate_device", "revoke_device", "delete_device",
    "parse_sans", "pkcs12_bytes", "private_key_pem", "device_profile", "device_template", "sign_device",
]



@dataclass(frozen=True)
class Issued:
    """A new device certificate; ``private_key`` only when the key was generated here."""

    device: DevicePublic
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    private_key: object | None = None

    @property
    def certificate_pem(self) -> str:
        return self.certificate.public_bytes(px509.PEM).decode("ascii")

    @property
    def chain_pem(self) -> str:
        return "".join(c.public_bytes(px509.PEM).decode("ascii") for c in self.chain)

    def as_json(self) -> dict[str, Any]:
        """The issuance answer: the device, its PEMs, and the key PEM when it was generated here."""
        result = {**self.device.as_json(), "certificate_pem": self.certificate_pem, "chain_pem": self.chain_pem}
        if self.private_key is not None:
            result["private_key_pem"] = private_key_pem(self.private_key).decode("ascii")
        return result

    @classmethod
    def from_json(cls, answer: Mapping[str, Any]) -> "Issued":
        """The inverse of :meth:`as_json`, for an answer that came back from a server."""
        key_pem = answer.get("private_key_pem")
        return cls(
            device=DevicePublic.model_validate(answer),
            certificate=x509.load_pem_x509_certificate(answer["certificate_pem"].encode()),
            chain=tuple(x509.load_pem_x509_certificates(answer["chain_pem"].encode())) if answer.get("chain_pem")
            else (),
            private_key=serialization.load_pem_private_key(key_pem.encode(), password=None) if key_pem else None,
        )


def pkcs12_bytes(issued: Issued, *, password: bytes) -> bytes:
    """The generated key, the certificate and its chain, named by the client id."""
    return pkcs12_bundle(name=issued.device.client_id, key=issued.private_key, certificate=issued.certificate,
                         chain=issued.chain, password=password)


# -- issuance -------------------------------------------------------------------------


def issue_device(
    ctx: Context,
    *,
    ca: str,
    csr: bytes | None = None,
    generate: bool = False,
    client_id: str | None = None,
    days: int | None = None,
    sans: Sequence[str] = (),
    key_type: str = "ec-p256",
) -> Issued:
    """Issue from a CSR (only its key, and its CN when no client id is given) or a key made here.

    Signing and the insert share one transaction: if the store fails after signing, the caller gets the error
    and never sees the certificate.
    """
    if (csr is None) == (not generate):
        raise InvalidInput("give either a CSR or ask for a generated key, not both or neither", code="invalid_request",
                           field="generate")
    private_key = None
    if csr is not None:
        request = px509.load_csr(csr)
        public_key = request.public_key()
        px509.check_public_key(public_key, what="CSR key")
        if client_id is None:
            cns = px509.common_names(request.subject)
            if len(cns) != 1:
                raise InvalidInput(
                    "the CSR has no single CN to use as client id; give the client id", code="missing_client_id",
                    field="client_id",
                )
            client_id = cns[0]
    else:
        if client_id is None:
            raise InvalidInput("a generated key needs a client id", code="missing_client_id", field="client_id")
        if key_type not in KEY_TYPES:
            raise InvalidInput(f"key type {key_type!r} is not one of {', '.join(KEY_TYPES)}", code="unsupported_key_type")
        private_key = generate_private_key(key_type)
        public_key = private_key.public_key()
    validate_client_id(client_id)
    job = _IssueJob(ca=ca, public_key=public_key, client_id=client_id, days=days, sans=parse_sans(sans),
                    now=ctx.clock.now())
    state_sn, values, cert, ca_cert, chain, _ = _issuer_group(ctx).submit(job)
    device = DevicePublic(ca_sn=state_sn, revocation_reason=None, revoked_at=None,
                          **{k: values[k] for k in _PUBLIC_FROM_VALUES})
    return Issued(device=device, certificate=cert.certificate(), chain=(ca_cert, *chain), private_key=private_key)


@dataclass(frozen=True)
class _IssueJob:
    ca: str
    public_key: object
    client_id: str
    days: int | None
    sans: tuple
    now: _dt.datetime


def _issuer_group(ctx: Context) -> GroupCommit:
    """Issuances that arrive together share a transaction (see pki.services.group_commit), and their audit
    records are chained in memory and appended together at its end (audit.append_changes)."""
    # One leader at a time runs the group's transactions, so they keep one connection (HeldConnection).
    return ctx.memo(("group_commit", "device.issue"),
                    lambda: GroupCommit(ctx.store.held_connection().transaction,
                                        lambda conn, job: _write_issued(ctx, conn, job),
                                        finish=lambda conn, results: audit.append_changes(conn, [r[-1] for r in results])))


def _write_issued(ctx: Context, session, job: _IssueJob):
    # Signing happens here, with the CA row locked (FOR SHARE), so a CA deactivated
    # concurrently either waits for this or is seen inactive: never both.
    state = _issuer_state(session, ctx, job.ca)
    signer = ca_signer(ctx, session, state)
    profile = device_profile(ctx, state, days=job.days, now=job.now)
    ca_cert, chain = _issuer_material(ctx, state)
    template = issuer_template(ctx, state, profile, ca_cert, signer)
    cert = sign_device(profile, template, signer, public_key=job.public_key, client_id=job.client_id, sans=job.sans)
    values = device_row_values(
        cert, instance=ctx.instance, ca_id=state.id, client_id=job.client_id,
        key_type=px509.public_key_type(job.public_key), now=job.now,
    )
    repos.insert_device_values(session, values)
    # The audit record is made now (under this job's Actor) and appended with the batch's (see _issuer_group).
    record = audit.change_values(ctx, "device.issue", subject=f"{state.sn}/{values['sn']}", client_id=job.client_id)
    return state.sn, values, cert, ca_cert, chain, record


_PUBLIC_FROM_VALUES = ("sn", "client_id", "status", "source", "fingerprint_sha256", "key_type", "not_before",
                       "not_after", "created_at", "updated_at", "status_changed_at")


def _issuer_state(session, ctx: Context, ref: str):
    """The issuing CA's row, locked against a concurrent status change (FOR SHARE).

    Read once per transaction and CA: the jobs of a group commit's batch share it.  The lock holds until the
    transaction ends, so a later job of the batch would read the same row; a new transaction reads it again.
    """
    transaction = session.get_transaction()
    cached = session.info.get(_ISSUER_STATES)
    if cached is None or cached[0] is not transaction:
        cached = session.info[_ISSUER_STATES] = (transaction, {})
    state = cached[1].get(ref)
    if state is None:
        state = cached[1][ref] = _read_issuer_state(session, ctx, ref)
    return state


#: Key of the per-transaction issuer states in Connection.info (which outlives the transaction: hence its identity).
_ISSUER_STATES = "pki.issuer_states"


def _read_issuer_state(session, ctx: Context, ref: str):
    if looks_like_fingerprint(ref):
        sn = repos.ca_sn_by_fingerprint(session, instance=ctx.instance, fingerprint_sha256=parse_fingerprint(ref))
    else:
        sn = parse_serial(ref)
    state = repos.get_issuer_state(session, instance=ctx.instance, sn=sn, lock=True) if sn else None
    if state is None:
        raise NotFound(
            f"no CA {ref!r} in instance {ctx.instance!r}; list the CAs to find it", code="ca_not_found"
        )
    return state


# -- registration of certificates issued elsewhere ----------------------------------------


def register_device(ctx: Context, *, certificate: bytes) -> DevicePublic:
    """Record a device certificate issued elsewhere by an ACTIVE CA of this instance."""
    now = ctx.clock.now()
    cert = px509.load_certificate(certificate, what="device certificate")
    client_id = px509.check_device_certificate(cert, now=now)
    der = cert.public_bytes(px509.DER)
    with ctx.store.transaction() as session:
        candidates = repos.cas_with_subject(session, instance=ctx.instance, subject=cert.issuer.rfc4514_string())
        issuer = next((ca for ca in candidates if px509.directly_issued_by(cert, ca.cert_der)), None)
        if issuer is None:
            px509.leaf.check_signature_from(cert, [ca.cert_der for ca in candidates])
            raise NotFound(
                f"no CA of instance {ctx.instance!r} issued this certificate (issuer "
                f"{cert.issuer.rfc4514_string()}); register its CA first",
                code="issuer_not_registered",
            )
        # Lock, then re-read the status: a deactivation racing us either waits or wins.
        issuer = resolve_ca(session, instance=ctx.instance, ref=issuer.sn, lock=True)
        session.refresh(issuer)
        if issuer.status != Status.ACTIVE:
            raise InvalidState(
                f"CA {issuer.sn} is INACTIVE; activate it before registering its devices", code="ca_inactive"
            )
        ca_cert, chain = _issuer_material(ctx, issuer)
        px509.verify_device_chain(cert, ca_cert=ca_cert, chain=chain, now=now, ca_name=issuer.sn)
        values = device_row_values(
            cert, instance=ctx.instance, ca_id=issuer.id, client_id=client_id,
            key_type=px509.public_key_type(cert.public_key()), now=now, source="registered",
        )
        existing = repos.get_device(session, ca_id=issuer.id, sn=values["sn"])
        if existing is not None:
            if existing.cert_der == der:
                raise Conflict(
                    f"this certificate is already registered (CA {issuer.sn}, serial {existing.sn})",
                    code="device_already_registered",
                )
            raise Conflict(
                f"CA {issuer.sn} already has a different certificate with serial {existing.sn}; "
                "one of them is not genuine",
                code="device_serial_clash",
            )
        row = repos.insert_device(session, DeviceCertificate(**values))
        audit.record_change(session, ctx, "device.register", subject=f"{issuer.sn}/{row.sn}", client_id=client_id)
        return DevicePublic.of(row, ca_sn=issuer.sn)


# -- lookup ---------------------------------------------------------------------------------


def _resolve_device(
    session, ctx: Context, *, ca: str, sn: str, lock: bool = False
) -> tuple[CaCertificate, DeviceCertificate]:
    ca_row = resolve_ca(session, instance=ctx.instance, ref=ca)
    device = repos.get_device(session, ca_id=ca_row.id, sn=parse_serial(sn), lock=lock)
    if device is None:
        raise NotFound(
            f"CA {ca_row.sn} has no device certificate {sn!r}; list the CA's devices to find it",
            code="device_not_found", ca_sn=ca_row.sn,
        )
    return ca_row, device


def show_device(ctx: Context, *, ca: str, sn: str) -> DevicePublic:
    ca_ref = {"ca_fingerprint": parse_fingerprint(ca)} if looks_like_fingerprint(ca) else {"ca_sn": parse_serial(ca)}
    serial = parse_serial(sn)
    with ctx.store.core_transaction(readonly=True) as conn:
        row = repos.get_device_public(conn, instance=ctx.instance, sn=serial, **ca_ref)
    if row is not None:
        return DevicePublic.of(row, ca_sn=row.ca_sn)
    # Missing: the ORM path says which (the CA or the device), or finds one inserted meanwhile.
    with ctx.store.transaction(readonly=True) as session:
        ca_row, device = _resolve_device(session, ctx, ca=ca, sn=sn)
        return DevicePublic.of(device, ca_sn=ca_row.sn)


def find_devices(ctx: Context, *, fingerprint: str | None = None, client_id: str | None = None) -> Page:
    """By fingerprint (at most one) or by client id (one per CA or reissue)."""
    with ctx.store.transaction(readonly=True) as session:
        if fingerprint is not None:
            row = repos.get_device_by_fingerprint(
                session, instance=ctx.instance, fingerprint_sha256=parse_fingerprint(fingerprint)
            )
            rows = [row] if row is not None else []
        elif client_id is not None:
            rows = repos.devices_of_client(session, instance=ctx.instance, client_id=client_id, limit=1000)
        else:
            raise InvalidInput("give a fingerprint or a client id", code="invalid_request")
        sns = {r.ca_id: repos.get_ca_by_id(session, ca_id=r.ca_id).sn for r in rows}
        return Page(items=[DevicePublic.of(r, ca_sn=sns[r.ca_id]) for r in rows], next_cursor=None)


def list_devices(
    ctx: Context,
    *,
    ca: str,
    status: str | None = None,
    expiring_before: _dt.datetime | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Page:
    wanted = parse_status(status, DeviceStatus)
    size = page_limit(limit)
    after = after_position(cursor)
    with ctx.store.transaction(readonly=True) as session:
        ca_row = resolve_ca(session, instance=ctx.instance, ref=ca)
        rows = repos.list_devices(
            session, ca_id=ca_row.id, status=wanted, expiring_before=expiring_before, after_id=after, limit=size + 1
        )
    return page_of(rows, size, lambda r: DevicePublic.of(r, ca_sn=ca_row.sn))


# -- lifecycle ---------------------------------------------------------------------------


def _change(ctx: Context, *, ca: str, sn: str, target: DeviceStatus, operation: str,
            reason: str | None = None) -> DevicePublic:
    """Move a device to ``target`` (REVOKED: for ``reason``), unless it is REVOKED already.

    The row is locked (FOR UPDATE) before its status is read, so a change racing a revocation waits for it
    and then sees REVOKED; the UPDATE is conditional on that status as well (see status_change), and the
    database itself refuses to leave REVOKED (migration 0008).
    """
    now = ctx.clock.now()
    with ctx.store.transaction() as session:
        ca_row, device = _resolve_device(session, ctx, ca=ca, sn=sn, lock=True)
        if device.status == DeviceStatus.REVOKED:
            raise InvalidState(
                f"device certificate {device.sn} is REVOKED, which is final; issue a new one",
                code="device_revoked",
            )
        revocation = dict(revocation_reason=reason, revoked_at=now) if target == DeviceStatus.REVOKED else {}
        if change_status(session, device, target, what=f"device certificate {device.sn}", updated_at=now,
                         status_changed_at=now, **revocation):
            audit.record_change(session, ctx, operation, subject=f"{ca_row.sn}/{device.sn}",
                                status=device.status, reason=device.revocation_reason)
        return DevicePublic.of(device, ca_sn=ca_row.sn)


def activate_device(ctx: Context, *, ca: str, sn: str) -> DevicePublic:
    return _change(ctx, ca=ca, sn=sn, target=DeviceStatus.ACTIVE, operation="device.activate")


def deactivate_device(ctx: Context, *, ca: str, sn: str) -> DevicePublic:
    """INACTIVE: on the CRL as certificateHold until activated again."""
    return _change(ctx, ca=ca, sn=sn, target=DeviceStatus.INACTIVE, operation="device.deactivate")


def revoke_device(ctx: Context, *, ca: str, sn: str, reason: str = "unspecified") -> DevicePublic:
    if reason not in REVOCATION_REASONS:
        raise InvalidInput(
            f"reason {reason!r} is not one of {', '.join(REVOCATION_REASONS)}", code="invalid_revocation_reason"
        )
    return _change(ctx, ca=ca, sn=sn, target=DeviceStatus.REVOKED, operation="device.revoke", reason=reason)


def delete_device(ctx: Context, *, ca: str, sn: str) -> dict:
    """Only an expired certificate may go: any other would drop off the CRL and be trusted again."""
    now = ctx.clock.now()
    with ctx.store.transaction() as session:
        ca_row, device = _resolve_device(session, ctx, ca=ca, sn=sn)
        if device.not_after > now and ca_row.status == Status.ACTIVE:
            raise InvalidState(
                f"device certificate {device.sn} is valid until {device.not_after:%Y-%m-%d}: deleting it would "
                "take it off the CRL and let the broker trust it again. Revoke it; delete it after it expires",
                code="device_still_valid",
            )
        repos.delete_device(session, device=device)
        audit.record_change(session, ctx, "device.delete", subject=f"{ca_row.sn}/{device.sn}")
        return {"sn": device.sn, "ca_sn": ca_row.sn, "deleted": True}
