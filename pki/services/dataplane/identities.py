"""Broker identities: username/password accounts for applications and gateways.

A password is given by the caller and kept only as mosquitto's ``$7$`` PBKDF2-SHA512 hash with
210,000 iterations (:data:`pki.dataplane.mosquitto.RECOMMENDED_ITERATIONS`), so that a stolen store
does not give it away; the same value is what a mosquitto password file holds.  No password is
logged, returned or put into an error.

:func:`authenticate` is the hooks' check.  PBKDF2 at that cost takes a large fraction of a second, so
a password once verified is remembered, per (username, row version), as an HMAC under a key that
lives only in this process: repeated connects skip PBKDF2, and any change of the identity (its
version and the instance's revision move) drops the entry at the next check.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets as _secrets
from typing import NamedTuple

from ...dataplane import mosquitto
from ...errors import Conflict, InvalidInput, NotFound
from ...ids import validate_client_id, validate_path_name
from ...store import Status
from ...store import dataplane_repos as repos
from ...store.dataplane_models import BrokerIdentity
from .. import audit
from ..context import Context
from ..paging import list_page
from ..schemas import Page, UtcTime
from .common import Public, cached, field, log, memoised

__all__ = ["IdentityPublic", "Verdict", "add", "update", "show", "list_identities", "delete", "authenticate",
           "validate_username", "MAX_USERNAME"]

MAX_USERNAME = 128
ITERATIONS = mosquitto.RECOMMENDED_ITERATIONS
# Per process: what the verified-password cache holds is useless anywhere else.
_CACHE_KEY = _secrets.token_bytes(32)


class IdentityPublic(Public):
    username: str
    client_id: str | None
    superuser: bool
    status: str
    version: int
    instance: str
    created_at: UtcTime
    updated_at: UtcTime

    @classmethod
    def of(cls, row: BrokerIdentity) -> "IdentityPublic":
        return cls(username=row.username, client_id=row.client_id, superuser=row.superuser, status=row.status,
                   version=row.version, instance=row.instance, created_at=row.created_at, updated_at=row.updated_at)


def validate_username(username: str) -> str:
    """A username that is also an API path segment and a mosquitto password-file name."""
    with field("username"):
        validate_path_name(username, what="username", code="invalid_username", max_length=MAX_USERNAME)
        return mosquitto.check_username(username)


def _hash(password: str) -> str:
    with field("password"):
        if not isinstance(password, str) or not password:
            raise InvalidInput("the password must not be empty", code="invalid_mosquitto_password")
        return mosquitto.hash_password(password, iterations=ITERATIONS)


def _client_id(client_id: str | None) -> str | None:
    if client_id is not None:
        with field("client_id"):
            validate_client_id(client_id)
    return client_id


def _not_found(ctx: Context, username: str) -> NotFound:
    return NotFound(f"no broker identity {username!r} in instance {ctx.instance!r}", code="identity_not_found",
                    username=username)


def _resolve(session, ctx: Context, username: str, *, lock: bool = False) -> BrokerIdentity:
    row = repos.get_identity(session, instance=ctx.instance, username=username, lock=lock)
    if row is None:
        raise _not_found(ctx, username)
    return row


def add(ctx: Context, *, username: str, password: str, client_id: str | None = None,
        superuser: bool = False) -> IdentityPublic:
    validate_username(username)
    _client_id(client_id)
    hashed = _hash(password)  # before the transaction: PBKDF2 holds no lock
    now = ctx.clock.now()
    with ctx.store.transaction() as session:
        if repos.get_identity(session, instance=ctx.instance, username=username) is not None:
            raise Conflict(f"the broker identity {username!r} exists already", code="identity_exists",
                           username=username)
        row = repos.insert_row(session, BrokerIdentity(
            instance=ctx.instance, username=username, password_hash=hashed, client_id=client_id,
            superuser=bool(superuser), status=Status.ACTIVE, version=1, created_at=now, updated_at=now))
        public = IdentityPublic.of(row)
        audit.record_change(session, ctx, "identity.add", subject=username, client_id=client_id,
                            superuser=bool(superuser))
    log.info("broker identity added: instance=%s username=%r", ctx.instance, username)
    return public


def update(ctx: Context, *, username: str, password: str | None = None, client_id: str | None = None,
           clear_client_id: bool = False, superuser: bool | None = None,
           status: str | None = None) -> IdentityPublic:
    """Change what is given; the rest stays.  ``clear_client_id`` lifts the client-id binding."""
    validate_username(username)
    _client_id(client_id)
    if clear_client_id and client_id is not None:
        raise InvalidInput("give a client id or clear it, not both", code="invalid_input", field="client_id")
    wanted = None
    if status is not None:
        with field("status"):
            try:
                wanted = Status(str(status).upper())
            except ValueError:
                raise InvalidInput(f"status {str(status)[:20]!r} is not one of {', '.join(Status)}",
                                   code="invalid_status") from None
    hashed = _hash(password) if password is not None else None
    now = ctx.clock.now()
    values: dict = {"updated_at": now}
    if hashed is not None:
        values["password_hash"] = hashed
    if client_id is not None or clear_client_id:
        values["client_id"] = client_id
    if superuser is not None:
        values["superuser"] = bool(superuser)
    if wanted is not None:
        values["status"] = wanted
    with ctx.store.transaction() as session:
        row = _resolve(session, ctx, username, lock=True)
        repos.touch(session, row, instance=ctx.instance, **values)
        public = IdentityPublic.of(row)
        changed = sorted(k for k in values if k != "updated_at")
        audit.record_change(session, ctx, "identity.update", subject=username,
                            changed=["password" if k == "password_hash" else k for k in changed])
    log.info("broker identity updated: instance=%s username=%r", ctx.instance, username)
    return public


def show(ctx: Context, *, username: str) -> IdentityPublic:
    validate_username(username)
    with ctx.store.transaction(readonly=True) as session:
        return IdentityPublic.of(_resolve(session, ctx, username))


def list_identities(ctx: Context, *, status: str | None = None, limit: int | None = None,
                    cursor: str | None = None) -> Page:
    return list_page(ctx, repos.list_identities, IdentityPublic.of, status=status, statuses=Status, limit=limit,
                     cursor=cursor)


def delete(ctx: Context, *, username: str) -> dict:
    validate_username(username)
    with ctx.store.transaction() as session:
        row = _resolve(session, ctx, username, lock=True)
        repos.delete_row(session, row, instance=ctx.instance)
        audit.record_change(session, ctx, "identity.delete", subject=username)
    log.info("broker identity deleted: instance=%s username=%r", ctx.instance, username)
    return {"username": username, "deleted": True}


# -- the hooks' check ------------------------------------------------------------------------------


class Verdict(NamedTuple):
    """``result``: allow, deny, or unknown (no such identity: another authenticator may know it).
    ``reason`` is for the log and a metric, never for the client."""

    result: str
    superuser: bool
    reason: str


class _State(NamedTuple):
    version: int
    password_hash: str
    client_id: str | None
    superuser: bool
    status: str


def _load(ctx: Context, username: str) -> _State | None:
    with ctx.store.transaction(readonly=True) as session:
        row = repos.get_identity(session, instance=ctx.instance, username=username)
        return None if row is None else _State(row.version, row.password_hash, row.client_id, row.superuser,
                                               row.status)


def authenticate(ctx: Context, *, username: str, password: str, client_id: str | None = None) -> Verdict:
    """Whether ``username`` may connect with ``password`` (and ``client_id``, when the identity is bound)."""
    if not isinstance(username, str) or not isinstance(password, str) or len(username) > MAX_USERNAME:
        return Verdict("unknown", False, "malformed_request")
    states = cached(ctx, "identities")
    state = memoised(states, username, lambda: _load(ctx, username))
    if state is None:
        return Verdict("unknown", False, "unknown_username")
    if state.status != Status.ACTIVE:
        return Verdict("deny", False, "identity_inactive")
    if state.client_id is not None and client_id != state.client_id:
        return Verdict("deny", False, "wrong_client_id")
    digest = hmac.new(_CACHE_KEY, password.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
    key = ("verified", username, state.version)
    known = states.get(key)
    if known is not None and hmac.compare_digest(known, digest):
        return Verdict("allow", state.superuser, "cached")
    if not mosquitto.check_password(state.password_hash, password):
        return Verdict("deny", False, "wrong_password")
    states[key] = digest
    return Verdict("allow", state.superuser, "verified")
