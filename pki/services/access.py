"""Principals, access keys and policies in the store; authorisation of operations.

- The **account** is the root principal: it has every right and no row.  The
  local CLI acts as the account; a server acts as whichever principal signed
  the request.
- **Users** are created under the account, each with up to
  :data:`MAX_ACCESS_KEYS` access keys.  A key's secret is shown once, when the
  key is made, and stored sealed (AES-256-GCM under the master key, the key id
  as associated data).
- **Policies**: the system ones (:data:`pki.services.policy.SYSTEM_POLICIES`)
  are present without creation and cannot be changed or deleted; custom ones
  are validated when created.  Policies are attached to users by name.
- :func:`authorize` decides whether a principal may perform an operation of
  :data:`pki.services.policy.ACTIONS` on a resource, records a refusal on the
  audit log and raises :class:`PermissionDenied` ``access_denied``.

Every change made here is recorded on the audit log in its own transaction.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import secrets as _secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import Conflict, InvalidInput, InvalidState, NotFound, PermissionDenied
from ..store import access_repos as repos
from ..store.access_models import AccessKey, AccessPolicy, AccessUser
from . import audit
from . import policy as engine
from .access_schemas import AccessKeyCreated, AccessKeyPublic, AttachmentPublic, PolicyPublic, UserCreated, UserPublic
from .paging import after_position, page_limit, page_of
from .context import Context
from .policy import ACTIONS, SYSTEM_POLICIES, Decision, Policy, RequestContext
from .schemas import Page

__all__ = [
    "Principal",
    "RequestContext",
    "ACCOUNT",
    "MAX_ACCESS_KEYS",
    "ACCESS_KEY_PREFIX",
    "region_of",
    "account_of",
    "instance_resource",
    "resource_for",
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
    "resolve_access_key",
    "key_grant",
    "known_secret",
    "create_policy",
    "show_policy",
    "list_policies",
    "delete_policy",
    "attach_policy",
    "detach_policy",
    "policies_of",
    "simulate",
    "authorize",
]

MAX_ACCESS_KEYS = 2  # as RAM: enough to rotate without a gap
ACCESS_KEY_PREFIX = "AK."
_USER_NAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}\Z")
_POLICY_NAME = re.compile(r"^[A-Za-z0-9-]{1,128}\Z")
_ACCESS_KEY_ID = re.compile(r"^AK\.[0-9a-f]{20}\Z")


# == principals ===============================================================================


@dataclass(frozen=True)
class Principal:
    """Who is acting: the account (root) or one of its users."""

    kind: str  # "account" | "user"
    name: str
    user_id: int | None = None
    access_key_id: str | None = None
    #: The user's compiled policies as read when the request was authenticated (same
    #: transaction as its key and status); None: :func:`authorize` reads them.
    policies: tuple[Policy, ...] | None = field(default=None, compare=False, repr=False)

    @property
    def is_account(self) -> bool:
        return self.kind == "account"


#: The root principal: every right, no policies.
ACCOUNT = Principal(kind="account", name=audit.ACCOUNT_PRINCIPAL)


def region_of(ctx: Context) -> str:
    return ctx.settings.region


def account_of(ctx: Context) -> str:
    return ctx.settings.account_id


def instance_resource(ctx: Context, instance: str | None = None) -> str:
    return engine.resource_name(region_of(ctx), account_of(ctx), instance or ctx.instance)


def resource_for(ctx: Context, operation: str, *, instance: str | None = None) -> str:
    """The resource ``operation`` is checked on: the instance, or the account for account-wide ones."""
    engine.required_actions(operation)  # refuses an unknown operation
    if ACTIONS[operation].scope == "account":
        return engine.account_resource(region_of(ctx), account_of(ctx))
    return instance_resource(ctx, instance)


def _check_user_name(name: str) -> str:
    if not isinstance(name, str) or not _USER_NAME.match(name):
        raise InvalidInput(
            f"user name {name!r} may only use A-Z a-z 0-9 . _ @ - (1-64 of them)", code="invalid_user_name"
        )
    if name.lower() == audit.ACCOUNT_PRINCIPAL:
        raise InvalidInput(f"{name!r} names the account itself; choose another user name", code="invalid_user_name")
    return name


def _user(session, name: str, *, lock: bool = False) -> AccessUser:
    row = repos.get_user(session, name=_check_user_name(name), lock=lock)
    if row is None:
        raise NotFound(f"no user {name!r}; `pki user list` shows them", code="user_not_found")
    return row


def _key(session, access_key_id: str) -> AccessKey:
    row = repos.get_key(session, access_key_id=access_key_id) if _ACCESS_KEY_ID.match(access_key_id or "") else None
    if row is None:
        raise NotFound(f"no access key {access_key_id!r}; `pki user show USER` lists a user's keys",
                       code="access_key_not_found")
    return row


def _new_key(ctx: Context, session, *, user: AccessUser, now) -> tuple[AccessKey, str]:
    access_key_id = ACCESS_KEY_PREFIX + _secrets.token_hex(10)
    secret = _secrets.token_urlsafe(32)  # 256 bits; the HMAC key is its ASCII bytes
    row = repos.insert_key(session, AccessKey(
        access_key_id=access_key_id, user_id=user.id, status="ACTIVE",
        sealed_secret=ctx.keystore.seal_secret(secret.encode("ascii"), key_id=access_key_id),
        created_at=now, updated_at=now,
    ))
    return row, secret


def _user_public(session, row: AccessUser) -> UserPublic:
    keys = repos.keys_of_users(session, user_ids=[row.id])
    policies = [a.policy_name for a in repos.attachments_of_users(session, user_ids=[row.id])]
    return UserPublic.of(row, keys=keys, policies=policies)


def _audit(session, ctx: Context, operation: str, *, now, details: Mapping[str, Any]) -> None:
    audit.record(session, action=ACTIONS[operation].action, resource=resource_for(ctx, operation),
                 details={"operation": operation, **details}, now=now)


def create_user(ctx: Context, name: str) -> UserCreated:
    """A user with one ACTIVE access key and no policies (so, no rights yet)."""
    _check_user_name(name)
    now = ctx.clock.now()
    with ctx.store.transaction() as session:
        if repos.get_user(session, name=name) is not None:
            raise Conflict(f"user {name!r} already exists; `pki user key create {name}` adds a key",
                           code="user_exists")
        user = repos.insert_user(session, AccessUser(name=name, status="ACTIVE", created_at=now, updated_at=now))
        key, secret = _new_key(ctx, session, user=user, now=now)
        _audit(session, ctx, "user.create", now=now, details={"user": name, "access_key_id": key.access_key_id})
    return UserCreated(name=name, access_key_id=key.access_key_id, access_key_secret=secret)


def list_users(ctx: Context, *, limit: int | None = None, cursor: str | None = None) -> Page:
    size = page_limit(limit)
    after = after_position(cursor)
    with ctx.store.transaction(readonly=True) as session:
        rows = repos.list_users(session, after_id=after, limit=size + 1)
        ids = [r.id for r in rows]
        keys: dict[int, list] = {i: [] for i in ids}
        for k in repos.keys_of_users(session, user_ids=ids):
            keys[k.user_id].append(k)
        pols: dict[int, list] = {i: [] for i in ids}
        for a in repos.attachments_of_users(session, user_ids=ids):
            pols[a.user_id].append(a.policy_name)
    return page_of(rows, size, lambda r: UserPublic.of(r, keys=keys[r.id], policies=pols[r.id]))


def show_user(ctx: Context, name: str) -> UserPublic:
    with ctx.store.transaction(readonly=True) as session:
        return _user_public(session, _user(session, name))


def _set_user_status(ctx: Context, name: str, status: str, operation: str) -> UserPublic:
    now = ctx.clock.now()
    with ctx.store.transaction() as session:
        row = _user(session, name, lock=True)
        if row.status != status:
            repos.update_user(session, row=row, now=now, status=status)
            _audit(session, ctx, operation, now=now, details={"user": name})
        return _user_public(session, row)


def enable_user(ctx: Context, name: str) -> UserPublic:
    return _set_user_status(ctx, name, "ACTIVE", "user.enable")


def disable_user(ctx: Context, name: str) -> UserPublic:
    """A DISABLED user's keys stop working at once; its policies stay attached."""
    return _set_user_status(ctx, name, "DISABLED", "user.disable")


