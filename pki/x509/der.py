"""Reading one field out of a certificate's DER without parsing the whole of it.

The fleet checks (:mod:`pki.services.checks`) look at the public key of every
device certificate in the store; a full parse costs tens of microseconds a
certificate, a walk over seven TLV headers (RFC 5280 4.1: tbsCertificate's
version, serialNumber, signature, issuer, validity, subject, then
subjectPublicKeyInfo) a few.  Every certificate in the store was parsed in
full when it came in, so the framing is known to be sound; a malformed one
still only yields None.
"""

from __future__ import annotations

__all__ = ["spki_der"]


def _header(der: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of contents, end of the element) of the DER element at ``pos``."""
    tag = der[pos]
    first = der[pos + 1]
    if first < 0x80:
        return tag, pos + 2, pos + 2 + first
    n = first & 0x7F
    start = pos + 2 + n
    if n == 0 or n > 4 or start > len(der):
        raise ValueError("bad DER length")
    return tag, start, start + int.from_bytes(der[pos + 2:start], "big")


def spki_der(cert_der: bytes) -> bytes | None:
    """The SubjectPublicKeyInfo element (tag and length included) of a certificate, or None if malformed."""
    try:
        tag, cert_body, cert_end = _header(cert_der, 0)
        if tag != 0x30:
            return None
        tag, pos, tbs_end = _header(cert_der, cert_body)
        if tag != 0x30 or tbs_end > cert_end:
            return None
        if cert_der[pos] == 0xA0:  # [0] EXPLICIT version
            pos = _header(cert_der, pos)[2]
        for _ in range(5):  # serialNumber, signature, issuer, validity, subject
            pos = _header(cert_der, pos)[2]
        tag, _start, end = _header(cert_der, pos)
        if tag != 0x30 or end > tbs_end:
            return None
        return bytes(cert_der[pos:end])
    except (IndexError, ValueError):
        return None
