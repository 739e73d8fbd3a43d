"""Supersession: a renewed certificate's predecessor becomes REVOKED (superseded) when its grace ends.

A renewal records ``supersede_after`` on the old row instead of revoking it,
so a device that has not yet swapped in its new certificate keeps working
for the grace period.  The grace is enforced here, in the transaction that
signs a CA's CRL (:func:`pki.services.crls.ensure_managed_crl`, which every
publish, ``GET /crl/{ca_sn}.pem`` and CRL read goes through): a CRL signed
after the grace ended always lists the old certificate, with the reason
``superseded`` and the revocation time the grace ended.
"""

from __future__ import annotations

import datetime as _dt

from sqlalchemy import select

from ..store import DeviceCertificate, DeviceStatus
from . import audit
from .context import Context
from .status_change import change_status

__all__ = ["supersede_due", "SUPERSEDED"]

SUPERSEDED = "superseded"


def supersede_due(ctx: Context, session, *, ca_id: int, ca_sn: str, now: _dt.datetime) -> list[str]:
    """Revoke (superseded) the CA's certificates whose grace has ended; their serials."""
    due = session.scalars(
        select(DeviceCertificate).where(
            DeviceCertificate.ca_id == ca_id, DeviceCertificate.supersede_after.is_not(None),
            DeviceCertificate.supersede_after <= now, DeviceCertificate.status != DeviceStatus.REVOKED,
        ).order_by(DeviceCertificate.id).with_for_update()
    ).all()
    done = []
    for row in due:
        if change_status(session, row, DeviceStatus.REVOKED, what=f"device certificate {row.sn}", updated_at=now,
                         status_changed_at=now, revocation_reason=SUPERSEDED, revoked_at=row.supersede_after):
            done.append(row.sn)
    for sn in done:
        audit.record_change(session, ctx, "device.revoke", subject=f"{ca_sn}/{sn}", status=DeviceStatus.REVOKED,
                            reason=SUPERSEDED, by="supersession")
    return done
