"""Repositories for provisioning: the batches' device lists and the writer's two batch statements.  They never commit."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator, Sequence

from sqlalchemy import insert, select
from sqlalchemy.engine import Connection
from sqlmodel import Session

from .models import DeviceCertificate, DeviceStatus
from .provision_models import ProvisionBatchDevice

__all__ = ["insert_batch_devices", "batch_devices_page", "iter_batch_devices", "active_client_ids",
           "insert_devices"]

_Conn = Session | Connection
_TABLE = ProvisionBatchDevice.__table__
_INSERT = insert(_TABLE)
_DEVICE = DeviceCertificate.__table__
_INSERT_DEVICES = insert(_DEVICE)


def active_client_ids(conn: _Conn, *, instance: str, ca_id: int, client_ids: Sequence[str]) -> set[str]:
    """Which of a batch's client ids already have an ACTIVE certificate under the CA.

    Core and three columns: the provisioning writer asks this once per batch
    and almost always hears "none".  The WHERE names only the instance and
    the client ids, so the one index that can answer is (instance,
    client_id): given ca_id and status too, SQLite picks (ca_id, status, id)
    and walks every ACTIVE device of the CA, a cost that grows with each
    batch of a million-device run.  The CA and status are filtered here.
    """
    c = _DEVICE.c
    query = select(c.client_id, c.ca_id, c.status).where(c.instance == instance, c.client_id.in_(list(client_ids)))
    return {client_id for client_id, row_ca, status in conn.execute(query)
            if row_ca == ca_id and status == DeviceStatus.ACTIVE}


def insert_devices(conn: _Conn, rows: Sequence[dict]) -> None:
    """A provisioning batch's certificates: one executemany of the driver.

    The rows of one run share their datetimes (now, and the template's
    validity), so each distinct value goes through the column types' bind
    processing once, not five times a row as the Core insert did (that was
    a third of the single writer's time); the statement is compiled once per
    dialect and handed to the driver as it is.
    """
    if not rows:
        return
    connection = conn.connection() if isinstance(conn, Session) else conn
    dialect = connection.dialect
    keys = tuple(rows[0])
    sql, order, processors = _insert_devices_statement(dialect, keys)
    memo: list[dict] = [{} for _ in order]
    params = []
    for row in rows:
        values = []
        for i, key in enumerate(order):
            value = row[key]
            process = processors[i]
            if process is not None and value is not None:
                seen = memo[i]
                try:
                    value = seen[value]
                except (KeyError, TypeError):  # TypeError: unhashable (bytes are hashable; be safe anyway)
                    processed = process(value)
                    if isinstance(value, _dt.datetime):
                        seen[value] = processed
                    value = processed
            values.append(value)
        params.append(tuple(values) if dialect.positional else dict(zip(order, values)))
    connection.exec_driver_sql(sql, params)


_STATEMENTS: dict = {}


def _insert_devices_statement(dialect, keys: tuple[str, ...]):
    """(SQL text, parameter order, bind processor per parameter) of the device insert, per dialect and keys."""
    cache_key = (dialect.name, dialect.driver, dialect.paramstyle, keys)
    found = _STATEMENTS.get(cache_key)
    if found is None:
        compiled = _INSERT_DEVICES.compile(dialect=dialect, column_keys=list(keys))
        order = tuple(compiled.positiontup) if dialect.positional else tuple(compiled.params)
        if sorted(order) != sorted(keys):  # a column default would need SQLAlchemy's own execution
            raise RuntimeError(f"device insert parameters {order} are not the row's keys {keys}")
        columns = _DEVICE.c
        processors = tuple(columns[name].type.dialect_impl(dialect).bind_processor(dialect) for name in order)
        found = _STATEMENTS[cache_key] = (compiled.string, order, processors)
    return found


def insert_batch_devices(conn: _Conn, *, batch_id: str, devices: Sequence[tuple[str, str]]) -> None:
    """The batch's (client id, serial) pairs, numbered from 0 in the order given."""
    if devices:
        conn.execute(_INSERT, [{"batch_id": batch_id, "position": i, "client_id": client_id, "sn": sn}
                               for i, (client_id, sn) in enumerate(devices)])


def batch_devices_page(conn: _Conn, *, batch_id: str, after_position: int | None, limit: int):
    c = _TABLE.c
    query = select(c.position, c.client_id, c.sn).where(c.batch_id == batch_id)
    if after_position is not None:
        query = query.where(c.position > after_position)
    return conn.execute(query.order_by(c.position).limit(limit)).all()


def iter_batch_devices(conn: _Conn, *, chunk: int = 5000) -> Iterator[tuple[str, str, str]]:
    """Every row as (batch id, client id, serial), by batch then position, read in keyset chunks."""
    c = _TABLE.c
    last: tuple[str, int] | None = None
    while True:
        query = select(c.batch_id, c.position, c.client_id, c.sn)
        if last is not None:
            query = query.where((c.batch_id > last[0]) | ((c.batch_id == last[0]) & (c.position > last[1])))
        rows = conn.execute(query.order_by(c.batch_id, c.position).limit(chunk)).all()
        for row in rows:
            yield row.batch_id, row.client_id, row.sn
        if len(rows) < chunk:
            return
        last = (rows[-1].batch_id, rows[-1].position)
