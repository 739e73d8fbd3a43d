"""/v1/keys: the custody keys, and master-key rotation on the server's store."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from ...services import custody, master_keys
from ..models import PageOf, _In
from ._common import CALLER, Caller, out

router = APIRouter()


class KeyUse(BaseModel):
    ca_sn: str
    instance: str
    use: str = Field(description="ca: the CA's own key; ocsp: its delegated OCSP responder key.")


class KeyPublic(BaseModel):
    """A custody key: where it is and who uses it, never key material."""

    model_config = ConfigDict(extra="allow")
    key_id: str
    custody: str = Field(description="software (sealed under the master key) or pkcs11 (on a token).")
    key_type: str
    created_at: str
    used_by: list[KeyUse]
    uri: str | None = Field(None, description="pkcs11: the key's RFC 7512 URI (no PIN).")
    master_key_id: str | None = Field(None, description="software: the master key the blob is sealed under.")


class RotateMaster(_In):
    new_key_file: str = Field(min_length=1, max_length=4096,
                              description="The new master key file on the server's machine (mode 0600).")
    batch_size: int = Field(500, ge=1, le=10_000)


class Rotation(BaseModel):
    model_config = ConfigDict(extra="allow")
    new_master_key_id: str
    old_master_key_ids: list[str]
    moved: int
    remaining: int
    old_keys_retired: bool
    new_key_file: str
    message: str


@router.get("/keys", response_model=PageOf[KeyPublic], summary="List custody keys (software or PKCS#11)")
def keys_list(caller: Caller = CALLER):
    return out(caller.run("keys.list", custody.list_keys))


@router.post("/keys/rotate-master", response_model=Rotation,
             summary="Re-seal every sealed blob under a new master key (rerun after an interruption)")
def keys_rotate_master(body: RotateMaster, caller: Caller = CALLER):
    return out(caller.run("keys.master.rotate", master_keys.rotate_master, new_key_file=body.new_key_file,
                          batch_size=body.batch_size))
