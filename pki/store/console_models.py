"""Tables of the browser console (``/console``): its sign-in sessions and sign-in throttles.

Both live in the database, like the API's nonces and rate buckets (``http_models``), so that several
``pki serve`` processes share one session and one throttle.
"""

from __future__ import annotations

import datetime as _dt

from sqlalchemy import Column, Integer, String
from sqlmodel import Field, SQLModel

from .types import UTCDateTime

__all__ = ["ConsoleSession", "ConsoleThrottle"]


class ConsoleSession(SQLModel, table=True):
    """One signed-in browser: only the SHA-256 of its cookie is kept, so a leaked table signs no one in."""

    __tablename__ = "console_session"

    token_sha256: str = Field(sa_column=Column(String(64), primary_key=True))
    access_key_id: str = Field(sa_column=Column(String(40), nullable=False, index=True))
    created_at: _dt.datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    last_seen_at: _dt.datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    expires_at: _dt.datetime = Field(sa_column=Column(UTCDateTime, nullable=False, index=True))


class ConsoleThrottle(SQLModel, table=True):
    """Failed sign-ins of one source address or one access key in the current window."""

    __tablename__ = "console_throttle"

    key: str = Field(sa_column=Column(String(96), primary_key=True))
    failures: int = Field(sa_column=Column(Integer, nullable=False))
    window_start: _dt.datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
