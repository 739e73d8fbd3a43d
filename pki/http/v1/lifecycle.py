"""/v1 certificate lifecycle: fetch PEMs, renew and rekey, a CA's enrollment settings, enrollment claims."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from ...services import enrollment, renewal
from .. import models as m
from ._common import CALLER, Caller, duration, out

router = APIRouter()
PEM = "application/x-pem-file"
_PEM_ANSWER = {200: {"description": "PEM", "content": {PEM: {"schema": {"type": "string"}}}}}


@router.get("/cas/{ca_sn}/certificate.pem", response_class=Response, responses=_PEM_ANSWER,
            summary="A CA's certificate (PEM)")
def ca_certificate_pem(ca_sn: str, caller: Caller = CALLER):
    detail = caller.run("ca.show", renewal.ca_detail, ca_sn)
    return Response(detail["certificate_pem"], media_type=PEM)


@router.get("/cas/{ca_sn}/devices/{sn}/certificate.pem", response_class=Response, responses=_PEM_ANSWER,
            summary="A device certificate (PEM)")
def device_certificate_pem(ca_sn: str, sn: str, caller: Caller = CALLER):
    detail = caller.run("device.show", renewal.device_detail, ca=ca_sn, sn=sn)
    return Response(detail["certificate_pem"], media_type=PEM)


def _renew(ctx, *, ca_sn: str, sn: str, body: m.DeviceRenew) -> dict:
    return renewal.renew_device(
        ctx, ca=ca_sn, sn=sn, csr=body.csr_pem.encode() if body.csr_pem is not None else None,
        generate=body.generate, days=body.days, key_type=body.key_type,
        supersede_after=duration(body.supersede_after) if body.supersede_after is not None else None).as_json()


@router.post("/cas/{ca_sn}/devices/{sn}/renew", status_code=201, response_model=m.RenewedDevice,
             summary="Renew (same key) or rekey (a CSR's key, or one made here) a device certificate")
def device_renew(ca_sn: str, sn: str, body: m.DeviceRenew, caller: Caller = CALLER):
    return out(caller.run("device.renew", _renew, ca_sn=ca_sn, sn=sn, body=body), 201)


@router.patch("/cas/{ca_sn}", response_model=m.CaDetail, summary="Change a CA's enrollment settings")
def ca_update(ca_sn: str, body: m.CaUpdate, caller: Caller = CALLER):
    return out(caller.run(
        "ca.update", enrollment.update_ca, ca_sn, est_label=body.est_label, clear_est_label=body.clear_est_label,
        est_default=body.est_default, bootstrap_only=body.bootstrap_only,
        renew_after_expiry=duration(body.renew_after_expiry) if body.renew_after_expiry is not None else None,
        supersede_after=duration(body.supersede_after) if body.supersede_after is not None else None))


@router.post("/claims", status_code=201, response_model=m.ClaimCreated, summary="An enrollment claim for EST")
def claim_create(body: m.ClaimCreate, caller: Caller = CALLER):
    return out(caller.run("claim.create", enrollment.create_claim, ca=body.ca, uses=body.uses,
                          ttl=duration(body.ttl), client_id_prefix=body.client_id_prefix), 201)
