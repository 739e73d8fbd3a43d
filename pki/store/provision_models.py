"""The device list of each provisioning batch, companion of its audit record.

A provisioning batch is one audit record (``device.provision``) holding the
batch's CA, count, first and last client id and a digest of its devices;
the devices themselves, one row each, are here, under the batch id the
record names.  The record is hash-chained and this table is not, so
``pki audit verify`` recomputes each batch's digest from these rows and
compares it with the record's (:mod:`pki.services.audit_batches`).
"""

from __future__ import annotations

from sqlalchemy import Column, Integer, PrimaryKeyConstraint, String
from sqlmodel import Field, SQLModel

__all__ = ["ProvisionBatchDevice"]


class ProvisionBatchDevice(SQLModel, table=True):
    __tablename__ = "provision_batch_device"
    __table_args__ = (PrimaryKeyConstraint("batch_id", "position", name="pk_provision_batch_device"),)

    batch_id: str = Field(sa_column=Column(String(32), nullable=False))
    position: int = Field(sa_column=Column(Integer, nullable=False, autoincrement=False))
    client_id: str = Field(sa_column=Column(String(64), nullable=False))
    sn: str = Field(sa_column=Column(String(42), nullable=False))
