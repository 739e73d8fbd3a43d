"""``GET /.well-known/jwks.json``: the public keys that verify this instance's broker tokens (RFC 7517
section 5), for a broker's own JWT check (EMQX's JWT authenticator with ``use_jwks``).  Public, like the
trust bundle: it holds public keys only.

It answers an ``ETag`` (a digest of the body) and ``Cache-Control: public, max-age=60``: a broker may
keep the set for a minute, and a conditional request (``If-None-Match``) is a 304 without a body.
The set holds the current key and the keys still verifying tokens they signed (pki/services/tokens/keys.py).
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..services import tokens
from ..services.context import Context

__all__ = ["JWKS_PATH", "CACHE_CONTROL", "jwks_router"]

JWKS_PATH = "/.well-known/jwks.json"
CACHE_CONTROL = "public, max-age=60"


def jwks_router(get_ctx: Callable[[], Context]) -> APIRouter:
    router = APIRouter()

    @router.get(JWKS_PATH, response_class=Response, tags=["Public"],
                responses={200: {"description": "JWK Set", "content": {"application/jwk-set+json": {}}},
                           304: {"description": "Not modified"}})
    def jwks(request: Request) -> Response:
        body, etag = tokens.jwks(get_ctx())
        headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
        wanted = request.headers.get("if-none-match", "")
        if etag in (tag.strip() for tag in wanted.split(",")) or wanted.strip() == "*":
            return Response(status_code=304, headers=headers)
        return Response(body, media_type="application/jwk-set+json", headers=headers)

    return router
