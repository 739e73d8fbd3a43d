"""The formulas (pure, no store): what the broker accepts, computable with nothing else.

A device, a factory line or a test can compute a username, a password, a
shared access signature or a group member's secret with these alone.  Each
formula is written once here; the service (credentials.py, groups.py) and
the broker's check (verify.py) call it rather than restating it.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import hmac
import re
import secrets as _secrets
from collections.abc import Sequence
from urllib.parse import quote, unquote

USERNAME_PREFIX = "DeviceCredential"
SAS_PREFIX = "SharedAccessSignature "
#: 256 bits from the CSPRNG, for device secrets and group keys alike.
SECRET_BYTES = 32

DEFAULT_CLOCK_SKEW = _dt.timedelta(seconds=60)

_INDIVIDUAL_PREFIX = "DC."
_GROUP_PREFIX = "DG."
_ACCESS_KEY_ID = re.compile(r"^D[CG]\.[0-9a-f]{20}\Z")
_EPOCH = re.compile(r"^[0-9]{1,12}\Z")
_SAS_FIELDS = frozenset(("sr", "sig", "se"))


def secret_text(raw: bytes) -> str:
    """The form a secret is shown and typed in: standard base64 of its bytes."""
    return base64.b64encode(raw).decode("ascii")


def new_secret() -> str:
    """A fresh secret: :data:`SECRET_BYTES` from the CSPRNG, standard base64."""
    return secret_text(_secrets.token_bytes(SECRET_BYTES))


def _new_access_key_id(prefix: str) -> str:
    # Not secret (it travels in the username), only unique: 80 random bits.
    return prefix + _secrets.token_hex(10)


def username_for(access_key_id: str, instance: str) -> str:
    return f"{USERNAME_PREFIX}|{access_key_id}|{instance}"


def _b64decode_secret(secret: str) -> bytes:
    try:
        return base64.b64decode(secret.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeError):
        # Never echo the value: it is (or was meant to be) a secret.
        raise ValueError("the secret is not standard base64") from None


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    return hmac.digest(key, message, "sha256")


def _password(secret: bytes, client_id: bytes) -> bytes:
    """The HMAC-SHA1 password as base64 bytes; ``secret`` is the secret's text, encoded."""
    return base64.b64encode(hmac.digest(secret, client_id, "sha1"))


def password_for(secret: str, client_id: str) -> str:
    """``Base64(HMAC-SHA1(key = secret as UTF-8, message = client id as UTF-8))``."""
    return _password(secret.encode("utf-8"), client_id.encode("utf-8")).decode("ascii")


def _sas_resource(client_id: str) -> str:
    # The one encoding we accept: every reserved character percent-encoded
    # (what quote_plus and encodeURIComponent give for the client-id alphabet).
    return quote(client_id, safe="")


def _sas_message(sr: str, se: str) -> bytes:
    # ``sr`` as it appears in the token (URL-encoded), as Azure IoT Hub signs it.
    return f"{sr}\n{se}".encode("utf-8")


def sas_token(secret: str, client_id: str, *, expires: int) -> str:
    """``SharedAccessSignature sr=..&sig=..&se=..``, signed with the base64-decoded secret.

    The signed message is ``sr + "\\n" + se`` with ``sr`` as it appears in the
    token (URL-encoded), as Azure IoT Hub does.
    """
    if isinstance(expires, bool) or not isinstance(expires, int) or not 0 <= expires < 10**12:
        raise ValueError("expires must be epoch seconds (a non-negative int)")
    sr = _sas_resource(client_id)
    sig = secret_text(hmac_sha256(_b64decode_secret(secret), _sas_message(sr, str(expires))))
    return f"{SAS_PREFIX}sr={sr}&sig={quote(sig, safe='')}&se={expires}"


def derive_key(group_key: bytes, client_id: str) -> bytes:
    """A group member's secret as bytes: ``HMAC-SHA256(key = group key, message = client id)``."""
    return hmac_sha256(group_key, client_id.encode("utf-8"))


def derive_secret(group_key: str, client_id: str) -> str:
    """A group member's secret: ``Base64(HMAC-SHA256(key = Base64-decoded group key, message = client id))``."""
    return secret_text(derive_key(_b64decode_secret(group_key), client_id))


class _Key:
    """One secret, in the two forms the formulas key HMAC with; hides itself from repr."""

    __slots__ = ("text", "raw", "password")

    def __init__(self, raw: bytes, *, client_id: str | None = None) -> None:
        self.raw = raw
        self.text = base64.b64encode(raw)
        # The HMAC-SHA1 password depends only on the secret and the client id:
        # for a credential bound to one client id, compute it once.
        self.password = _password(self.text, client_id.encode("utf-8")) if client_id else None

    def __repr__(self) -> str:
        return "<secret (hidden)>"


def _parse_sas(body: str) -> tuple[str, bytes, str, int] | None:
    fields: dict[str, str] = {}
    for part in body.split("&"):
        name, sep, value = part.partition("=")
        if not sep or name in fields or name not in _SAS_FIELDS:
            return None
        fields[name] = value
    if fields.keys() != _SAS_FIELDS or not _EPOCH.match(fields["se"]):
        return None
    try:
        sig = base64.b64decode(unquote(fields["sig"], errors="strict").encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeError):
        return None
    if len(sig) != 32:
        return None
    return fields["sr"], sig, fields["se"], int(fields["se"])


def _check(password: str, keys: Sequence[_Key], client_id: str, now_epoch: float, skew: float) -> str | None:
    """None if ``password`` passes under one of ``keys``, else the reason (for the log only).

    Every key is tried, without short-circuit, and each comparison is
    constant-time: how long a check takes does not say which key, or how
    much of a password, was right.
    """
    if password.startswith(SAS_PREFIX):
        parsed = _parse_sas(password[len(SAS_PREFIX):])
        if parsed is None:
            return "malformed_token"
        sr, sig, se_text, se = parsed
        if sr != _sas_resource(client_id):
            return "token_for_another_client_id"
        message = _sas_message(sr, se_text)
        ok = False
        for key in keys:
            ok |= hmac.compare_digest(hmac_sha256(key.raw, message), sig)
        if not ok:
            return "wrong_signature"
        if now_epoch > se + skew:
            return "token_expired"
        return None
    try:
        given = password.encode("utf-8")
    except UnicodeError:
        return "malformed_password"
    ok = False
    message = client_id.encode("utf-8")
    for key in keys:
        expected = key.password if key.password is not None else _password(key.text, message)
        ok |= hmac.compare_digest(expected, given)
    return None if ok else "wrong_password"


def check_password(
    password: str,
    *,
    secrets: Sequence[str],
    client_id: str,
    now: _dt.datetime,
    clock_skew: _dt.timedelta = DEFAULT_CLOCK_SKEW,
) -> bool:
    """Does ``password`` (either format) pass for ``client_id`` under one of ``secrets``?

    The pure form of the broker's check, with no store and no status:
    useful to a device simulator, and what the known-answer tests exercise.
    """
    keys = [_Key(_b64decode_secret(s)) for s in secrets]
    return _check(password, keys, client_id, now.timestamp(), clock_skew.total_seconds()) is None
