"""Tables for device secrets (one device, one secret) and enrollment groups.

No secret is ever stored in clear: ``sealed_*`` columns hold AES-256-GCM
blobs made by the keystore under the master key, with the access key id as
associated data, so a blob copied onto another row does not open.

``version`` grows by one on every change of a row (refresh, status); the
verification cache keys unsealed material by ``(access_key_id, version)``,
so a stale entry is never used once the row has moved on.
"""

from __future__ import annotations

import datetime as _dt

from sqlalchemy import Column, ForeignKey, Index, Integer, LargeBinary, PrimaryKeyConstraint, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from .types import UTCDateTime

__all__ = ["DeviceSecret", "SecretGroup", "SecretGroupBlock"]


class DeviceSecret(SQLModel, table=True):
    """One credential per (instance, client id): a primary and, during a grace period, a secondary."""

    __tablename__ = "device_secret"
    __table_args__ = (
        UniqueConstraint("instance", "client_id", name="uq_secret_instance_client_id"),
        UniqueConstraint("access_key_id", name="uq_secret_access_key_id"),
        Index("ix_secret_instance_id", "instance", "id"),
        Index("ix_secret_instance_status_id", "instance", "status", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    instance: str = Field(max_length=64)
    client_id: str = Field(max_length=64)
    access_key_id: str = Field(max_length=40)
    status: str = Field(max_length=16)
    sealed_primary: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    # The previous primary after a refresh, valid until secondary_expires_at.
    sealed_secondary: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    secondary_expires_at: _dt.datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    version: int = Field(default=1, sa_column=Column(Integer, nullable=False))
    created_at: _dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
    updated_at: _dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
    status_changed_at: _dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
    rotated_at: _dt.datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    #: The primary's line hash for mosquitto's password file (``$7$...``), written with the primary so that
    #: a publish does not recompute it; NULL for rows older than migration 0011 until the next publish.
    mosquitto_hash: str | None = Field(default=None, sa_column=Column(String(200), nullable=True))


class SecretGroup(SQLModel, table=True):
    """An enrollment group: members' secrets are derived from its key, so members need no rows."""

    __tablename__ = "secret_group"
    __table_args__ = (
        UniqueConstraint("instance", "name", name="uq_secret_group_instance_name"),
        UniqueConstraint("access_key_id", name="uq_secret_group_access_key_id"),
        Index("ix_secret_group_instance_id", "instance", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    instance: str = Field(max_length=64)
    name: str = Field(max_length=64)
    access_key_id: str = Field(max_length=40)
    status: str = Field(max_length=16)
    sealed_key: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    version: int = Field(default=1, sa_column=Column(Integer, nullable=False))
    created_at: _dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
    updated_at: _dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
    status_changed_at: _dt.datetime = Field(sa_type=UTCDateTime, nullable=False)


class SecretGroupBlock(SQLModel, table=True):
    """A group member disabled on its own; only such members have a row."""

    __tablename__ = "secret_group_block"
    __table_args__ = (PrimaryKeyConstraint("group_id", "client_id", name="pk_secret_group_block"),)

    group_id: int = Field(
        sa_column=Column(Integer, ForeignKey("secret_group.id", ondelete="CASCADE"), nullable=False)
    )
    client_id: str = Field(sa_column=Column(String(64), nullable=False))
    created_at: _dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
