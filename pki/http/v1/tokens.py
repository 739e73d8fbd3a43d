"""/v1/tokens and /v1/token-keys: broker tokens (seed 003's ApplyToken, QueryToken, RevokeToken) and
their signing keys.  The bodies are the CLI's options under their service names; the answers are the
CLI's --json.  The public key set itself is public: GET /.well-known/jwks.json (pki/http/jwks.py)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from ...dataplane import token_acl
from ...services import tokens
from ...services.tokens import KeyPublic, TokenPublic
from ..models import PageOf, _In
from ._common import CALLER, CURSOR, LIMIT, Caller, out

__all__ = ["router"]

router = APIRouter()


class TokenApply(_In):
    client_id: str = Field(max_length=256)
    username: str | None = Field(None, max_length=256)
    topics: list[str] = Field(default_factory=list, max_length=token_acl.MAX_TOPICS,
                              description="Topic filters; ${clientid} and ${username} are EMQX's placeholders.")
    action: Literal["publish", "subscribe", "all"] = "all"
    ttl: str | None = Field(None, max_length=16, description="e.g. 15m or 1h (default 1h; at most PKI_TOKEN_MAX_TTL).")
    superuser: bool = False


class TokenApplied(BaseModel):
    token: str
    token_id: str
    expires_at: str


class KeyRotate(_In):
    alg: Literal["ES256", "EdDSA", "RS256"] | None = None


@router.post("/tokens", status_code=201, response_model=TokenApplied,
             summary="Apply for a broker token (the token is in this answer only)")
def token_apply(body: TokenApply, caller: Caller = CALLER):
    return out(caller.run("token.apply", tokens.apply, **body.model_dump()), 201)


@router.get("/tokens", response_model=PageOf[TokenPublic], summary="List broker tokens (never the tokens)")
def token_list(client_id: str | None = None, status: str | None = None, limit: int | None = LIMIT,
               cursor: str | None = CURSOR, caller: Caller = CALLER):
    return out(caller.run("token.list", tokens.list_tokens, client_id=client_id, status=status, limit=limit,
                          cursor=cursor))


@router.get("/tokens/{token_id}", response_model=TokenPublic, summary="Show a broker token's claims and status")
def token_show(token_id: str, caller: Caller = CALLER):
    return out(caller.run("token.show", tokens.show, token_id=token_id))


@router.post("/tokens/{token_id}/revoke", response_model=TokenPublic,
             summary="Revoke a broker token: the hooks refuse it at once")
def token_revoke(token_id: str, caller: Caller = CALLER):
    return out(caller.run("token.revoke", tokens.revoke, token_id=token_id))


@router.post("/token-keys/rotate", status_code=201, response_model=KeyPublic,
             summary="Make a new current token signing key")
def token_key_rotate(body: KeyRotate, caller: Caller = CALLER):
    return out(caller.run("token.key.rotate", tokens.rotate, alg=body.alg), 201)


@router.get("/token-keys", response_model=PageOf[KeyPublic], summary="List the token signing keys")
def token_key_list(caller: Caller = CALLER):
    return out(caller.run("token.key.list", tokens.list_keys))
