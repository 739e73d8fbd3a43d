"""Device secrets: one device, one secret; enrollment groups; the broker's password check.

Two parts:

- *The formulas* (pure, no store): :func:`password_for`, :func:`sas_token`,
  :func:`derive_secret`, :func:`check_password`.  A device, a factory line or
  a test can compute what the broker will accept with nothing but these.
- *The service*: register, show, refresh, unregister, activate, deactivate,
  list; enrollment groups; and :func:`verify`, the check a broker calls.

Secrets never touch the store in clear: each is sealed by the keystore
(AES-256-GCM under the master key) with its access key id as associated
data.  Nothing here logs, prints or puts a secret or a password into an
error; a refused check tells its caller only "refused", and the reason goes
to the ``pki.secrets`` logger.

The check is on the broker's connect path, so it must be cheap: see
:func:`verify` for what is cached and what is read on every check.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import hmac
import logging
import re
import secrets as _secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from pydantic import BaseModel, ConfigDict, Field, model_serializer

from ..errors import Conflict, InvalidInput, InvalidState, NotFound, PermissionDenied
from ..ids import validate_client_id, validate_name
from ..store import secret_repos as repos
from ..store.secret_models import GROUP_STATUSES, SECRET_STATUSES, DeviceSecret, SecretGroup
from .paging import after_position, page_limit, page_of, parse_status
from . import audit
from .context import Context
from .schemas import Page, UtcTime

__all__ = [
    # the formulas
    "USERNAME_PREFIX",
    "SAS_PREFIX",
    "SECRET_BYTES",
    "new_secret",
    "username_for",
    "password_for",
    "sas_token",
    "derive_secret",
    "hmac_sha256",
    "check_password",
    # the service
    "DEFAULT_GRACE",
    "MAX_GRACE",
    "DEFAULT_CLOCK_SKEW",
    "SecretPublic",
    "GroupPublic",
    "MemberPublic",
    "register_secret",
    "show_secret",
    "refresh_secret",
    "unregister_secret",
    "activate_secret",
    "deactivate_secret",
    "list_secrets",
    "create_group",
    "show_group",
    "list_groups",
    "enable_group",
    "disable_group",
    "derive_member_secret",
    "verify",
    "authenticate",
]

log = logging.getLogger("pki.secrets")

USERNAME_PREFIX = "DeviceCredential"
SAS_PREFIX = "SharedAccessSignature "
#: 256 bits from the CSPRNG, for device secrets and group keys alike.
SECRET_BYTES = 32

DEFAULT_GRACE = _dt.timedelta(hours=24)
MAX_GRACE = _dt.timedelta(days=30)
DEFAULT_CLOCK_SKEW = _dt.timedelta(seconds=60)
MAX_CLOCK_SKEW = _dt.timedelta(minutes=10)

_INDIVIDUAL_PREFIX = "DC."
_GROUP_PREFIX = "DG."
_ACCESS_KEY_ID = re.compile(r"^D[CG]\.[0-9a-f]{20}\Z")
_EPOCH = re.compile(r"^[0-9]{1,12}\Z")
# Generous bounds for what a device may send; anything longer is not ours.
_MAX_USERNAME = 256
_MAX_PASSWORD = 1024
_SAS_FIELDS = frozenset(("sr", "sig", "se"))


# == the formulas ==========================================================================


def new_secret() -> str:
    """A fresh secret: :data:`SECRET_BYTES` from the CSPRNG, standard base64."""
    return base64.b64encode(_secrets.token_bytes(SECRET_BYTES)).decode("ascii")


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


def password_for(secret: str, client_id: str) -> str:
    """``Base64(HMAC-SHA1(key = secret as UTF-8, message = client id as UTF-8))``."""
    return base64.b64encode(hmac.digest(secret.encode("utf-8"), client_id.encode("utf-8"), "sha1")).decode("ascii")


def _sas_resource(client_id: str) -> str:
    # The one encoding we accept: every reserved character percent-encoded
    # (what quote_plus and encodeURIComponent give for the client-id alphabet).
    return quote(client_id, safe="")


def sas_token(secret: str, client_id: str, *, expires: int) -> str:
    """``SharedAccessSignature sr=..&sig=..&se=..``, signed with the base64-decoded secret.

    The signed message is ``sr + "\\n" + se`` with ``sr`` as it appears in the
    token (URL-encoded), as Azure IoT Hub does.
    """
    if isinstance(expires, bool) or not isinstance(expires, int) or not 0 <= expires < 10**12:
        raise ValueError("expires must be epoch seconds (a non-negative int)")
    sr = _sas_resource(client_id)
    sig = base64.b64encode(hmac_sha256(_b64decode_secret(secret), f"{sr}\n{expires}".encode("utf-8")))
    return f"{SAS_PREFIX}sr={sr}&sig={quote(sig.decode('ascii'), safe='')}&se={expires}"


def derive_secret(group_key: str, client_id: str) -> str:
    """A group member's secret: ``Base64(HMAC-SHA256(key = Base64-decoded group key, message = client id))``."""
    return base64.b64encode(hmac_sha256(_b64decode_secret(group_key), client_id.encode("utf-8"))).decode("ascii")


