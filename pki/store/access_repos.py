"""Repositories for principals, policies and the audit log.  They never commit.

The audit functions are written in SQLAlchemy Core and take a Session or a
Connection, so a service on the issuance hot path (a bare Connection) can
append its record in the same transaction as its change.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlmodel import Session

from .access_models import (
    AccessKey,
    AccessPolicy,
    AccessRevision,
    AccessUser,
    AuditHead,
    AuditRecord,
    PolicyAttachment,
)
from .lean import LeanStatement
from .repos import keyset_page

__all__ = [
    "insert_user",
    "get_user",
    "list_users",
    "delete_user",
    "insert_key",
    "get_key",
    "keys_of_users",
    "count_keys",
    "delete_key",
    "get_key_with_user",
    "access_revision",
    "bump_access_revision",
    "insert_policy",
    "get_policy",
    "list_policies",
    "delete_policy",
    "attach",
    "detach",
    "attachments_of_users",
    "policy_documents_of_user",
    "users_with_policy",
    "lock_audit_head",
    "append_audit",
    "audit_page",
    "audit_by_hash",
    "audit_head",
]

_Conn = Session | Connection
_REVISION = AccessRevision.__table__
_READ_REVISION = select(_REVISION.c.revision).where(_REVISION.c.id == 1)
_BUMP_REVISION = update(_REVISION).where(_REVISION.c.id == 1).values(revision=_REVISION.c.revision + 1)


def access_revision(conn: _Conn) -> int:
    """The counter every change below moves (see AccessRevision)."""
    value = conn.execute(_READ_REVISION).scalar_one_or_none()
    if value is None:
        raise LookupError("access_revision has no row: the 0007 migration did not run")
    return int(value)


def bump_access_revision(conn: _Conn) -> None:
    """Called by every function here that changes a user, key, policy or attachment: a
    cache of them kept by another process is then stale at its next request."""
    conn.execute(_BUMP_REVISION)


# -- users ----------------------------------------------------------------------------------


def insert_user(session: Session, row: AccessUser) -> AccessUser:
    session.add(row)
    session.flush()
    bump_access_revision(session)
    return row


def get_user(session: Session, *, name: str, lock: bool = False) -> AccessUser | None:
    query = select(AccessUser).where(AccessUser.name == name)
    if lock:
        query = query.with_for_update()
    return session.scalars(query).one_or_none()


def list_users(session: Session, *, after_id: int | None, limit: int) -> Sequence[AccessUser]:
    return keyset_page(session, AccessUser, after_id=after_id, limit=limit)


def delete_user(session: Session, *, row: AccessUser) -> None:
    # Explicit deletes: SQLite enforces ON DELETE CASCADE only with foreign_keys=ON,
    # which a hand-opened connection may lack.
    session.execute(delete(AccessKey).where(AccessKey.user_id == row.id))
    session.execute(delete(PolicyAttachment).where(PolicyAttachment.user_id == row.id))
    session.execute(delete(AccessUser).where(AccessUser.id == row.id))
    bump_access_revision(session)


# -- access keys ------------------------------------------------------------------------------


def insert_key(session: Session, row: AccessKey) -> AccessKey:
    session.add(row)
    session.flush()
    bump_access_revision(session)
    return row


def get_key(session: Session, *, access_key_id: str, lock: bool = False) -> AccessKey | None:
    query = select(AccessKey).where(AccessKey.access_key_id == access_key_id)
    return session.scalars(query.with_for_update() if lock else query).one_or_none()


def count_keys(session: Session, *, user_id: int) -> int:
    return len(session.scalars(select(AccessKey.id).where(AccessKey.user_id == user_id)).all())


def keys_of_users(session: Session, *, user_ids: Sequence[int]) -> Sequence[AccessKey]:
    if not user_ids:
        return []
    return session.scalars(
        select(AccessKey).where(AccessKey.user_id.in_(list(user_ids))).order_by(AccessKey.id)
    ).all()


def delete_key(session: Session, *, row: AccessKey) -> None:
    session.execute(delete(AccessKey).where(AccessKey.id == row.id))
    bump_access_revision(session)


def get_key_with_user(conn: _Conn, *, access_key_id: str):
    """One row: the key's status and sealed secret, its user's name, id and status."""
    k, u = AccessKey.__table__.c, AccessUser.__table__.c
    query = (
        select(k.access_key_id, k.status.label("key_status"), k.sealed_secret, u.id.label("user_id"),
               u.name.label("user_name"), u.status.label("user_status"))
        .select_from(AccessKey.__table__.join(AccessUser.__table__, k.user_id == u.id))
        .where(k.access_key_id == access_key_id)
    )
    return conn.execute(query).one_or_none()


# -- policies -----------------------------------------------------------------------------------


def insert_policy(session: Session, row: AccessPolicy) -> AccessPolicy:
    session.add(row)
    session.flush()
    bump_access_revision(session)
    return row


def get_policy(session: Session, *, name: str) -> AccessPolicy | None:
    return session.scalars(select(AccessPolicy).where(AccessPolicy.name == name)).one_or_none()


def list_policies(session: Session, *, after_id: int | None, limit: int) -> Sequence[AccessPolicy]:
    return keyset_page(session, AccessPolicy, after_id=after_id, limit=limit)


def delete_policy(session: Session, *, row: AccessPolicy) -> None:
    session.execute(delete(AccessPolicy).where(AccessPolicy.id == row.id))
    bump_access_revision(session)


def attach(session: Session, *, user_id: int, policy_name: str, now: _dt.datetime) -> bool:
    """True if newly attached, False if it already was."""
    exists = session.get(PolicyAttachment, (user_id, policy_name))
    if exists is not None:
        return False
    session.add(PolicyAttachment(user_id=user_id, policy_name=policy_name, created_at=now))
    session.flush()
    bump_access_revision(session)
    return True


def detach(session: Session, *, user_id: int, policy_name: str) -> bool:
    result = session.execute(
        delete(PolicyAttachment).where(
            PolicyAttachment.user_id == user_id, PolicyAttachment.policy_name == policy_name
        )
    )
    bump_access_revision(session)
    return result.rowcount == 1


def attachments_of_users(session: Session, *, user_ids: Sequence[int]) -> Sequence[PolicyAttachment]:
    if not user_ids:
        return []
    return session.scalars(
        select(PolicyAttachment)
        .where(PolicyAttachment.user_id.in_(list(user_ids)))
        .order_by(PolicyAttachment.user_id, PolicyAttachment.created_at, PolicyAttachment.policy_name)
    ).all()


def policy_documents_of_user(conn: _Conn, *, user_id: int) -> list[tuple[str, str | None]]:
    """(policy name, custom document or None for a system policy) attached to a user, in attachment order."""
    a, p = PolicyAttachment.__table__.c, AccessPolicy.__table__.c
    rows = conn.execute(
        select(a.policy_name, p.document)
        .select_from(PolicyAttachment.__table__.outerjoin(AccessPolicy.__table__, p.name == a.policy_name))
        .where(a.user_id == user_id)
        .order_by(a.created_at, a.policy_name)
    ).all()
    return [(r.policy_name, r.document) for r in rows]


def users_with_policy(session: Session, *, policy_name: str) -> Sequence[str]:
    return session.scalars(
        select(AccessUser.name)
        .join(PolicyAttachment, PolicyAttachment.user_id == AccessUser.id)
        .where(PolicyAttachment.policy_name == policy_name)
        .order_by(AccessUser.name)
    ).all()


# -- audit log ------------------------------------------------------------------------------------

_HEAD = AuditHead.__table__
_RECORD = AuditRecord.__table__
# The newest record's seq rides along with the lock (an index lookup, no extra round trip): a row
# past the head was not written through the log, and appending after it would collide with it.
# On PostgreSQL the subquery may read a snapshot from before a concurrent append that committed
# while this one waited for the lock; last_seq is then below the head, never above it.
_LOCK_HEAD = (
    select(_HEAD.c.seq, _HEAD.c.hash, select(func.max(_RECORD.c.seq)).scalar_subquery().label("last_seq"))
    .where(_HEAD.c.id == 1)
    .with_for_update()
)


_LEAN_LOCK_HEAD = LeanStatement(_LOCK_HEAD)


def lock_audit_head(conn: _Conn) -> tuple[int, str, int] | None:
    """The head's (seq, hash) and the newest record's seq (0 if none), the head locked until the
    transaction ends; None if the head row is missing.

    PostgreSQL: FOR UPDATE makes concurrent appenders queue here.  SQLite:
    writers already hold the database lock (BEGIN IMMEDIATE), so no two
    appenders are ever in this function at once.
    """
    row = _LEAN_LOCK_HEAD.one_or_none(conn)
    if row is None:
        return None
    return int(row.seq), row.hash, int(row.last_seq or 0)


# Built once: the append is on every change's path, issuance included.
_INSERT_RECORD = insert(_RECORD)
_MOVE_HEAD = (
    update(_HEAD)
    .where(_HEAD.c.id == 1)
    .values(seq=bindparam("new_seq"), hash=bindparam("new_hash"))
)


#: A record's columns, as pki/services/audit.py makes them (every one given).
AUDIT_RECORD_KEYS = ("time", "principal", "action", "resource", "result", "error_code", "source_ip", "request_id",
                     "details", "seq", "prev_hash", "hash")
_LEAN_INSERT_RECORD = LeanStatement(_INSERT_RECORD, column_keys=AUDIT_RECORD_KEYS)
_LEAN_MOVE_HEAD = LeanStatement(_MOVE_HEAD)


def append_audit(conn: _Conn, *, values: dict) -> None:
    """Insert the record and move the head to it (same transaction as the lock)."""
    append_audit_many(conn, [values])


def append_audit_many(conn: _Conn, records: list[dict]) -> None:
    """Insert chained records (one statement, executemany) and move the head to the last (same transaction
    as the lock).  On the driver's cursor (pki/store/lean.py): every change's path ends here."""
    _LEAN_INSERT_RECORD.execute_many(conn, records)
    _LEAN_MOVE_HEAD.execute(conn, {"new_seq": records[-1]["seq"], "new_hash": records[-1]["hash"]})


def audit_head(conn: _Conn) -> tuple[int, str] | None:
    """The head's (seq, hash), or None if its row is missing."""
    row = conn.execute(select(_HEAD.c.seq, _HEAD.c.hash).where(_HEAD.c.id == 1)).one_or_none()
    return None if row is None else (int(row.seq), row.hash)


def audit_page(
    conn: _Conn,
    *,
    after_seq: int | None = None,
    before_seq: int | None = None,
    limit: int,
    descending: bool = False,
    principal: str | None = None,
    action: str | None = None,
    result: str | None = None,
):
    c = _RECORD.c
    query = select(_RECORD)
    if after_seq is not None:
        query = query.where(c.seq > after_seq)
    if before_seq is not None:
        query = query.where(c.seq < before_seq)
    if principal is not None:
        query = query.where(c.principal == principal)
    if action is not None:
        query = query.where(c.action == action)
    if result is not None:
        query = query.where(c.result == result)
    query = query.order_by(c.seq.desc() if descending else c.seq).limit(limit)
    return conn.execute(query).all()


def audit_by_hash(conn: _Conn, *, hash: str):
    return conn.execute(select(_RECORD.c.seq).where(_RECORD.c.hash == hash)).one_or_none()
