"""Repositories of broker tokens and their signing keys.  They never commit.

Every function that changes a row moves the instance's ``token_revision`` in the same transaction
(:func:`bump_revision`), so a cache of keys, revocations or grants kept by any process is stale at its
next check.  They take a Session or a bare Connection (token apply is a hot path, run on a Connection).
"""

from __future__ import annotations

import datetime as _dt
import threading
import weakref
from collections.abc import Sequence

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session

from ..errors import StoreError
from .lean import LeanStatement
from .models import CustodyKey, TokenKeyStatus, TokenStatus
from .secret_repos import _close_all, _fetch_one  # the held-connection helpers of VerifyLookup
from .token_models import BrokerToken, TokenRevision, TokenSigningKey

__all__ = ["RevisionLookup", "revision", "bump_revision", "insert_key", "keys_of", "current_key", "set_key_status", "insert_tokens",
           "get_token", "list_tokens", "revoke", "valid_tokens_of_client", "revoked_unexpired", "last_expiry"]

_Conn = Session | Connection
_REVISION = TokenRevision.__table__
_KEY = TokenSigningKey.__table__
_TOKEN = BrokerToken.__table__
_INSERT_TOKEN = insert(_TOKEN)


def _dialect(conn: _Conn) -> str:
    return conn.get_bind().dialect.name if isinstance(conn, Session) else conn.dialect.name


class RevisionLookup:
    """The token revision read of every hook check, prepared once per engine.

    Through SQLAlchemy (a pool checkout, a statement, a reset) the read costs many times the query; here
    it is the driver's cursor on a held connection.  SQLite: one connection per thread, detached from the
    pool after its connect hooks ran (WAL, autocommit), so no transaction stays open between checks;
    PostgreSQL: a raw pooled connection per read.  The same design as the secret check's lookup
    (pki/store/secret_repos.py, VerifyLookup).
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._local = threading.local() if engine.dialect.name == "sqlite" else None
        self._held: list = []
        weakref.finalize(self, _close_all, self._held)
        mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
        self._sql = f"SELECT revision FROM token_revision WHERE instance = {mark}"

    def revision(self, instance: str) -> int:
        conn = None
        try:
            if self._local is None:
                conn = self._engine.raw_connection()
                try:
                    row = _fetch_one(conn, self._sql, (instance,))
                finally:
                    conn.close()
            else:
                conn = getattr(self._local, "conn", None)
                if conn is None:
                    fairy = self._engine.raw_connection()
                    fairy.detach()
                    conn = self._local.conn = fairy.dbapi_connection
                    self._held.append(conn)
                row = _fetch_one(conn, self._sql, (instance,))
        except Exception as exc:  # noqa: BLE001 - driver or pool error: drop the held connection, refuse
            if self._local is not None and getattr(self._local, "conn", None) is not None:
                self._local.conn = None
                _close_all([conn])
            raise StoreError(f"the database failed ({type(exc).__name__}) during a token check; the check did "
                             "not pass. Check that the database is reachable", code="store_unavailable") from exc
        return int(row[0]) if row else 0

    def close(self) -> None:
        _close_all(self._held)


def revision(conn: _Conn, instance: str) -> int:
    value = conn.execute(select(_REVISION.c.revision).where(_REVISION.c.instance == instance)).scalar_one_or_none()
    return int(value or 0)


def _upsert_revision(insert_):
    statement = insert_(_REVISION).values(instance=bindparam("instance"), revision=1)
    return statement.on_conflict_do_update(index_elements=[_REVISION.c.instance],
                                           set_={"revision": _REVISION.c.revision + 1})


# Built once per dialect: the move is on every apply batch's path, and building it cost more than running it.
_BUMP = {"postgresql": _upsert_revision(postgresql.insert), "sqlite": _upsert_revision(sqlite.insert)}


_LEAN_BUMP = {dialect: LeanStatement(statement) for dialect, statement in _BUMP.items()}


def bump_revision(conn: _Conn, instance: str) -> None:
    _LEAN_BUMP[_dialect(conn)].execute(conn, {"instance": instance})


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


_CURRENT_KEY = (select(_KEY.c.kid, _KEY.c.alg, CustodyKey.__table__.c.sealed)
                .join(CustodyKey.__table__, CustodyKey.__table__.c.key_id == _KEY.c.kid)
                .where(_KEY.c.instance == bindparam("instance"), _KEY.c.status == TokenKeyStatus.CURRENT))


_LEAN_CURRENT_KEY = LeanStatement(_CURRENT_KEY)


def current_key(conn: _Conn, *, instance: str):
    """The CURRENT key's row joined with its sealed private half, or None."""
    return _LEAN_CURRENT_KEY.one_or_none(conn, {"instance": instance})


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


#: A token row's columns, as pki/services/tokens/issue.py makes them (every one given).
TOKEN_KEYS = ("instance", "token_id", "kid", "client_id", "username", "superuser", "claims", "status",
              "issued_at", "expires_at", "revoked_at")
_LEAN_INSERT_TOKEN = LeanStatement(_INSERT_TOKEN, column_keys=TOKEN_KEYS)


def insert_tokens(conn: _Conn, rows: list[dict]) -> None:
    """A batch of applies' rows in one statement (the driver's executemany, pki/store/lean.py); the caller
    has moved the revision in this transaction."""
    _LEAN_INSERT_TOKEN.execute_many(conn, rows)


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