def delete_user(ctx: Context, name: str) -> dict:
    """Delete a user with its access keys and policy attachments."""
    now = ctx.clock.now()
    with ctx.store.transaction() as session:
        row = _user(session, name, lock=True)
        keys = [k.access_key_id for k in repos.keys_of_users(session, user_ids=[row.id])]
        policies = [a.policy_name for a in repos.attachments_of_users(session, user_ids=[row.id])]
        repos.delete_user(session, row=row)
        _audit(session, ctx, "user.delete", now=now,
               details={"user": name, "access_keys": keys, "policies": policies})
    return {"name": name, "deleted": True, "access_keys_deleted": len(keys), "policies_detached": len(policies)}


# == access keys ==============================================================================


def create_access_key(ctx: Context, user: str) -> AccessKeyCreated:
    now = ctx.clock.now()
    with ctx.store.transaction() as session:
        row = _user(session, user, lock=True)
        if repos.count_keys(session, user_id=row.id) >= MAX_ACCESS_KEYS:
            raise InvalidState(
                f"user {user!r} already has {MAX_ACCESS_KEYS} access keys; delete one first "
                "(`pki user key delete ACCESS_KEY_ID`)",
                code="access_key_limit",
            )
        key, secret = _new_key(ctx, session, user=row, now=now)
        _audit(session, ctx, "user.key.create", now=now, details={"user": user, "access_key_id": key.access_key_id})
    return AccessKeyCreated(user=user, access_key_id=key.access_key_id, access_key_secret=secret, status=key.status)


