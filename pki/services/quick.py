"""Reads that answer from a local SQLite store without loading the store layer (see pki/store/quick.py).

Each returns None when it cannot answer for sure; the caller then runs the full service operation.
"""

from __future__ import annotations

import ssl
from typing import Any

from ..clock import isoformat
from ..config import Settings
from ..errors import PkiError
from ..ids import looks_like_fingerprint, parse_serial
from ..store import quick

__all__ = ["show_device"]


def show_device(settings: Settings, *, ca: str, sn: str) -> dict[str, Any] | None:
    """:func:`pki.services.renewal.device_detail`'s JSON answer, when the store is SQLite and holds the device."""
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
    detail = {k: row.pop(k) for k in ("cert_der", "ca_cert_der", "ca_chain_pem")}
    answer = {k: isoformat(v) if k in quick._TIMES or k == "supersede_after" else v for k, v in row.items()}
    # renewal.device_detail's PEM fields; the stdlib's encoder writes cryptography's PEM byte for byte
    answer["certificate_pem"] = ssl.DER_cert_to_PEM_cert(detail["cert_der"])
    answer["chain_pem"] = ssl.DER_cert_to_PEM_cert(detail["ca_cert_der"]) + (detail["ca_chain_pem"] or "")
    return answer
