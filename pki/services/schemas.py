"""Public shapes of resources (apart from the tables), as the JSON output uses them."""

from __future__ import annotations

import datetime as _dt
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, PlainSerializer, model_serializer

from ..clock import isoformat

__all__ = ["UtcTime", "RegisterCodePublic", "CaPublic", "DevicePublic", "Page", "InitResult"]

UtcTime = Annotated[_dt.datetime, PlainSerializer(isoformat, return_type=str)]


class _Public(BaseModel):
    model_config = ConfigDict(frozen=True)

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class InitResult(_Public):
    home: str
    database: str
    schema_revision: str
    master_key_file: str
    master_key_created: bool


class RegisterCodePublic(_Public):
    code: str
    instance: str
    expires_at: UtcTime


class CaPublic(_Public):
    sn: str
    name: str
    status: str
    source: str
    subject: str
    issuer: str
    not_before: UtcTime
    not_after: UtcTime
    fingerprint_sha256: str
    key_type: str
    instance: str
    has_chain: bool
    created_at: UtcTime
    updated_at: UtcTime
    status_changed_at: UtcTime
    #: Only in the answer to create and register: what the caller should know (a look-alike name).
    warnings: list[str] | None = None

    @model_serializer(mode="wrap")
    def _without_absent_warnings(self, handler):
        data = handler(self)
        if data.get("warnings") is None:
            data.pop("warnings", None)
        return data

    @classmethod
    def of(cls, row, *, warnings: list[str] | None = None) -> "CaPublic":
        return cls(
            warnings=warnings,
            sn=row.sn,
            name=row.name,
            status=row.status,
            source=row.source,
            subject=row.subject,
            issuer=row.issuer,
            not_before=row.not_before,
            not_after=row.not_after,
            fingerprint_sha256=row.fingerprint_sha256,
            key_type=row.key_type,
            instance=row.instance,
            has_chain=row.chain_pem is not None,
            created_at=row.created_at,
            updated_at=row.updated_at,
            status_changed_at=row.status_changed_at,
        )


class DevicePublic(_Public):
    sn: str
    ca_sn: str
    client_id: str
    status: str
    source: str
    fingerprint_sha256: str
    key_type: str
    not_before: UtcTime
    not_after: UtcTime
    revocation_reason: str | None
    revoked_at: UtcTime | None
    created_at: UtcTime
    updated_at: UtcTime
    status_changed_at: UtcTime

    @classmethod
    def of(cls, row, *, ca_sn: str) -> "DevicePublic":
        return cls(
            sn=row.sn, ca_sn=ca_sn, client_id=row.client_id, status=row.status, source=row.source,
            fingerprint_sha256=row.fingerprint_sha256, key_type=row.key_type, not_before=row.not_before,
            not_after=row.not_after, revocation_reason=row.revocation_reason, revoked_at=row.revoked_at,
            created_at=row.created_at, updated_at=row.updated_at, status_changed_at=row.status_changed_at,
        )


class Page(_Public):
    items: list[Any]
    next_cursor: str | None
