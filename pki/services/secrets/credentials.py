"""Device secrets, one per client id: register, show, refresh, unregister, activate, deactivate, list.

Secrets never touch the store in clear: each is sealed by the keystore
(AES-256-GCM under the master key) with its access key id as associated
data.  Nothing here logs, prints or puts a secret into an error.
"""

from __future__ import annotations

import datetime as _dt
import secrets as _secrets

from ...dataplane import mosquitto
from ...errors import Conflict, InvalidInput, NotFound
from ...ids import validate_client_id
from ...store import secret_repos
from ...store import Status
from ...store.secret_models import DeviceSecret
from .. import audit
from ..context import Context
from ..paging import list_page
from ..schemas import Page
from ..status_change import change_status
from .custody import audit_read, log, seal
from .formulas import _INDIVIDUAL_PREFIX, SECRET_BYTES, _new_access_key_id, password_for, secret_text
from .groups import _set_member
from .public import SecretPublic
from .verify import _forget

DEFAULT_GRACE = _dt.timedelta(hours=24)
MAX_GRACE = _dt.timedelta(days=30)

#: PBKDF2 iterations of a device's line in mosquitto's password file.  The password hashed is
#: HMAC-SHA1(secret, client id) under a 256-bit secret from the CSPRNG (formulas.password_for): 160
#: unpredictable bits, so a stolen file cannot be searched for it at any hashing speed, and stretching
#: (which guards passwords people choose: RECOMMENDED_ITERATIONS) would only slow every connect.
MOSQUITTO_ITERATIONS = 1


def mosquitto_hash(raw: bytes, client_id: str) -> str:
    """The ``$7$`` hash of the password mosquitto will check for this secret and client id."""
    return mosquitto.hash_password(password_for(secret_text(raw), client_id), iterations=MOSQUITTO_ITERATIONS)


def _not_found(client_id: str, instance: str) -> NotFound:
    return NotFound(
        f"client id {client_id!r} has no secret in instance {instance!r}; register one, or list the existing ones",
        code="secret_not_found", client_id=client_id,
    )


def _resolve(session, ctx: Context, client_id: str, *, lock: bool = False) -> DeviceSecret:
    row = secret_repos.get_secret(session, instance=ctx.instance, client_id=client_id, lock=lock)
    if row is None:
        raise _not_found(client_id, ctx.instance)
    return row


def _check_grace(grace: _dt.timedelta) -> _dt.timedelta:
    if not isinstance(grace, _dt.timedelta):
        raise TypeError("grace must be a timedelta")
    if not _dt.timedelta(0) <= grace <= MAX_GRACE:
        raise InvalidInput(
            f"the grace period must be between 0 (none) and {MAX_GRACE.days} days, e.g. 24h",
            code="invalid_grace", field="grace",
        )
    return grace


def register_secret(ctx: Context, *, client_id: str) -> SecretPublic:
    """A new credential for ``client_id``; the answer is the only time the secret is shown unasked."""
    validate_client_id(client_id)
    raw = _secrets.token_bytes(SECRET_BYTES)
    access_key_id = _new_access_key_id(_INDIVIDUAL_PREFIX)
    sealed = seal(ctx, raw, access_key_id)  # before the transaction: no master key, no row
    now = ctx.clock.now()
    with ctx.store.transaction() as session:
        existing = secret_repos.get_secret(session, instance=ctx.instance, client_id=client_id)
        if existing is not None:
            raise Conflict(
                f"client id {client_id!r} already has a secret (access key id {existing.access_key_id}); "
                "refresh it to replace it",
                code="secret_exists", client_id=client_id,
                access_key_id=existing.access_key_id,
            )
        row = secret_repos.insert_secret(
            session,
            DeviceSecret(
                instance=ctx.instance, client_id=client_id, access_key_id=access_key_id, status=Status.ACTIVE,
                sealed_primary=sealed, mosquitto_hash=mosquitto_hash(raw, client_id), version=1, created_at=now, updated_at=now, status_changed_at=now,
            ),
        )
        public = SecretPublic.of(row, now=now, secret=secret_text(raw))
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
        secret = secret_text(ctx.keystore.open_secret(row.sealed_primary, key_id=row.access_key_id))
        audit_read(ctx, "secret.reveal", client_id)
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
        sealed = seal(ctx, raw, row.access_key_id)
        keep = grace > _dt.timedelta(0)
        # mosquitto's file holds one line per username: the new primary's (the old one, valid for the
        # broker hooks during the grace period, is refused by a mosquitto that read the next publish).
        secret_repos.update_secret(
            session, row=row, now=now, sealed_primary=sealed, mosquitto_hash=mosquitto_hash(raw, client_id),
            sealed_secondary=row.sealed_primary if keep else None,
            secondary_expires_at=now + grace if keep else None, rotated_at=now,
        )
        public = SecretPublic.of(row, now=now, secret=secret_text(raw))
        audit.record_change(session, ctx, "secret.refresh", subject=client_id, grace_s=int(grace.total_seconds()))
    _forget(ctx)
    log.info("secret refreshed: instance=%s client_id=%r access_key_id=%s grace=%ss", ctx.instance, client_id,
             row.access_key_id, int(grace.total_seconds()))
    return public


def unregister_secret(ctx: Context, *, client_id: str) -> dict:
    validate_client_id(client_id)
    with ctx.store.transaction() as session:
        row = _resolve(session, ctx, client_id, lock=True)
        secret_repos.delete_secret(session, row=row)
        audit.record_change(session, ctx, "secret.unregister", subject=client_id)
    _forget(ctx)
    log.info("secret unregistered: instance=%s client_id=%r access_key_id=%s", ctx.instance, client_id,
             row.access_key_id)
    return {"client_id": client_id, "access_key_id": row.access_key_id, "deleted": True}


def _set_status(ctx: Context, client_id: str, status: Status) -> SecretPublic:
    validate_client_id(client_id)
    now = ctx.clock.now()
    with ctx.store.transaction() as session:
        row = _resolve(session, ctx, client_id, lock=True)
        if change_status(session, row, status, what=f"the secret of {client_id!r}", status_changed_at=now,
                         **secret_repos.version_bump(DeviceSecret, now=now)):
            audit.record_change(session, ctx, "secret.activate" if status == Status.ACTIVE else "secret.deactivate",
                                subject=client_id)
        public = SecretPublic.of(row, now=now)
    _forget(ctx)
    return public


def activate_secret(ctx: Context, *, client_id: str, group: str | None = None):
    """ACTIVE again; with ``group``, lift the member's own block in that group."""
    if group is not None:
        return _set_member(ctx, group=group, client_id=client_id, blocked=False)
    return _set_status(ctx, client_id, Status.ACTIVE)


def deactivate_secret(ctx: Context, *, client_id: str, group: str | None = None):
    """INACTIVE: every check fails until activated.  With ``group``, block one member of it.

    An INACTIVE individual credential also shuts its client id out of every
    group: deactivating a device should not leave it a side door.
    """
    if group is not None:
        return _set_member(ctx, group=group, client_id=client_id, blocked=True)
    return _set_status(ctx, client_id, Status.INACTIVE)


def list_secrets(
    ctx: Context, *, status: str | None = None, limit: int | None = None, cursor: str | None = None
) -> Page:
    now = ctx.clock.now()
    return list_page(ctx, secret_repos.list_secrets, lambda r: SecretPublic.of(r, now=now), status=status, statuses=Status,
                     limit=limit, cursor=cursor)
