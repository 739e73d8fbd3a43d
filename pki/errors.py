"""The one error hierarchy of the project.

Every error a user can meet is a :class:`PkiError` with a stable string
``code`` (part of the interface: scripts match on it) and a message that says
what to do.  Each error belongs to one *family*; front ends map families, not
individual classes, to an exit code or an HTTP status, in one table each.

Messages never contain key material or secrets.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "PkiError",
    "InvalidInput",
    "NotFound",
    "Conflict",
    "InvalidState",
    "PermissionDenied",
    "ConfigError",
    "StoreError",
    "Unauthenticated",
    "RateLimited",
    "InternalError",
    "FAMILIES",
]


class PkiError(Exception):
    """Base of every error the project raises on purpose.

    ``code`` is stable; ``message`` is for people; ``data`` carries the
    details a machine may want (never secrets).
    """

    family: ClassVar[str] = "internal"
    default_code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, **data: Any) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.data = data

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "family": self.family, "message": self.message, **self.data}


class InvalidInput(PkiError):
    """The request itself is wrong: bad encoding, failed checks, bad values."""

    family = "invalid_input"
    default_code = "invalid_input"


class NotFound(PkiError):
    family = "not_found"
    default_code = "not_found"


class Conflict(PkiError):
    """The request collides with what exists (duplicate, already used)."""

    family = "conflict"
    default_code = "conflict"


class InvalidState(PkiError):
    """The target exists but its state forbids the operation (inactive CA...)."""

    family = "invalid_state"
    default_code = "invalid_state"


class PermissionDenied(PkiError):
    family = "permission_denied"
    default_code = "permission_denied"


class ConfigError(PkiError):
    """The installation is not usable as configured (no schema, bad key file)."""

    family = "config"
    default_code = "config_error"


class StoreError(PkiError):
    """The database failed or is unreachable; nothing was changed."""

    family = "store"
    default_code = "store_error"


class Unauthenticated(PkiError):
    """The caller could not be identified (no or a bad request signature)."""

    family = "unauthenticated"
    default_code = "unauthenticated"


class RateLimited(PkiError):
    """Too many requests for one access key; ``retry_after`` says when to come back."""

    family = "rate_limited"
    default_code = "rate_limited"


class InternalError(PkiError):
    family = "internal"
    default_code = "internal_error"


#: Every family, in the order front ends document them.
FAMILIES: tuple[type[PkiError], ...] = (
    InvalidInput,
    NotFound,
    Conflict,
    InvalidState,
    PermissionDenied,
    ConfigError,
    StoreError,
    Unauthenticated,
    RateLimited,
    InternalError,
)
