"""Identifiers users type and read: serials, fingerprints, cursors, codes."""

from __future__ import annotations

import base64
import datetime as _dt
import json
import re
import secrets
import unicodedata

from .errors import InvalidInput

__all__ = [
    "format_serial",
    "parse_serial",
    "parse_fingerprint",
    "looks_like_fingerprint",
    "new_register_code",
    "encode_cursor",
    "decode_cursor",
    "validate_name",
    "validate_path_name",
    "validate_client_id",
    "CLIENT_ID_ALPHABET",
    "parse_duration",
    "parse_time",
    "MAX_SERIAL_OCTETS",
]

MAX_SERIAL_OCTETS = 20
_HEX_SEP = re.compile(r"[:\s]")
_HEX = re.compile(r"^[0-9a-f]+$")


def format_serial(serial: int) -> str:
    """Lowercase hex without separators, an even number of digits (a leading zero kept): the octets
    of the DER INTEGER, as openssl prints a serial, so grepping for openssl's form finds it."""
    text = format(serial, "x")
    return "0" + text if len(text) % 2 else text


def format_crl_number(number: int) -> str:
    """A CRL number as lowercase hex without padding, as stored since migration 0004 (not a serial:
    no leading zero is added)."""
    return format(number, "x")


def parse_serial(text: str) -> str:
    """Accept any case and optional colons; return the canonical form."""
    cleaned = _HEX_SEP.sub("", text.strip()).lower()
    if cleaned.startswith("0x"):
        cleaned = cleaned[2:]
    if not cleaned or not _HEX.match(cleaned) or len(cleaned) > 2 * MAX_SERIAL_OCTETS + 2:
        raise InvalidInput(
            f"{text!r} is not a serial number: give it in hex, e.g. 3a:f1:09 or 3AF109",
            code="invalid_serial",
        )
    return format_serial(int(cleaned, 16))


def _strip_fingerprint_prefix(text: str) -> tuple[bool, str]:
    # Before the colons go: "sha256:" would otherwise become hex-looking "sha256".
    stripped = text.strip()
    if stripped.lower().startswith("sha256:"):
        return True, _HEX_SEP.sub("", stripped[len("sha256:"):]).lower()
    return False, _HEX_SEP.sub("", stripped).lower()


def looks_like_fingerprint(text: str) -> bool:
    prefixed, cleaned = _strip_fingerprint_prefix(text)
    return prefixed or (len(cleaned) == 64 and bool(_HEX.match(cleaned)))


def parse_fingerprint(text: str) -> str:
    _, cleaned = _strip_fingerprint_prefix(text)
    if len(cleaned) != 64 or not _HEX.match(cleaned):
        raise InvalidInput(
            f"{text!r} is not a SHA-256 fingerprint: give 64 hex digits, colons allowed",
            code="invalid_fingerprint",
        )
    return cleaned


def new_register_code() -> str:
    """64 hex characters (256 bits) from the CSPRNG."""
    return secrets.token_hex(32)


_CURSOR = re.compile(r"^[A-Za-z0-9_-]+$")


def encode_cursor(position: dict) -> str:
    raw = json.dumps(position, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, *, keys: tuple[str, ...]) -> dict:
    """Decode a cursor made by :func:`encode_cursor`; refuse anything else."""
    error = InvalidInput(
        "the cursor is not one this server handed out: pass next_cursor from a previous page unchanged",
        code="invalid_cursor",
    )
    if len(cursor) > 512 or not _CURSOR.match(cursor):
        raise error
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        position = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeError) as exc:
        raise error from exc
    if not isinstance(position, dict) or set(position) != set(keys):
        raise error
    for value in position.values():
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise error
        if isinstance(value, int) and not 0 <= value < 2**63:  # a database integer
            raise error
    return position


_MAX_NAME = 64


def validate_name(value: str, *, what: str = "name") -> str:
    """Names, CNs and client ids: 1-64 characters, no NUL or control characters.

    Nothing is trimmed or case-folded: what is checked is what is stored.
    """
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be text", code="invalid_name")
    if not value:
        raise InvalidInput(f"{what} must not be empty", code="invalid_name")
    if len(value) > _MAX_NAME:
        raise InvalidInput(
            f"{what} is {len(value)} characters long; at most {_MAX_NAME} are allowed",
            code="invalid_name",
        )
    for ch in value:
        # Cc: control characters; Cs: lone surrogates (not encodable); Cf:
        # invisible format characters such as U+202E, which make two names
        # look alike.
        if unicodedata.category(ch) in ("Cc", "Cs", "Cf"):
            raise InvalidInput(
                f"{what} contains the control or invisible character U+{ord(ch):04X}; remove it",
                code="invalid_name",
            )
    return value