class _Key:
    """One secret, in the two forms the formulas key HMAC with; hides itself from repr."""

    __slots__ = ("text", "raw", "password")

    def __init__(self, raw: bytes, *, client_id: str | None = None) -> None:
        self.raw = raw
        self.text = base64.b64encode(raw)
        # The HMAC-SHA1 password depends only on the secret and the client id:
        # for a credential bound to one client id, compute it once.
        self.password = (
            base64.b64encode(hmac.digest(self.text, client_id.encode("utf-8"), "sha1")) if client_id else None
        )

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
        message = f"{sr}\n{se_text}".encode("utf-8")
        ok = False
        for key in keys:
            ok |= hmac.compare_digest(hmac.digest(key.raw, message, "sha256"), sig)
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
        expected = key.password if key.password is not None else base64.b64encode(hmac.digest(key.text, message, "sha1"))
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


# == public shapes ========================================================================


class _Public(BaseModel):
    model_config = ConfigDict(frozen=True)

    @model_serializer(mode="wrap")
    def _without_absent_secret(self, handler):
        # DESIGN: `secret` appears only when created or asked for, also inside a Page.
        data = handler(self)
        if isinstance(data, dict) and "secret" in data and data["secret"] is None:
            del data["secret"]
        return data

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class SecretPublic(_Public):
    client_id: str
    access_key_id: str
    status: str
    instance: str
    username: str
    #: Until when the previous secret still passes; null when none does.
    secondary_expires_at: UtcTime | None
    created_at: UtcTime
    updated_at: UtcTime
    status_changed_at: UtcTime
    rotated_at: UtcTime | None
    secret: str | None = Field(default=None, repr=False)

    @classmethod
    def of(cls, row: DeviceSecret, *, now: _dt.datetime, secret: str | None = None) -> "SecretPublic":
        grace = row.secondary_expires_at if row.sealed_secondary is not None else None
        return cls(
            client_id=row.client_id, access_key_id=row.access_key_id, status=row.status, instance=row.instance,
            username=username_for(row.access_key_id, row.instance),
            secondary_expires_at=grace if grace is not None and grace > now else None,
            created_at=row.created_at, updated_at=row.updated_at, status_changed_at=row.status_changed_at,
            rotated_at=row.rotated_at, secret=secret,
        )


class GroupPublic(_Public):
    name: str
    access_key_id: str
    status: str
    instance: str
    username: str
    created_at: UtcTime
    updated_at: UtcTime
    status_changed_at: UtcTime

    @classmethod
    def of(cls, row: SecretGroup) -> "GroupPublic":
        return cls(
            name=row.name, access_key_id=row.access_key_id, status=row.status, instance=row.instance,
            username=username_for(row.access_key_id, row.instance), created_at=row.created_at,
            updated_at=row.updated_at, status_changed_at=row.status_changed_at,
        )


class MemberPublic(_Public):
    """A group member: no row of its own unless disabled on its own."""

    client_id: str
    group: str
    access_key_id: str
    username: str
    #: The member's own status; the group's status applies on top of it.
    status: str
    group_status: str
    secret: str | None = Field(default=None, repr=False)


# == the service: device secrets ============================================================


def _not_found(client_id: str, instance: str) -> NotFound:
    return NotFound(
        f"client id {client_id!r} has no secret in instance {instance!r}; `pki secret register {client_id}` "
        "creates one, `pki secret list` shows the existing ones",
        code="secret_not_found",
    )


