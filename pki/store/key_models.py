"""The master keys the store has been sealed under: ids and file paths, never a key (migration 0014)."""

from __future__ import annotations

import datetime as _dt

from sqlalchemy import Column, String, Text
from sqlmodel import Field, SQLModel

from .types import UTCDateTime

__all__ = ["MasterKeyRecord"]


class MasterKeyRecord(SQLModel, table=True):
    """``state``: ``current`` (new blobs are sealed under it), ``previous`` (rows may still be
    sealed under it: a rotation is under way), ``retired`` (no row uses it; the file may go)."""

    __tablename__ = "master_key"

    key_id: str = Field(sa_column=Column(String(16), primary_key=True))
    path: str = Field(sa_column=Column(Text, nullable=False))
    state: str = Field(max_length=16)
    created_at: _dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
    retired_at: _dt.datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
