"""Page sizes and status filters, shared by every list operation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import TypeVar

from ..errors import InvalidInput
from ..ids import decode_cursor, encode_cursor
from ..store import DeviceStatus, Status
from .schemas import Page

# The statuses, for the front ends' --status choices (they never import the store).
__all__ = ["DEFAULT_PAGE", "MAX_PAGE", "after_position", "page_limit", "page_of", "parse_status", "list_page",
           "Status", "DeviceStatus"]

S = TypeVar("S", bound=StrEnum)

DEFAULT_PAGE = 100
MAX_PAGE = 1000


def parse_status(status: str | None, allowed: type[S]) -> S | None:
    """``status`` (any case) as a member of ``allowed``, the enum of one kind of row."""
    if status is None:
        return None
    try:
        return allowed(status.upper())
    except ValueError:
        raise InvalidInput(
            f"status {status!r} is not one of {', '.join(allowed)}", code="invalid_status"
        ) from None


def page_limit(limit: int | None) -> int:
    if limit is None:
        return DEFAULT_PAGE
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}", code="invalid_limit")
    return limit


def after_position(cursor: str | None, *, key: str = "id") -> int | None:
    """Where the previous page ended (None for the first page); refuses foreign cursors."""
    if not cursor:
        return None
    position = decode_cursor(cursor, keys=(key,))[key]
    if not isinstance(position, int):
        raise InvalidInput("the cursor is not one this server handed out", code="invalid_cursor")
    return position


def page_of(rows: Sequence, size: int, render: Callable, *, key: str = "id") -> Page:
    """``rows`` was fetched with ``limit=size + 1``: the extra row only says there is more."""
    more = len(rows) > size
    rows = rows[:size]
    return Page(
        items=[render(r) for r in rows],
        next_cursor=encode_cursor({key: getattr(rows[-1], key)}) if more else None,
    )


def list_page(ctx, fetch: Callable, render: Callable, *, status: str | None, statuses: type[S], limit: int | None,
              cursor: str | None) -> Page:
    """One page of an instance's rows: ``fetch(session, instance=, status=, after_id=, limit=)`` is a repository's
    keyset query, ``render`` makes each row public."""
    wanted = parse_status(status, statuses)
    size = page_limit(limit)
    after = after_position(cursor)
    with ctx.store.transaction(readonly=True) as session:
        rows = fetch(session, instance=ctx.instance, status=wanted, after_id=after, limit=size + 1)
    return page_of(rows, size, render)