def _resolve(session, ctx: Context, client_id: str, *, lock: bool = False) -> DeviceSecret:
    row = repos.get_secret(session, instance=ctx.instance, client_id=client_id, lock=lock)
    if row is None:
        raise _not_found(client_id, ctx.instance)
    return row


def _check_grace(grace: _dt.timedelta) -> _dt.timedelta:
    if not isinstance(grace, _dt.timedelta):
        raise TypeError("grace must be a timedelta")
    if not _dt.timedelta(0) <= grace <= MAX_GRACE:
        raise InvalidInput(
            f"the grace period must be between 0 (none) and {MAX_GRACE.days} days, e.g. --grace 24h",
            code="invalid_grace",
        )
    return grace


def _seal(ctx: Context, raw: bytes, access_key_id: str) -> bytes:
    return ctx.keystore.seal_secret(raw, key_id=access_key_id)


def _audit_read(ctx: Context, operation: str, client_id: str, **details) -> None:
    """Reading a secret changes nothing, but who saw one belongs on the audit log."""
    with ctx.store.transaction() as session:
        audit.record_change(session, ctx, operation, subject=client_id, **details)


def register_secret(ctx: Context, *, client_id: str) -> SecretPublic:
    """A new credential for ``client_id``; the answer is the only time the secret is shown unasked."""
    validate_client_id(client_id)
    raw = _secrets.token_bytes(SECRET_BYTES)
    access_key_id = _new_access_key_id(_INDIVIDUAL_PREFIX)
    sealed = _seal(ctx, raw, access_key_id)  # before the transaction: no master key, no row
    now = ctx.clock.now()
    with ctx.store.transaction() as session:
        existing = repos.get_secret(session, instance=ctx.instance, client_id=client_id)
        if existing is not None:
            raise Conflict(
                f"client id {client_id!r} already has a secret (access key id {existing.access_key_id}); "
                f"`pki secret refresh {client_id}` replaces it",
                code="secret_exists",
                access_key_id=existing.access_key_id,
            )
        row = repos.insert_secret(
            session,
            DeviceSecret(
                instance=ctx.instance, client_id=client_id, access_key_id=access_key_id, status="ACTIVE",
                sealed_primary=sealed, version=1, created_at=now, updated_at=now, status_changed_at=now,
            ),
        )
        public = SecretPublic.of(row, now=now, secret=base64.b64encode(raw).decode("ascii"))
        audit.record_change(session, ctx, "secret.register", subject=client_id, access_key_id=access_key_id)
    log.info("secret registered: instance=%s client_id=%r access_key_id=%s", ctx.instance, client_id, access_key_id)
    return public


def show_secret(ctx: Context, *, client_id: str, reveal: bool = False) -> SecretPublic:
    validate_client_id(client_id)
    now = ctx.clock.now()
    with ctx.store.transaction(readonly=True) as session:
        row = _resolve(session, ctx, client_id)
    secret = None
    if reveal:
        secret = base64.b64encode(ctx.keystore.open_secret(row.sealed_primary, key_id=row.access_key_id)).decode()
        _audit_read(ctx, "secret.reveal", client_id)
        log.info("secret revealed: instance=%s client_id=%r access_key_id=%s", ctx.instance, client_id,
                 row.access_key_id)
    return SecretPublic.of(row, now=now, secret=secret)


def refresh_secret(ctx: Context, *, client_id: str, grace: _dt.timedelta = DEFAULT_GRACE) -> SecretPublic:
    """A new primary; the old one stays valid as secondary for ``grace`` (0: not at all).

    A refresh during an earlier grace period ends that one: only the
    previous primary is kept, never two old secrets.
    """
    validate_client_id(client_id)
    _check_grace(grace)
    raw = _secrets.token_bytes(SECRET_BYTES)
    now = ctx.clock.now()
    with ctx.store.transaction() as session:
        row = _resolve(session, ctx, client_id, lock=True)
        sealed = _seal(ctx, raw, row.access_key_id)
        keep = grace > _dt.timedelta(0)
        repos.update_secret(
            session, row=row, now=now, sealed_primary=sealed,
            sealed_secondary=row.sealed_primary if keep else None,
            secondary_expires_at=now + grace if keep else None, rotated_at=now,
        )
        public = SecretPublic.of(row, now=now, secret=base64.b64encode(raw).decode("ascii"))
        audit.record_change(session, ctx, "secret.refresh", subject=client_id, grace_s=int(grace.total_seconds()))
    _forget(ctx)
    log.info("secret refreshed: instance=%s client_id=%r access_key_id=%s grace=%ss", ctx.instance, client_id,
             row.access_key_id, int(grace.total_seconds()))
    return public