def _set_key_status(ctx: Context, access_key_id: str, status: str, operation: str) -> AccessKeyPublic:
    now = ctx.clock.now()
    with ctx.store.transaction() as session:
        row = _key(session, access_key_id)
        user = session.get(AccessUser, row.user_id)
        if row.status != status:
            repos.update_key(session, row=row, now=now, status=status)
            _audit(session, ctx, operation, now=now, details={"user": user.name, "access_key_id": access_key_id})
        return AccessKeyPublic.of(row, user=user.name)


def enable_access_key(ctx: Context, access_key_id: str) -> AccessKeyPublic:
    return _set_key_status(ctx, access_key_id, "ACTIVE", "user.key.enable")


def disable_access_key(ctx: Context, access_key_id: str) -> AccessKeyPublic:
    return _set_key_status(ctx, access_key_id, "DISABLED", "user.key.disable")


def delete_access_key(ctx: Context, access_key_id: str) -> dict:
    now = ctx.clock.now()
    with ctx.store.transaction() as session:
        row = _key(session, access_key_id)
        user = session.get(AccessUser, row.user_id)
        repos.delete_key(session, row=row)
        _audit(session, ctx, "user.key.delete", now=now, details={"user": user.name, "access_key_id": access_key_id})
    return {"access_key_id": access_key_id, "user": user.name, "deleted": True}


_REFUSED_KEY = ("the access key is unknown or disabled: check PKI_ACCESS_KEY_ID and PKI_ACCESS_KEY_SECRET, "
                "or ask the account owner for a new key (`pki user key create USER`)")


