"""/v1/secrets and /v1/secret-groups: one device, one secret; enrollment groups."""

from __future__ import annotations

from fastapi import APIRouter, Query

from ...services import secrets as service
from ...services.paging import Status
from .. import models as m
from ._common import CALLER, CURSOR, LIMIT, Caller, duration, out

router = APIRouter()
GROUP = Query(None, max_length=128, description="Act on the client id as a member of this enrollment group.")


@router.post("/secrets", status_code=201, response_model=m.SecretPublic,
             summary="Create a device's credential (the secret is in this answer only)")
def secret_register(body: m.SecretRegister, caller: Caller = CALLER):
    return out(caller.run("secret.register", service.register_secret, client_id=body.client_id), 201)


@router.get("/secrets", response_model=m.SecretPage, summary="List credentials (never their secrets)")
def secret_list(status: Status | None = None, limit: int | None = LIMIT,
                cursor: str | None = CURSOR, caller: Caller = CALLER):
    return out(caller.run("secret.list", service.list_secrets, status=status, limit=limit, cursor=cursor))


@router.post("/secrets/verify", response_model=m.SecretVerified,
             summary="The broker's username/password check (403 authentication_failed on a refusal)")
def secret_verify(body: m.SecretVerify, caller: Caller = CALLER):
    return out(caller.run("secret.verify", service.authenticate, client_id=body.client_id, username=body.username,
                          password=body.password, clock_skew=duration(body.clock_skew)))


@router.get("/secrets/{client_id}", response_model=m.SecretPublic, summary="Show a credential")
def secret_show(client_id: str, reveal: bool = Query(False, description="Include the current secret."),
                caller: Caller = CALLER):
    return out(caller.run("secret.reveal" if reveal else "secret.show", service.show_secret, client_id=client_id,
                          reveal=reveal))


@router.post("/secrets/{client_id}/refresh", response_model=m.SecretPublic, summary="Rotate a device's secret")
def secret_refresh(client_id: str, body: m.SecretRefresh, caller: Caller = CALLER):
    return out(caller.run("secret.refresh", service.refresh_secret, client_id=client_id,
                          grace=duration(body.grace)))


@router.delete("/secrets/{client_id}", response_model=m.Deleted, summary="Delete a device's credential")
def secret_unregister(client_id: str, caller: Caller = CALLER):
    return out(caller.run("secret.unregister", service.unregister_secret, client_id=client_id))


@router.post("/secrets/{client_id}/activate", response_model=m.SecretPublic | m.MemberPublic,
             summary="Accept a credential (or a group member) again")
def secret_activate(client_id: str, group: str | None = GROUP, caller: Caller = CALLER):
    return out(caller.run("secret.activate", service.activate_secret, client_id=client_id, group=group))


@router.post("/secrets/{client_id}/deactivate", response_model=m.SecretPublic | m.MemberPublic,
             summary="Refuse a credential (or a group member)")
def secret_deactivate(client_id: str, group: str | None = GROUP, caller: Caller = CALLER):
    return out(caller.run("secret.deactivate", service.deactivate_secret, client_id=client_id, group=group))


@router.post("/secret-groups", status_code=201, response_model=m.GroupPublic, summary="Create an enrollment group")
def group_create(body: m.GroupCreate, caller: Caller = CALLER):
    return out(caller.run("secret.group.create", service.create_group, name=body.name), 201)


@router.get("/secret-groups", response_model=m.GroupPage, summary="List enrollment groups")
def group_list(status: Status | None = None, limit: int | None = LIMIT,
               cursor: str | None = CURSOR, caller: Caller = CALLER):
    return out(caller.run("secret.group.list", service.list_groups, status=status, limit=limit, cursor=cursor))


@router.get("/secret-groups/{name}", response_model=m.GroupPublic, summary="Show an enrollment group")
def group_show(name: str, caller: Caller = CALLER):
    return out(caller.run("secret.group.show", service.show_group, name=name))


@router.post("/secret-groups/{name}/disable", response_model=m.GroupPublic, summary="Refuse every member")
def group_disable(name: str, caller: Caller = CALLER):
    return out(caller.run("secret.group.disable", service.disable_group, name=name))


@router.post("/secret-groups/{name}/enable", response_model=m.GroupPublic, summary="Let members pass again")
def group_enable(name: str, caller: Caller = CALLER):
    return out(caller.run("secret.group.enable", service.enable_group, name=name))


@router.get("/secret-groups/{name}/members/{client_id}/secret", response_model=m.MemberPublic,
            summary="A member's derived secret, for the factory line")
def secret_derive(name: str, client_id: str, caller: Caller = CALLER):
    return out(caller.run("secret.derive", service.derive_member_secret, group=name, client_id=client_id))
