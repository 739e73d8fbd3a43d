"""Repositories of broker tokens and their signing keys.  They never commit.

Every function that changes a row moves the instance's ``token_revision`` in the same transaction
(:func:`bump_revision`), so a cache of keys, revocations or grants kept by any process is stale at its
next check.  They take a Session or a bare Connection (token apply is a hot path, run on a Connection).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence

from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlmodel import Session

from .models import CustodyKey, TokenKeyStatus, TokenStatus
from .token_models import BrokerToken, TokenRevision, TokenSigningKey

__all__ = ["revision", "bump_revision", "insert_key", "keys_of", "current_key", "set_key_status", "insert_token",
           "get_token", "list_tokens", "revoke", "valid_tokens_of_client", "revoked_unexpired", "last_expiry"]

_Conn = Session | Connection
_REVISION = TokenRevision.__table__
_KEY = TokenSigningKey.__table__
_TOKEN = BrokerToken.__table__


def _dialect(conn: _Conn) -> str:
    return conn.get_bind().dialect.name if isinstance(conn, Session) else conn.dialect.name


def revision(conn: _Conn, instance: str) -> int:
    value = conn.execute(select(_REVISION.c.revision).where(_REVISION.c.instance == instance)).scalar_one_or_none()
    return int(value or 0)


def bump_revision(conn: _Conn, instance: str) -> None:
    insert_ = postgresql.insert if _dialect(conn) == "postgresql" else sqlite.insert
    statement = insert_(_REVISION).values(instance=instance, revision=1)
    conn.execute(statement.on_conflict_do_update(index_elements=[_REVISION.c.instance],
                                                 set_={"revision": _REVISION.c.revision + 1}))


# -- signing keys ------------------------------------------------------------------------------


def insert_key(conn: _Conn, *, instance: str, kid: str, key_type: str, sealed: bytes, alg: str, public_jwk: str,
               now: _dt.datetime) -> None:
    conn.execute(insert(CustodyKey.__table__).values(key_id=kid, key_type=key_type, sealed=sealed, created_at=now))
    conn.execute(insert(_KEY).values(instance=instance, kid=kid, alg=alg, status=TokenKeyStatus.CURRENT,
                                     public_jwk=public_jwk, created_at=now))
    bump_revision(conn, instance)


def keys_of(conn: _Conn, *, instance: str, lock: bool = False) -> Sequence:
    """Every key of the instance, oldest first (rows of token_signing_key columns)."""
    query = select(_KEY).where(_KEY.c.instance == instance).order_by(_KEY.c.id)
    return conn.execute(query.with_for_update() if lock else query).all()


def current_key(conn: _Conn, *, instance: str):
    """The CURRENT key's row joined with its sealed private half, or None."""
    query = (select(_KEY.c.kid, _KEY.c.alg, CustodyKey.__table__.c.sealed)
             .join(CustodyKey.__table__, CustodyKey.__table__.c.key_id == _KEY.c.kid)
             .where(_KEY.c.instance == instance, _KEY.c.status == TokenKeyStatus.CURRENT))
    return conn.execute(query).first()


def set_key_status(conn: _Conn, *, instance: str, kid: str, status: str, **values) -> None:
    conn.execute(update(_KEY).where(_KEY.c.instance == instance, _KEY.c.kid == kid).values(status=status, **values))
    bump_revision(conn, instance)


def last_expiry(conn: _Conn, *, instance: str) -> dict[str, _dt.datetime]:
    """Per kid, the latest ``exp`` of the tokens it signed that are not revoked."""
    query = (select(_TOKEN.c.kid, func.max(_TOKEN.c.expires_at))
             .where(_TOKEN.c.instance == instance, _TOKEN.c.status == TokenStatus.ACTIVE)
             .group_by(_TOKEN.c.kid))
    return {kid: latest for kid, latest in conn.execute(query).all()}


# -- tokens ------------------------------------------------------------------------------------


def insert_token(conn: _Conn, values: dict) -> None:
    conn.execute(insert(_TOKEN).values(**values))
    bump_revision(conn, values["instance"])


def get_token(conn: _Conn, *, instance: str, token_id: str, lock: bool = False):
    query = select(_TOKEN).where(_TOKEN.c.instance == instance, _TOKEN.c.token_id == token_id)
    return conn.execute(query.with_for_update() if lock else query).first()


def list_tokens(conn: _Conn, *, instance: str, client_id: str | None, status: str | None, now: _dt.datetime,
                after_id: int | None, limit: int) -> Sequence:
    query = select(_TOKEN).where(_TOKEN.c.instance == instance)
    if client_id is not None:
        query = query.where(_TOKEN.c.client_id == client_id)
    if status == TokenStatus.EXPIRED:
        query = query.where(_TOKEN.c.status == TokenStatus.ACTIVE, _TOKEN.c.expires_at <= now)
    elif status == TokenStatus.ACTIVE:
        query = query.where(_TOKEN.c.status == TokenStatus.ACTIVE, _TOKEN.c.expires_at > now)
    elif status is not None:
        query = query.where(_TOKEN.c.status == status)
    if after_id is not None:
        query = query.where(_TOKEN.c.id > after_id)
    return conn.execute(query.order_by(_TOKEN.c.id).limit(limit)).all()


def revoke(conn: _Conn, *, instance: str, token_id: str, now: _dt.datetime) -> bool:
    """ACTIVE -> REVOKED, conditionally: False when the token was not ACTIVE (a concurrent revoke won)."""
    result = conn.execute(update(_TOKEN).where(_TOKEN.c.instance == instance, _TOKEN.c.token_id == token_id,
                                               _TOKEN.c.status == TokenStatus.ACTIVE)
                          .values(status=TokenStatus.REVOKED, revoked_at=now))
    if result.rowcount:
        bump_revision(conn, instance)
    return bool(result.rowcount)


def valid_tokens_of_client(conn: _Conn, *, instance: str, client_id: str, now: _dt.datetime) -> Sequence:
    query = select(_TOKEN.c.token_id, _TOKEN.c.username, _TOKEN.c.superuser, _TOKEN.c.claims,
                   _TOKEN.c.expires_at).where(
        _TOKEN.c.instance == instance, _TOKEN.c.client_id == client_id, _TOKEN.c.status == TokenStatus.ACTIVE,
        _TOKEN.c.expires_at > now).order_by(_TOKEN.c.id).limit(100)
    return conn.execute(query).all()


def revoked_unexpired(conn: _Conn, *, instance: str, now: _dt.datetime) -> set[str]:
    query = select(_TOKEN.c.token_id).where(_TOKEN.c.instance == instance, _TOKEN.c.status == TokenStatus.REVOKED,
                                            _TOKEN.c.expires_at > now)
    return set(conn.execute(query).scalars().all())
