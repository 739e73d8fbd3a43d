"""Engine, transactions and schema management.

A :class:`Store` hands out sessions in transactions; repositories work inside
them and never commit.  SQLite writers start with ``BEGIN IMMEDIATE`` so that
two writers queue on the lock instead of one failing when it upgrades a read
lock (SQLite's "database is locked" on a deferred transaction).
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import create_engine, event, exc as sa_exc
from sqlalchemy.engine import Connection, Engine, make_url
from sqlmodel import Session

from ..errors import ConfigError, Conflict, InvalidState, PkiError, StoreError
from .revision import MIGRATIONS as _MIGRATIONS, head_revision

__all__ = ["HeldConnection", "Store", "head_revision", "normalise_url", "sqlite_url"]


log = logging.getLogger("pki.store")



def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def normalise_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here, not SQLAlchemy's default psycopg2."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif parsed.drivername not in ("postgresql+psycopg", "sqlite", "sqlite+pysqlite"):
        raise ConfigError(
            f"unsupported database {parsed.drivername!r}: use sqlite:///PATH or postgresql://...",
            code="unsupported_database",
        )
    return parsed.render_as_string(hide_password=False)


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # pragma: no cover - exercised by every sqlite test
        # Manage transactions ourselves (see module docstring).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        # FULL: a commit is on disk before it returns (NORMAL, in WAL mode, may lose the
        # last commits to a power cut: a certificate handed out and then not on record).
        # Transactions that can afford that ask for it (core_transaction(durable=False)).
        cur.execute("PRAGMA synchronous=FULL")
        # 64 MiB of page cache (default 2 MiB): a million-device store keeps its
        # indexes in memory, so a list page costs the same at any size.
        cur.execute("PRAGMA cache_size=-65536")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        statement = "BEGIN DEFERRED" if conn.get_execution_options().get("pki_readonly") else "BEGIN IMMEDIATE"
        # On the driver's connection: exec_driver_sql costs about twice the statement itself, on every
        # transaction.  Its error is raised as exec_driver_sql would raise it, for _mapped_errors.
        dbapi_conn = conn.connection.dbapi_connection
        try:
            dbapi_conn.execute(statement)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise sa_exc.DBAPIError.instance(statement, (), exc, engine.dialect.loaded_dbapi.Error,
                                             dialect=engine.dialect) from exc


def _private_sqlite_file(path: Path) -> None:
    """Create the database file 0600 in a 0700 directory; warn about one that others can read.

    SQLite creates a new file 0644 (less the umask) and its -wal and -shm files with the database
    file's mode, so creating it first, private, keeps all three private.  The file holds sealed keys
    and secrets' metadata: nobody but its owner should read it, as for the master key.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600))
        return
    except FileExistsError:
        pass
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("the store %s is open to others (mode %04o); run `chmod 600 %s`", path, mode, path)


def _disk_full(orig: BaseException | None) -> bool:
    """SQLite's SQLITE_FULL ("database or disk is full"), PostgreSQL's disk_full (SQLSTATE 53100)."""
    if getattr(orig, "sqlite_errorname", None) == "SQLITE_FULL" or getattr(orig, "sqlstate", None) == "53100":
        return True
    return "database or disk is full" in str(orig)


#: The trigger of migration 0008 that keeps a REVOKED device REVOKED; its error message names it.
_REVOKED_IS_FINAL = "device_certificate_revoked_is_final"

#: How long a PostgreSQL statement waits for a row or table lock before it gives up (store_busy):
#: a wait must not outlast the request that waits, nor stretch what "now" meant when it began.
LOCK_TIMEOUT_MS = 10_000


