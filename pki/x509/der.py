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


def spki_der(cert_der: bytes) -> bytes | None:
    """The SubjectPublicKeyInfo element (tag and length included) of a certificate, or None if malformed.

    Written out flat, without a helper per element: it runs once per device of the fleet.
    """
    d = cert_der
    try:
        pos = 0
        for _ in range(2):  # into Certificate, then into tbsCertificate: both SEQUENCEs
            if d[pos] != 0x30:
                return None
            first = d[pos + 1]
            pos += 2 + (first & 0x7F if first & 0x80 else 0)
        if d[pos] == 0xA0:  # [0] EXPLICIT version
            first = d[pos + 1]
            n = first & 0x7F if first & 0x80 else 0
            pos += 2 + n + (int.from_bytes(d[pos + 2:pos + 2 + n], "big") if n else first)
        for _ in range(5):  # serialNumber, signature, issuer, validity, subject
            first = d[pos + 1]
            if first < 0x80:
                pos += 2 + first
            else:
                n = first & 0x7F
                pos += 2 + n + int.from_bytes(d[pos + 2:pos + 2 + n], "big")
        if d[pos] != 0x30:
            return None
        first = d[pos + 1]
        if first < 0x80:
            end = pos + 2 + first
        else:
            n = first & 0x7F
            end = pos + 2 + n + int.from_bytes(d[pos + 2:pos + 2 + n], "big")
        if end > len(d):
            return None
        return d[pos:end]
    except IndexError:
        return None
