"""Time, in one place, so that tests can pin it.

Everything in the project is timezone-aware UTC.  Services take a ``Clock``;
pure code (``pki.x509``) takes the time as an argument.
"""

from __future__ import annotations

import datetime as _dt
from typing import Protocol

__all__ = ["Clock", "SystemClock", "FixedClock", "utc", "ensure_utc", "isoformat"]

UTC = _dt.timezone.utc


class Clock(Protocol):
    def now(self) -> _dt.datetime: ...


class SystemClock:
    def now(self) -> _dt.datetime:
        return _dt.datetime.now(UTC)


class FixedClock:
    """A clock that stands still until told to move (for tests)."""

    def __init__(self, at: _dt.datetime) -> None:
        self._at = ensure_utc(at)

    def now(self) -> _dt.datetime:
        return self._at

    def set(self, at: _dt.datetime) -> None:
        self._at = ensure_utc(at)

    def advance(self, delta: _dt.timedelta) -> None:
        self._at += delta


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> _dt.datetime:
    return _dt.datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def ensure_utc(value: _dt.datetime) -> _dt.datetime:
    """Return ``value`` in UTC; a naive datetime is a bug, not an assumption."""
    if value.tzinfo is None:
        raise ValueError("naive datetime: every time in pki is timezone-aware UTC")
    return value.astimezone(UTC)


def isoformat(value: _dt.datetime | None) -> str | None:
    """ISO-8601 UTC with a trailing Z, seconds precision, as the JSON output uses."""
    if value is None:
        return None
    return ensure_utc(value).replace(microsecond=0).isoformat().replace("+00:00", "Z")
