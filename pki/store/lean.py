"""Hot-path statements: a Core statement compiled once per dialect, run on the driver's cursor.

SQLAlchemy's Core ``execute`` costs about four times what the DB-API cursor does for one row
(compiled-cache lookup, parameter construction, events, result set-up).  Issuance runs a few
fixed statements per certificate, so :class:`LeanStatement` does that work once per dialect:
the SQL text, the parameter order (qmark on SQLite, named on psycopg), the bind processors of
the columns' types (so :class:`pki.store.types.UTCDateTime` still converts and refuses naive
times) and the result processors.  It executes on the DB-API connection of the SQLAlchemy
Connection it is given, so it runs inside that Connection's transaction; a driver error is
re-raised as SQLAlchemy's own :class:`~sqlalchemy.exc.DBAPIError` subclass (IntegrityError,
OperationalError...), which ``Store._mapped_errors`` maps to the store's errors unchanged.

One cursor is kept per driver connection: making one costs psycopg about a quarter of a statement.
Both drivers keep the statement prepared: sqlite3 caches compiled statements per connection
(``cached_statements``), psycopg 3 prepares a query on the server after ``prepare_threshold``
executions (https://www.psycopg.org/psycopg3/docs/advanced/prepare.html).
"""

from __future__ import annotations

import threading
from collections import namedtuple
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.orm import Session
from sqlalchemy.sql import ClauseElement

__all__ = ["LeanStatement", "connection_of"]


def connection_of(target: Session | Connection) -> Connection:
    """The Connection a Session's transaction runs on (a Connection is its own).

    A Session's pending changes are flushed first, as its own ``execute`` would (autoflush): the
    statements then reach the database in the order the service wrote them, locks included."""
    if isinstance(target, Session):
        target.flush()
        return target.connection()
    return target


#: Key of the kept cursor in the pool's info dict of a driver connection.
_CURSOR = "pki.lean_cursor"


def _cursor(conn: Connection):
    """The cursor kept for ``conn``'s driver connection (one thread uses a checked-out connection)."""
    fairy = conn.connection
    dbapi_conn = fairy.dbapi_connection
    kept = fairy.info.get(_CURSOR)
    if kept is None or kept[0] is not dbapi_conn:
        kept = fairy.info[_CURSOR] = (dbapi_conn, dbapi_conn.cursor())
    return kept[1]


def _forget_cursor(conn: Connection) -> None:
    """After an error or an unfinished result: close the kept cursor, a new one is made next time."""
    kept = conn.connection.info.pop(_CURSOR, None)
    if kept is not None:
        try:
            kept[1].close()
        except Exception:  # a broken connection: its cursor goes with it
            pass


class _Compiled:
    __slots__ = ("sql", "positional", "names", "fixed", "binders", "row", "readers")

    def __init__(self, statement: ClauseElement, dialect: Dialect, column_keys: Sequence[str] | None) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=list(column_keys) if column_keys else None)
        self.sql = compiled.string
        self.positional = bool(compiled.positional)
        names = list(compiled.positiontup) if self.positional else list(dict.fromkeys(
            name for name in compiled.binds if not name.startswith("%(")))  # the "%(id ...)s" keys are aliases
        self.names = tuple(names)
        # Values the statement carries itself (``id == 1``): the rest must come from the caller.
        self.fixed: dict[str, Any] = {}
        binders: list[tuple[str, Callable[[Any], Any]]] = []
        for name in names:
            bind = compiled.binds[name]
            if not bind.required and bind.value is not None:
                self.fixed[name] = bind.effective_value
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                binders.append((name, processor))
        if column_keys is not None and set(names) - set(self.fixed) != set(column_keys):
            # A column default SQLAlchemy would compute in Python: the lean path does not run those.
            raise ValueError(f"statement binds {names}, not the columns given {list(column_keys)}")
        self.binders = tuple(binders)
        self.row = None
        self.readers: tuple = ()
        if getattr(statement, "is_select", False):
            columns = list(statement.selected_columns)
            self.row = namedtuple("LeanRow", [c.key for c in columns], rename=True)
            self.readers = tuple(
                (i, proc) for i, c in enumerate(columns)
                if (proc := c.type.dialect_impl(dialect).result_processor(dialect, None)) is not None
            )

    def parameters(self, given: dict[str, Any]):
        values = {**self.fixed, **given} if self.fixed else dict(given)
        for name, processor in self.binders:
            values[name] = processor(values[name])
        if self.positional:
            return tuple(values[name] for name in self.names)
        return values

    def make_row(self, raw: Sequence[Any]):
        if self.readers:
            raw = list(raw)
            for i, processor in self.readers:
                raw[i] = processor(raw[i])
        return self.row._make(raw)


