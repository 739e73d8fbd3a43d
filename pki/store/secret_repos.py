"""Repositories for device secrets.  They never commit.

Two kinds of function live here:

- the usual ones over a :class:`~sqlmodel.Session`, for the management
  commands (one transaction each, chosen by the service);
- :class:`VerifyLookup`, the read of the broker's password check.  A check
  must cost tens of microseconds, and an ORM session with its own
  transaction costs a millisecond, so it runs one hand-written SELECT on a
  pooled DB-API connection.  The SELECT is a single statement, so it reads
  one consistent snapshot on SQLite (autocommit) and PostgreSQL (READ
  COMMITTED) alike; the pool rolls the connection back when it returns.
"""

from __future__ import annotations

import datetime as _dt
import threading
import weakref
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from ..errors import StoreError
from .repos import instance_lister
from .secret_models import DeviceSecret, SecretGroup, SecretGroupBlock

__all__ = [
    "insert_secret",
    "get_secret",
    "list_secrets",
    "delete_secret",
    "update_secret",
    "version_bump",
    "insert_group",
    "get_group",
    "list_groups",
    "is_member_blocked",
    "block_member",
    "unblock_member",
    "VerifyLookup",
    "SecretState",
    "GroupState",
]


# -- device secrets ---------------------------------------------------------------------


def insert_secret(session: Session, row: DeviceSecret) -> DeviceSecret:
    session.add(row)
    session.flush()
    return row


def _maybe_locked(query, lock: bool):
    # FOR UPDATE on PostgreSQL: two refreshes of one credential queue instead
    # of both rotating from the same primary.  SQLite writers are serialised.
    return query.with_for_update() if lock else query


def get_secret(session: Session, *, instance: str, client_id: str, lock: bool = False) -> DeviceSecret | None:
    query = select(DeviceSecret).where(DeviceSecret.instance == instance, DeviceSecret.client_id == client_id)
    return session.scalars(_maybe_locked(query, lock)).one_or_none()


list_secrets = instance_lister(DeviceSecret)


def _update_versioned(session: Session, row, now: _dt.datetime, values: dict):
    """Apply ``values`` and bump the version: the verification cache keys on it."""
    for name, value in values.items():
        setattr(row, name, value)
    row.version += 1
    row.updated_at = now
    session.add(row)
    session.flush()
    return row


def version_bump(model, *, now: _dt.datetime) -> dict:
    """What a conditional UPDATE of a ``model`` row sets besides its own values (as _update_versioned)."""
    return {"version": model.version + 1, "updated_at": now}


def update_secret(session: Session, *, row: DeviceSecret, now: _dt.datetime, **values) -> DeviceSecret:
    return _update_versioned(session, row, now, values)


def delete_secret(session: Session, *, row: DeviceSecret) -> None:
    session.execute(delete(DeviceSecret).where(DeviceSecret.id == row.id))


# -- enrollment groups ------------------------------------------------------------------


def insert_group(session: Session, row: SecretGroup) -> SecretGroup:
    session.add(row)
    session.flush()
    return row


def get_group(session: Session, *, instance: str, name: str, lock: bool = False) -> SecretGroup | None:
    query = select(SecretGroup).where(SecretGroup.instance == instance, SecretGroup.name == name)
    return session.scalars(_maybe_locked(query, lock)).one_or_none()


list_groups = instance_lister(SecretGroup)


def is_member_blocked(session: Session, *, group_id: int, client_id: str) -> bool:
    return session.get(SecretGroupBlock, (group_id, client_id)) is not None


def block_member(session: Session, *, group_id: int, client_id: str, now: _dt.datetime) -> bool:
    """True if the member was not blocked before."""
    if is_member_blocked(session, group_id=group_id, client_id=client_id):
        return False
    session.add(SecretGroupBlock(group_id=group_id, client_id=client_id, created_at=now))
    session.flush()
    return True


