"""Repositories: queries over one session.  They never commit.

Functions take keyword-only arguments and return rows or plain values; the
services decide what a missing row or a lost race means to the user.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence

from sqlalchemy import bindparam, delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection
from sqlmodel import Session

from .lean import LeanStatement
from .models import CaCertificate, CustodyKey, DeviceCertificate, RegisterCode

__all__ = [
    "get_device_public",
    "insert_register_code",
    "redeem_register_code",
    "find_register_code",
    "link_register_code",
    "insert_ca",
    "get_ca_by_sn",
    "get_ca_by_fingerprint",
    "get_issuer_state",
    "find_ca_clash",
    "keyset_page",
    "list_cas",
    "update_status",
    "current_status",
    "count_devices_of_ca",
    "delete_ca",
]


# -- register codes -----------------------------------------------------------------


def insert_register_code(
    session: Session, *, instance: str, code_sha256: str, now: _dt.datetime, expires_at: _dt.datetime
) -> RegisterCode:
    row = RegisterCode(instance=instance, code_sha256=code_sha256, created_at=now, expires_at=expires_at)
    session.add(row)
    session.flush()
    return row


def redeem_register_code(session: Session, *, instance: str, code_sha256: str, now: _dt.datetime) -> bool:
    """Mark a live code used in one conditional UPDATE; True if this call won it.

    The row count, not a prior read, decides: two concurrent redemptions of
    one code cannot both see "unused".
    """
    result = session.execute(
        update(RegisterCode)
        .where(
            RegisterCode.instance == instance,
            RegisterCode.code_sha256 == code_sha256,
            RegisterCode.used_at.is_(None),
            RegisterCode.expires_at > now,
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def link_register_code(session: Session, *, code_sha256: str, ca_id: int) -> None:
    session.execute(
        update(RegisterCode)
        .where(RegisterCode.code_sha256 == code_sha256)
        .values(used_by_ca_id=ca_id)
        .execution_options(synchronize_session=False)
    )


def find_register_code(session: Session, *, instance: str, code_sha256: str) -> RegisterCode | None:
    return session.scalars(
        select(RegisterCode).where(RegisterCode.instance == instance, RegisterCode.code_sha256 == code_sha256)
    ).one_or_none()


# -- CAs ----------------------------------------------------------------------------


def insert_ca(session: Session, row: CaCertificate) -> CaCertificate:
    session.add(row)
    session.flush()
    return row


def _maybe_locked(query, lock: bool):
    # FOR SHARE on PostgreSQL: a concurrent status change waits for us (and we
    # for it).  SQLite has no row locks; its writers are already serialised.
    return query.with_for_update(read=True) if lock else query


def get_ca_by_sn(session: Session, *, instance: str, sn: str, lock: bool = False) -> CaCertificate | None:
    query = select(CaCertificate).where(CaCertificate.instance == instance, CaCertificate.sn == sn)
    return session.scalars(_maybe_locked(query, lock)).one_or_none()


def get_ca_by_fingerprint(
    session: Session, *, instance: str, fingerprint_sha256: str, lock: bool = False
) -> CaCertificate | None:
    query = select(CaCertificate).where(
        CaCertificate.instance == instance, CaCertificate.fingerprint_sha256 == fingerprint_sha256
    )
    return session.scalars(_maybe_locked(query, lock)).one_or_none()


_ISSUER_COLUMNS = (
    CaCertificate.id, CaCertificate.sn, CaCertificate.status, CaCertificate.not_before, CaCertificate.not_after,
    CaCertificate.key_id, CaCertificate.fingerprint_sha256, CaCertificate.cert_der, CaCertificate.chain_pem,
)


# Built once: constructing a statement costs as much as running it on SQLite.
_ISSUER_STATE = select(*_ISSUER_COLUMNS).where(
    CaCertificate.instance == bindparam("instance"), CaCertificate.sn == bindparam("sn")
)
_ISSUER_STATE_LOCKED = _ISSUER_STATE.with_for_update(read=True)
_LEAN_ISSUER_STATE = LeanStatement(_ISSUER_STATE)
_LEAN_ISSUER_STATE_LOCKED = LeanStatement(_ISSUER_STATE_LOCKED)


def get_issuer_state(session: Session | Connection, *, instance: str, sn: str, lock: bool = False):
    """The columns issuance needs, as a plain row: the hot path skips the ORM and Core's execute
    (pki/store/lean.py)."""
    query = _LEAN_ISSUER_STATE_LOCKED if lock else _LEAN_ISSUER_STATE
    return query.one_or_none(session, {"instance": instance, "sn": sn})


def get_ca_by_id(session: Session, *, ca_id: int) -> CaCertificate | None:
    return session.get(CaCertificate, ca_id)


def cas_with_subject(session: Session, *, instance: str, subject: str) -> Sequence[CaCertificate]:
    return session.scalars(
        select(CaCertificate).where(CaCertificate.instance == instance, CaCertificate.subject == subject)
    ).all()


def insert_custody_key(session: Session, row: CustodyKey) -> CustodyKey:
    session.add(row)
    session.flush()
    return row


def get_custody_key(session: Session | Connection, *, key_id: str):
    """The sealed key row (key_id, key_type, sealed); works on a Session or a Connection."""
    table = CustodyKey.__table__
    return session.execute(select(table).where(table.c.key_id == key_id)).one_or_none()


def ca_sn_by_fingerprint(session: Session | Connection, *, instance: str, fingerprint_sha256: str) -> str | None:
    return session.execute(
        select(CaCertificate.sn).where(
            CaCertificate.instance == instance, CaCertificate.fingerprint_sha256 == fingerprint_sha256
        )
    ).scalar_one_or_none()


def find_ca_clash(
    session: Session, *, instance: str, sn: str, fingerprint_sha256: str, spki_sha256: str
) -> CaCertificate | None:
    """A CA of the instance with the same certificate, key or serial, if any."""
    return session.scalars(
        select(CaCertificate)
        .where(
            CaCertificate.instance == instance,
            or_(
                CaCertificate.fingerprint_sha256 == fingerprint_sha256,
                CaCertificate.spki_sha256 == spki_sha256,
                CaCertificate.sn == sn,
            ),
        )
        .limit(1)
    ).first()


def keyset_page(session: Session, model, *where, after_id: int | None, limit: int, status: str | None = None):
    """One page of ``model`` rows in id order after ``after_id``: the same cost at any depth."""
    query = select(model).where(*where)
    if status is not None:
        query = query.where(model.status == status)
    if after_id is not None:
        query = query.where(model.id > after_id)
    return session.scalars(query.order_by(model.id).limit(limit)).all()


def instance_lister(model):
    """The list function of a table whose rows belong to an instance: one keyset page of them."""
    def list_rows(session: Session, *, instance: str, status: str | None, after_id: int | None, limit: int):
        return keyset_page(session, model, model.instance == instance, status=status, after_id=after_id,
                           limit=limit)

    return list_rows


list_cas = instance_lister(CaCertificate)


def update_status(session: Session, row, *, expected: str, values: dict) -> bool:
    """Write ``values`` on ``row`` only if its status is still ``expected``; False if it is not (or is gone).

    The guard is in the UPDATE itself: under PostgreSQL's READ COMMITTED, an UPDATE that waited for a
    concurrent one re-checks its WHERE on the row that one committed, so a change decided on a stale read
    matches nothing instead of overwriting it (a REVOKED device put back to ACTIVE).  On success ``row`` is
    refreshed, so that it shows what the database holds; on failure :func:`current_status` says why.
    """
    model = type(row)
    result = session.execute(
        update(model)
        .where(model.id == row.id, model.status == expected)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        return False
    session.refresh(row)
    return True


def current_status(session: Session, row) -> str | None:
    """The status ``row`` has in the database now (None if it is gone), whatever the session holds."""
    model = type(row)
    return session.scalar(select(model.status).where(model.id == row.id))


def count_devices_of_ca(session: Session, *, ca_id: int) -> int:
    return session.scalar(select(func.count()).select_from(DeviceCertificate).where(DeviceCertificate.ca_id == ca_id))


def delete_ca(session: Session, *, ca: CaCertificate, cascade: bool) -> int:
    """Delete a CA (and, with ``cascade``, its device certificates); returns devices removed."""
    removed = 0
    if cascade:
        removed = session.execute(
            delete(DeviceCertificate).where(DeviceCertificate.ca_id == ca.id).execution_options(synchronize_session=False)
        ).rowcount
    session.delete(ca)
    session.flush()
    return removed


# -- device certificates -------------------------------------------------------------


def insert_device(session: Session, row: DeviceCertificate) -> DeviceCertificate:
    session.add(row)
    session.flush()
    return row


_INSERT_DEVICE = insert(DeviceCertificate.__table__)
#: The columns of a new device row (pki/services/device_profile.py device_row_values), every one given.
DEVICE_ROW_KEYS = ("instance", "ca_id", "sn", "client_id", "status", "source", "fingerprint_sha256", "key_type",
                   "not_before", "not_after", "cert_der", "created_at", "updated_at", "status_changed_at")
_LEAN_INSERT_DEVICE = LeanStatement(_INSERT_DEVICE, column_keys=DEVICE_ROW_KEYS)


def insert_device_values(session: Session | Connection, values: dict) -> None:
    """One device row from plain values, the keys of DEVICE_ROW_KEYS (issuance is a hot path:
    pki/store/lean.py).  Other keys take Core's insert."""
    if values.keys() == set(DEVICE_ROW_KEYS):
        _LEAN_INSERT_DEVICE.execute(session, values)
    else:
        session.execute(_INSERT_DEVICE, [values])