def unregister_secret(ctx: Context, *, client_id: str) -> dict:
    validate_client_id(client_id)
    with ctx.store.transaction() as session:
        row = _resolve(session, ctx, client_id, lock=True)
        repos.delete_secret(session, row=row)
        audit.record_change(session, ctx, "secret.unregister", subject=client_id)
    _forget(ctx)
    log.info("secret unregistered: instance=%s client_id=%r access_key_id=%s", ctx.instance, client_id,
             row.access_key_id)
    return {"client_id": client_id, "access_key_id": row.access_key_id, "deleted": True}


def _set_status(ctx: Context, client_id: str, status: str) -> SecretPublic:
    validate_client_id(client_id)
    now = ctx.clock.now()
    with ctx.store.transaction() as session:
        row = _resolve(session, ctx, client_id, lock=True)
        if row.status != status:
            repos.update_secret(session, row=row, now=now, status=status, status_changed_at=now)
            audit.record_change(session, ctx, "secret.activate" if status == "ACTIVE" else "secret.deactivate",
                                subject=client_id)
        public = SecretPublic.of(row, now=now)
    _forget(ctx)
    return public


def activate_secret(ctx: Context, *, client_id: str, group: str | None = None):
    """ACTIVE again; with ``group``, lift the member's own block in that group."""
    if group is not None:
        return _set_member(ctx, group=group, client_id=client_id, blocked=False)
    return _set_status(ctx, client_id, "ACTIVE")


def deactivate_secret(ctx: Context, *, client_id: str, group: str | None = None):
    """INACTIVE: every check fails until activated.  With ``group``, block one member of it.

    An INACTIVE individual credential also shuts its client id out of every
    group: deactivating a device should not leave it a side door.
    """
    if group is not None:
        return _set_member(ctx, group=group, client_id=client_id, blocked=True)
    return _set_status(ctx, client_id, "INACTIVE")


def list_secrets(
    ctx: Context, *, status: str | None = None, limit: int | None = None, cursor: str | None = None
) -> Page:
    wanted = parse_status(status, SECRET_STATUSES)
    size = page_limit(limit)
    after = after_position(cursor)
    now = ctx.clock.now()
    with ctx.store.transaction(readonly=True) as session:
        rows = repos.list_secrets(session, instance=ctx.instance, status=wanted, after_id=after, limit=size + 1)
    return page_of(rows, size, lambda r: SecretPublic.of(r, now=now))


# == the service: enrollment groups =========================================================


def _group_name(name: str) -> str:
    return validate_name(name, what="group name")


def _resolve_group(session, ctx: Context, name: str, *, lock: bool = False) -> SecretGroup:
    row = repos.get_group(session, instance=ctx.instance, name=name, lock=lock)
    if row is None:
        raise NotFound(
            f"no enrollment group {name!r} in instance {ctx.instance!r}; `pki secret group list` shows them, "
            f"`pki secret group create {name}` makes it",
            code="group_not_found",
        )
    return row


def create_group(ctx: Context, *, name: str) -> GroupPublic:
    """A new group with a fresh key in custody; the key itself is never shown, only derived secrets."""
    _group_name(name)
    access_key_id = _new_access_key_id(_GROUP_PREFIX)
    sealed = _seal(ctx, _secrets.token_bytes(SECRET_BYTES), access_key_id)
    now = ctx.clock.now()
    with ctx.store.transaction() as session:
        if repos.get_group(session, instance=ctx.instance, name=name) is not None:
            raise Conflict(
                f"enrollment group {name!r} already exists; `pki secret derive --group {name} CLIENT_ID` "
                "gives its members' secrets",
                code="group_exists",
            )
        row = repos.insert_group(
            session,
            SecretGroup(
                instance=ctx.instance, name=name, access_key_id=access_key_id, status="ACTIVE", sealed_key=sealed,
                version=1, created_at=now, updated_at=now, status_changed_at=now,
            ),
        )
        public = GroupPublic.of(row)
        audit.record_change(session, ctx, "secret.group.create", subject=name, access_key_id=access_key_id)
    log.info("enrollment group created: instance=%s group=%r access_key_id=%s", ctx.instance, name, access_key_id)
    return public


