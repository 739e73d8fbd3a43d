"""The broker's check: :func:`verify` and :func:`authenticate`, with what they cache.

The check is on the broker's connect path, so it must be cheap: see
:func:`verify` for what is cached and what is read on every check.  A refused
check tells its caller only "refused"; the reason goes to the ``pki.secrets``
logger, and the password goes nowhere.
"""

from __future__ import annotations

import datetime as _dt
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from ...errors import InvalidInput, PermissionDenied
from ...ids import validate_client_id
from ...store import Status, secret_repos
from ..context import Context
from .formulas import (
    _ACCESS_KEY_ID,
    _INDIVIDUAL_PREFIX,
    DEFAULT_CLOCK_SKEW,
    USERNAME_PREFIX,
    _check,
    _Key,
    derive_key,
)

log = logging.getLogger("pki.secrets")

MAX_CLOCK_SKEW = _dt.timedelta(minutes=10)
# Generous bounds for what a device may send; anything longer is not ours.
_MAX_USERNAME = 256
_MAX_PASSWORD = 1024


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
        self.lookup = secret_repos.VerifyLookup(engine)
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
        if state.status != Status.ACTIVE:
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
        if state.status != Status.ACTIVE:
            return "group_inactive", access_key_id
        if state.member_blocked:
            return "member_inactive", access_key_id
        if state.individual_status == Status.INACTIVE:
            return "credential_inactive", access_key_id
        keys = (_Key(derive_key(_group_key(ctx, verifier, access_key_id, state), client_id)),)
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


def authenticate(ctx: Context, *, client_id: str, **check: Any) -> dict:
    """:func:`verify` (same arguments) for front ends: a small answer on a pass, ``authentication_failed``
    otherwise."""
    if not verify(ctx, client_id=client_id, **check):
        raise PermissionDenied(
            "the username and password were refused; the server's log (logger pki.secrets) says why",
            code="authentication_failed",
        )
    return {"result": "pass", "client_id": client_id}
