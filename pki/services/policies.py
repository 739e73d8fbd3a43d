"""Access policies in the store and their attachment to users.

The system policies (:data:`pki.services.policy.SYSTEM_POLICIES`) are present
without creation and cannot be changed or deleted; custom ones are validated
when created and never change afterwards (delete and create again).  Policies
are attached to users by name.  How they decide is
:mod:`pki.services.policy`'s; who may do what, :mod:`pki.services.authorize`'s.

Every change made here is recorded on the audit log in its own transaction.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from ..errors import Conflict, InvalidInput, InvalidState, NotFound
from ..ids import validate_path_name
from ..store import access_repos
from ..store.access_models import AccessPolicy
from . import policy as policy_engine
from .access_schemas import AttachmentPublic, PolicyPublic
from .authorize import compiled_policies, get_user, record_change
from .context import Context
from .paging import after_position, page_limit, page_of
from .policy import SYSTEM_POLICIES, Policy
from .schemas import Page

__all__ = [
    "create_policy",
    "show_policy",
    "list_policies",
    "delete_policy",
    "attach_policy",
    "detach_policy",
    "policies_of",
]



def _check_policy_name(name: str) -> str:
    return validate_path_name(name, what="policy name", code="invalid_policy_name", max_length=128)


def _system_public(p: Policy, *, attached_to=None) -> PolicyPublic:
    return PolicyPublic(name=p.name, type="System", description=p.description, document=p.document,
                        created_at=None, attached_to=attached_to)


def _custom_public(row: AccessPolicy, *, attached_to=None) -> PolicyPublic:
    return PolicyPublic(name=row.name, type="Custom", description=row.description,
                        document=json.loads(row.document), created_at=row.created_at, attached_to=attached_to)


def create_policy(ctx: Context, name: str, document: str | bytes | Mapping, *, description: str = "") -> PolicyPublic:
    """A custom policy; refused with ``invalid_policy`` naming the bad field if malformed."""
    _check_policy_name(name)
    if any(name.lower() == s.lower() for s in SYSTEM_POLICIES):
        raise Conflict(f"{name!r} is a system policy name; choose another", code="policy_exists")
    if not isinstance(description, str) or len(description) > 1024:
        raise InvalidInput("a description is text of at most 1024 characters", code="invalid_description")
    parsed = policy_engine.parse_policy(document, name=name)
    text = json.dumps(parsed.document, sort_keys=True, separators=(",", ":"))
    now = ctx.clock.now()
    with ctx.store.transaction() as session:
        if access_repos.get_policy(session, name=name) is not None:
            raise Conflict(f"policy {name!r} already exists; show it, or choose another name",
                           code="policy_exists", policy=name)
        row = access_repos.insert_policy(session, AccessPolicy(
            name=name, description=description, document=text, created_at=now, updated_at=now))
        record_change(session, ctx, "policy.create", now=now, details={"policy": name, "document": parsed.document})
        return _custom_public(row)


def show_policy(ctx: Context, name: str) -> PolicyPublic:
    with ctx.store.transaction(readonly=True) as session:
        users = list(access_repos.users_with_policy(session, policy_name=name))
        if name in SYSTEM_POLICIES:
            return _system_public(SYSTEM_POLICIES[name], attached_to=users)
        row = access_repos.get_policy(session, name=_check_policy_name(name))
        if row is None:
            raise NotFound(f"no policy {name!r}; list the policies to find it", code="policy_not_found")
        return _custom_public(row, attached_to=users)


def list_policies(ctx: Context, *, limit: int | None = None, cursor: str | None = None) -> Page:
    """System policies first (on the first page), then custom ones in creation order."""
    size = page_limit(limit)
    after = after_position(cursor)
    with ctx.store.transaction(readonly=True) as session:
        rows = access_repos.list_policies(session, after_id=after, limit=size + 1)
    page = page_of(rows, size, _custom_public)
    system = [] if cursor else [_system_public(p) for p in SYSTEM_POLICIES.values()]
    return Page(items=system + page.items, next_cursor=page.next_cursor)


def delete_policy(ctx: Context, name: str) -> dict:
    if name in SYSTEM_POLICIES:
        raise InvalidInput(f"{name} is a system policy; it cannot be deleted", code="system_policy")
    now = ctx.clock.now()
    with ctx.store.transaction() as session:
        row = access_repos.get_policy(session, name=_check_policy_name(name))
        if row is None:
            raise NotFound(f"no policy {name!r}; list the policies to find it", code="policy_not_found")
        users = list(access_repos.users_with_policy(session, policy_name=name))
        if users:
            raise InvalidState(
                f"policy {name} is attached to {', '.join(users)}; detach it from them first",
                code="policy_in_use", users=users, policy=name,
            )
        access_repos.delete_policy(session, row=row)
        record_change(session, ctx, "policy.delete", now=now, details={"policy": name})
    return {"name": name, "deleted": True}


def _policy_exists(session, name: str) -> None:
    if name in SYSTEM_POLICIES:
        return
    if access_repos.get_policy(session, name=_check_policy_name(name)) is None:
        raise NotFound(f"no policy {name!r}; list the policies to find it", code="policy_not_found")


def attach_policy(ctx: Context, name: str, *, user: str) -> AttachmentPublic:
    """Attach (idempotent: attaching twice is not an error)."""
    now = ctx.clock.now()
    with ctx.store.transaction() as session:
        _policy_exists(session, name)
        row = get_user(session, user, lock=True)
        if access_repos.attach(session, user_id=row.id, policy_name=name, now=now):
            record_change(session, ctx, "policy.attach", now=now, details={"policy": name, "user": user})
    return AttachmentPublic(policy=name, user=user, attached=True)


def detach_policy(ctx: Context, name: str, *, user: str) -> AttachmentPublic:
    now = ctx.clock.now()
    with ctx.store.transaction() as session:
        row = get_user(session, user, lock=True)
        if not access_repos.detach(session, user_id=row.id, policy_name=name):
            raise NotFound(f"policy {name!r} is not attached to user {user!r}; the user's policies are listed "
                           "with the user", code="policy_not_attached", policy=name, user=user)
        record_change(session, ctx, "policy.detach", now=now, details={"policy": name, "user": user})
    return AttachmentPublic(policy=name, user=user, attached=False)


def policies_of(ctx: Context, user: str) -> list[Policy]:
    """The compiled policies attached to ``user``, in attachment order."""
    with ctx.store.transaction(readonly=True) as session:
        return compiled_policies(ctx, session, get_user(session, user).id)
