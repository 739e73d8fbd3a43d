"""/v1/identities, /v1/permissions, /v1/blocklist and /v1/hook-tokens: the broker data plane's management.

The bodies are the CLI's options under their service names; the answers are the CLI's --json.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from ...services.dataplane import blocklist, hook_tokens, identities, permissions
from ...services.dataplane.blocklist import BlockPublic
from ...services.dataplane.hook_tokens import HookTokenPublic
from ...services.dataplane.identities import IdentityPublic
from ...services.dataplane.permissions import PermissionPublic
from ...services.paging import Status
from ..models import Deleted, PageOf, _In
from ._common import CALLER, CURSOR, LIMIT, Caller, out

__all__ = ["router"]

router = APIRouter()

#: An MQTT string is at most 65,535 bytes; a little more leaves the byte count to the service.
_MQTT_BYTES = 70_000


def _optional(max_length: int):
    return Field(None, max_length=max_length)


class IdentityAdd(_In):
    username: str = Field(max_length=256)
    password: str = Field(max_length=_MQTT_BYTES, description="Kept only as a PBKDF2-SHA512 hash; never returned.")
    client_id: str | None = _optional(256)
    superuser: bool = False


class IdentityUpdate(_In):
    password: str | None = Field(None, max_length=_MQTT_BYTES)
    client_id: str | None = _optional(256)
    clear_client_id: bool = False
    superuser: bool | None = None
    status: Status | None = None


class PermissionAdd(_In):
    effect: str = Field(max_length=16)
    action: str = Field(max_length=16)
    topic: str = Field(max_length=_MQTT_BYTES)
    username: str | None = _optional(256)
    client_id: str | None = _optional(256)
    all_clients: bool = False
    ip: str | None = Field(None, max_length=64)
    qos: list[int] | str | None = Field(None, description="QoS levels, e.g. [0, 1] or \"0,1\".")
    retain: bool | None = None
    priority: int | str = Field(0, description="An integer; lower is tried first.")


class DefaultSet(_In):
    effect: str = Field(max_length=16)


class DefaultOut(BaseModel):
    instance: str
    default: str


class PermissionCheck(_In):
    username: str | None = _optional(_MQTT_BYTES)
    client_id: str | None = _optional(_MQTT_BYTES)
    ip: str | None = Field(None, max_length=64)
    action: str = Field(max_length=16)
    topic: str | None = _optional(_MQTT_BYTES)
    qos: int | None = None
    retain: bool | None = None


class CheckOut(BaseModel):
    decision: Literal["allow", "deny"]
    allowed: bool
    reason: str
    rule: PermissionPublic | None
    blocked_by: BlockPublic | None


class BlockAdd(_In):
    client_id: str | None = _optional(256)
    username: str | None = _optional(256)
    ip: str | None = Field(None, max_length=64)
    until: str | None = Field(None, max_length=64, description="An ISO-8601 time; absent for good.")


class HookTokenCreate(_In):
    name: str = Field(max_length=256)
    cidrs: list[str] = Field(default_factory=list, max_length=hook_tokens.MAX_CIDRS)


class HookTokenCreated(BaseModel):
    name: str
    token: str


# -- identities ---------------------------------------------------------------------------------


@router.post("/identities", status_code=201, response_model=IdentityPublic, summary="Create a broker identity")
def identity_add(body: IdentityAdd, caller: Caller = CALLER):
    return out(caller.run("identity.add", identities.add, **body.model_dump()), 201)


@router.get("/identities", response_model=PageOf[IdentityPublic], summary="List broker identities")
def identity_list(status: Status | None = None, limit: int | None = LIMIT, cursor: str | None = CURSOR,
                  caller: Caller = CALLER):
    return out(caller.run("identity.list", identities.list_identities, status=status, limit=limit, cursor=cursor))


@router.get("/identities/{username}", response_model=IdentityPublic, summary="Show a broker identity")
def identity_show(username: str, caller: Caller = CALLER):
    return out(caller.run("identity.show", identities.show, username=username))


@router.patch("/identities/{username}", response_model=IdentityPublic,
              summary="Change an identity's password, client-id binding, superuser flag or status")
def identity_update(username: str, body: IdentityUpdate, caller: Caller = CALLER):
    return out(caller.run("identity.update", identities.update, username=username, **body.model_dump()))


@router.delete("/identities/{username}", response_model=Deleted, summary="Delete a broker identity")
def identity_delete(username: str, caller: Caller = CALLER):
    return out(caller.run("identity.delete", identities.delete, username=username))


# -- permissions (the fixed paths before /permissions/{id}) --------------------------------------


@router.post("/permissions", status_code=201, response_model=PermissionPublic, summary="Add a permission rule")
def permission_add(body: PermissionAdd, caller: Caller = CALLER):
    return out(caller.run("permission.add", permissions.add, **body.model_dump()), 201)


@router.get("/permissions", response_model=PageOf[PermissionPublic], summary="List permission rules")
def permission_list(limit: int | None = LIMIT, cursor: str | None = CURSOR, caller: Caller = CALLER):
    return out(caller.run("permission.list", permissions.list_permissions, limit=limit, cursor=cursor))


@router.get("/permissions/default", response_model=DefaultOut, summary="What decides when no rule matches")
def permission_default_get(caller: Caller = CALLER):
    return out(caller.run("permission.default.get", permissions.get_default))


@router.put("/permissions/default", response_model=DefaultOut, summary="Set what decides when no rule matches")
def permission_default_set(body: DefaultSet, caller: Caller = CALLER):
    return out(caller.run("permission.default.set", permissions.set_default, effect=body.effect))


@router.post("/permissions/check", response_model=CheckOut,
             summary="Decide as the broker hooks would, naming the rule (a deny is a 200 answer)")
def permission_check(body: PermissionCheck, caller: Caller = CALLER):
    return out(caller.run("permission.check", permissions.check, **body.model_dump()))


@router.get("/permissions/{id}", response_model=PermissionPublic, summary="Show a permission rule")
def permission_show(id: str, caller: Caller = CALLER):  # noqa: A002
    return out(caller.run("permission.show", permissions.show, id=id))


@router.delete("/permissions/{id}", response_model=Deleted, summary="Delete a permission rule")
def permission_delete(id: str, caller: Caller = CALLER):  # noqa: A002
    return out(caller.run("permission.delete", permissions.delete, id=id))


# -- the connect blocklist ------------------------------------------------------------------------


@router.post("/blocklist", status_code=201, response_model=BlockPublic, summary="Block a client id, username or IP")
def blocklist_add(body: BlockAdd, caller: Caller = CALLER):
    return out(caller.run("blocklist.add", blocklist.add, **body.model_dump()), 201)


@router.get("/blocklist", response_model=PageOf[BlockPublic], summary="List blocklist entries")
def blocklist_list(limit: int | None = LIMIT, cursor: str | None = CURSOR, caller: Caller = CALLER):
    return out(caller.run("blocklist.list", blocklist.list_blocks, limit=limit, cursor=cursor))


@router.delete("/blocklist/{id}", response_model=Deleted, summary="Lift a blocklist entry")
def blocklist_delete(id: str, caller: Caller = CALLER):  # noqa: A002
    return out(caller.run("blocklist.delete", blocklist.delete, id=id))


# -- hook tokens -----------------------------------------------------------------------------------


@router.post("/hook-tokens", status_code=201, response_model=HookTokenCreated,
             summary="Create a hook token (the token is in this answer only)")
def hook_token_create(body: HookTokenCreate, caller: Caller = CALLER):
    return out(caller.run("hook.token.create", hook_tokens.create, name=body.name, cidrs=body.cidrs), 201)


@router.get("/hook-tokens", response_model=PageOf[HookTokenPublic], summary="List hook tokens (never the tokens)")
def hook_token_list(limit: int | None = LIMIT, cursor: str | None = CURSOR, caller: Caller = CALLER):
    return out(caller.run("hook.token.list", hook_tokens.list_tokens, limit=limit, cursor=cursor))


@router.delete("/hook-tokens/{name}", response_model=Deleted, summary="Delete a hook token")
def hook_token_delete(name: str, caller: Caller = CALLER):
    return out(caller.run("hook.token.delete", hook_tokens.delete, name=name))
