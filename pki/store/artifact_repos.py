"""Repositories for CRLs and artifacts.  They never commit."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlmodel import Session

from .artifact_models import CrlState, OcspSigner
from .models import CaCertificate, DeviceCertificate

__all__ = [
    "cas_of_instance",
    "revocation_rows",
    "device_status",
    "get_crl_state",
    "save_crl_state",
    "get_ocsp_signer",
    "save_ocsp_signer",
]

def cas_of_instance(session: Session, *, instance: str) -> Sequence[CaCertificate]:
    """Every CA of the instance, in id order (publish orders its output by it)."""
    return session.scalars(
        select(CaCertificate).where(CaCertificate.instance == instance).order_by(CaCertificate.id)
    ).all()


def revocation_rows(session: Session, *, ca_id: int, statuses: Sequence[str]) -> Sequence[tuple]:
    """(sn, status, revocation_reason, revoked_at, status_changed_at) of every device with one of ``statuses``.

    Core rows, not ORM objects: a CA may have 100,000 of them.  The index
    (ca_id, status, id) serves the query.
    """
    return session.execute(
        select(
            DeviceCertificate.sn,
            DeviceCertificate.status,
            DeviceCertificate.revocation_reason,
            DeviceCertificate.revoked_at,
            DeviceCertificate.status_changed_at,
        ).where(DeviceCertificate.ca_id == ca_id, DeviceCertificate.status.in_(list(statuses)))
    ).all()


def device_status(session: Session, *, ca_id: int, sn: str):
    """(status, revocation_reason, revoked_at, status_changed_at, supersede_after) of one device, or None."""
    return session.execute(
        select(
            DeviceCertificate.status,
            DeviceCertificate.revocation_reason,
            DeviceCertificate.revoked_at,
            DeviceCertificate.status_changed_at,
            DeviceCertificate.supersede_after,
        ).where(DeviceCertificate.ca_id == ca_id, DeviceCertificate.sn == sn)
    ).one_or_none()


def get_crl_state(session: Session, *, ca_id: int, lock: bool = False) -> CrlState | None:
    query = select(CrlState).where(CrlState.ca_id == ca_id)
    if lock:
        query = query.with_for_update()
    return session.scalars(query).one_or_none()


def save_crl_state(session: Session, row: CrlState) -> CrlState:
    session.add(row)
    session.flush()
    return row


def get_ocsp_signer(session: Session, *, ca_id: int, lock: bool = False) -> OcspSigner | None:
    query = select(OcspSigner).where(OcspSigner.ca_id == ca_id)
    if lock:
        query = query.with_for_update()
    return session.scalars(query).one_or_none()


def save_ocsp_signer(session: Session, row: OcspSigner) -> OcspSigner:
    session.add(row)
    session.flush()
    return row
