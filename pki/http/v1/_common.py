"""What every /v1 router shares: the caller dependency, rendering, duration parsing."""

from __future__ import annotations

import datetime as _dt
from typing import Any

from fastapi import Depends, Query
from fastapi.responses import JSONResponse

from ...ids import parse_duration
from ..deps import Caller, signed

__all__ = ["CALLER", "Caller", "out", "duration", "LIMIT", "CURSOR"]

CALLER = Depends(signed)
LIMIT = Query(None, ge=1, le=1000, description="Page size (default 100).")
CURSOR = Query(None, max_length=1024, description="next_cursor of the previous page.")


def out(value: Any, status: int = 200) -> JSONResponse:
    """The service's answer as the CLI's --json renders it."""
    data = value.as_json() if hasattr(value, "as_json") else value
    return JSONResponse(data, status_code=status)


def duration(text: str) -> _dt.timedelta:
    return parse_duration(text, allow_zero=True)
