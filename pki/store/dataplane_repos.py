"""Repositories of the broker data plane.  They never commit.

Every function here that changes a row also moves the instance's
``broker_revision`` in the same transaction (:func:`bump_revision`), so that
a cache of identities or rules kept by any process is stale at its next check.
"""

from __future__ import annotations

import datetime as _dt
import threading
from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlmodel import Session

from .dataplane_models import BrokerBlock, BrokerIdentity, BrokerPermission, BrokerRevision, BrokerSetting, HookToken
from .repos import keyset_page

__all__ = [
    "revision",
    "revisions",
    "RevisionReader",
    "bump_revision",
    "insert_row",
    "delete_row",
    "touch",
    "get_identity",
    "list_identities",
    "all_identities",
    "get_permission",
    "list_permissions",
    "all_permissions",
    "get_default",
    "set_default",
    "get_block",
    "find_block",
    "list_blocks",
    "all_blocks",
    "get_hook_token",
    "list_hook_tokens",
    "all_hook_tokens",
    "hook_token_revision",
    "HOOK_TOKENS",
]

_Conn = Session | Connection
_REVISION = BrokerRevision.__table__
#: Hook tokens belong to no instance: their changes move the revision row of this name (no instance
#: name can be "*").
HOOK_TOKENS = "*"


def revision(conn: _Conn, instance: str) -> int:
    """The instance's data-plane revision (0 before its first change)."""
    value = conn.execute(select(_REVISION.c.revision).where(_REVISION.c.instance == instance)).scalar_one_or_none()
    return int(value or 0)


def revisions(conn: _Conn, instances) -> dict[str, int]:
    """Several instances' revisions in one statement (0 for an instance before its first change)."""
    names = tuple(dict.fromkeys(instances))
    found = dict(conn.execute(select(_REVISION.c.instance, _REVISION.c.revision)
                              .where(_REVISION.c.instance.in_(names))).all())
    return {name: int(found.get(name) or 0) for name in names}


class RevisionReader:
    """The revision counters of a few instances, read on every broker hook call: the one statement of the
    hooks' hot path, so it is made as cheap as the store allows.

    On SQLite, each thread keeps a connection of its own, taken out of the pool once (``detach``), and
    runs the statement on it through the DB-API: through a pooled Core connection the same read cost a
    pool checkout, a transaction begin and a statement compile, four times the statement itself (the
    profile in BENCHMARKS.md, "Broker hooks").  The connection is in autocommit mode (pki/store/engine.py
    sets ``isolation_level = None``), so each read sees the last commit of any process.  On PostgreSQL the
    round trip dominates and a pooled Core connection is used.
    """

    def __init__(self, engine) -> None:
        self.engine = engine
        self.sqlite = engine.dialect.name == "sqlite"
        self.local = threading.local()

    def read(self, instances) -> dict[str, int]:
        names = tuple(dict.fromkeys(instances))
        if not self.sqlite:
            with self.engine.connect() as conn:
                return revisions(conn, names)
        conn = getattr(self.local, "conn", None)
        if conn is None:
            raw = self.engine.raw_connection()
            raw.detach()  # ours for this thread's life: the pool neither counts nor recycles it
            conn = self.local.conn = raw.dbapi_connection
        marks = ",".join("?" * len(names))
        found = dict(conn.execute(f"SELECT instance, revision FROM {_REVISION.name} WHERE instance IN ({marks})",
                                  names).fetchall())
        return {name: int(found.get(name) or 0) for name in names}


def bump_revision(conn: _Conn, instance: str) -> None:
    """Move the counter by one: an upsert, so the first change of an instance creates its row."""
    dialect = conn.get_bind().dialect.name if isinstance(conn, Session) else conn.dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(_REVISION).values(instance=instance, revision=1)
    conn.execute(statement.on_conflict_do_update(index_elements=[_REVISION.c.instance],
                                                 set_={"revision": _REVISION.c.revision + 1}))


def insert_row(session: Session, row):
    session.add(row)
    session.flush()
    bump_revision(session, getattr(row, "instance", HOOK_TOKENS))
    return row


