"""/v1/cas/requests and /v1/cas/install-signed: a managed CA signed by an outside root."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from ...services import ca_requests
from .. import models as m
from ._common import CALLER, Caller, out

router = APIRouter()
_PEM_MAX = m.PEM_MAX


class CaRequestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, max_length=128)
    subject: str | None = Field(None, max_length=1024, description="As openssl writes it: C=DE,O=Acme,CN=Line 3.")
    key_type: m.KeyType = "ec-p256"  # type: ignore[valid-type]


class CaRequestOut(BaseModel):
    ref: str
    name: str
    subject: str
    key_type: str
    status: Literal["PENDING"]
    created_at: str
    csr_pem: str


class InstallSigned(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ref: str | None = Field(None, max_length=64, description="The request (default: the one holding the key).")
    certificate_pem: str = Field(max_length=_PEM_MAX)
    chain_pem: str | None = Field(None, max_length=_PEM_MAX * 16)


@router.post("/cas/requests", status_code=201, response_model=CaRequestOut,
             summary="Make a managed CA's key and a CSR for an outside root to sign")
def ca_request(body: CaRequestIn, caller: Caller = CALLER):
    return out(caller.run("ca.request", ca_requests.request_ca, name=body.name, subject=body.subject,
                          key_type=body.key_type), 201)


@router.post("/cas/install-signed", status_code=201, response_model=m.CaPublic,
             summary="Install the outside root's certificate for a pending CA request")
def ca_install_signed(body: InstallSigned, caller: Caller = CALLER):
    return out(caller.run("ca.install", ca_requests.install_signed, ref=body.ref,
                          certificate=body.certificate_pem.encode(),
                          chain=body.chain_pem.encode() if body.chain_pem is not None else None), 201)



