"""Users under the account and their access keys.

Each user has up to :data:`MAX_ACCESS_KEYS` access keys.  A key's secret is
shown once, when the key is made, and stored sealed (AES-256-GCM under the
master key, the key id as associated data).  A new user has no policies, so no
rights (:mod:`pki.services.policies` attaches them).  What a key resolves to
when a request is signed with it is :mod:`pki.services.authn`'s.

Every change made here is recorded on the audit log in its own transaction.
"""

from __future__ import annotations

import re
import secrets as _secrets

from ..errors import Conflict, InvalidState, NotFound
from ..store import Status, access_repos
from ..store.access_models import AccessKey, AccessUser
from .access_schemas import AccessKeyCreated, AccessKeyPublic, UserCreated, UserPublic
from .authorize import check_user_name, get_user, record_change
from .context import Context
from .paging import after_position, page_limit, page_of
from .schemas import Page
from .status_change import change_status

__all__ = [
    "MAX_ACCESS_KEYS",
    "ACCESS_KEY_PREFIX",
    "is_access_key_id",
    "create_user",
    "list_users",
    "show_user",
    "enable_user",
    "disable_user",
    "delete_user",
    "create_access_key",
    "enable_access_key",
    "disable_access_key",
    "delete_access_key",
]

MAX_ACCESS_KEYS = 2  # as RAM: enough to rotate without a gap
ACCESS_KEY_PREFIX = "AK."
_ACCESS_KEY_ID = re.compile(r"^AK\.[0-9a-f]{20}\Z")


def is_access_key_id(access_key_id) -> bool:
    """Whether ``access_key_id`` has the form of one (not whether it exists)."""
    return isinstance(access_key_id, str) and _ACCESS_KEY_ID.match(access_key_id) is not None


# == users ====================================================================================


def _key(session, access_key_id: str, *, lock: bool = False) -> AccessKey:
    row = (access_repos.get_key(session, access_key_id=access_key_id, lock=lock) if is_access_key_id(access_key_id)
           else None)
    if row is None:
        raise NotFound(f"no access key {access_key_id!r}; a user's keys are listed with the user",
                       code="access_key_not_found")
    return row


def _new_key(ctx: Context, session, *, user: AccessUser, now) -> tuple[AccessKey, str]:
    access_key_id = ACCESS_KEY_PREFIX + _secrets.token_hex(10)
    secret = _secrets.token_urlsafe(32)  # 256 bits; the HMAC key is its ASCII bytes
    row = access_repos.insert_key(session, AccessKey(
        access_key_id=access_key_id, user_id=user.id, status=Status.ACTIVE,
        sealed_secret=ctx.keystore.seal_secret(secret.encode("ascii"), key_id=access_key_id),
        created_at=now, updated_at=now,
    ))
    return row, secret


def _user_public(session, row: AccessUser) -> UserPublic:
    keys = access_repos.keys_of_users(session, user_ids=[row.id])
    policies = [a.policy_name for a in access_repos.attachments_of_users(session, user_ids=[row.id])]
    return UserPublic.of(row, keys=keys, policies=policies)


def create_user(ctx: Context, name: str) -> UserCreated:
    """A user with one ACTIVE access key and no policies (so, no rights yet)."""
    check_user_name(name)
    now = ctx.clock.now()
    with ctx.store.transaction() as session:
        if access_repos.get_user(session, name=name) is not None:
            raise Conflict(f"user {name!r} already exists; add an access key to it instead",
                           code="user_exists", user=name)
        user = access_repos.insert_user(session, AccessUser(name=name, status=Status.ACTIVE, created_at=now,
                                                            updated_at=now))
        key, secret = _new_key(ctx, session, user=user, now=now)
        record_change(session, ctx, "user.create", now=now,
                      details={"user": name, "access_key_id": key.access_key_id})
    return UserCreated(name=name, access_key_id=key.access_key_id, access_key_secret=secret)


def list_users(ctx: Context, *, limit: int | None = None, cursor: str | None = None) -> Page:
    size = page_limit(limit)
    after = after_position(cursor)
    with ctx.store.transaction(readonly=True) as session:
        rows = access_repos.list_users(session, after_id=after, limit=size + 1)
        ids = [r.id for r in rows]
        keys: dict[int, list] = {i: [] for i in ids}
        for k in access_repos.keys_of_users(session, user_ids=ids):
            keys[k.user_id].append(k)
        pols: dict[int, list] = {i: [] for i in ids}
        for a in access_repos.attachments_of_users(session, user_ids=ids):
            pols[a.user_id].append(a.policy_name)
    return page_of(rows, size, lambda r: UserPublic.of(r, keys=keys[r.id], policies=pols[r.id]))


