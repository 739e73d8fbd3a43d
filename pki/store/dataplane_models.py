"""Tables of the broker data plane: identities, permission rules, the default, the connect blocklist,
hook tokens, and a per-instance revision counter.

``broker_identity.password_hash`` is mosquitto's ``$7$`` PBKDF2-SHA512 form
(:func:`pki.dataplane.mosquitto.hash_password`): the same value serves the
broker hooks' check and a mosquitto password file, and no password is stored.
``hook_token.token_sha256`` is the only trace of a hook token.

``broker_revision`` holds one row per instance, moved in the transaction of
every change to the other tables (like ``access_revision``, migration 0007):
a process that caches identities or a compiled rule set reads only this
counter per check, and drops its cache when it moved.
"""

from __future__ import annotations

import datetime as _dt

from sqlalchemy import BigInteger, Boolean, Column, Index, Integer, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from .types import UTCDateTime

__all__ = ["BrokerIdentity", "BrokerPermission", "BrokerSetting", "BrokerBlock", "HookToken", "BrokerRevision"]


class BrokerIdentity(SQLModel, table=True):
    """A username/password account for an application or a gateway."""

    __tablename__ = "broker_identity"
    __table_args__ = (
        UniqueConstraint("instance", "username", name="uq_broker_identity_instance_username"),
        Index("ix_broker_identity_instance_id", "instance", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    instance: str = Field(max_length=64)
    username: str = Field(sa_column=Column(String(256), nullable=False))
    password_hash: str = Field(sa_column=Column(String(200), nullable=False))
    #: When set, the identity may connect with this client id only.
    client_id: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    superuser: bool = Field(sa_column=Column(Boolean, nullable=False))
    status: str = Field(max_length=16)
    #: Grows by one on every change: the verified-password cache keys on it.
    version: int = Field(default=1, sa_column=Column(Integer, nullable=False))
    created_at: _dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
    updated_at: _dt.datetime = Field(sa_type=UTCDateTime, nullable=False)


class BrokerPermission(SQLModel, table=True):
    """One authorization rule (see :class:`pki.dataplane.rules.Rule` for its meaning)."""

    __tablename__ = "broker_permission"
    __table_args__ = (Index("ix_broker_permission_instance_id", "instance", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    instance: str = Field(max_length=64)
    effect: str = Field(max_length=8)
    action: str = Field(max_length=16)
    # Up to 65,535 bytes (an MQTT string): no VARCHAR bound.
    topic: str = Field(sa_column=Column(Text, nullable=False))
    who: str = Field(max_length=16)
    who_value: str | None = Field(default=None, sa_column=Column(String(256), nullable=True))
    ip: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    #: "0,1" style; NULL for any QoS.
    qos: str | None = Field(default=None, sa_column=Column(String(8), nullable=True))
    retain: bool | None = Field(default=None, sa_column=Column(Boolean, nullable=True))
    priority: int = Field(sa_column=Column(Integer, nullable=False))
    created_at: _dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
    updated_at: _dt.datetime = Field(sa_type=UTCDateTime, nullable=False)


class BrokerSetting(SQLModel, table=True):
    """An instance's default decision when no rule matches; no row means deny."""

    __tablename__ = "broker_setting"

    instance: str = Field(sa_column=Column(String(64), primary_key=True))
    default_effect: str = Field(max_length=8)
    updated_at: _dt.datetime = Field(sa_type=UTCDateTime, nullable=False)


class BrokerBlock(SQLModel, table=True):
    """A connect blocklist entry: a client id, a username or an IP network, until a time or for good."""

    __tablename__ = "broker_blocklist"
    __table_args__ = (
        UniqueConstraint("instance", "kind", "value", name="uq_broker_blocklist_instance_kind_value"),
        Index("ix_broker_blocklist_instance_id", "instance", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    instance: str = Field(max_length=64)
    kind: str = Field(max_length=16)
    value: str = Field(sa_column=Column(String(256), nullable=False))
    until: _dt.datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    created_at: _dt.datetime = Field(sa_type=UTCDateTime, nullable=False)


class HookToken(SQLModel, table=True):
    """A bearer token the broker hooks accept; only its SHA-256 is kept."""

    __tablename__ = "hook_token"
    __table_args__ = (
        UniqueConstraint("name", name="uq_hook_token_name"),
        UniqueConstraint("token_sha256", name="uq_hook_token_sha256"),
    )

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=Column(String(64), nullable=False))
    token_sha256: str = Field(sa_column=Column(String(64), nullable=False))
    #: JSON list of CIDR blocks the token may be used from; [] for anywhere.
    cidrs: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(max_length=16)
    created_at: _dt.datetime = Field(sa_type=UTCDateTime, nullable=False)


class BrokerRevision(SQLModel, table=True):
    """Per instance, a counter moved by every data-plane change, in the changing transaction."""

    __tablename__ = "broker_revision"

    instance: str = Field(sa_column=Column(String(64), primary_key=True))
    revision: int = Field(sa_column=Column(BigInteger, nullable=False))
