"""Reads that answer from a local SQLite store without loading the store layer (see pki/store/quick.py).

Each returns None when it cannot answer for sure; the caller then runs the full service operation.
"""

from __future__ import annotations

from typing import Any

from ..clock import isoformat
from ..config import Settings
from ..errors import PkiError
from ..ids import looks_like_fingerprint, parse_serial
from ..store import quick

__all__ = ["show_device"]


def show_device(settings: Settings, *, ca: str, sn: str) -> dict[str, Any] | None:
    """:func:`pki.services.devices.show_device`'s JSON answer, when the store is SQLite and holds the device."""
    path = quick.sqlite_path(settings.database_url)
    if path is None or looks_like_fingerprint(ca):
        return None
    try:
        ca_sn, serial = parse_serial(ca), parse_serial(sn)
    except PkiError:
        return None  # the full path says what is wrong with it
    row = quick.device_public(path, instance=settings.instance, ca_sn=ca_sn, sn=serial)
    if row is None:
        return None
    return {k: isoformat(v) if k in quick._TIMES else v for k, v in row.items()}
