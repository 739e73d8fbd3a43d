"""Tables the HTTP service shares between processes: nonces, rate-limit buckets.

Both live in the database, not in a process, so that several ``pki serve``
processes behind one load balancer refuse a replayed nonce and share one
rate limit per access key.
"""

from __future__ import annotations

import datetime as _dt

from sqlalchemy import Column, Float, Integer, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from .types import UTCDateTime

__all__ = ["HttpNonce", "HttpRateBucket"]


class HttpNonce(SQLModel, table=True):
    """A nonce seen on a signed request; kept until its timestamp leaves the window."""

    __tablename__ = "http_nonce"
    __table_args__ = (UniqueConstraint("access_key_id", "nonce", name="uq_http_nonce"),)

    id: int | None = Field(default=None, primary_key=True)
    access_key_id: str = Field(sa_column=Column(String(40), nullable=False))
    nonce: str = Field(sa_column=Column(String(128), nullable=False))
    expires_at: _dt.datetime = Field(sa_column=Column(UTCDateTime, nullable=False, index=True))


class HttpRateBucket(SQLModel, table=True):
    """One token bucket per access key; ``version`` makes each take a compare-and-set."""

    __tablename__ = "http_rate_bucket"

    access_key_id: str = Field(sa_column=Column(String(40), primary_key=True))
    tokens: float = Field(sa_column=Column(Float, nullable=False))
    #: Seconds since the epoch of the last refill (a float: sub-second refills matter).
    updated_at: float = Field(sa_column=Column(Float, nullable=False))
    version: int = Field(sa_column=Column(Integer, nullable=False))
