"""/v1/codes, /v1/cas and a registered CA's CRL: register codes, the CA registry, managed CAs."""

from __future__ import annotations

from fastapi import APIRouter, Query

from ...services import cas, codes, crls, managed, renewal
from ...services.paging import Status
from .. import models as m
from ._common import CALLER, CURSOR, LIMIT, Caller, duration, out

router = APIRouter()
SN = "CA serial (hex, any case, colons allowed) or SHA-256 fingerprint"


@router.post("/codes", status_code=201, response_model=m.RegisterCodePublic, summary="New register code")
def code_new(body: m.CodeNew, caller: Caller = CALLER):
    return out(caller.run("code.new", codes.new_code, ttl=duration(body.ttl)), 201)


@router.post("/cas/register", status_code=201, response_model=m.CaPublic, summary="Register a CA you own")
def ca_register(body: m.CaRegister, caller: Caller = CALLER):
    return out(caller.run(
        "ca.register", cas.register_ca, certificate=body.certificate_pem.encode(),
        verification=body.verification_pem.encode(), name=body.name, inactive=body.inactive,
        chain=body.chain_pem.encode() if body.chain_pem is not None else None), 201)


@router.post("/cas", status_code=201, response_model=m.CaPublic, summary="Create a managed CA")
def ca_create(body: m.CaCreate, caller: Caller = CALLER):
    return out(caller.run("ca.create", managed.create_ca, name=body.name, key_type=body.key_type, days=body.days,
                          parent=body.parent, path_length=body.path_length, subject=body.subject), 201)


@router.get("/cas", response_model=m.CaPage, summary="List CAs")
def ca_list(status: Status | None = None, limit: int | None = LIMIT,
            cursor: str | None = CURSOR, caller: Caller = CALLER):
    return out(caller.run("ca.list", cas.list_cas, status=status, limit=limit, cursor=cursor))


@router.get("/cas/{ca_sn}", response_model=m.CaDetail, summary="Show a CA, its PEM and enrollment settings")
def ca_show(ca_sn: str, caller: Caller = CALLER):
    return out(caller.run("ca.show", renewal.ca_detail, ca_sn))


@router.post("/cas/{ca_sn}/activate", response_model=m.CaPublic, summary="Trust a CA again")
def ca_activate(ca_sn: str, caller: Caller = CALLER):
    return out(caller.run("ca.activate", cas.activate_ca, ca_sn))


@router.post("/cas/{ca_sn}/deactivate", response_model=m.CaPublic, summary="Stop trusting a CA")
def ca_deactivate(ca_sn: str, caller: Caller = CALLER):
    return out(caller.run("ca.deactivate", cas.deactivate_ca, ca_sn))


@router.delete("/cas/{ca_sn}", response_model=m.Deleted, summary="Delete a CA")
def ca_delete(ca_sn: str, cascade: bool = Query(False, description="Also delete its device certificates."),
              caller: Caller = CALLER):
    return out(caller.run("ca.delete", cas.delete_ca, ca_sn, cascade=cascade))


@router.get("/cas/{ca_sn}/crl-request", response_model=m.CrlRequestOut,
            summary="What a registered CA's next CRL must list (for `pki crl sign`)")
def crl_request(ca_sn: str, lifetime: str = Query("7d", max_length=32), caller: Caller = CALLER):
    return out(caller.run("crl.request", crls.crl_request, ca=ca_sn, lifetime=duration(lifetime)))


@router.post("/cas/{ca_sn}/crl", status_code=201, response_model=m.CrlInfoOut,
             summary="Upload a registered CA's CRL")
def crl_upload(ca_sn: str, body: m.CrlUpload, caller: Caller = CALLER):
    return out(caller.run("crl.upload", crls.upload_crl, ca=ca_sn, crl=body.crl_pem.encode()), 201)
