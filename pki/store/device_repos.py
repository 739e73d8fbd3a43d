"""Device queries over a whole instance: lookup by client id or fingerprint, instance-wide pages, bulk revoke.

Plain Core rows (no ORM objects): these serve exports of a million rows and revocations of thousands.
Like :mod:`.repos`, nothing here commits.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence

from sqlalchemy import String, select, type_coerce, update
from sqlalchemy.engine import Connection

from .models import CaCertificate, DeviceCertificate, DeviceStatus

__all__ = ["PUBLIC_COLUMNS", "TIME_COLUMNS", "device_candidates", "devices_by_serials", "ca_ids", "ca_page", "revoke_ids"]

_CA, _DEVICE = CaCertificate.__table__.c, DeviceCertificate.__table__.c

#: A device's public columns, in the order of the JSON shape (and of the CSV export's header).
PUBLIC_COLUMNS = ("sn", "ca_sn", "client_id", "status", "source", "fingerprint_sha256", "key_type", "not_before",
                  "not_after", "revocation_reason", "revoked_at", "created_at", "updated_at", "status_changed_at")

TIME_COLUMNS = frozenset({"not_before", "not_after", "revoked_at", "created_at", "updated_at", "status_changed_at"})
_JOIN = DeviceCertificate.__table__.join(CaCertificate.__table__, _DEVICE.ca_id == _CA.id)
# id, then PUBLIC_COLUMNS in their order.
_SELECT = select(
    _DEVICE.id, *(_CA.sn.label("ca_sn") if c == "ca_sn" else getattr(_DEVICE, c) for c in PUBLIC_COLUMNS),
).select_from(_JOIN)
# The same with the times as the stored text: an export of a million rows spends most of its time
# turning SQLite's text into datetimes and back (pki.store.types.UTCDateTime); SQLite only.
_SELECT_TEXT_TIMES = select(
    _DEVICE.id,
    *(_CA.sn.label("ca_sn") if c == "ca_sn" else type_coerce(getattr(_DEVICE, c), String).label(c)
      if c in TIME_COLUMNS else getattr(_DEVICE, c) for c in PUBLIC_COLUMNS),
).select_from(_JOIN)


def device_candidates(conn: Connection, *, instance: str, client_ids: Sequence[str] = (),
                      fingerprints: Sequence[str] = (), ca_sn: str | None = None, limit: int = 100_000):
    """Rows (id + public columns) whose client id or fingerprint is one of those given, in id order."""
    query = _SELECT.where(_DEVICE.instance == instance)
    if client_ids:
        query = query.where(_DEVICE.client_id.in_(list(client_ids)))
    if fingerprints:
        query = query.where(_DEVICE.fingerprint_sha256.in_(list(fingerprints)))
    if ca_sn is not None:
        query = query.where(_CA.sn == ca_sn)
    return conn.execute(query.order_by(_DEVICE.id).limit(limit)).all()


def devices_by_serials(conn: Connection, *, instance: str, ca_sn: str, sns: Sequence[str]):
    """Rows (id + public columns) of the CA's devices with those serials."""
    query = _SELECT.where(_CA.instance == instance, _CA.sn == ca_sn, _DEVICE.sn.in_(list(sns)))
    return conn.execute(query).all()


def ca_ids(conn: Connection, *, instance: str, after_id: int | None = None) -> list[int]:
    """The instance's CA row ids in order (from ``after_id`` on, inclusive)."""
    query = select(_CA.id).where(_CA.instance == instance)
    if after_id is not None:
        query = query.where(_CA.id >= after_id)
    return [row[0] for row in conn.execute(query.order_by(_CA.id))]


def ca_page(conn: Connection, *, ca_id: int, status: str | None = None,
            expiring_before: _dt.datetime | None = None, after_id: int | None = None, limit: int,
            text_times: bool = False):
    """A keyset page of one CA's devices in id order: the index (ca_id, id) serves it at any depth.

    An instance is walked CA by CA: a page over ``device.instance`` ordered by id would have SQLite
    read the (instance, client_id) index and sort the whole instance for every page (EXPLAIN QUERY
    PLAN: USE TEMP B-TREE FOR ORDER BY).  ``text_times`` (SQLite only): the time columns as stored,
    ``YYYY-MM-DD HH:MM:SS[.ffffff]`` UTC.
    """
    query = (_SELECT_TEXT_TIMES if text_times else _SELECT).where(_DEVICE.ca_id == ca_id)
    if status is not None:
        query = query.where(_DEVICE.status == status)
    if expiring_before is not None:
        query = query.where(_DEVICE.not_after < expiring_before)
    if after_id is not None:
        query = query.where(_DEVICE.id > after_id)
    return conn.execute(query.order_by(_DEVICE.id).limit(limit)).all()


def revoke_ids(conn: Connection, *, ids: Sequence[int], reason: str, now: _dt.datetime) -> set[int]:
    """REVOKED, for ``reason``, every listed device not REVOKED yet; the ids this changed.

    Conditional on the status, like :mod:`pki.services.status_change`: a device revoked concurrently
    keeps its own reason and time (the database refuses to change them, migration 0008).
    """
    if not ids:
        return set()
    result = conn.execute(
        update(DeviceCertificate.__table__)
        .where(_DEVICE.id.in_(list(ids)), _DEVICE.status != DeviceStatus.REVOKED)
        .values(status=DeviceStatus.REVOKED, revocation_reason=reason, revoked_at=now, updated_at=now,
                status_changed_at=now)
        .returning(_DEVICE.id)
    )
    return {row[0] for row in result}
