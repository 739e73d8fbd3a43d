"""Tables for principals, access keys, policies and the audit log.

Principals belong to the account, not to an instance: one user may act on
several instances, as far as its policies allow.  The account itself (the
root principal) has no row.

Access key secrets are never stored in clear: ``sealed_secret`` is an
AES-256-GCM blob made by the keystore with the access key id as associated
data.

The audit log is two tables: ``audit_record`` (append-only, one row per
event, each carrying the hash of the one before) and ``audit_head`` (one
row: the sequence number and hash of the newest record).  Appenders lock the
head row, so two writers cannot both extend the same record; the unique
constraints on ``prev_hash`` and ``hash`` make a fork impossible even for a
writer that skipped the lock.
"""

from __future__ import annotations

import datetime as _dt

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Text,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel

from .types import UTCDateTime

__all__ = [
    "AccessUser",
    "AccessKey",
    "AccessPolicy",
    "PolicyAttachment",
    "AuditRecord",
    "AuditHead",
    "AccessRevision",
    "AUDIT_RESULTS",
    "GENESIS_HASH",
]

AUDIT_RESULTS = ("success", "denied", "failed")
#: ``prev_hash`` of the first record.
GENESIS_HASH = "0" * 64


class AccessUser(SQLModel, table=True):
    __tablename__ = "access_user"
    __table_args__ = (UniqueConstraint("name", name="uq_access_user_name"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64)
    status: str = Field(max_length=16)
    created_at: _dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
    updated_at: _dt.datetime = Field(sa_type=UTCDateTime, nullable=False)


class AccessKey(SQLModel, table=True):
    __tablename__ = "access_key"
    __table_args__ = (
        UniqueConstraint("access_key_id", name="uq_access_key_id"),
        Index("ix_access_key_user_id", "user_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    access_key_id: str = Field(max_length=40)
    user_id: int = Field(
        sa_column=Column(Integer, ForeignKey("access_user.id", ondelete="CASCADE"), nullable=False)
    )
    status: str = Field(max_length=16)
    sealed_secret: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: _dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
    updated_at: _dt.datetime = Field(sa_type=UTCDateTime, nullable=False)


class AccessRevision(SQLModel, table=True):
    """One row (id 1), created by the migration: a counter moved by every change to users, keys,
    policies or attachments, in the changing transaction.

    A server caches what an access key resolves to (principal, secret,
    policies) and reads only this counter per request: an unchanged counter
    means an unchanged cache, and a changed one (from any process) drops it.
    """

    __tablename__ = "access_revision"

    id: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    revision: int = Field(sa_column=Column(BigInteger, nullable=False))


class AccessPolicy(SQLModel, table=True):
    """A custom policy; system policies live in code (pki.services.policy) and have no row."""

    __tablename__ = "access_policy"
    __table_args__ = (UniqueConstraint("name", name="uq_access_policy_name"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=128)
    description: str = Field(default="", sa_column=Column(Text, nullable=False))
    document: str = Field(sa_column=Column(Text, nullable=False))
    created_at: _dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
    updated_at: _dt.datetime = Field(sa_type=UTCDateTime, nullable=False)


class PolicyAttachment(SQLModel, table=True):
    """A policy (system or custom, by name) attached to a user."""

    __tablename__ = "access_policy_attachment"
    __table_args__ = (
        PrimaryKeyConstraint("user_id", "policy_name", name="pk_access_policy_attachment"),
        Index("ix_access_policy_attachment_policy", "policy_name"),
    )

    user_id: int = Field(
        sa_column=Column(Integer, ForeignKey("access_user.id", ondelete="CASCADE"), nullable=False)
    )
    policy_name: str = Field(sa_column=Column(String(128), nullable=False))
    created_at: _dt.datetime = Field(sa_type=UTCDateTime, nullable=False)


class AuditRecord(SQLModel, table=True):
    __tablename__ = "audit_record"
    __table_args__ = (
        UniqueConstraint("prev_hash", name="uq_audit_record_prev_hash"),
        UniqueConstraint("hash", name="uq_audit_record_hash"),
    )

    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    time: _dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
    principal: str = Field(max_length=128)
    action: str = Field(max_length=128)
    resource: str = Field(sa_column=Column(Text, nullable=False))
    result: str = Field(max_length=16)
    error_code: str | None = Field(default=None, max_length=64, nullable=True)
    source_ip: str | None = Field(default=None, max_length=64, nullable=True)
    request_id: str | None = Field(default=None, max_length=128, nullable=True)
    details: str = Field(sa_column=Column(Text, nullable=False))  # canonical JSON
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class AuditHead(SQLModel, table=True):
    """One row (id 1), created by the migration: the newest record's seq and hash."""

    __tablename__ = "audit_head"

    id: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    hash: str = Field(max_length=64)