def unblock_member(session: Session, *, group_id: int, client_id: str) -> bool:
    result = session.execute(
        delete(SecretGroupBlock)
        .where(SecretGroupBlock.group_id == group_id, SecretGroupBlock.client_id == client_id)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


# -- the verification read ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SecretState:
    """What a check needs of one credential row, as of one SELECT."""

    client_id: str
    status: str
    version: int
    sealed_primary: bytes
    sealed_secondary: bytes | None
    secondary_expires_at: _dt.datetime | None


@dataclass(frozen=True, slots=True)
class GroupState:
    status: str
    version: int
    sealed_key: bytes
    member_blocked: bool
    #: Status of an individual credential of the same client id, if there is one.
    individual_status: str | None


class VerifyLookup:
    """The per-check SELECTs, prepared once per engine."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        dialect = engine.dialect
        self._local = threading.local() if dialect.name == "sqlite" else None
        self._held: list = []  # every thread's held connection, closed with this object
        weakref.finalize(self, _close_all, self._held)
        mark = "?" if dialect.paramstyle == "qmark" else "%s"
        self._dbapi_error = dialect.dbapi.Error
        self._secret_sql = (
            "SELECT client_id, status, version, sealed_primary, sealed_secondary, secondary_expires_at "
            f"FROM device_secret WHERE access_key_id = {mark} AND instance = {mark}"
        )
        self._group_sql = (
            "SELECT g.status, g.version, g.sealed_key, "
            f"(SELECT 1 FROM secret_group_block b WHERE b.group_id = g.id AND b.client_id = {mark}), "
            f"(SELECT s.status FROM device_secret s WHERE s.instance = g.instance AND s.client_id = {mark}) "
            f"FROM secret_group g WHERE g.access_key_id = {mark} AND g.instance = {mark}"
        )
        # The column's own type turns the driver's value (text on SQLite) into aware UTC.
        column = DeviceSecret.__table__.c.secondary_expires_at
        self._to_datetime = column.type.dialect_impl(dialect).result_processor(dialect, None) or (lambda v: v)

    def _fetch(self, sql: str, params: tuple):
        if self._local is not None:
            return self._fetch_held(sql, params)
        try:
            conn = self._engine.raw_connection()
        except Exception as exc:  # noqa: BLE001 - the pool wraps driver errors in its own types
            raise _unavailable(exc) from exc
        try:
            return _fetch_one(conn, sql, params)
        except self._dbapi_error as exc:
            raise _unavailable(exc) from exc
        finally:
            conn.close()

    def _fetch_held(self, sql: str, params: tuple):
        # SQLite: a pool checkout and its reset cost twice the query itself,
        # so each thread keeps one connection, detached from the pool (the
        # pool's connect hooks already ran: WAL, autocommit).  Autocommit
        # means no transaction stays open between checks, so writers are
        # never held up; the connection closes when this object goes.
        conn = getattr(self._local, "conn", None)
        try:
            if conn is None:
                fairy = self._engine.raw_connection()
                fairy.detach()
                conn = self._local.conn = fairy.dbapi_connection
                self._held.append(conn)
            return _fetch_one(conn, sql, params)
        except Exception as exc:  # noqa: BLE001 - driver or pool error: drop the connection, refuse
            self._local.conn = None
            if conn is not None:
                try:
                    conn.close()
                except Exception:  # noqa: BLE001
                    pass
            raise _unavailable(exc) from exc

    def close(self) -> None:
        """Close the connections held for checks (they also close when this object goes)."""
        _close_all(self._held)

    def secret(self, *, access_key_id: str, instance: str) -> SecretState | None:
        row = self._fetch(self._secret_sql, (access_key_id, instance))
        if row is None:
            return None
        client_id, status, version, primary, secondary, expires = row
        return SecretState(
            client_id=client_id,
            status=status,
            version=version,
            sealed_primary=bytes(primary),
            sealed_secondary=bytes(secondary) if secondary is not None else None,
            secondary_expires_at=self._to_datetime(expires) if expires is not None else None,
        )

    def group(self, *, access_key_id: str, instance: str, client_id: str) -> GroupState | None:
        row = self._fetch(self._group_sql, (client_id, client_id, access_key_id, instance))
        if row is None:
            return None
        status, version, sealed, blocked, individual = row
        return GroupState(
            status=status, version=version, sealed_key=bytes(sealed), member_blocked=blocked is not None,
            individual_status=individual,
        )


def _fetch_one(conn, sql: str, params: tuple):
    cursor = conn.cursor()
    try:
        cursor.execute(sql, params)
        return cursor.fetchone()
    finally:
        cursor.close()


def _close_all(connections: list) -> None:
    while connections:
        try:
            connections.pop().close()
        except Exception:  # noqa: BLE001 - closing is best effort
            pass


def _unavailable(exc: Exception) -> StoreError:
    return StoreError(
        f"the database failed ({type(exc).__name__}) during a secret check; the check did not pass. "
        "Check that the database is reachable",
        code="store_unavailable",
    )