class _GrantCache:
    """What access keys resolve to, valid for one access revision (see AccessRevision)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.revision = -1
        self.grants: dict[str, tuple[Principal, bytes]] = {}
        #: Key id -> HMAC key, across revisions: a key's secret never changes (only
        #: active keys get here, so made-up ids cannot grow it).
        self.secrets: dict[str, bytes] = {}


def key_grant(ctx: Context, conn, access_key_id: str) -> tuple[Principal, bytes]:
    """The principal behind an access key (its policies attached) and the HMAC key, in ``conn``'s transaction.

    The principal carries its policies as of this transaction: use it for one
    request, as the HTTP service does.

    Per call this reads one counter (the access revision); the key, the user's
    status and policies are read again only after a change to any user, key,
    policy or attachment, from any process, so a key or user disabled elsewhere
    stops working at the next request.  Unknown key, disabled key and
    disabled user all get the same refusal.
    """
    if not isinstance(access_key_id, str) or not _ACCESS_KEY_ID.match(access_key_id):
        raise PermissionDenied(_REFUSED_KEY, code="invalid_access_key")
    cache: _GrantCache = ctx.memo(("access_grants",), _GrantCache)
    revision = repos.access_revision(conn)
    with cache.lock:
        if cache.revision == revision:
            grant = cache.grants.get(access_key_id)
            if grant is not None:
                return grant
    grant = _load_grant(ctx, conn, access_key_id)
    with cache.lock:
        if cache.revision != revision:
            cache.revision, cache.grants = revision, {}
        # Only keys that exist and are active are kept: unknown ids cannot grow the cache.
        cache.grants[access_key_id] = grant
        cache.secrets[access_key_id] = grant[1]
    return grant


def known_secret(ctx: Context, access_key_id: str) -> bytes | None:
    """The HMAC key of an access key this process has resolved before, without the database
    (whether the key is still active is :func:`key_grant`'s to say)."""
    cache = ctx.peek(("access_grants",))
    return cache.secrets.get(access_key_id) if cache is not None else None


def _load_grant(ctx: Context, conn, access_key_id: str) -> tuple[Principal, bytes]:
    row = repos.get_key_with_user(conn, access_key_id=access_key_id)
    if row is None or row.key_status != "ACTIVE" or row.user_status != "ACTIVE":
        raise PermissionDenied(_REFUSED_KEY, code="invalid_access_key")
    sealed = bytes(row.sealed_secret)
    digest = hashlib.sha256(sealed).digest()
    secret = ctx.memo(("access_key_secret", access_key_id, digest),
                      lambda: ctx.keystore.open_secret(sealed, key_id=access_key_id))
    principal = Principal(kind="user", name=row.user_name, user_id=row.user_id, access_key_id=access_key_id,
                          policies=tuple(_policies_of(ctx, conn, row.user_id)))
    return principal, secret


def resolve_access_key(ctx: Context, access_key_id: str) -> tuple[Principal, bytes]:
    """:func:`key_grant` in a transaction of its own, for a principal kept longer than one request:
    without the policies snapshot, so :func:`authorize` reads the user's status and policies each time."""
    with ctx.store.core_transaction(readonly=True) as conn:
        principal, secret = key_grant(ctx, conn, access_key_id)
    return dataclasses.replace(principal, policies=None), secret


# == policies =================================================================================


def _check_policy_name(name: str) -> str:
    if not isinstance(name, str) or not _POLICY_NAME.match(name):
        raise InvalidInput(f"policy name {name!r} may only use A-Z a-z 0-9 - (1-128 of them)",
                           code="invalid_policy_name")
    return name


def _system_public(p: Policy, *, attached_to=None) -> PolicyPublic:
    return PolicyPublic(name=p.name, type="System", description=p.description, document=p.document,
                        created_at=None, attached_to=attached_to)


def _custom_public(row: AccessPolicy, *, attached_to=None) -> PolicyPublic:
    return PolicyPublic(name=row.name, type="Custom", description=row.description,
                        document=json.loads(row.document), created_at=row.created_at, attached_to=attached_to)


def _parsed(ctx: Context, name: str, document: str) -> Policy:
    # Custom policies never change once created (delete and create again), so
    # (name, document) identifies the parsed form.
    return ctx.memo(("policy", name, document), lambda: engine.parse_policy(document, name=name))


def create_policy(ctx: Context, name: str, document: str | bytes | Mapping, *, description: str = "") -> PolicyPublic:
    """A custom policy; refused with ``invalid_policy`` naming the bad field if malformed."""
    _check_policy_name(name)
    if any(name.lower() == s.lower() for s in SYSTEM_POLICIES):
        raise Conflict(f"{name!r} is a system policy name; choose another", code="policy_exists")
    if not isinstance(description, str) or len(description) > 1024:
        raise InvalidInput("a description is text of at most 1024 characters", code="invalid_description")
    parsed = engine.parse_policy(document, name=name)
    text = json.dumps(parsed.document, sort_keys=True, separators=(",", ":"))
    now = ctx.clock.now()
    with ctx.store.transaction() as session:
        if repos.get_policy(session, name=name) is not None:
            raise Conflict(f"policy {name!r} already exists; `pki policy show {name}` shows it",
                           code="policy_exists")
        row = repos.insert_policy(session, AccessPolicy(
            name=name, description=description, document=text, created_at=now, updated_at=now))
        _audit(session, ctx, "policy.create", now=now, details={"policy": name, "document": parsed.document})
        return _custom_public(row)


def show_policy(ctx: Context, name: str) -> PolicyPublic:
    with ctx.store.transaction(readonly=True) as session:
        users = list(repos.users_with_policy(session, policy_name=name))
        if name in SYSTEM_POLICIES:
            return _system_public(SYSTEM_POLICIES[name], attached_to=users)
        row = repos.get_policy(session, name=_check_policy_name(name))
        if row is None:
            raise NotFound(f"no policy {name!r}; `pki policy list` shows them", code="policy_not_found")
        return _custom_public(row, attached_to=users)


def list_policies(ctx: Context, *, limit: int | None = None, cursor: str | None = None) -> Page:
    """System policies first (on the first page), then custom ones in creation order."""
    size = page_limit(limit)
    after = after_position(cursor)
    with ctx.store.transaction(readonly=True) as session:
        rows = repos.list_policies(session, after_id=after, limit=size + 1)
    page = page_of(rows, size, _custom_public)
    system = [] if cursor else [_system_public(p) for p in SYSTEM_POLICIES.values()]
    return Page(items=system + page.items, next_cursor=page.next_cursor)


def delete_policy(ctx: Context, name: str) -> dict:
    if name in SYSTEM_POLICIES:
        raise InvalidInput(f"{name} is a system policy; it cannot be deleted", code="system_policy")
    now = ctx.clock.now()
    with ctx.store.transaction() as session:
        row = repos.get_policy(session, name=_check_policy_name(name))
        if row is None:
            raise NotFound(f"no policy {name!r}; `pki policy list` shows them", code="policy_not_found")
        users = list(repos.users_with_policy(session, policy_name=name))
        if users:
            raise InvalidState(
                f"policy {name} is attached to {', '.join(users)}; detach it first "
                f"(`pki policy detach {name} --user USER`)",
                code="policy_in_use", users=users,
            )
        repos.delete_policy(session, row=row)
        _audit(session, ctx, "policy.delete", now=now, details={"policy": name})
    return {"name": name, "deleted": True}


def _policy_exists(session, name: str) -> None:
    if name in SYSTEM_POLICIES:
        return
    if repos.get_policy(session, name=_check_policy_name(name)) is None:
        raise NotFound(f"no policy {name!r}; `pki policy list` shows them", code="policy_not_found")


def attach_policy(ctx: Context, name: str, *, user: str) -> AttachmentPublic:
    """Attach (idempotent: attaching twice is not an error)."""
    now = ctx.clock.now()
    with ctx.store.transaction() as session:
        _policy_exists(session, name)
        row = _user(session, user, lock=True)
        if repos.attach(session, user_id=row.id, policy_name=name, now=now):
            _audit(session, ctx, "policy.attach", now=now, details={"policy": name, "user": user})
    return AttachmentPublic(policy=name, user=user, attached=True)


def detach_policy(ctx: Context, name: str, *, user: str) -> AttachmentPublic:
    now = ctx.clock.now()
    with ctx.store.transaction() as session:
        row = _user(session, user, lock=True)
        if not repos.detach(session, user_id=row.id, policy_name=name):
            raise NotFound(f"policy {name!r} is not attached to user {user!r}; `pki user show {user}` "
                           "lists its policies", code="policy_not_attached")
        _audit(session, ctx, "policy.detach", now=now, details={"policy": name, "user": user})
    return AttachmentPublic(policy=name, user=user, attached=False)


def _policies_of(ctx: Context, session, user_id: int) -> list[Policy]:
    out = []
    for name, document in repos.policy_documents_of_user(session, user_id=user_id):
        if name in SYSTEM_POLICIES:
            out.append(SYSTEM_POLICIES[name])
        elif document is not None:
            out.append(_parsed(ctx, name, document))
    return out


def policies_of(ctx: Context, user: str) -> list[Policy]:
    """The compiled policies attached to ``user``, in attachment order."""
    with ctx.store.transaction(readonly=True) as session:
        return _policies_of(ctx, session, _user(session, user).id)


# == decisions ================================================================================


def _request_context(ctx: Context, rc: RequestContext | Mapping[str, Any] | None) -> RequestContext:
    if rc is None:
        return RequestContext(now=ctx.clock.now())
    if isinstance(rc, Mapping):
        rc = RequestContext(extra={str(k): v for k, v in rc.items()})
    if rc.now is None:
        rc = RequestContext(now=ctx.clock.now(), source_ip=rc.source_ip, secure_transport=rc.secure_transport,
                            request_id=rc.request_id, extra=rc.extra)
    return rc


def _decide(ctx: Context, principal: Principal, *, operation: str | None, action: str | None, resource: str,
            rc: RequestContext) -> Decision:
    checked = ACTIONS[operation].action if operation else action
    if principal.is_account:
        return Decision(True, None, "the account may do everything", checked, resource)
    if principal.policies is not None:
        policies = list(principal.policies)
    else:
        with ctx.store.transaction(readonly=True) as session:
            row = repos.get_user(session, name=principal.name)
            if row is None or (principal.user_id is not None and row.id != principal.user_id):
                return Decision(False, None, f"user {principal.name} no longer exists", checked, resource)
            if row.status != "ACTIVE":
                return Decision(False, None, f"user {principal.name} is disabled", checked, resource)
            policies = _policies_of(ctx, session, row.id)
    if operation:
        return engine.authorize(policies, operation=operation, resource=resource, context=rc)
    return engine.evaluate(policies, action=action, resource=resource, context=rc)


def simulate(
    ctx: Context,
    user: str,
    action: str,
    resource: str | None = None,
    *,
    source_ip: str | None = None,
    secure_transport: bool | None = True,
    now=None,
    extra: Mapping[str, str] | None = None,
) -> Decision:
    """What :func:`authorize` would answer, and which statement decides; changes nothing.

    ``action`` is an action name (``mq:RegisterCa``, checked alone) or an
    operation (``ca.register``: its action and dependents, as authorize does).
    ``resource`` defaults to the operation's resource in this instance.
    """
    if user == audit.ACCOUNT_PRINCIPAL:
        principal = ACCOUNT
    else:
        with ctx.store.transaction(readonly=True) as session:
            row = _user(session, user)
        principal = Principal(kind="user", name=row.name, user_id=row.id)
    operation = None
    if action in ACTIONS:
        operation = action
    else:
        canonical = {a.lower(): a for a in engine.ACTION_NAMES}.get(str(action).lower())
        if canonical is None:
            raise InvalidInput(f"{action!r} is neither an action (`pki policy actions` lists them) nor an "
                               "operation such as ca.register", code="unknown_action")
        action = canonical
    if resource is None:
        resource = resource_for(ctx, operation) if operation else instance_resource(ctx)
    rc = RequestContext(now=now or ctx.clock.now(), source_ip=source_ip, secure_transport=secure_transport,
                        extra=dict(extra or {}))
    return _decide(ctx, principal, operation=operation, action=None if operation else action,
                   resource=resource, rc=rc)


def authorize(
    ctx: Context,
    principal: Principal,
    operation: str,
    resource: str | None = None,
    request_context: RequestContext | Mapping[str, Any] | None = None,
) -> Decision:
    """Allow ``operation`` or raise PermissionDenied ``access_denied`` (and log the refusal).

    ``resource`` defaults to the operation's resource in ``ctx.instance``.
    ``request_context`` carries the source IP, transport and request id; its
    time defaults to the Context's clock.
    """
    op = ACTIONS.get(operation)
    if op is None:
        engine.required_actions(operation)  # raises unknown_operation
    resource = resource or resource_for(ctx, operation)
    rc = _request_context(ctx, request_context)
    decision = _decide(ctx, principal, operation=operation, action=None, resource=resource, rc=rc)
    if decision.allowed:
        return decision
    if decision.decided_by is not None:
        policy_name, index = decision.decided_by
        advice = (f"statement {index} of policy {policy_name} denies it; the account, or a user allowed "
                  f"mq:ManagePolicies, can detach or replace that policy "
                  f"(`pki policy detach {policy_name} --user {principal.name}`)")
    else:
        advice = (f"the account, or a user allowed mq:ManagePolicies, can grant {decision.action} "
                  f"(e.g. `pki policy attach PkiFullAccess --user {principal.name}`, or a custom policy "
                  "allowing it)")
    message = (f"{principal.name} may not do {operation} ({decision.action}) on {resource}: "
               f"{decision.reason}; {advice}")
    audit.record(
        ctx, action=op.action, resource=resource, result="denied", error_code="access_denied",
        principal=principal.name, source_ip=rc.source_ip, request_id=rc.request_id, now=rc.now,
        details={"operation": operation, "missing_action": decision.action, "reason": decision.reason,
                 "decided_by": decision.as_json()["decided_by"], "access_key_id": principal.access_key_id},
    )
    raise PermissionDenied(
        message, code="access_denied", operation=operation, action=decision.action, resource=resource,
        decided_by=decision.as_json()["decided_by"],
    )
