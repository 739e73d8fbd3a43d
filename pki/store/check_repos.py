"""Reads for the fleet checks (:mod:`pki.services.checks`).  They never commit.

The device stream is one query, ordered by client id (the index
``ix_device_instance_client_id`` serves it), read in chunks
(``yield_per``: a server-side cursor on PostgreSQL), so every certificate of
one client id arrives together and the checks keep no per-client state.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Iterator, Sequence

from sqlalchemy import and_, case, select
from sqlalchemy.engine import Connection

from .artifact_models import CrlState
from .models import CaCertificate, DeviceCertificate
from .secret_models import DeviceSecret

__all__ = ["cas_with_crl", "stream_devices", "active_secret_client_ids", "DEVICE_COLUMNS"]

_D = DeviceCertificate.__table__.c
DEVICE_COLUMNS = (_D.id, _D.ca_id, _D.sn, _D.client_id, _D.status, _D.key_type, _D.not_after, _D.cert_der)


def cas_with_crl(conn: Connection, *, instance: str) -> Sequence[tuple[CaCertificate, CrlState | None]]:
    """Every CA of the instance with its current CRL state (None: none signed or uploaded), by id."""
    ca, crl = CaCertificate.__table__.c, CrlState.__table__.c
    rows = conn.execute(
        select(ca, *[c.label(f"crl_{c.name}") for c in crl])
        .select_from(CaCertificate.__table__.outerjoin(CrlState.__table__, crl.ca_id == ca.id))
        .where(ca.instance == instance).order_by(ca.id)
    ).mappings().all()
    out = []
    for row in rows:
        ca_row = CaCertificate(**{c.name: row[c.name] for c in ca})
        state = None
        if row["crl_id"] is not None:
            state = CrlState(**{c.name: row[f"crl_{c.name}"] for c in crl})
        out.append((ca_row, state))
    return out


def stream_devices(conn: Connection, *, instance: str, horizon: _dt.datetime, chunk: int = 5000) -> Iterator:
    """Every device certificate of the instance as ``(id, ca_id, sn, client_id, status, key_type, cert_der,
    not_after, expiring)``, where ``expiring`` (ACTIVE
    and not after ``horizon``) is compared in SQL, so no row's timestamps are converted: ``not_after`` is
    only read for the expiring rows (None for the others).  By client id, then id."""
    expiring = and_(_D.status == "ACTIVE", _D.not_after <= horizon)
    columns = [c for c in DEVICE_COLUMNS if c is not _D.not_after]
    result = conn.execution_options(yield_per=chunk).execute(
        select(*columns, case((expiring, _D.not_after), else_=None).label("not_after"),
               case((expiring, 1), else_=0).label("expiring"))
        .where(_D.instance == instance).order_by(_D.client_id, _D.id))
    try:
        yield from result
    finally:
        result.close()


def active_secret_client_ids(conn: Connection, *, instance: str, client_ids: Iterable[str],
                             chunk: int = 500) -> set[str]:
    """Those of ``client_ids`` that hold an ACTIVE device secret."""
    s = DeviceSecret.__table__.c
    wanted = list(client_ids)
    found: set[str] = set()
    for i in range(0, len(wanted), chunk):
        found.update(conn.execute(
            select(s.client_id).where(s.instance == instance, s.status == "ACTIVE",
                                      s.client_id.in_(wanted[i:i + chunk]))).scalars())
    return found


def devices_by_id(conn: Connection, *, ids: Sequence[int]) -> dict[int, tuple]:
    """(ca_id, sn, cert_der) of the given device ids."""
    rows = conn.execute(select(_D.id, _D.ca_id, _D.sn, _D.cert_der).where(_D.id.in_(list(ids)))).all()
    return {r.id: (r.ca_id, r.sn, bytes(r.cert_der)) for r in rows}