def show_group(ctx: Context, *, name: str) -> GroupPublic:
    _group_name(name)
    with ctx.store.transaction(readonly=True) as session:
        return GroupPublic.of(_resolve_group(session, ctx, name))


def list_groups(
    ctx: Context, *, status: str | None = None, limit: int | None = None, cursor: str | None = None
) -> Page:
    wanted = parse_status(status, GROUP_STATUSES)
    size = page_limit(limit)
    after = after_position(cursor)
    with ctx.store.transaction(readonly=True) as session:
        rows = repos.list_groups(session, instance=ctx.instance, status=wanted, after_id=after, limit=size + 1)
    return page_of(rows, size, GroupPublic.of)


def _set_group_status(ctx: Context, name: str, status: str) -> GroupPublic:
    _group_name(name)
    now = ctx.clock.now()
    with ctx.store.transaction() as session:
        row = _resolve_group(session, ctx, name, lock=True)
        if row.status != status:
            repos.update_group(session, row=row, now=now, status=status, status_changed_at=now)
            audit.record_change(session, ctx, "secret.group.enable" if status == "ACTIVE" else "secret.group.disable",
                                subject=name)
        public = GroupPublic.of(row)
    _forget(ctx)
    return public


def enable_group(ctx: Context, *, name: str) -> GroupPublic:
    return _set_group_status(ctx, name, "ACTIVE")


def disable_group(ctx: Context, *, name: str) -> GroupPublic:
    """Every member's check fails until the group is enabled again."""
    return _set_group_status(ctx, name, "INACTIVE")


def _member(row: SecretGroup, client_id: str, *, blocked: bool, secret: str | None = None) -> MemberPublic:
    return MemberPublic(
        client_id=client_id, group=row.name, access_key_id=row.access_key_id,
        username=username_for(row.access_key_id, row.instance), status="INACTIVE" if blocked else "ACTIVE",
        group_status=row.status, secret=secret,
    )


def _set_member(ctx: Context, *, group: str, client_id: str, blocked: bool) -> MemberPublic:
    validate_client_id(client_id)
    _group_name(group)
    now = ctx.clock.now()
    with ctx.store.transaction() as session:
        row = _resolve_group(session, ctx, group, lock=True)
        if blocked:
            repos.block_member(session, group_id=row.id, client_id=client_id, now=now)
        else:
            repos.unblock_member(session, group_id=row.id, client_id=client_id)
        audit.record_change(session, ctx, "secret.deactivate" if blocked else "secret.activate",
                            subject=client_id, group=group)
        public = _member(row, client_id, blocked=blocked)
    _forget(ctx)
    log.info("group member %s: instance=%s group=%r client_id=%r", "blocked" if blocked else "unblocked",
             ctx.instance, group, client_id)
    return public


def derive_member_secret(ctx: Context, *, group: str, client_id: str) -> MemberPublic:
    """The secret of ``client_id`` as a member of ``group``, for the factory line."""
    validate_client_id(client_id)
    _group_name(group)
    with ctx.store.transaction(readonly=True) as session:
        row = _resolve_group(session, ctx, group)
        blocked = repos.is_member_blocked(session, group_id=row.id, client_id=client_id)
    if row.status != "ACTIVE":
        raise InvalidState(
            f"enrollment group {group!r} is INACTIVE; `pki secret group enable {group}` first", code="group_inactive"
        )
    if blocked:
        raise InvalidState(
            f"client id {client_id!r} is disabled in group {group!r}; "
            f"`pki secret activate {client_id} --group {group}` first",
            code="member_inactive",
        )
    group_key = ctx.keystore.open_secret(row.sealed_key, key_id=row.access_key_id)
    secret = base64.b64encode(hmac_sha256(group_key, client_id.encode("utf-8"))).decode("ascii")
    _audit_read(ctx, "secret.derive", client_id, group=group)
    log.info("member secret derived: instance=%s group=%r client_id=%r", ctx.instance, group, client_id)
    return _member(row, client_id, blocked=False, secret=secret)


# == the check ==============================================================================


