"""One device certificate's public columns from a SQLite store, with the standard library's sqlite3 only.

`pki device show` is a single indexed read; importing SQLAlchemy and SQLModel costs it ten times
more than the read (BENCHMARKS.md, scripts/bench_cli.py).  This reads the same row with one query
after checking the schema revision with another, on a read-only connection.  Anything unusual (not
SQLite, another schema revision, no such row, any sqlite3 error) answers None, and the caller takes
the full path, which also says what is missing.  tests/test_cli_fleet.py checks that both paths give
the same answer.
"""

from __future__ import annotations

import datetime as _dt
import sqlite3
from pathlib import Path
from urllib.parse import quote

from .revision import head_revision

__all__ = ["sqlite_path", "device_public"]

#: The columns of pki.store.device_repos.PUBLIC_COLUMNS, in that order; the times are SQLAlchemy's
#: SQLite DATETIME text (UTC, no zone: pki.store.types.UTCDateTime).
_QUERY = (
    "SELECT d.sn, c.sn, d.client_id, d.status, d.source, d.fingerprint_sha256, d.key_type, d.not_before, "
    "d.not_after, d.revocation_reason, d.revoked_at, d.created_at, d.updated_at, d.status_changed_at, "
    "d.id, d.cert_der, c.cert_der, c.chain_pem, d.supersede_after, "
    "(SELECT r.sn FROM device_certificate r WHERE r.id = d.replaces_id) "
    "FROM device_certificate d JOIN ca_certificate c ON c.id = d.ca_id "
    "WHERE c.instance = ? AND c.sn = ? AND d.sn = ?"
)
#: What `device show` adds to the public columns (pki/services/renewal.py device_detail): the DER of the
#: certificate and of its CA, the CA's chain, and the replacements both ways.
_DETAIL = ("cert_der", "ca_cert_der", "ca_chain_pem", "supersede_after", "replaces")
_REPLACED_BY = "SELECT sn FROM device_certificate WHERE replaces_id = ? ORDER BY id"
_COLUMNS = ("sn", "ca_sn", "client_id", "status", "source", "fingerprint_sha256", "key_type", "not_before",
            "not_after", "revocation_reason", "revoked_at", "created_at", "updated_at", "status_changed_at")
_TIMES = frozenset({"not_before", "not_after", "revoked_at", "created_at", "updated_at", "status_changed_at"})


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///PATH`` URL (None for anything else, or an in-memory database)."""
    for prefix in ("sqlite:///", "sqlite+pysqlite:///"):
        if url.startswith(prefix):
            rest = url[len(prefix):]
            if not rest or rest.startswith(":memory:") or "?" in rest:
                return None
            return Path(rest)
    return None


def _utc(text: str | None) -> _dt.datetime | None:
    if text is None:
        return None
    return _dt.datetime.fromisoformat(text).replace(tzinfo=_dt.timezone.utc)


def device_public(path: Path, *, instance: str, ca_sn: str, sn: str) -> dict | None:
    """The row as a dict of Python values (times UTC-aware), or None (see the module docstring)."""
    if not path.is_file():
        return None
    try:
        conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error:
        return None
    try:
        revision = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        if revision != [(head_revision(),)]:
            return None
        row = conn.execute(_QUERY, (instance, ca_sn, sn)).fetchone()
        replaced_by = [r[0] for r in conn.execute(_REPLACED_BY, (row[len(_COLUMNS)],))] if row else []
    except (sqlite3.Error, ValueError):
        return None
    finally:
        conn.close()
    if row is None:
        return None
    found = {c: _utc(v) if c in _TIMES else v for c, v in zip(_COLUMNS, row)}
    detail = dict(zip(_DETAIL, row[len(_COLUMNS) + 1:]))
    detail["supersede_after"] = _utc(detail["supersede_after"])
    return {**found, **detail, "replaced_by": replaced_by}


_EXPORT = (
    "SELECT d.id, d.sn, c.sn, d.client_id, d.status, d.source, d.fingerprint_sha256, d.key_type, d.not_before, "
    "d.not_after, d.revocation_reason, d.revoked_at, d.created_at, d.updated_at, d.status_changed_at "
    "FROM device_certificate d JOIN ca_certificate c ON c.id = d.ca_id WHERE d.ca_id = ? AND d.id > ?"
)
_TIME_INDEXES = tuple(i for i, c in enumerate(_COLUMNS) if c in _TIMES)


def _stored(value: _dt.datetime) -> str:
    # How SQLAlchemy's SQLite DATETIME writes a UTCDateTime (naive UTC, microseconds): compared as text.
    return value.astimezone(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")


def device_export_pages(path: Path, *, instance: str, ca_id: int | None = None, status: str | None = None,
                        expiring_before: _dt.datetime | None = None, page: int = 5000):
    """Pages of device rows as JSON values in PUBLIC_COLUMNS order (times ``YYYY-MM-DDTHH:MM:SSZ``), CA by CA
    in (CA id, device id) order, as pki.services.device_lookup.iter_device_rows gives them; None when this
    cannot answer (see the module docstring).  Each page is one statement, its own read snapshot."""
    if not path.is_file():
        return None
    try:
        conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=30)
        if conn.execute("SELECT version_num FROM alembic_version").fetchall() != [(head_revision(),)]:
            conn.close()
            return None
        if ca_id is None:
            cas = [r[0] for r in conn.execute("SELECT id FROM ca_certificate WHERE instance = ? ORDER BY id",
                                              (instance,))]
        else:
            cas = [ca_id]
    except sqlite3.Error:
        return None
    query, extra = _EXPORT, []
    if status is not None:
        query += " AND d.status = ?"
        extra.append(status)
    if expiring_before is not None:
        query += " AND d.not_after < ?"
        extra.append(_stored(expiring_before))
    query += " ORDER BY d.id LIMIT ?"
    return _pages(conn, cas, query, extra, page)


def _pages(conn, cas, query, extra, size):
    times = _TIME_INDEXES
    try:
        for ca in cas:
            after = -1
            while True:
                rows = conn.execute(query, (ca, after, *extra, size)).fetchall()
                out = []
                for row in rows:
                    values = list(row[1:])
                    for i in times:
                        text = values[i]
                        if text is not None:
                            values[i] = f"{text[:10]}T{text[11:19]}Z"
                    out.append(values)
                if out:
                    yield out
                if len(rows) < size:
                    break
                after = rows[-1][0]
    finally:
        conn.close()
