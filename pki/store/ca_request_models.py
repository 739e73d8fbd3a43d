"""A managed CA waiting for its certificate: the key is in custody, the CSR went to an outside CA."""

from __future__ import annotations

import datetime as _dt

from sqlalchemy import Column, ForeignKey, LargeBinary, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from .types import UTCDateTime

__all__ = ["CaRequest", "PENDING"]

#: The status a CA request shows: its CA exists only once the signed certificate is installed, and then
#: as an ACTIVE CA (pki.store.models.Status); the request row is gone by then.
PENDING = "PENDING"


class CaRequest(SQLModel, table=True):
    __tablename__ = "ca_request"
    __table_args__ = (
        UniqueConstraint("instance", "ref", name="uq_ca_request_instance_ref"),
        UniqueConstraint("instance", "spki_sha256", name="uq_ca_request_instance_spki"),
    )

    id: int | None = Field(default=None, primary_key=True)
    instance: str = Field(max_length=64)
    #: How users name the request until its certificate (and serial) exists.
    ref: str = Field(max_length=40)
    name: str = Field(max_length=64)
    subject: str = Field(sa_column=Column(Text, nullable=False))
    key_type: str = Field(max_length=16)
    spki_sha256: str = Field(max_length=64)
    key_id: str = Field(sa_column=Column(String(40), ForeignKey("custody_key.key_id"), nullable=False))
    csr_der: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: _dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