@dataclass(frozen=True, slots=True)
class _Material:
    """Unsealed keys of one row at one version."""

    version: int
    keys: tuple[_Key, ...]  # individual: (primary, secondary?) ; group: (group key,)


_MAX_CACHED = 100_000


class _Verifier:
    """Per-Context caches for :func:`verify`.

    - ``material``: access key id -> unsealed keys at a row version.  A row
      changes version on every change, so an entry is never used for a
      different secret; entries of deleted rows are never reached (the
      per-check read finds no row).
    - ``states``: the row as last read, with when; used only when the caller
      allows ``max_status_age`` > 0.
    """

    def __init__(self, engine) -> None:
        self.engine = engine
        self.lookup = repos.VerifyLookup(engine)
        self.material: dict[str, _Material] = {}
        self.states: dict[tuple[str, str], tuple[float, Any]] = {}
        self.lock = threading.Lock()

    def clear(self) -> None:
        with self.lock:
            self.material.clear()
            self.states.clear()

    def close(self) -> None:
        """Context.close(): drop the unsealed secrets and the held connections."""
        self.clear()
        self.lookup.close()

    def remember(self, table: dict, key, value) -> None:
        with self.lock:
            if len(table) >= _MAX_CACHED:
                table.clear()  # crude but bounded; refilling costs one unseal per credential
            table[key] = value


_VERIFIER_KEY = ("secrets", "verifier")


def _verifier(ctx: Context) -> _Verifier:
    return ctx.memo(_VERIFIER_KEY, lambda: _Verifier(ctx.store.engine))


def _forget(ctx: Context) -> None:
    """After a change made through this Context, drop what the check cached."""
    verifier = ctx.peek(_VERIFIER_KEY)
    if verifier is not None:
        verifier.clear()


def _state(verifier: _Verifier, key: tuple[str, str], fetch, max_age: float):
    if max_age > 0:
        hit = verifier.states.get(key)
        if hit is not None and time.monotonic() - hit[0] < max_age:
            return hit[1]
    state = fetch()
    if max_age > 0:
        verifier.remember(verifier.states, key, (time.monotonic(), state))
    return state


def _individual_keys(ctx: Context, verifier: _Verifier, access_key_id: str, state, now: _dt.datetime):
    material = verifier.material.get(access_key_id)
    if material is None or material.version != state.version:
        keys = [_Key(ctx.keystore.open_secret(state.sealed_primary, key_id=access_key_id), client_id=state.client_id)]
        if state.sealed_secondary is not None:
            keys.append(
                _Key(ctx.keystore.open_secret(state.sealed_secondary, key_id=access_key_id), client_id=state.client_id)
            )
        material = _Material(version=state.version, keys=tuple(keys))
        verifier.remember(verifier.material, access_key_id, material)
    keys = material.keys
    if len(keys) > 1 and not (state.secondary_expires_at is not None and now < state.secondary_expires_at):
        keys = keys[:1]  # the grace period is over
    return keys


def _group_key(ctx: Context, verifier: _Verifier, access_key_id: str, state) -> bytes:
    material = verifier.material.get(access_key_id)
    if material is None or material.version != state.version:
        raw = ctx.keystore.open_secret(state.sealed_key, key_id=access_key_id)
        material = _Material(version=state.version, keys=(_Key(raw),))
        verifier.remember(verifier.material, access_key_id, material)
    return material.keys[0].raw


