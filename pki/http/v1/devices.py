"""/v1 device certificates: issue, register, find, change status.

``pki device provision`` has no endpoint: it writes key files on the machine
that runs it.  Over HTTP a factory line issues one device per request
(``POST /v1/cas/{ca_sn}/devices``), or runs ``provision`` where the files
should be.
"""

from __future__ import annotations

from fastapi import APIRouter, Query

from ...errors import InvalidInput
from ...ids import parse_time
from ...services import device_lookup, devices, renewal
from ...services.paging import DeviceStatus
from .. import models as m
from ._common import CALLER, CURSOR, LIMIT, Caller, out

router = APIRouter()


def _issue(ctx, *, body: m.DeviceIssue, ca_sn: str) -> dict:
    # Rendered inside the call, so that a long (RSA) issuance serializes its key off the event loop too.
    return devices.issue_device(
        ctx, ca=ca_sn, csr=body.csr_pem.encode() if body.csr_pem is not None else None, generate=body.generate,
        client_id=body.client_id, days=body.days, sans=tuple(body.sans), key_type=body.key_type).as_json()


@router.post("/cas/{ca_sn}/devices", status_code=201, response_model=m.IssuedDevice,
             summary="Issue a device certificate from a CSR or with a key generated here")
async def device_issue(ca_sn: str, body: m.DeviceIssue, caller: Caller = CALLER):
    # Signing a CSR or making an EC key takes well under a millisecond; an RSA key, far longer.
    short = body.csr_pem is not None or not body.key_type.startswith("rsa")
    return out(await caller.call("device.issue", _issue, body=body, ca_sn=ca_sn, short=short), 201)


@router.post("/devices/register", status_code=201, response_model=m.DevicePublic,
             summary="Record a device certificate issued elsewhere")
def device_register(body: m.DeviceRegister, caller: Caller = CALLER):
    return out(caller.run("device.register", devices.register_device, certificate=body.certificate_pem.encode()),
               201)


@router.get("/cas/{ca_sn}/devices", response_model=m.DevicePage, summary="List a CA's device certificates")
def device_list(ca_sn: str, status: DeviceStatus | None = None,
                expiring_before: str | None = Query(None, max_length=64), limit: int | None = LIMIT,
                cursor: str | None = CURSOR, caller: Caller = CALLER):
    return out(caller.run("device.list", devices.list_devices, ca=ca_sn, status=status,
                          expiring_before=parse_time(expiring_before, what="expiring_before", naive_is_utc=True) if expiring_before else None, limit=limit, cursor=cursor))


@router.get("/devices", response_model=m.DevicePage,
            summary="Find device certificates by fingerprint or client id, or list the instance's")
async def device_find(fingerprint: str | None = Query(None, max_length=128),
                      client_id: str | None = Query(None, max_length=256), status: DeviceStatus | None = None,
                      expiring_before: str | None = Query(None, max_length=64), limit: int | None = LIMIT,
                      cursor: str | None = CURSOR, caller: Caller = CALLER):
    if fingerprint or client_id:
        if status is not None or expiring_before is not None or limit is not None or cursor is not None:
            raise InvalidInput("fingerprint and client_id find; status, expiring_before, limit and cursor list: "
                               "not both", code="invalid_request")
        return out(await caller.call("device.find", devices.find_devices, fingerprint=fingerprint,
                                     client_id=client_id))
    # Without either: every device certificate of the instance, a page at a time (pki/services/device_lookup.py).
    before = parse_time(expiring_before, what="expiring_before", naive_is_utc=True) if expiring_before else None
    return out(await caller.call("device.find", device_lookup.list_instance_devices, status=status,
                                 expiring_before=before, limit=limit, cursor=cursor))


@router.get("/cas/{ca_sn}/devices/{sn}", response_model=m.DeviceDetail,
            summary="Show a device certificate, its PEM and its replacements")
async def device_show(ca_sn: str, sn: str, caller: Caller = CALLER):
    return out(await caller.call("device.show", renewal.device_detail, ca=ca_sn, sn=sn))


@router.post("/cas/{ca_sn}/devices/{sn}/activate", response_model=m.DevicePublic,
             summary="Let an INACTIVE device certificate in again")
def device_activate(ca_sn: str, sn: str, caller: Caller = CALLER):
    return out(caller.run("device.activate", devices.activate_device, ca=ca_sn, sn=sn))


@router.post("/cas/{ca_sn}/devices/{sn}/deactivate", response_model=m.DevicePublic,
             summary="Hold a device certificate (certificateHold on the CRL)")
def device_deactivate(ca_sn: str, sn: str, caller: Caller = CALLER):
    return out(caller.run("device.deactivate", devices.deactivate_device, ca=ca_sn, sn=sn))


@router.post("/cas/{ca_sn}/devices/{sn}/revoke", response_model=m.DevicePublic,
             summary="Revoke a device certificate (final)")
def device_revoke(ca_sn: str, sn: str, body: m.DeviceRevoke, caller: Caller = CALLER):
    return out(caller.run("device.revoke", devices.revoke_device, ca=ca_sn, sn=sn, reason=body.reason))


@router.delete("/cas/{ca_sn}/devices/{sn}", response_model=m.Deleted,
               summary="Delete an expired device certificate")
def device_delete(ca_sn: str, sn: str, caller: Caller = CALLER):
    return out(caller.run("device.delete", devices.delete_device, ca=ca_sn, sn=sn))
