"""Tables for CRL state and broker artifacts."""

from __future__ import annotations

import datetime as _dt

from sqlalchemy import Column, ForeignKey, Integer, LargeBinary, String
from sqlmodel import Field, SQLModel

from .types import UTCDateTime

__all__ = ["CrlState", "OcspSigner", "CRL_SOURCES"]

#: ``signed``: a managed CA's CRL, signed here; ``uploaded``: a registered CA's, signed by its owner.
CRL_SOURCES = ("signed", "uploaded")


class CrlState(SQLModel, table=True):
    """The current CRL of one CA: the last one signed here or uploaded.

    ``crl_number`` is hex (CRL numbers run to 20 octets) and only grows;
    ``entries_sha256`` is the digest of the revocation state it was built
    from, so an unchanged, still-fresh CRL is not re-signed at every publish.
    """

    __tablename__ = "crl_state"

    id: int | None = Field(default=None, primary_key=True)
    ca_id: int = Field(
        sa_column=Column(Integer, ForeignKey("ca_certificate.id", ondelete="CASCADE"), nullable=False, unique=True)
    )
    source: str = Field(max_length=16)
    crl_number: str = Field(max_length=42)
    this_update: _dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
    next_update: _dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
    entries_sha256: str = Field(max_length=64)
    entry_count: int = Field(default=0)
    crl_der: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    updated_at: _dt.datetime = Field(sa_type=UTCDateTime, nullable=False)


class OcspSigner(SQLModel, table=True):
    """A managed CA's delegated OCSP signing certificate; its key is in custody."""

    __tablename__ = "ocsp_signer"

    id: int | None = Field(default=None, primary_key=True)
    ca_id: int = Field(
        sa_column=Column(Integer, ForeignKey("ca_certificate.id", ondelete="CASCADE"), nullable=False, unique=True)
    )
    key_id: str = Field(sa_column=Column(String(40), ForeignKey("custody_key.key_id"), nullable=False))
    cert_der: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    not_before: _dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
    not_after: _dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
    created_at: _dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
