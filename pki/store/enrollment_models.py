"""Tables for enrollment over EST (RFC 7030): claims and the client ids that used them.

A claim's password is kept as its SHA-256 only, as register codes are: the
password is 32 random bytes made here, so a slow hash would add nothing but
latency, and a leaked table redeems nothing.
"""

from __future__ import annotations

import datetime as _dt

from sqlalchemy import Column, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from .types import UTCDateTime

__all__ = ["EnrollmentClaim", "EnrollmentClaimUse"]


class EnrollmentClaim(SQLModel, table=True):
    """A one-time enrollment credential: ``max_uses`` client ids may enroll with it, each once."""

    __tablename__ = "enrollment_claim"
    __table_args__ = (
        UniqueConstraint("claim_id", name="uq_enrollment_claim_id"),
        Index("ix_enrollment_claim_instance_id", "instance", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    instance: str = Field(max_length=64)
    claim_id: str = Field(max_length=40)
    password_sha256: str = Field(max_length=64)
    ca_id: int = Field(sa_column=Column(Integer, ForeignKey("ca_certificate.id", ondelete="CASCADE"),
                                        nullable=False))
    max_uses: int = Field(sa_column=Column(Integer, nullable=False))
    uses: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    client_id_prefix: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    status: str = Field(max_length=16)
    expires_at: _dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
    created_at: _dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
    updated_at: _dt.datetime = Field(sa_type=UTCDateTime, nullable=False)


class EnrollmentClaimUse(SQLModel, table=True):
    """One client id that enrolled with a claim: the unique key makes "once per client id" hold under races."""

    __tablename__ = "enrollment_claim_use"
    __table_args__ = (UniqueConstraint("claim_row_id", "client_id", name="uq_enrollment_claim_use"),)

    id: int | None = Field(default=None, primary_key=True)
    claim_row_id: int = Field(sa_column=Column(Integer, ForeignKey("enrollment_claim.id", ondelete="CASCADE"),
                                               nullable=False))
    client_id: str = Field(max_length=64)
    device_sn: str = Field(max_length=42)
    used_at: _dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