def insert_devices(session: Session, rows: Sequence[dict]) -> None:
    """Bulk insert for provisioning: one executemany, no ORM identity bookkeeping."""
    if rows:
        session.execute(insert(DeviceCertificate), list(rows))


def get_device(session: Session, *, ca_id: int, sn: str, lock: bool = False) -> DeviceCertificate | None:
    """With ``lock``, FOR UPDATE (PostgreSQL): a concurrent status change waits, then sees this one's."""
    query = select(DeviceCertificate).where(DeviceCertificate.ca_id == ca_id, DeviceCertificate.sn == sn)
    return session.scalars(query.with_for_update() if lock else query).one_or_none()


_CA, _DEVICE = CaCertificate.__table__.c, DeviceCertificate.__table__.c
_DEVICE_PUBLIC = select(
    _CA.sn.label("ca_sn"), _DEVICE.sn, _DEVICE.client_id, _DEVICE.status, _DEVICE.source,
    _DEVICE.fingerprint_sha256, _DEVICE.key_type, _DEVICE.not_before, _DEVICE.not_after,
    _DEVICE.revocation_reason, _DEVICE.revoked_at, _DEVICE.created_at, _DEVICE.updated_at,
    _DEVICE.status_changed_at,
).select_from(DeviceCertificate.__table__.join(CaCertificate.__table__, _DEVICE.ca_id == _CA.id))
# Built once: a lookup by (CA, serial) is the commonest read over HTTP.
_DEVICE_BY_CA_SN = _DEVICE_PUBLIC.where(
    _CA.instance == bindparam("instance"), _CA.sn == bindparam("ca"), _DEVICE.sn == bindparam("sn"))
