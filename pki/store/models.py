"""Tables.  Changing one means a new Alembic migration in ``migrations/versions``."""

from __future__ import annotations

import datetime as _dt
from enum import StrEnum

from sqlalchemy import Boolean, Column, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint, false
from sqlmodel import Field, SQLModel

from .types import UTCDateTime

__all__ = [
    "CaCertificate",
    "CustodyKey",
    "RegisterCode",
    "DeviceCertificate",
    "Status",
    "DeviceStatus",
    "TokenStatus",
    "TokenKeyStatus",
]


class Status(StrEnum):
    """What can be switched off and on again: CAs, device secrets, enrollment groups and their members,
    users, access keys.  StrEnum: the database and JSON hold the same strings as before the enum."""

    ACTIVE = "ACTIVE"
    INACTIVE = "INACTIVE"


class DeviceStatus(StrEnum):
    """A device certificate's: REVOKED is final (migration 0008 makes the database refuse to leave it)."""

    ACTIVE = "ACTIVE"
    INACTIVE = "INACTIVE"
    REVOKED = "REVOKED"


class TokenStatus(StrEnum):
    """A broker token's, as stored: REVOKED is final.  EXPIRED is never stored: a token past its ``exp`` is
    shown as EXPIRED (pki/services/tokens), whatever the row says."""

    ACTIVE = "ACTIVE"
    REVOKED = "REVOKED"
    EXPIRED = "EXPIRED"


class TokenKeyStatus(StrEnum):
    """A token signing key's: CURRENT signs; PREVIOUS only verifies, until the last token it signed has
    expired; RETIRED verifies nothing and is no longer published."""

    CURRENT = "CURRENT"
    PREVIOUS = "PREVIOUS"
    RETIRED = "RETIRED"


class CaCertificate(SQLModel, table=True):
    __tablename__ = "ca_certificate"
    __table_args__ = (
        UniqueConstraint("instance", "sn", name="uq_ca_instance_sn"),
        UniqueConstraint("instance", "fingerprint_sha256", name="uq_ca_instance_fingerprint"),
        UniqueConstraint("instance", "spki_sha256", name="uq_ca_instance_spki"),
        Index("ix_ca_instance_status_id", "instance", "status", "id"),
        UniqueConstraint("instance", "est_label", name="uq_ca_instance_est_label"),
    )

    id: int | None = Field(default=None, primary_key=True)
    instance: str = Field(max_length=64)
    sn: str = Field(max_length=42)
    name: str = Field(max_length=64)
    status: str = Field(max_length=16)
    source: str = Field(max_length=16)
    subject: str = Field(sa_column=Column(Text, nullable=False))
    issuer: str = Field(sa_column=Column(Text, nullable=False))
    not_before: _dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
    not_after: _dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
    fingerprint_sha256: str = Field(max_length=64)
    spki_sha256: str = Field(max_length=64)
    key_type: str = Field(max_length=16)
    cert_der: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    chain_pem: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # Managed CAs only: the sealed key in custody and the managed parent, if any.
    key_id: str | None = Field(
        default=None, sa_column=Column(String(40), ForeignKey("custody_key.key_id"), nullable=True)
    )
    parent_id: int | None = Field(
        default=None, sa_column=Column(Integer, ForeignKey("ca_certificate.id"), nullable=True)
    )
    created_at: _dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
    updated_at: _dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
    status_changed_at: _dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
    # Enrollment over EST and renewal (migration 0013): the CA's label under /.well-known/est/<label>/,
    # whether it is the unlabelled default, whether its certificates may only enroll (never in the trust
    # bundle), and how long after expiry a certificate may still renew itself (None: not at all).
    est_label: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    est_default: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default=false()))
    bootstrap_only: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default=false()))
    renew_after_expiry_s: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    #: The grace a renewed certificate keeps before it is superseded, when the renewal names none.
    supersede_after_s: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))


class CustodyKey(SQLModel, table=True):
    """A CA key's handle: sealed under the master key (software), or a token's URI (pkcs11)."""

    __tablename__ = "custody_key"

    key_id: str = Field(sa_column=Column(String(40), primary_key=True))
    key_type: str = Field(max_length=16)
    #: software: AES-256-GCM under the master key, key id as AAD; pkcs11: empty (the key is on the token).
    sealed: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: _dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
    custody: str = Field(default="software", sa_column=Column(String(16), nullable=False,
                                                             server_default="software"))
    #: pkcs11: the key's RFC 7512 URI, without the PIN (migration 0014).
    key_ref: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class RegisterCode(SQLModel, table=True):
    """Only the SHA-256 of a code is kept: a leaked table redeems nothing."""

    __tablename__ = "register_code"

    id: int | None = Field(default=None, primary_key=True)
    instance: str = Field(max_length=64)
    code_sha256: str = Field(max_length=64, unique=True)
    created_at: _dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
    expires_at: _dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
    used_at: _dt.datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    used_by_ca_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("ca_certificate.id", ondelete="SET NULL"), nullable=True),
    )


class DeviceCertificate(SQLModel, table=True):
    __tablename__ = "device_certificate"
    __table_args__ = (
        UniqueConstraint("ca_id", "sn", name="uq_device_ca_sn"),
        UniqueConstraint("instance", "fingerprint_sha256", name="uq_device_instance_fingerprint"),
        Index("ix_device_ca_id", "ca_id", "id"),
        Index("ix_device_ca_status_id", "ca_id", "status", "id"),
        Index("ix_device_instance_client_id", "instance", "client_id"),
        Index("ix_device_ca_not_after", "ca_id", "not_after"),
        Index("ix_device_replaces_id", "replaces_id"),
        Index("ix_device_ca_supersede_after", "ca_id", "supersede_after"),
    )

    id: int | None = Field(default=None, primary_key=True)
    instance: str = Field(max_length=64)
    ca_id: int = Field(sa_column=Column(Integer, ForeignKey("ca_certificate.id"), nullable=False))
    sn: str = Field(max_length=42)
    client_id: str = Field(max_length=64)
    status: str = Field(max_length=16)
    source: str = Field(default="issued", max_length=16)
    revocation_reason: str | None = Field(default=None, max_length=32)
    revoked_at: _dt.datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    fingerprint_sha256: str = Field(max_length=64)
    key_type: str = Field(max_length=16)
    not_before: _dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
    not_after: _dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
    cert_der: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: _dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
    updated_at: _dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
    status_changed_at: _dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
    # Renewal (migration 0013): the certificate this one replaces, and on a replaced one, when it
    # becomes REVOKED (superseded); pki.services.renewal applies it.
    replaces_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("device_certificate.id", ondelete="SET NULL", name="fk_device_replaces_id"),
                         nullable=True),
    )
    supersede_after: _dt.datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