def _postgres_setup(engine: Engine, lock_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        autocommit = dbapi_conn.autocommit
        dbapi_conn.autocommit = True
        try:
            dbapi_conn.execute(f"SET lock_timeout = {int(lock_timeout_ms)}")
        finally:
            dbapi_conn.autocommit = autocommit


class Store:
    def __init__(self, url: str, *, echo: bool = False, lock_timeout_ms: int = LOCK_TIMEOUT_MS) -> None:
        self.url = normalise_url(url)
        parsed = make_url(self.url)
        self.dialect = "sqlite" if parsed.drivername.startswith("sqlite") else "postgresql"
        if self.dialect == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                _private_sqlite_file(Path(parsed.database))
            self.engine = create_engine(
                self.url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30}
            )
            _sqlite_setup(self.engine)
        else:
            self.engine = create_engine(self.url, echo=echo, pool_pre_ping=True)
            _postgres_setup(self.engine, lock_timeout_ms)
        self._readonly_engine = self.engine.execution_options(pki_readonly=True)
        self._held: weakref.WeakSet[HeldConnection] = weakref.WeakSet()

    def held_connection(self) -> "HeldConnection":
        """A connection kept out of the pool for one caller's durable transactions (see HeldConnection)."""
        held = HeldConnection(self)
        self._held.add(held)
        return held

    # -- transactions -----------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self, *, readonly: bool = False) -> Iterator[Session]:
        """One unit of work: commit on success, roll back on any error."""
        engine = self._readonly_engine if readonly else self.engine
        with self._mapped_errors():
            with Session(engine, expire_on_commit=False) as session:
                with session.begin():
                    yield session

    @contextlib.contextmanager
    def core_transaction(self, *, readonly: bool = False, durable: bool = True) -> Iterator[Connection]:
        """A transaction on a bare Connection, for hot paths.

        The ORM session costs about as much as signing a certificate; the
        repositories a hot path uses take a Connection as well as a Session.

        ``durable=False`` lets the commit return before it reaches the disk
        (PostgreSQL ``synchronous_commit`` off, SQLite ``synchronous=NORMAL``,
        this transaction only): for writes a power cut may lose, such as a
        request's nonce.  The log is sequential on both, so any later durable
        commit makes this one durable too.
        """
        engine = self._readonly_engine if readonly else self.engine
        with self._mapped_errors():
            if durable or readonly:
                with engine.begin() as conn:
                    yield conn
            elif self.dialect == "postgresql":
                with engine.begin() as conn:
                    conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
                    yield conn
            else:
                with engine.connect() as conn:
                    # Outside any transaction, on the driver's connection: SQLite refuses to
                    # change it inside one, and SQLAlchemy would begin one for its own execute.
                    raw = conn.connection.dbapi_connection
                    raw.execute("PRAGMA synchronous=NORMAL")
                    try:
                        with conn.begin():
                            yield conn
                    finally:
                        try:
                            raw.execute("PRAGMA synchronous=FULL")
                        except Exception:
                            # Still NORMAL (say, a failed rollback left a transaction open):
                            # never hand it to a durable transaction; the pool makes a new one.
                            conn.invalidate()

    @contextlib.contextmanager
    def _mapped_errors(self) -> Iterator[None]:
        try:
            yield
        except PkiError:
            raise
        except sa_exc.IntegrityError as exc:
            if _REVOKED_IS_FINAL in str(exc.orig):
                raise InvalidState(
                    "the device certificate is REVOKED, which is final; nothing was changed. Issue a new one",
                    code="device_revoked",
                ) from exc
            raise Conflict(
                "the change collides with a concurrent one; repeat it", code="conflicting_change"
            ) from exc
        except sa_exc.OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) == "55P03":  # lock_not_available: LOCK_TIMEOUT_MS passed
                raise StoreError(
                    "a concurrent change held what this one needs for too long; nothing was changed. Retry",
                    code="store_busy",
                ) from exc
            if _disk_full(exc.orig):
                where = make_url(self.url).database if self.dialect == "sqlite" else "the PostgreSQL server"
                raise StoreError(
                    f"the disk holding the store ({where}) is full; nothing was changed. Free space there and retry",
                    code="disk_full", path=where,
                ) from exc
            raise StoreError(
                f"the database failed ({type(exc.orig).__name__}); nothing was changed. "
                "Check that it is reachable and retry",
                code="store_unavailable",
            ) from exc

    # -- schema -----------------------------------------------------------------

    def _alembic_config(self, connection):
        from alembic.config import Config  # only to upgrade: Alembic costs start-up time

        config = Config()
        config.set_main_option("script_location", str(_MIGRATIONS))
        config.attributes["connection"] = connection
        return config

    def _unreachable(self, exc: sa_exc.DBAPIError) -> StoreError:
        return StoreError(
            f"cannot open the database at {make_url(self.url).render_as_string()}: {exc.orig}",
            code="store_unavailable",
        )

    def current_revision(self) -> str | None:
        """The schema's revision in one query (None before the first upgrade).

        Alembic's MigrationContext would give the same after importing Alembic and inspecting the
        table; its ``alembic_version`` table has one row on an unbranched history like ours.
        """
        try:
            conn = self._readonly_engine.connect()
        except sa_exc.OperationalError as exc:
            raise self._unreachable(exc) from exc
        with conn:
            try:
                rows = conn.exec_driver_sql("SELECT version_num FROM alembic_version").all()
            except (sa_exc.OperationalError, sa_exc.ProgrammingError) as exc:
                # SQLite "no such table", PostgreSQL undefined_table (42P01): no schema yet.
                if "no such table" in str(exc.orig) or getattr(exc.orig, "sqlstate", None) == "42P01":
                    return None
                raise self._unreachable(exc) from exc
        if len(rows) > 1:
            raise ConfigError("the store's schema has several revisions (a branched history); upgrade it",
                              code="store_outdated")
        return rows[0][0] if rows else None

    def upgrade(self) -> str:
        """Create or upgrade the schema to the newest migration; returns the revision."""
        from alembic import command

        try:
            conn = self.engine.connect()
        except sa_exc.OperationalError as exc:  # an unreachable server, a file that cannot be opened
            raise self._unreachable(exc) from exc
        with conn:
            sqlite = self.dialect == "sqlite"
            if sqlite:
                # A migration that rebuilds a table on SQLite (Alembic's batch mode) drops and renames it; with
                # foreign keys enforced, dropping a table other rows point at fails.  SQLite's own procedure
                # (https://www.sqlite.org/lang_altertable.html#otheralter): foreign keys off outside the
                # transaction, foreign_key_check before the commit, then on again.
                conn.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")
            try:
                with conn.begin():
                    command.upgrade(self._alembic_config(conn), "head")
                    if sqlite:
                        broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                        if broken:
                            raise StoreError(f"the upgraded schema breaks {len(broken)} foreign key(s), first in "
                                             f"table {broken[0][0]}; nothing was changed", code="store_error")
            finally:
                if sqlite:
                    conn.connection.dbapi_connection.execute("PRAGMA foreign_keys=ON")
        return self.current_revision() or ""

    def check_schema(self) -> None:
        revision = self.current_revision()
        if revision is None:
            raise ConfigError(
                "the store has no schema yet: initialise it first", code="store_not_initialized"
            )
        if revision != head_revision():
            raise ConfigError(
                f"the store schema is at {revision}, this version needs {head_revision()}: upgrade it first",
                code="store_outdated",
            )

    def dispose(self) -> None:
        for held in list(self._held):
            held.close()
        self.engine.dispose()