_DEVICE_BY_CA_FINGERPRINT = _DEVICE_PUBLIC.where(
    _CA.instance == bindparam("instance"), _CA.fingerprint_sha256 == bindparam("ca"), _DEVICE.sn == bindparam("sn"))


def get_device_public(conn: Session | Connection, *, instance: str, sn: str, ca_sn: str | None = None,
                      ca_fingerprint: str | None = None):
    """A device's public columns and its CA's serial (``ca_sn``) as one plain row, or None.

    None does not say whether the CA or the device is missing: ask again with the ORM for the error.
    """
    query, ca = (_DEVICE_BY_CA_SN, ca_sn) if ca_fingerprint is None else (_DEVICE_BY_CA_FINGERPRINT, ca_fingerprint)
    return conn.execute(query, {"instance": instance, "ca": ca, "sn": sn}).one_or_none()


def get_device_by_fingerprint(session: Session, *, instance: str, fingerprint_sha256: str) -> DeviceCertificate | None:
    return session.scalars(
        select(DeviceCertificate).where(
            DeviceCertificate.instance == instance, DeviceCertificate.fingerprint_sha256 == fingerprint_sha256
        )
    ).one_or_none()


def devices_of_client(session: Session, *, instance: str, client_id: str, limit: int) -> Sequence[DeviceCertificate]:
    return session.scalars(
        select(DeviceCertificate)
        .where(DeviceCertificate.instance == instance, DeviceCertificate.client_id == client_id)
        .order_by(DeviceCertificate.id)
        .limit(limit)
    ).all()


def devices_of_clients(
    session: Session, *, ca_id: int, client_ids: Sequence[str], status: str
) -> dict[str, DeviceCertificate]:
    """client id -> its certificate with ``status`` under the CA, for a batch of client ids."""
    rows = session.scalars(
        select(DeviceCertificate).where(
            DeviceCertificate.ca_id == ca_id,
            DeviceCertificate.client_id.in_(list(client_ids)),
            DeviceCertificate.status == status,
        )
    ).all()
    return {r.client_id: r for r in rows}


def list_devices(
    session: Session,
    *,
    ca_id: int,
    status: str | None,
    expiring_before: _dt.datetime | None,
    after_id: int | None,
    limit: int,
) -> Sequence[DeviceCertificate]:
    """A keyset page in id order: the index (ca_id, [status,] id) serves it at any depth.

    Plain rows of the listed columns: no certificate bodies, no ORM objects.
    """
    query = select(*_LIST_COLUMNS).where(DeviceCertificate.ca_id == ca_id)
    if status is not None:
        query = query.where(DeviceCertificate.status == status)
    if expiring_before is not None:
        query = query.where(DeviceCertificate.not_after < expiring_before)
    if after_id is not None:
        query = query.where(DeviceCertificate.id > after_id)
    return session.execute(query.order_by(DeviceCertificate.id).limit(limit)).all()


_LIST_COLUMNS = tuple(
    getattr(DeviceCertificate, name)
    for name in ("id", "sn", "client_id", "status", "source", "fingerprint_sha256", "key_type", "not_before",
                 "not_after", "revocation_reason", "revoked_at", "created_at", "updated_at", "status_changed_at")
)


def delete_device(session: Session, *, device: DeviceCertificate) -> None:
    session.delete(device)
    session.flush()
