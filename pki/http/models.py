"""Request bodies and response shapes of the /v1 API.

Requests are validated here, at the edge (types, sizes, no unknown fields),
then handed to the services as the CLI hands them its options; files the CLI
reads become PEM strings.  Responses reuse the services' public models, so
the JSON over HTTP is the JSON of ``pki ... --json``.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from ..keys import KEY_TYPES
from ..services.access_schemas import (
    AccessKeyCreated,
    AccessKeyPublic,
    AttachmentPublic,
    PolicyPublic,
    UserCreated,
    UserPublic,
)
from ..services.audit import AuditRecordPublic
from ..services.devices import REVOCATION_REASONS
from ..services.schemas import CaPublic, DevicePublic, RegisterCodePublic
from ..services.secrets import GroupPublic, MemberPublic, SecretPublic


PEM_MAX = 64 * 1024
KeyType = Literal[tuple(KEY_TYPES)]  # type: ignore[valid-type]
Reason = Literal[tuple(REVOCATION_REASONS)]  # type: ignore[valid-type]
Duration = Field(max_length=32, description="A duration such as 30m, 1h, 7d.")
T = TypeVar("T")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Problem(BaseModel):
    """RFC 7807 problem document; ``code`` is the stable error code the CLI prints too."""

    model_config = ConfigDict(extra="allow")
    type: str
    title: str
    status: int
    detail: str
    code: str
    family: str | None = None
    request_id: str | None = None


class PageOf(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None


class Deleted(BaseModel):
    """What a delete answers: at least ``deleted``; other keys name what went."""

    model_config = ConfigDict(extra="allow")
    deleted: bool


# -- codes and CAs -----------------------------------------------------------------------------


class CodeNew(_In):
    ttl: str = Field("1h", max_length=32, description="How long the code stays valid (30m, 1h, 2d).")


class CaRegister(_In):
    certificate_pem: str = Field(max_length=PEM_MAX, description="The CA certificate (PEM).")
    verification_pem: str = Field(max_length=PEM_MAX, description="Verification certificate: CN = register code.")
    name: str | None = Field(None, max_length=128)
    inactive: bool = False
    chain_pem: str | None = Field(None, max_length=PEM_MAX * 8, description="Issuers up to the root (PEM).")


class CaCreate(_In):
    name: str | None = Field(None, max_length=128, description="Display name and, without subject, the CN.")
    subject: str | None = Field(None, max_length=1024,
                                description="Full subject as openssl writes it: C=DE,O=Acme,CN=Line 3.")
    key_type: KeyType = "ec-p256"  # type: ignore[valid-type]
    days: int | None = Field(None, ge=1, le=36500,
                             description="Default 3650; for an intermediate, never past its parent's end.")
    parent: str | None = Field(None, max_length=128, description="Serial of a managed parent CA.")
    path_length: int | None = Field(None, ge=0, le=16)


class CrlUpload(_In):
    crl_pem: str = Field(max_length=PEM_MAX * 16, description="The CRL (PEM).")


class CrlInfoOut(BaseModel):
    ca_sn: str
    source: str
    crl_number: str
    this_update: str
    next_update: str
    entry_count: int


class CrlRequestOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    format: str
    ca_sn: str
    crl_number: str
    entries: list[dict[str, Any]]


# -- devices -----------------------------------------------------------------------------------


class DeviceIssue(_In):
    csr_pem: str | None = Field(None, max_length=PEM_MAX, description="A PKCS#10 request (PEM).")
    generate: bool = Field(False, description="Generate the key here; the answer carries private_key_pem.")
    client_id: str | None = Field(None, max_length=128)
    days: int | None = Field(None, ge=1, le=36500)
    sans: list[str] = Field(default_factory=list, max_length=64)
    key_type: KeyType = "ec-p256"  # type: ignore[valid-type]


class IssuedDevice(DevicePublic):
    certificate_pem: str
    chain_pem: str
    private_key_pem: str | None = None


class DeviceDetail(DevicePublic):
    replaces: str | None = None
    replaced_by: list[str] = []
    supersede_after: str | None = None
    certificate_pem: str
    chain_pem: str


class CaDetail(CaPublic):
    est_label: str | None = None
    est_default: bool = False
    bootstrap_only: bool = False
    renew_after_expiry_s: int | None = None
    supersede_after_s: int | None = None
    certificate_pem: str
    chain_pem: str


class DeviceRenew(_In):
    csr_pem: str | None = Field(None, max_length=PEM_MAX, description="A PKCS#10 request (PEM): rekey to its key.")
    generate: bool = Field(False, description="Rekey to a key generated here; the answer carries private_key_pem.")
    days: int | None = Field(None, ge=1, le=36500)
    supersede_after: str | None = Field(None, max_length=32, description="Grace before the old certificate is "
                                        "revoked as superseded (0: at once; default: the CA's, else 24h).")
    key_type: KeyType = "ec-p256"  # type: ignore[valid-type]


class RenewedDevice(IssuedDevice):
    replaces: str
    old_supersede_after: str


class CaUpdate(_In):
    est_label: str | None = Field(None, max_length=64)
    clear_est_label: bool = False
    est_default: bool | None = None
    bootstrap_only: bool | None = None
    renew_after_expiry: str | None = Field(None, max_length=32, description="0 turns it off.")
    supersede_after: str | None = Field(None, max_length=32)


class ClaimCreate(_In):
    ca: str = Field(max_length=128)
    uses: int = Field(1, ge=1, le=1_000_000)
    ttl: str = Field("24h", max_length=32)
    client_id_prefix: str | None = Field(None, max_length=64)


class ClaimCreated(BaseModel):
    claim_id: str
    password: str
    ca_sn: str
    uses: int
    client_id_prefix: str | None
    expires_at: str


class DeviceRegister(_In):
    certificate_pem: str = Field(max_length=PEM_MAX)


class DeviceRevoke(_In):
    reason: Reason = "unspecified"  # type: ignore[valid-type]


# -- secrets -----------------------------------------------------------------------------------


class SecretRegister(_In):
    client_id: str = Field(max_length=128)


class SecretRefresh(_In):
    grace: str = Field("24h", max_length=32, description="How long the old secret still passes; 0 for none.")


class SecretVerify(_In):
    client_id: str = Field(max_length=256)
    username: str = Field(max_length=512)
    password: str = Field(max_length=2048)
    clock_skew: str = Field("60s", max_length=32)


class SecretVerified(BaseModel):
    result: str
    client_id: str


class GroupCreate(_In):
    name: str = Field(max_length=128)


# -- principals, policies, audit ---------------------------------------------------------------


class UserCreate(_In):
    name: str = Field(max_length=64)


class PolicyCreate(_In):
    name: str = Field(max_length=128)
    document: dict[str, Any] = Field(description='{"Version": "1", "Statement": [...]}')
    description: str = Field("", max_length=1024)


class PolicyAttach(_In):
    user: str = Field(max_length=64)


class PolicySimulate(_In):
    user: str = Field(max_length=64, description="A user name, or 'account'.")
    action: str = Field(max_length=128, description="An action (mq:RegisterCa) or an operation (ca.register).")
    resource: str | None = Field(None, max_length=512)
    source_ip: str | None = Field(None, max_length=64)
    secure_transport: bool = True
    at: str | None = Field(None, max_length=64, description="acs:CurrentTime (ISO-8601 with zone).")
    context: dict[str, str] = Field(default_factory=dict, max_length=32)


class DecisionOut(BaseModel):
    allowed: bool
    decision: str
    decided_by: dict[str, Any] | None
    reason: str
    action: str
    resource: str


class ActionOut(BaseModel):
    operation: str
    action: str
    dependents: list[str]
    access: str
    scope: str


class AuditVerifyOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    ok: bool
    records_checked: int


# -- artifacts ---------------------------------------------------------------------------------


class ArtifactsPublish(_In):
    require_crls: bool = False
    keep: int = Field(5, ge=1, le=1000)
    crl_lifetime: str = Field("7d", max_length=32)
    listener_port: int = Field(8883, ge=1, le=65535)
    #: A second, TLS-only listener in the snippet whose clients log in with the password file.
    password_listener_port: int | None = Field(None, ge=1, le=65535)


class PublishOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    generation: int
    directory: str
    current: str
    published_at: str


CaPage = PageOf[CaPublic]
DevicePage = PageOf[DevicePublic]
SecretPage = PageOf[SecretPublic]
GroupPage = PageOf[GroupPublic]
UserPage = PageOf[UserPublic]
PolicyPage = PageOf[PolicyPublic]
AuditPage = PageOf[AuditRecordPublic]


class BatchDevice(BaseModel):
    """One device of a provisioning batch, in the batch's order."""

    position: int
    client_id: str
    sn: str


BatchDevicePage = PageOf[BatchDevice]
ActionPage = PageOf[ActionOut]

_reexported = (AccessKeyCreated, AccessKeyPublic, AttachmentPublic, PolicyPublic, UserCreated, UserPublic,
               AuditRecordPublic, CaPublic, DevicePublic, RegisterCodePublic, GroupPublic, MemberPublic,
               SecretPublic)