class LeanStatement:
    """``statement`` (a Core select, insert or update with bindparams), compiled per dialect on first use.

    For an insert, ``column_keys`` names the columns the caller gives (all of them, every time)."""

    def __init__(self, statement: ClauseElement, *, column_keys: Sequence[str] | None = None) -> None:
        self.statement = statement
        self._column_keys = tuple(column_keys) if column_keys else None
        self._by_dialect: dict[str, _Compiled] = {}
        self._lock = threading.Lock()

    def _compiled(self, dialect: Dialect) -> _Compiled:
        compiled = self._by_dialect.get(dialect.name)
        if compiled is None:
            with self._lock:
                compiled = self._by_dialect.get(dialect.name)
                if compiled is None:
                    compiled = self._by_dialect[dialect.name] = _Compiled(self.statement, dialect,
                                                                           self._column_keys)
        return compiled

    def execute(self, target: Session | Connection, params: dict[str, Any] | None = None) -> int:
        """Run it once; returns the row count."""
        conn = connection_of(target)
        compiled = self._compiled(conn.dialect)
        parameters = compiled.parameters(params or {})
        cursor = _cursor(conn)
        try:
            cursor.execute(compiled.sql, parameters)
            return cursor.rowcount
        except conn.dialect.loaded_dbapi.Error as exc:
            raise _wrapped(conn, compiled.sql, parameters, exc) from exc

    def execute_many(self, target: Session | Connection, rows: Sequence[dict[str, Any]]) -> None:
        """Run it for each of ``rows``: one statement, executemany (psycopg pipelines it)."""
        if len(rows) == 1:
            self.execute(target, rows[0])
            return
        conn = connection_of(target)
        compiled = self._compiled(conn.dialect)
        parameters = [compiled.parameters(row) for row in rows]
        cursor = _cursor(conn)
        try:
            cursor.executemany(compiled.sql, parameters)
        except conn.dialect.loaded_dbapi.Error as exc:
            raise _wrapped(conn, compiled.sql, parameters, exc, many=True) from exc

    def one_or_none(self, target: Session | Connection, params: dict[str, Any] | None = None):
        """The one row of a select (a named tuple, result types applied), or None; more is an error."""
        conn = connection_of(target)
        compiled = self._compiled(conn.dialect)
        parameters = compiled.parameters(params or {})
        cursor = _cursor(conn)
        try:
            cursor.execute(compiled.sql, parameters)
            rows = cursor.fetchmany(2)
        except conn.dialect.loaded_dbapi.Error as exc:
            raise _wrapped(conn, compiled.sql, parameters, exc) from exc
        if len(rows) > 1:
            _forget_cursor(conn)  # rows left unread: SQLite would keep the statement (and its snapshot) open
            raise sa_exc.MultipleResultsFound("Multiple rows were found when one or none was required")
        return compiled.make_row(rows[0]) if rows else None


def _wrapped(conn: Connection, sql: str, parameters, exc: Exception, *, many: bool = False) -> sa_exc.DBAPIError:
    """The driver's error as SQLAlchemy would raise it from ``Connection.execute``: the same class
    (IntegrityError, OperationalError...) with ``orig`` set, which Store._mapped_errors reads."""
    dialect = conn.dialect
    invalidated = dialect.is_disconnect(exc, conn.connection.dbapi_connection, None)
    _forget_cursor(conn)
    if invalidated:
        conn.invalidate(exc)  # a lost server: never hand this connection out again
    return sa_exc.DBAPIError.instance(sql, parameters, exc, dialect.loaded_dbapi.Error, hide_parameters=True,
                                      connection_invalidated=invalidated, dialect=dialect, ismulti=many)