_DURATION = re.compile(r"^\s*([0-9]{1,9})\s*([smhd])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def format_duration(value: _dt.timedelta) -> str:
    """``8d``, ``1h30m``, ``45s``: the form :func:`parse_duration` reads, never Python's ``8 days, 0:00:00``."""
    total = int(value.total_seconds())
    sign, total = ("-", -total) if total < 0 else ("", total)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if total >= size or (unit == "s" and not parts):
            parts.append(f"{total // size}{unit}")
            total %= size
    return sign + "".join(parts)


def parse_duration(text: str, *, allow_zero: bool = False) -> _dt.timedelta:
    """``90s``, ``15m``, ``1h``, ``7d`` -> timedelta.

    With ``allow_zero``, ``0`` alone (no unit) also means no time at all: a
    grace period or a clock skew of none reads naturally that way.
    """
    if allow_zero and text.strip() == "0":
        return _dt.timedelta(0)
    m = _DURATION.match(text)
    if not m:
        raise InvalidInput(
            f"{text!r} is not a duration: write a number and a unit, e.g. 30m, 1h or 7d",
            code="invalid_duration",
        )
    return _dt.timedelta(seconds=int(m.group(1)) * _UNIT_SECONDS[m.group(2)])


#: Client ids become the certificate CN and, with use_identity_as_username,
#: the broker username: no MQTT wildcards (+ #), no topic separator (/), no
#: spaces or anything a shell or an ACL pattern would read twice.
CLIENT_ID_ALPHABET = "A-Z a-z 0-9 - _ . : @"
_CLIENT_ID_CHARS = re.compile(r"[A-Za-z0-9._:@-]+\Z")


def validate_path_name(value: str, *, what: str, code: str, max_length: int = 64) -> str:
    """A name that is also one segment of an API path: client ids, users, groups, policies.

    The client-id alphabet (no ``/``, ``%``, spaces or controls) and never ``.`` or ``..`` alone, which
    a URL resolves as a dot-segment (RFC 3986 5.2.4): ``/v1/secrets/..`` would reach another route.
    """
    if (not isinstance(value, str) or not 1 <= len(value) <= max_length or not _CLIENT_ID_CHARS.match(value)
            or value in (".", "..")):
        shown = repr(value)[:80] if isinstance(value, str) else type(value).__name__
        raise InvalidInput(
            f"{what} {shown} may only use the characters {CLIENT_ID_ALPHABET} (1-{max_length} of them), "
            "and is not . or .. alone",
            code=code,
        )
    return value


def validate_client_id(value: str) -> str:
    validate_name(value, what="client id")
    return validate_path_name(value, what="client id", code="invalid_client_id")


def parse_time(text: str, *, what: str = "time", naive_is_utc: bool = False) -> _dt.datetime:
    """An ISO-8601 date or time, in UTC.

    A time without a zone is refused unless ``naive_is_utc`` (a date such as
    ``2027-01-31`` in a filter means midnight UTC).
    """
    try:
        value = _dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except (ValueError, AttributeError):
        raise InvalidInput(
            f"{what}: {text!r} is not an ISO-8601 time; write e.g. 2027-01-31 or 2027-01-31T18:00:00Z",
            code="invalid_time",
        ) from None
    if value.tzinfo is None:
        if not naive_is_utc:
            raise InvalidInput(f"{what}: {text!r} has no time zone; add Z or an offset", code="invalid_time")
        value = value.replace(tzinfo=_dt.timezone.utc)
    try:
        return value.astimezone(_dt.timezone.utc)
    except OverflowError:  # 0001-01-01T00:00+01:00 is a year-0 time in UTC, 9999-12-31T23:59-01:00 a year-10000 one
        raise InvalidInput(
            f"{what}: {text!r} is out of range: in UTC it falls before 0001-01-01 or after 9999-12-31",
            code="invalid_time",
        ) from None
