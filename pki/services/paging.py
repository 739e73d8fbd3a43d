"""Page sizes and status filters, shared by every list operation."""

from __future__ import annotations

from ..errors import InvalidInput

__all__ = ["DEFAULT_PAGE", "MAX_PAGE", "page_limit", "parse_status"]

DEFAULT_PAGE = 100
MAX_PAGE = 1000


def parse_status(status: str | None, allowed: tuple[str, ...]) -> str | None:
    if status is None:
        return None
    upper = status.upper()
    if upper not in allowed:
        raise InvalidInput(
            f"status {status!r} is not one of {', '.join(allowed)}", code="invalid_status"
        )
    return upper


def page_limit(limit: int | None) -> int:
    if limit is None:
        return DEFAULT_PAGE
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}", code="invalid_limit")
    return limit
