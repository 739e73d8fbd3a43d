"""Principals, the resources operations act on, and authorisation decisions.

- The **account** is the root principal: it has every right and no row.  The
  local CLI acts as the account; a server acts as whichever principal signed
  the request.  **Users** are created under the account
  (:mod:`pki.services.users`) and get their rights from the policies attached
  to them (:mod:`pki.services.policies`).
- :func:`authorize` decides whether a principal may perform an operation of
  :data:`pki.services.policy.ACTIONS` on a resource, records a refusal on the
  audit log and raises :class:`PermissionDenied` ``access_denied``;
  :func:`simulate` answers the same question and changes nothing.

:func:`get_user`, :func:`compiled_policies` and :func:`record_change` are
shared by :mod:`pki.services.users`, :mod:`pki.services.policies` and
:mod:`pki.services.authn`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidInput, NotFound, PermissionDenied
from ..ids import validate_path_name
from ..store import Status, access_repos
from ..store.access_models import AccessUser
from . import audit
from . import policy as policy_engine
from .context import Context
from .policy import ACTIONS, SYSTEM_POLICIES, Decision, Policy, RequestContext

__all__ = [
    "Principal",
    "RequestContext",
    "ACCOUNT",
    "region_of",
    "account_of",
    "instance_resource",
    "resource_for",
    "simulate",
    "authorize",
    "permitted",
]



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


def check_user_name(name: str) -> str:
    validate_path_name(name, what="user name", code="invalid_user_name")
    if name.lower() == audit.ACCOUNT_PRINCIPAL:
        raise InvalidInput(f"{name!r} names the account itself; choose another user name", code="invalid_user_name")
    return name


def get_user(session, name: str, *, lock: bool = False) -> AccessUser:
    """The user called ``name``, or NotFound ``user_not_found``."""
    row = access_repos.get_user(session, name=check_user_name(name), lock=lock)
    if row is None:
        raise NotFound(f"no user {name!r}; list the users to find it", code="user_not_found")
    return row


def _parsed(ctx: Context, name: str, document: str) -> Policy:
    # Custom policies never change once created (delete and create again), so
    # (name, document) identifies the parsed form.
    return ctx.memo(("policy", name, document), lambda: policy_engine.parse_policy(document, name=name))


def compiled_policies(ctx: Context, session, user_id: int) -> list[Policy]:
    """The compiled policies attached to a user, in attachment order, in ``session``'s transaction."""
    out = []
    for name, document in access_repos.policy_documents_of_user(session, user_id=user_id):
        if name in SYSTEM_POLICIES:
            out.append(SYSTEM_POLICIES[name])
        elif document is not None:
            out.append(_parsed(ctx, name, document))
    return out


# == resources ================================================================================


def region_of(ctx: Context) -> str:
    return ctx.settings.region


def account_of(ctx: Context) -> str:
    return ctx.settings.account_id


def instance_resource(ctx: Context, instance: str | None = None) -> str:
    return policy_engine.resource_name(region_of(ctx), account_of(ctx), instance or ctx.instance)


def resource_for(ctx: Context, operation: str, *, instance: str | None = None) -> str:
    """The resource ``operation`` is checked on: the instance, or the account for account-wide ones."""
    policy_engine.required_actions(operation)  # refuses an unknown operation
    if ACTIONS[operation].scope == "account":
        return policy_engine.account_resource(region_of(ctx), account_of(ctx))
    return instance_resource(ctx, instance)


def record_change(session, ctx: Context, operation: str, *, now, details: Mapping[str, Any]) -> None:
    """The audit record of a change to users, keys or policies, in ``session``'s transaction."""
    audit.record(session, action=ACTIONS[operation].action, resource=resource_for(ctx, operation),
                 details={"operation": operation, **details}, now=now)


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
            row = access_repos.get_user(session, name=principal.name)
            if row is None or (principal.user_id is not None and row.id != principal.user_id):
                return Decision(False, None, f"user {principal.name} no longer exists", checked, resource)
            if row.status != Status.ACTIVE:
                return Decision(False, None, f"user {principal.name} is disabled", checked, resource)
            policies = compiled_policies(ctx, session, row.id)
    if operation:
        return policy_engine.authorize(policies, operation=operation, resource=resource, context=rc)
    return policy_engine.evaluate(policies, action=action, resource=resource, context=rc)


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
            row = get_user(session, user)
        principal = Principal(kind="user", name=row.name, user_id=row.id)
    operation = None
    if action in ACTIONS:
        operation = action
    else:
        canonical = {a.lower(): a for a in policy_engine.ACTION_NAMES}.get(str(action).lower())
        if canonical is None:
            raise InvalidInput(f"{action!r} is neither an action (the list of actions shows them) nor an "
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
        policy_engine.required_actions(operation)  # raises unknown_operation
    resource = resource or resource_for(ctx, operation)
    rc = _request_context(ctx, request_context)
    decision = _decide(ctx, principal, operation=operation, action=None, resource=resource, rc=rc)
    if decision.allowed:
        return decision
    if decision.decided_by is not None:
        policy_name, index = decision.decided_by
        advice = (f"statement {index} of policy {policy_name} denies it; the account, or a user allowed "
                  "mq:ManagePolicies, can detach or replace that policy")
    else:
        advice = (f"the account, or a user allowed mq:ManagePolicies, can grant {decision.action} "
                  "(e.g. attach PkiFullAccess, or a custom policy allowing it)")
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
        decided_by=decision.as_json()["decided_by"], user=principal.name,
    )


def permitted(ctx: Context, principal: Principal, operations, request_context: RequestContext | None = None
              ) -> frozenset[str]:
    """Which of ``operations`` :func:`authorize` would allow: for a front end that shows only what the
    principal may do (the console's buttons).  Records nothing; the operation itself is authorized again."""
    rc = _request_context(ctx, request_context)
    return frozenset(op for op in operations
                     if _decide(ctx, principal, operation=op, action=None, resource=resource_for(ctx, op),
                                rc=rc).allowed)