def _evaluate(ctx: Context, *, client_id, username, password, skew: float, max_age: float) -> tuple[str | None, str]:
    """(reason or None for a pass, access key id or "-") - the reason is for the log only."""
    if not (isinstance(client_id, str) and isinstance(username, str) and isinstance(password, str)):
        return "malformed_request", "-"
    if len(username) > _MAX_USERNAME or len(password) > _MAX_PASSWORD:
        return "oversized_credentials", "-"
    try:
        validate_client_id(client_id)
    except InvalidInput:
        return "invalid_client_id", "-"
    prefix, sep1, rest = username.partition("|")
    access_key_id, sep2, instance = rest.partition("|")
    if prefix != USERNAME_PREFIX or not sep1 or not sep2 or not _ACCESS_KEY_ID.match(access_key_id):
        return "malformed_username", "-"
    if instance != ctx.instance:
        return "wrong_instance", access_key_id
    verifier = _verifier(ctx)
    now = ctx.clock.now()
    if access_key_id.startswith(_INDIVIDUAL_PREFIX):
        state = _state(
            verifier, (access_key_id, ""),
            lambda: verifier.lookup.secret(access_key_id=access_key_id, instance=instance), max_age,
        )
        if state is None:
            return "unknown_access_key_id", access_key_id
        if state.client_id != client_id:
            return "access_key_id_of_another_client_id", access_key_id
        if state.status != "ACTIVE":
            return "credential_inactive", access_key_id
        keys = _individual_keys(ctx, verifier, access_key_id, state, now)
    else:
        state = _state(
            verifier, (access_key_id, client_id),
            lambda: verifier.lookup.group(access_key_id=access_key_id, instance=instance, client_id=client_id),
            max_age,
        )
        if state is None:
            return "unknown_access_key_id", access_key_id
        if state.status != "ACTIVE":
            return "group_inactive", access_key_id
        if state.member_blocked:
            return "member_inactive", access_key_id
        if state.individual_status == "INACTIVE":
            return "credential_inactive", access_key_id
        raw = hmac_sha256(_group_key(ctx, verifier, access_key_id, state), client_id.encode("utf-8"))
        keys = (_Key(raw),)
    return _check(password, keys, client_id, now.timestamp(), skew), access_key_id


def _check_skew(clock_skew: _dt.timedelta) -> float:
    if not isinstance(clock_skew, _dt.timedelta) or not _dt.timedelta(0) <= clock_skew <= MAX_CLOCK_SKEW:
        raise InvalidInput(
            f"the clock-skew allowance must be between 0 and {int(MAX_CLOCK_SKEW.total_seconds())} seconds",
            code="invalid_clock_skew",
        )
    return clock_skew.total_seconds()


def verify(
    ctx: Context,
    *,
    client_id: str,
    username: str,
    password: str,
    clock_skew: _dt.timedelta = DEFAULT_CLOCK_SKEW,
    max_status_age: float = 0.0,
) -> bool:
    """The broker's check: True if the device may connect, False otherwise.

    ``username`` is ``DeviceCredential|<access key id>|<instance>``; the
    password is ``Base64(HMAC-SHA1(secret, client id))`` or a shared access
    signature token.  An individual credential passes with its primary and,
    during a grace period, its secondary secret; a group member with the
    secret derived from the group key, unless the group is disabled, the
    member is blocked, or the client id's own credential is INACTIVE.

    Cost and freshness: the unsealed secrets are cached per Context by
    (access key id, row version), so the AES-GCM unseal happens once per
    credential and rotation.  The row itself (status, version, grace) is read
    on every check with one indexed SELECT: a deactivation, a refresh or an
    unregister made anywhere - another process, another host - takes effect
    at the next check.  A caller that prefers throughput to that guarantee
    may pass ``max_status_age`` (seconds) to reuse a row read for that long;
    changes made through the same Context still take effect at once.

    The reason for a refusal goes to the ``pki.secrets`` logger, never to the
    caller; the password never goes anywhere.
    """
    skew = _check_skew(clock_skew)
    reason, access_key_id = _evaluate(
        ctx, client_id=client_id, username=username, password=password, skew=skew, max_age=float(max_status_age)
    )
    if reason is None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("secret check passed: instance=%s client_id=%r access_key_id=%s", ctx.instance, client_id,
                      access_key_id)
        return True
    shown = client_id[:80] if isinstance(client_id, str) else type(client_id).__name__
    log.info("secret check refused: instance=%s client_id=%r access_key_id=%s reason=%s", ctx.instance, shown,
             access_key_id, reason)
    return False


def authenticate(
    ctx: Context,
    *,
    client_id: str,
    username: str,
    password: str,
    clock_skew: _dt.timedelta = DEFAULT_CLOCK_SKEW,
    max_status_age: float = 0.0,
) -> dict:
    """:func:`verify` for front ends: a small answer on a pass, ``authentication_failed`` otherwise."""
    if not verify(ctx, client_id=client_id, username=username, password=password, clock_skew=clock_skew,
                  max_status_age=max_status_age):
        raise PermissionDenied(
            "the username and password were refused; the server's log (logger pki.secrets) says why",
            code="authentication_failed",
        )
    return {"result": "pass", "client_id": client_id}
