"""Repositories for provisioning: the batches' device lists and the writer's two batch statements.  They never commit."""

from __future__ import annotations

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

    Core and one column: the provisioning writer asks this once per batch and
    almost always hears "none".  ``instance`` lets the (instance, client_id)
    index answer; without it the planner walks the CA's ACTIVE rows, a cost
    that grows with every batch of a million-device run.
    """
    c = _DEVICE.c
    query = select(c.client_id).where(c.instance == instance, c.client_id.in_(list(client_ids)), c.ca_id == ca_id,
                                      c.status == DeviceStatus.ACTIVE)
    return set(conn.execute(query).scalars())


def insert_devices(conn: _Conn, rows: Sequence[dict]) -> None:
    """A provisioning batch's certificates: one Core executemany (the ORM's bulk path costs ~3x per row)."""
    if rows:
        conn.execute(_INSERT_DEVICES, list(rows))


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
