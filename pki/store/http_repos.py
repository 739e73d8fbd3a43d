"""Repositories for nonces and rate limits.  They never commit.

Each takes a Connection or a Session (anything with ``execute``) and works on
SQLite and PostgreSQL alike: the nonce insert is ``ON CONFLICT DO NOTHING``
(a replay returns no row, not an exception that would spoil a
PostgreSQL transaction), the bucket take a conditional UPDATE on
``version`` (compare-and-set: two processes cannot both spend one token).
"""

from __future__ import annotations

import datetime as _dt

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from .http_models import HttpNonce, HttpRateBucket

__all__ = ["remember_nonce", "purge_nonces", "get_bucket", "create_bucket", "take_from_bucket"]

_NONCE = HttpNonce.__table__
_BUCKET = HttpRateBucket.__table__


def _dialect(target) -> str:
    return (getattr(target, "dialect", None) or target.get_bind().dialect).name


def _insert(target, table):
    return postgresql.insert(table) if _dialect(target) == "postgresql" else sqlite.insert(table)


def _remember_statement(dialect: str):
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (insert(_NONCE).values(access_key_id=bindparam("k"), nonce=bindparam("n"), expires_at=bindparam("e"))
            .on_conflict_do_nothing(index_elements=["access_key_id", "nonce"]).returning(_NONCE.c.id))


# Built once per dialect: this insert is on every signed request's path.
_REMEMBER = {name: _remember_statement(name) for name in ("postgresql", "sqlite")}


def remember_nonce(target, *, access_key_id: str, nonce: str, expires_at: _dt.datetime) -> bool:
    """True if the nonce is new for this key; False if it was seen (a replay)."""
    stmt = _REMEMBER[_dialect(target)]
    return target.execute(stmt, {"k": access_key_id, "n": nonce, "e": expires_at}).first() is not None


def purge_nonces(target, *, now: _dt.datetime) -> int:
    """Forget nonces whose timestamps can no longer pass the skew check anyway."""
    return target.execute(delete(_NONCE).where(_NONCE.c.expires_at < now)).rowcount


def get_bucket(target, *, access_key_id: str):
    return target.execute(
        select(_BUCKET.c.tokens, _BUCKET.c.updated_at, _BUCKET.c.version).where(
            _BUCKET.c.access_key_id == access_key_id)
    ).first()


def create_bucket(target, *, access_key_id: str, tokens: float, at: float) -> bool:
    """Insert a bucket; False if another process made it first."""
    stmt = _insert(target, _BUCKET).values(access_key_id=access_key_id, tokens=tokens, updated_at=at, version=1)
    stmt = stmt.on_conflict_do_nothing(index_elements=["access_key_id"]).returning(_BUCKET.c.access_key_id)
    return target.execute(stmt).first() is not None


def take_from_bucket(target, *, access_key_id: str, version: int, tokens: float, at: float) -> bool:
    """Set the bucket to ``tokens`` if nobody changed it since ``version`` was read."""
    result = target.execute(
        update(_BUCKET)
        .where(_BUCKET.c.access_key_id == access_key_id, _BUCKET.c.version == version)
        .values(tokens=tokens, updated_at=at, version=version + 1)
    )
    return result.rowcount == 1