def show_user(ctx: Context, name: str) -> UserPublic:
    with ctx.store.transaction(readonly=True) as session:
        return _user_public(session, get_user(session, name))


def _set_user_status(ctx: Context, name: str, status: Status, operation: str) -> UserPublic:
    now = ctx.clock.now()
    with ctx.store.transaction() as session:
        row = get_user(session, name, lock=True)
        if change_status(session, row, status, what=f"user {name!r}", updated_at=now):
            access_repos.bump_access_revision(session)
            record_change(session, ctx, operation, now=now, details={"user": name})
        return _user_public(session, row)


def enable_user(ctx: Context, name: str) -> UserPublic:
    return _set_user_status(ctx, name, Status.ACTIVE, "user.enable")


def disable_user(ctx: Context, name: str) -> UserPublic:
    """An INACTIVE user's keys stop working at once; its policies stay attached."""
    return _set_user_status(ctx, name, Status.INACTIVE, "user.disable")


def delete_user(ctx: Context, name: str) -> dict:
    """Delete a user with its access keys and policy attachments."""
    now = ctx.clock.now()
    with ctx.store.transaction() as session:
        row = get_user(session, name, lock=True)
        keys = [k.access_key_id for k in access_repos.keys_of_users(session, user_ids=[row.id])]
        policies = [a.policy_name for a in access_repos.attachments_of_users(session, user_ids=[row.id])]
        access_repos.delete_user(session, row=row)
        record_change(session, ctx, "user.delete", now=now,
                      details={"user": name, "access_keys": keys, "policies": policies})
    return {"name": name, "deleted": True, "access_keys_deleted": len(keys), "policies_detached": len(policies)}


# == access keys ==============================================================================


def create_access_key(ctx: Context, user: str) -> AccessKeyCreated:
    now = ctx.clock.now()
    with ctx.store.transaction() as session:
        row = get_user(session, user, lock=True)
        if access_repos.count_keys(session, user_id=row.id) >= MAX_ACCESS_KEYS:
            raise InvalidState(
                f"user {user!r} already has {MAX_ACCESS_KEYS} access keys; delete one first",
                code="access_key_limit", user=user,
            )
        key, secret = _new_key(ctx, session, user=row, now=now)
        record_change(session, ctx, "user.key.create", now=now,
                      details={"user": user, "access_key_id": key.access_key_id})
    return AccessKeyCreated(user=user, access_key_id=key.access_key_id, access_key_secret=secret, status=key.status)


def _set_key_status(ctx: Context, access_key_id: str, status: Status, operation: str) -> AccessKeyPublic:
    now = ctx.clock.now()
    with ctx.store.transaction() as session:
        row = _key(session, access_key_id, lock=True)
        user = session.get(AccessUser, row.user_id)
        if change_status(session, row, status, what=f"access key {access_key_id}", updated_at=now):
            access_repos.bump_access_revision(session)
            record_change(session, ctx, operation, now=now,
                          details={"user": user.name, "access_key_id": access_key_id})
        return AccessKeyPublic.of(row, user=user.name)


def enable_access_key(ctx: Context, access_key_id: str) -> AccessKeyPublic:
    return _set_key_status(ctx, access_key_id, Status.ACTIVE, "user.key.enable")


def disable_access_key(ctx: Context, access_key_id: str) -> AccessKeyPublic:
    return _set_key_status(ctx, access_key_id, Status.INACTIVE, "user.key.disable")


def delete_access_key(ctx: Context, access_key_id: str) -> dict:
    now = ctx.clock.now()
    with ctx.store.transaction() as session:
        row = _key(session, access_key_id)
        user = session.get(AccessUser, row.user_id)
        access_repos.delete_key(session, row=row)
        record_change(session, ctx, "user.key.delete", now=now,
                      details={"user": user.name, "access_key_id": access_key_id})
    return {"access_key_id": access_key_id, "user": user.name, "deleted": True}
