"""/v1/users, /v1/access-keys, /v1/policies, /v1/audit: principals, policies and the audit log."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Path, Query

from ...ids import parse_time
from ...services import audit as audit_service
from ...services import authorize, policies, users
from ...services.policy import action_catalogue
from .. import models as m
from ._common import CALLER, CURSOR, LIMIT, Caller, out

router = APIRouter()


# -- users and access keys ---------------------------------------------------------------------


@router.post("/users", status_code=201, response_model=m.UserCreated,
             summary="Create a user with one access key (the secret is in this answer only)")
def user_create(body: m.UserCreate, caller: Caller = CALLER):
    return out(caller.run("user.create", users.create_user, body.name), 201)


@router.get("/users", response_model=m.UserPage, summary="List users")
def user_list(limit: int | None = LIMIT, cursor: str | None = CURSOR, caller: Caller = CALLER):
    return out(caller.run("user.list", users.list_users, limit=limit, cursor=cursor))


@router.get("/users/{name}", response_model=m.UserPublic, summary="Show a user")
def user_show(name: str, caller: Caller = CALLER):
    return out(caller.run("user.show", users.show_user, name))


@router.post("/users/{name}/disable", response_model=m.UserPublic, summary="Disable a user (its keys stop working)")
def user_disable(name: str, caller: Caller = CALLER):
    return out(caller.run("user.disable", users.disable_user, name))


@router.post("/users/{name}/enable", response_model=m.UserPublic, summary="Enable a user again")
def user_enable(name: str, caller: Caller = CALLER):
    return out(caller.run("user.enable", users.enable_user, name))


@router.delete("/users/{name}", response_model=m.Deleted, summary="Delete a user with its keys")
def user_delete(name: str, caller: Caller = CALLER):
    return out(caller.run("user.delete", users.delete_user, name))


@router.post("/users/{name}/keys", status_code=201, response_model=m.AccessKeyCreated,
             summary="Create an access key (the secret is in this answer only)")
def key_create(name: str, caller: Caller = CALLER):
    return out(caller.run("user.key.create", users.create_access_key, name), 201)


@router.post("/access-keys/{access_key_id}/disable", response_model=m.AccessKeyPublic, summary="Disable an access key")
def key_disable(access_key_id: str, caller: Caller = CALLER):
    return out(caller.run("user.key.disable", users.disable_access_key, access_key_id))


@router.post("/access-keys/{access_key_id}/enable", response_model=m.AccessKeyPublic, summary="Enable an access key")
def key_enable(access_key_id: str, caller: Caller = CALLER):
    return out(caller.run("user.key.enable", users.enable_access_key, access_key_id))


@router.delete("/access-keys/{access_key_id}", response_model=m.Deleted, summary="Delete an access key")
def key_delete(access_key_id: str, caller: Caller = CALLER):
    return out(caller.run("user.key.delete", users.delete_access_key, access_key_id))


# -- policies ----------------------------------------------------------------------------------


@router.post("/policies", status_code=201, response_model=m.PolicyPublic, summary="Create a custom policy")
def policy_create(body: m.PolicyCreate, caller: Caller = CALLER):
    return out(caller.run("policy.create", policies.create_policy, body.name, body.document,
                          description=body.description), 201)


@router.get("/policies", response_model=m.PolicyPage, summary="List system and custom policies")
def policy_list(limit: int | None = LIMIT, cursor: str | None = CURSOR, caller: Caller = CALLER):
    return out(caller.run("policy.list", policies.list_policies, limit=limit, cursor=cursor))


@router.get("/policies/actions", response_model=m.ActionPage,
            summary="The action catalogue (any authenticated caller)")
def policy_actions(caller: Caller = CALLER):
    caller.authenticate()
    return out(action_catalogue())


@router.post("/policies/simulate", response_model=m.DecisionOut,
             summary="Would a user be allowed an action? Says which statement decides")
def policy_simulate(body: m.PolicySimulate, caller: Caller = CALLER):
    return out(caller.run("policy.simulate", authorize.simulate, body.user, body.action, body.resource,
                          source_ip=body.source_ip, secure_transport=body.secure_transport,
                          now=parse_time(body.at, what="at") if body.at is not None else None, extra=body.context))


@router.get("/policies/{name}", response_model=m.PolicyPublic, summary="Show a policy")
def policy_show(name: str, caller: Caller = CALLER):
    return out(caller.run("policy.show", policies.show_policy, name))


@router.delete("/policies/{name}", response_model=m.Deleted, summary="Delete a custom policy")
def policy_delete(name: str, caller: Caller = CALLER):
    return out(caller.run("policy.delete", policies.delete_policy, name))


@router.post("/policies/{name}/attach", response_model=m.AttachmentPublic, summary="Attach a policy to a user")
def policy_attach(name: str, body: m.PolicyAttach, caller: Caller = CALLER):
    return out(caller.run("policy.attach", policies.attach_policy, name, user=body.user))


@router.post("/policies/{name}/detach", response_model=m.AttachmentPublic, summary="Detach a policy from a user")
def policy_detach(name: str, body: m.PolicyAttach, caller: Caller = CALLER):
    return out(caller.run("policy.detach", policies.detach_policy, name, user=body.user))


# -- audit -------------------------------------------------------------------------------------


@router.get("/audit", response_model=m.AuditPage, summary="List audit records")
def audit_list(limit: int | None = LIMIT, cursor: str | None = CURSOR,
               principal: str | None = Query(None, max_length=128), action: str | None = Query(None, max_length=128),
               result: Literal["success", "denied", "failed"] | None = None, newest_first: bool = False,
               caller: Caller = CALLER):
    return out(caller.run("audit.list", audit_service.list_records, limit=limit, cursor=cursor, principal=principal,
                          action=action, result=result, newest_first=newest_first))


@router.get("/audit/batches/{batch}", response_model=m.BatchDevicePage,
            summary="The devices of one provisioning batch, in order (its audit record holds their digest)")
def audit_batch(batch: str = Path(max_length=64), limit: int | None = LIMIT, cursor: str | None = CURSOR,
                caller: Caller = CALLER):
    return out(caller.run("audit.batch", audit_service.batch_devices, batch, limit=limit, cursor=cursor))


@router.get("/audit/verify", response_model=m.AuditVerifyOut,
            summary="Check the whole chain (409 audit_chain_broken naming the first bad record; the problem's "
                    "`result` is the whole verify result)")
def audit_verify(expect_head: str | None = Query(None, max_length=128,
                                                 description="A head_hash saved from an earlier verify"),
                 caller: Caller = CALLER):
    return out(caller.run("audit.verify", audit_service.check, expect_head=expect_head))
