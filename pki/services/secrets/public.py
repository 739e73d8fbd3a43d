"""The public shapes of secrets, groups and group members (what the service returns)."""

from __future__ import annotations

import datetime as _dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_serializer

from ...store.secret_models import DeviceSecret, SecretGroup
from ..schemas import UtcTime
from .formulas import username_for


class _Public(BaseModel):
    model_config = ConfigDict(frozen=True)

    @model_serializer(mode="wrap")
    def _without_absent_secret(self, handler):
        # DESIGN: `secret` appears only when created or asked for, also inside a Page.
        data = handler(self)
        if isinstance(data, dict) and "secret" in data and data["secret"] is None:
            del data["secret"]
        return data

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class SecretPublic(_Public):
    client_id: str
    access_key_id: str
    status: str
    instance: str
    username: str
    #: Until when the previous secret still passes; null when none does.
    secondary_expires_at: UtcTime | None
    created_at: UtcTime
    updated_at: UtcTime
    status_changed_at: UtcTime
    rotated_at: UtcTime | None
    secret: str | None = Field(default=None, repr=False)

    @classmethod
    def of(cls, row: DeviceSecret, *, now: _dt.datetime, secret: str | None = None) -> "SecretPublic":
        grace = row.secondary_expires_at if row.sealed_secondary is not None else None
        return cls(
            client_id=row.client_id, access_key_id=row.access_key_id, status=row.status, instance=row.instance,
            username=username_for(row.access_key_id, row.instance),
            secondary_expires_at=grace if grace is not None and grace > now else None,
            created_at=row.created_at, updated_at=row.updated_at, status_changed_at=row.status_changed_at,
            rotated_at=row.rotated_at, secret=secret,
        )


class GroupPublic(_Public):
    name: str
    access_key_id: str
    status: str
    instance: str
    username: str
    created_at: UtcTime
    updated_at: UtcTime
    status_changed_at: UtcTime

    @classmethod
    def of(cls, row: SecretGroup) -> "GroupPublic":
        return cls(
            name=row.name, access_key_id=row.access_key_id, status=row.status, instance=row.instance,
            username=username_for(row.access_key_id, row.instance), created_at=row.created_at,
            updated_at=row.updated_at, status_changed_at=row.status_changed_at,
        )


class MemberPublic(_Public):
    """A group member: no row of its own unless disabled on its own."""

    client_id: str
    group: str
    access_key_id: str
    username: str
    #: The member's own status; the group's status applies on top of it.
    status: str
    group_status: str
    secret: str | None = Field(default=None, repr=False)
