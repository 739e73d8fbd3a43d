"""Signed requests: the canonical form, signing, and the server's checks.

A request carries four headers::

    X-Pki-Access-Key: AK.0123456789abcdef0123
    X-Pki-Timestamp:  1767225600                  (Unix seconds, UTC)
    X-Pki-Nonce:      3f9c2b...                   (16-128 of A-Z a-z 0-9 _ -, never reused)
    X-Pki-Signature:  hex(HMAC-SHA256(secret, canonical request))

and the canonical request is these lines joined by ``\\n``::

    PKI-HMAC-SHA256
    <METHOD, upper case>
    <path, exactly as sent: percent-encoded, without the query>
    <query: pairs sorted by (name, value), each part percent-encoded (RFC 3986), joined by &>
    <the X-Pki-Timestamp value>
    <the X-Pki-Nonce value>
    <the access key id>
    <hex SHA-256 of the body bytes (of the empty string when there is none)>

The HMAC key is the access key secret's ASCII bytes.  The server refuses a
timestamp more than :data:`MAX_SKEW` away from its clock, and a nonce it has
seen for the same key within that window (nonces are kept in the database,
so every ``pki serve`` process sharing it refuses the replay).

This module is pure (no store, no web framework): :func:`canonical_request`,
:func:`sign` and :func:`signed_headers` serve the client; :func:`parse_headers`
and :func:`check_signature` the server.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote

from .errors import Unauthenticated

__all__ = [
    "ALGORITHM",
    "MAX_SKEW",
    "HEADER_ACCESS_KEY",
    "HEADER_TIMESTAMP",
    "HEADER_NONCE",
    "HEADER_SIGNATURE",
    "SignatureError",
    "SignedHeaders",
    "canonical_query",
    "canonical_request",
    "sign",
    "signed_headers",
    "parse_headers",
    "check_signature",
]

ALGORITHM = "PKI-HMAC-SHA256"
MAX_SKEW = 300  # seconds, either way
HEADER_ACCESS_KEY = "X-Pki-Access-Key"
HEADER_TIMESTAMP = "X-Pki-Timestamp"
HEADER_NONCE = "X-Pki-Nonce"
HEADER_SIGNATURE = "X-Pki-Signature"
_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,128}\Z")
_TIMESTAMP = re.compile(r"^[0-9]{1,12}\Z")
_SIGNATURE = re.compile(r"^[0-9a-fA-F]{64}\Z")
_KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,40}\Z")


class SignatureError(Unauthenticated):
    """The request is not (validly) signed: HTTP 401."""

    default_code = "signature_invalid"


def _enc(text: str) -> str:
    return quote(text, safe="-_.~")


def canonical_query(query: str) -> str:
    """``b=2&a=1&a=0`` -> ``a=0&a=1&b=2``; the same for any encoding of the same pairs."""
    pairs = parse_qsl(query, keep_blank_values=True)
    return "&".join(f"{_enc(k)}={_enc(v)}" for k, v in sorted(pairs))


def canonical_request(*, method: str, path: str, query: str, timestamp: str, nonce: str, access_key_id: str,
                      body: bytes) -> bytes:
    return "\n".join((
        ALGORITHM, method.upper(), path, canonical_query(query), timestamp, nonce, access_key_id,
        hashlib.sha256(body).hexdigest(),
    )).encode("utf-8")


def sign(secret: bytes, canonical: bytes) -> str:
    return hmac.new(secret, canonical, hashlib.sha256).hexdigest()


def signed_headers(*, access_key_id: str, secret: str | bytes, method: str, path: str, query: str = "",
                   body: bytes = b"", timestamp: int | None = None, nonce: str | None = None) -> dict[str, str]:
    """The four headers for one request (a fresh nonce and the current time unless given)."""
    key = secret.encode("ascii") if isinstance(secret, str) else secret
    ts = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or secrets.token_urlsafe(18)
    canonical = canonical_request(method=method, path=path, query=query, timestamp=ts, nonce=nonce,
                                  access_key_id=access_key_id, body=body)
    return {HEADER_ACCESS_KEY: access_key_id, HEADER_TIMESTAMP: ts, HEADER_NONCE: nonce,
            HEADER_SIGNATURE: sign(key, canonical)}


@dataclass(frozen=True)
class SignedHeaders:
    access_key_id: str
    timestamp: str
    nonce: str
    signature: str

    @property
    def epoch(self) -> int:
        return int(self.timestamp)


def parse_headers(headers: Mapping[str, str], *, now: float) -> SignedHeaders:
    """The signing headers, well-formed and within the skew window, or :class:`SignatureError`."""
    names = (HEADER_ACCESS_KEY, HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE)
    values = [headers.get(n) for n in names]
    missing = [n for n, v in zip(names, values) if not v]
    if missing:
        raise SignatureError(
            f"the request is not signed (missing {', '.join(missing)}); sign it with an access key "
            "(pki.client.Client does) or see /docs for the scheme", code="signature_missing", missing=missing)
    key_id, ts, nonce, signature = values
    for name, value, pattern in ((HEADER_ACCESS_KEY, key_id, _KEY_ID), (HEADER_TIMESTAMP, ts, _TIMESTAMP),
                                 (HEADER_NONCE, nonce, _NONCE), (HEADER_SIGNATURE, signature, _SIGNATURE)):
        if not pattern.match(value):
            raise SignatureError(f"header {name} is malformed; see /docs for the signing scheme",
                                 code="signature_invalid", header=name)
    if abs(int(ts) - now) > MAX_SKEW:
        raise SignatureError(
            f"{HEADER_TIMESTAMP} is more than {MAX_SKEW} s away from the server's clock; check the client's "
            "clock (NTP) and sign the request again", code="signature_expired")
    return SignedHeaders(key_id, ts, nonce, signature.lower())


def check_signature(signed: SignedHeaders, *, secret: bytes, method: str, path: str, query: str,
                    body: bytes) -> None:
    canonical = canonical_request(method=method, path=path, query=query, timestamp=signed.timestamp,
                                  nonce=signed.nonce, access_key_id=signed.access_key_id, body=body)
    if not hmac.compare_digest(sign(secret, canonical), signed.signature):
        raise SignatureError(
            "the signature does not match the request: sign the exact method, path, query and body sent, "
            "with the secret of the access key named", code="signature_invalid")