def delete_row(session: Session, row, *, instance: str) -> None:
    model = type(row)
    session.execute(delete(model).where(model.id == row.id))
    bump_revision(session, instance)


def touch(session: Session, row, *, instance: str, **values) -> None:
    """Write ``values`` on ``row`` (the version too, where the table has one) and move the revision."""
    for name, value in values.items():
        setattr(row, name, value)
    if hasattr(row, "version"):
        row.version += 1
    session.add(row)
    session.flush()
    bump_revision(session, instance)


def _one(session: Session, query, lock: bool):
    return session.scalars(query.with_for_update() if lock else query).one_or_none()


# -- identities --------------------------------------------------------------------------------


def get_identity(session: Session, *, instance: str, username: str, lock: bool = False) -> BrokerIdentity | None:
    query = select(BrokerIdentity).where(BrokerIdentity.instance == instance, BrokerIdentity.username == username)
    return _one(session, query, lock)


def list_identities(session: Session, *, instance: str, status: str | None, after_id: int | None,
                    limit: int) -> Sequence[BrokerIdentity]:
    return keyset_page(session, BrokerIdentity, BrokerIdentity.instance == instance, status=status,
                       after_id=after_id, limit=limit)


def all_identities(conn: _Conn, *, instance: str) -> Sequence[BrokerIdentity]:
    return conn.scalars(select(BrokerIdentity).where(BrokerIdentity.instance == instance)).all()


# -- permissions -------------------------------------------------------------------------------


def get_permission(session: Session, *, instance: str, permission_id: int, lock: bool = False):
    query = select(BrokerPermission).where(BrokerPermission.instance == instance,
                                           BrokerPermission.id == permission_id)
    return _one(session, query, lock)


def list_permissions(session: Session, *, instance: str, after_id: int | None, limit: int):
    return keyset_page(session, BrokerPermission, BrokerPermission.instance == instance, after_id=after_id,
                       limit=limit)


def all_permissions(session: Session, *, instance: str) -> Sequence[BrokerPermission]:
    return session.scalars(select(BrokerPermission).where(BrokerPermission.instance == instance)).all()


def get_default(session: Session, *, instance: str) -> BrokerSetting | None:
    return session.get(BrokerSetting, instance)


def set_default(session: Session, *, instance: str, effect: str, now: _dt.datetime) -> None:
    row = session.get(BrokerSetting, instance)
    if row is None:
        session.add(BrokerSetting(instance=instance, default_effect=effect, updated_at=now))
    else:
        row.default_effect, row.updated_at = effect, now
        session.add(row)
    session.flush()
    bump_revision(session, instance)


# -- the connect blocklist ----------------------------------------------------------------------


def get_block(session: Session, *, instance: str, block_id: int, lock: bool = False) -> BrokerBlock | None:
    return _one(session, select(BrokerBlock).where(BrokerBlock.instance == instance, BrokerBlock.id == block_id), lock)


def find_block(session: Session, *, instance: str, kind: str, value: str) -> BrokerBlock | None:
    return _one(session, select(BrokerBlock).where(BrokerBlock.instance == instance, BrokerBlock.kind == kind,
                                                   BrokerBlock.value == value), False)


def list_blocks(session: Session, *, instance: str, after_id: int | None, limit: int) -> Sequence[BrokerBlock]:
    return keyset_page(session, BrokerBlock, BrokerBlock.instance == instance, after_id=after_id, limit=limit)


def all_blocks(session: Session, *, instance: str) -> Sequence[BrokerBlock]:
    return session.scalars(select(BrokerBlock).where(BrokerBlock.instance == instance)).all()


# -- hook tokens -------------------------------------------------------------------------------


def get_hook_token(session: Session, *, name: str, lock: bool = False) -> HookToken | None:
    return _one(session, select(HookToken).where(HookToken.name == name), lock)


def list_hook_tokens(session: Session, *, after_id: int | None, limit: int) -> Sequence[HookToken]:
    return keyset_page(session, HookToken, after_id=after_id, limit=limit)


def all_hook_tokens(session: Session) -> Sequence[HookToken]:
    return session.scalars(select(HookToken)).all()


def hook_token_revision(session: Session) -> int:
    return revision(session, HOOK_TOKENS)

