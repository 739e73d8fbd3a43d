"""Public shapes of principals, access keys and policies, as the JSON output uses them."""

from __future__ import annotations

from typing import Any

from .schemas import UtcTime, _Public

__all__ = [
    "UserCreated",
    "UserPublic",
    "AccessKeyCreated",
    "AccessKeyPublic",
    "PolicyPublic",
    "AttachmentPublic",
]


class UserCreated(_Public):
    """The answer to `pki user create`: the secret appears here and never again."""

    name: str
    access_key_id: str
    access_key_secret: str


class AccessKeyPublic(_Public):
    access_key_id: str
    user: str
    status: str
    created_at: UtcTime
    updated_at: UtcTime

    @classmethod
    def of(cls, row, *, user: str) -> "AccessKeyPublic":
        return cls(access_key_id=row.access_key_id, user=user, status=row.status, created_at=row.created_at,
                   updated_at=row.updated_at)


class AccessKeyCreated(_Public):
    user: str
    access_key_id: str
    access_key_secret: str
    status: str


class UserPublic(_Public):
    name: str
    status: str
    created_at: UtcTime
    updated_at: UtcTime
    policies: list[str]
    access_keys: list[dict[str, Any]]

    @classmethod
    def of(cls, row, *, keys, policies) -> "UserPublic":
        return cls(
            name=row.name, status=row.status, created_at=row.created_at, updated_at=row.updated_at,
            policies=list(policies),
            access_keys=[AccessKeyPublic.of(k, user=row.name).as_json() for k in keys],
        )


class PolicyPublic(_Public):
    name: str
    type: str  # "System" | "Custom"
    description: str
    document: dict[str, Any]
    created_at: UtcTime | None
    attached_to: list[str] | None = None


class AttachmentPublic(_Public):
    policy: str
    user: str
    attached: bool
