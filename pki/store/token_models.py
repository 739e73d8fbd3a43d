"""Tables of broker tokens (short-lived JWTs): the signing keys, the tokens, and a revision counter.

A signing key's private half is a ``custody_key`` row (sealed under the master key like every other key
here); ``token_signing_key`` adds what a JWT needs: its ``kid`` (the custody key id), its JWS algorithm,
its status, and its public JWK, so that publishing the key set never opens a sealed key.

``broker_token`` keeps a token's id, claims and status, never the token itself: the JWT is shown once.

``token_revision`` holds one row per instance, moved in the transaction of every change to the other
two tables: the hooks' caches of keys, revocations and per-client grants read only this counter per
check (the same pattern as ``broker_revision``, pki/store/dataplane_models.py).  A separate counter,
because tokens are applied far more often than identities or rules change, and moving the data-plane
revision would drop those caches (and the verified-password cache) at every apply.
"""

from __future__ import annotations

import datetime as _dt

from sqlalchemy import BigInteger, Boolean, Column, ForeignKey, Index, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from .types import UTCDateTime

__all__ = ["TokenSigningKey", "BrokerToken", "TokenRevision"]


class TokenSigningKey(SQLModel, table=True):
    __tablename__ = "token_signing_key"
    __table_args__ = (
        UniqueConstraint("kid", name="uq_token_signing_key_kid"),
        Index("ix_token_signing_key_instance_status", "instance", "status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    instance: str = Field(max_length=64)
    kid: str = Field(sa_column=Column(String(40), ForeignKey("custody_key.key_id"), nullable=False))
    alg: str = Field(max_length=16)
    status: str = Field(max_length=16)
    #: The public JWK (RFC 7517) as JSON, kid and alg included.
    public_jwk: str = Field(sa_column=Column(Text, nullable=False))
    created_at: _dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
    #: When a newer key replaced it as CURRENT.
    superseded_at: _dt.datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    retired_at: _dt.datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)


class BrokerToken(SQLModel, table=True):
    __tablename__ = "broker_token"
    __table_args__ = (
        UniqueConstraint("token_id", name="uq_broker_token_token_id"),
        Index("ix_broker_token_instance_client", "instance", "client_id", "id"),
        Index("ix_broker_token_kid_expires", "kid", "expires_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    instance: str = Field(max_length=64)
    #: The JWT's ``jti``.
    token_id: str = Field(sa_column=Column(String(40), nullable=False))
    kid: str = Field(sa_column=Column(String(40), nullable=False))
    client_id: str = Field(sa_column=Column(String(256), nullable=False))
    username: str | None = Field(default=None, sa_column=Column(String(256), nullable=True))
    superuser: bool = Field(sa_column=Column(Boolean, nullable=False))
    #: The JWT's payload as JSON (claims and acl): what the token grants, without its signature.
    claims: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(max_length=16)
    issued_at: _dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
    expires_at: _dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
    revoked_at: _dt.datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)


class TokenRevision(SQLModel, table=True):
    __tablename__ = "token_revision"

    instance: str = Field(sa_column=Column(String(64), primary_key=True))
    revision: int = Field(sa_column=Column(BigInteger, nullable=False))
