"""Errors as RFC 7807 problem documents: the HTTP front end's one table and one body builder.

The status comes from the error's family (:data:`HTTP_STATUS`), except for the few codes HTTP itself
names (:data:`STATUS_OF_CODE`); the body carries the stable ``code`` the CLI prints, the family (so a
client maps it to the CLI's exit code without knowing every code) and the request id.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import PkiError, family_of

__all__ = ["HTTP_STATUS", "STATUS_OF_CODE", "PROBLEM", "status_of", "problem_body", "problem_bytes",
           "error_problem"]

PROBLEM = "application/problem+json"

#: The one table from error family to HTTP status.
HTTP_STATUS = {
    "invalid_input": 400,
    "unauthenticated": 401,
    "permission_denied": 403,
    "not_found": 404,
    "conflict": 409,
    "invalid_state": 409,
    "rate_limited": 429,
    "config": 500,
    "store": 503,
    "internal": 500,
}

#: Codes whose status HTTP itself defines (RFC 9110 15.5), whatever their family.
STATUS_OF_CODE = {"request_too_large": 413, "method_not_allowed": 405}

#: Problem members an error's data may not override.
_RESERVED = frozenset({"type", "title", "status", "detail", "code", "family", "request_id"})


def status_of(code: str, family: str | None = None) -> int:
    return STATUS_OF_CODE.get(code) or HTTP_STATUS.get(family or family_of(code), 500)


def problem_body(status: int, code: str, detail: str, request_id: str | None, *, family: str | None = None,
                 **extra: Any) -> dict[str, Any]:
    """The problem document; ``extra`` members are the error's JSON-able data (never secrets)."""
    body = {k: v for k, v in extra.items() if k not in _RESERVED}
    body.update({"type": f"urn:pki:error:{code}", "title": code, "status": status, "detail": detail, "code": code,
                 "family": family or family_of(code), "request_id": request_id})
    return body


def problem_bytes(status: int, code: str, detail: str, request_id: str | None) -> bytes:
    return json.dumps(problem_body(status, code, detail, request_id)).encode()


def error_problem(exc: PkiError, request_id: str | None) -> tuple[int, dict[str, Any], dict[str, str]]:
    """``(status, body, headers)`` for a PkiError."""
    from .. import signing

    status = status_of(exc.code, exc.family)
    headers = {}
    if exc.family == "rate_limited":
        headers["Retry-After"] = str(exc.data.get("retry_after", 1))
    if exc.family == "unauthenticated":
        headers["WWW-Authenticate"] = signing.ALGORITHM
    extra = {k: v for k, v in exc.data.items() if isinstance(v, (str, int, float, bool, list, dict, type(None)))}
    return status, problem_body(status, exc.code, exc.message, request_id, family=exc.family, **extra), headers