class HeldConnection:
    """One pooled connection kept by a caller that runs one durable transaction at a time: a
    GroupCommit's leader (pki/services/group_commit.py), whose batches never overlap.

    Checking a connection out of the pool and back in (pre-ping, reset, events) costs as much as
    the statements of an issuance; keeping it saves that on every batch.  The transaction is the
    same as ``Store.core_transaction()``'s: BEGIN IMMEDIATE on SQLite, the store's errors mapped,
    durable.  After a database error, or when it sat idle for IDLE_SECONDS (a server may have closed
    it meanwhile), the connection goes back to the pool, which checks it (pre-ping) before handing it
    out again: the caller sees no more failures than with a pooled connection.
    """

    IDLE_SECONDS = 5.0

    def __init__(self, store: Store) -> None:
        self._store = store
        self._conn: Connection | None = None
        self._used = 0.0
        self._lock = threading.Lock()  # one transaction at a time, even if a caller breaks that rule

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        with self._lock, self._store._mapped_errors():
            now = time.monotonic()
            if self._conn is not None and now - self._used > self.IDLE_SECONDS:
                self._drop()
            conn = self._conn
            if conn is None or conn.closed or conn.invalidated:
                conn = self._conn = self._store.engine.connect()
            self._used = now
            try:
                with conn.begin():
                    yield conn
            except (sa_exc.DBAPIError, sa_exc.InvalidRequestError):
                self._drop()
                raise
            except BaseException:
                if conn.in_transaction():  # a failed rollback: never reuse it
                    self._drop()
                raise

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # a broken connection: the pool discards it
                log.debug("closing a held connection failed", exc_info=True)

    def close(self) -> None:
        with self._lock:
            self._drop()
