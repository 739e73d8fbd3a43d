"""Repositories of the browser console: sessions, sign-in throttles, the overview's counts and the
fleet-wide device search.  They never commit."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from .artifact_models import CrlState
from .console_models import ConsoleSession, ConsoleThrottle
from .models import CaCertificate, DeviceCertificate

__all__ = [
    "insert_session", "get_session", "touch_session", "delete_session", "purge_sessions",
    "get_throttle", "count_failure", "clear_throttle",
    "device_counts", "expiring_counts", "crl_states", "device_rows", "device_body", "ca_body",
]


# -- sessions ------------------------------------------------------------------------------------


def insert_session(session: Session, row: ConsoleSession) -> None:
    session.add(row)
    session.flush()


def get_session(session: Session, *, token_sha256: str) -> ConsoleSession | None:
    return session.get(ConsoleSession, token_sha256)


def touch_session(session: Session, *, token_sha256: str, last_seen_at: _dt.datetime,
                  expires_at: _dt.datetime) -> None:
    session.execute(update(ConsoleSession).where(ConsoleSession.token_sha256 == token_sha256)
                    .values(last_seen_at=last_seen_at, expires_at=expires_at)
                    .execution_options(synchronize_session=False))


def delete_session(session: Session, *, token_sha256: str) -> bool:
    result = session.execute(delete(ConsoleSession).where(ConsoleSession.token_sha256 == token_sha256)
                             .execution_options(synchronize_session=False))
    return result.rowcount == 1


def purge_sessions(session: Session, *, now: _dt.datetime) -> int:
    return session.execute(delete(ConsoleSession).where(ConsoleSession.expires_at < now)
                           .execution_options(synchronize_session=False)).rowcount


# -- sign-in throttles ---------------------------------------------------------------------------


def get_throttle(session: Session, *, key: str) -> ConsoleThrottle | None:
    return session.get(ConsoleThrottle, key)


def count_failure(session: Session, *, key: str, now: _dt.datetime, window: _dt.timedelta) -> None:
    """One more failure for ``key`` in its current window (a new window if the last one has passed).

    Atomic on both databases (an UPDATE of ``failures + 1``, an INSERT ... ON CONFLICT), so that
    concurrent failures are all counted: a read-then-write would let a guesser lose some of them.
    """
    cutoff = now - window
    table = ConsoleThrottle.__table__
    insert = (postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert)(table)
    for _ in range(3):
        if session.execute(update(table).where(table.c.key == key, table.c.window_start > cutoff)
                           .values(failures=table.c.failures + 1)).rowcount == 1:
            return
        fresh = insert.values(key=key, failures=1, window_start=now).on_conflict_do_update(
            index_elements=["key"], set_={"failures": 1, "window_start": now},
            where=table.c.window_start <= cutoff).returning(table.c.key)
        if session.execute(fresh).first() is not None:  # (rowcount is not reliable here across drivers)
            return


def clear_throttle(session: Session, *, key: str) -> None:
    session.execute(delete(ConsoleThrottle).where(ConsoleThrottle.key == key)
                    .execution_options(synchronize_session=False))


# -- the overview --------------------------------------------------------------------------------

_D = DeviceCertificate


def device_counts(session: Session, *, instance: str) -> Sequence[tuple[int, str, int]]:
    """(ca_id, status, count) of every CA of the instance that has devices: one grouped query."""
    return session.execute(select(_D.ca_id, _D.status, func.count()).where(_D.instance == instance)
                           .group_by(_D.ca_id, _D.status)).all()


def expiring_counts(session: Session, *, instance: str, now: _dt.datetime,
                    until: _dt.datetime) -> Sequence[tuple[int, int]]:
    """(ca_id, count) of ACTIVE devices whose certificate ends between ``now`` and ``until``."""
    return session.execute(select(_D.ca_id, func.count()).where(
        _D.instance == instance, _D.status == "ACTIVE", _D.not_after >= now, _D.not_after < until)
        .group_by(_D.ca_id)).all()


def crl_states(session: Session, *, instance: str) -> Sequence[tuple[int, _dt.datetime, _dt.datetime, int]]:
    """(ca_id, this_update, next_update, entry_count) of the instance's current CRLs."""
    return session.execute(
        select(CrlState.ca_id, CrlState.this_update, CrlState.next_update, CrlState.entry_count)
        .join(CaCertificate, CaCertificate.id == CrlState.ca_id).where(CaCertificate.instance == instance)).all()


# -- device lists ----------------------------------------------------------------------------------

#: What a list page shows, no more: each datetime column costs a conversion per row.
#: Table columns, not ORM attributes: the ORM's result layer is skipped (about 15% fewer calls a page).
_DT, _CT = DeviceCertificate.__table__.c, CaCertificate.__table__.c
_ROW_COLUMNS = (_DT.id, _CT.sn.label("ca_sn"), _DT.sn, _DT.client_id, _DT.status, _DT.not_after)


def device_rows(session: Session, *, instance: str, ca_id: int | None = None, client_id: str | None = None,
                sn: str | None = None, fingerprint: str | None = None, status: str | None = None,
                expiring_before: _dt.datetime | None = None, after_id: int | None, limit: int) -> Sequence:
    """A keyset page of devices in id order (of one CA, or of the whole instance), with their CA's serial;
    the given ``client_id``, ``sn`` and ``fingerprint`` are alternatives (a row matching any one is listed).
    The indexes (ca_id, [status,] id) and (instance, client_id) serve it."""
    query = select(*_ROW_COLUMNS).select_from(DeviceCertificate.__table__.join(CaCertificate.__table__, _CT.id == _DT.ca_id))
    query = query.where(_DT.ca_id == ca_id) if ca_id is not None else query.where(_DT.instance == instance)
    matches = []
    if client_id is not None:
        matches.append(_DT.client_id == client_id)
    if sn is not None:
        matches.append(_DT.sn == sn)
    if fingerprint is not None:
        matches.append(_DT.fingerprint_sha256 == fingerprint)
    if matches:
        query = query.where(or_(*matches))
    if status is not None:
        query = query.where(_DT.status == status)
    if expiring_before is not None:
        query = query.where(_DT.not_after < expiring_before)
    if after_id is not None:
        query = query.where(_DT.id > after_id)
    return session.execute(query.order_by(_DT.id).limit(limit)).all()


def device_body(session: Session, *, instance: str, ca_sn: str, sn: str) -> bytes | None:
    """The DER certificate of one device, or None."""
    return session.scalar(select(_D.cert_der).join(CaCertificate, CaCertificate.id == _D.ca_id).where(
        CaCertificate.instance == instance, CaCertificate.sn == ca_sn, _D.sn == sn))


def ca_body(session: Session, *, instance: str, sn: str) -> tuple[bytes, str | None] | None:
    """The DER certificate of one CA and its chain PEM, or None."""
    row = session.execute(select(CaCertificate.cert_der, CaCertificate.chain_pem).where(
        CaCertificate.instance == instance, CaCertificate.sn == sn)).first()
    return (bytes(row[0]), row[1]) if row is not None else None
