"""The HTTP service: ``create_app(ctx_factory)``.

For now (issue 5) only what a broker or a device fetches without
credentials: the trust bundle, CRLs and the OCSP responder.  The /v1 API
joins later as more routers on the same app; every path that needs no
authentication is listed in :data:`PUBLIC_PATHS`, and nowhere else.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import threading
from collections.abc import Callable

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from ..errors import PkiError
from ..services import artifacts, crls, ocsp
from ..services.context import Context
from ..x509.ocsp import MAX_OCSP_REQUEST_BYTES, unsuccessful_response

__all__ = ["create_app", "PUBLIC_PATHS", "HTTP_STATUS"]

#: Paths answered without authentication: what TLS clients and brokers fetch.
PUBLIC_PATHS: tuple[str, ...] = ("/ca-bundle.pem", "/crl/{ca_sn}.pem", "/ocsp", "/ocsp/{request:path}")

#: The one table from error family to HTTP status.
HTTP_STATUS = {
    "invalid_input": 400,
    "not_found": 404,
    "conflict": 409,
    "invalid_state": 409,
    "permission_denied": 403,
    "config": 500,
    "store": 503,
    "internal": 500,
}

PEM_CERTS = "application/x-pem-file"
OCSP_REQUEST = "application/ocsp-request"
OCSP_RESPONSE = "application/ocsp-response"


def _problem(exc: PkiError) -> JSONResponse:
    status = HTTP_STATUS.get(exc.family, 500)
    body = {"type": f"urn:pki:error:{exc.code}", "title": exc.code, "status": status, "detail": exc.message,
            "code": exc.code}
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


def _public_router(get_ctx: Callable[[], Context]) -> APIRouter:
    router = APIRouter()

    @router.get(PUBLIC_PATHS[0])
    def ca_bundle() -> Response:
        ctx = get_ctx()
        return Response(artifacts.live_trust_bundle(ctx), media_type=PEM_CERTS)

    @router.get(PUBLIC_PATHS[1])
    def crl(ca_sn: str) -> Response:
        info = crls.current_crl(get_ctx(), ca=ca_sn)
        return Response(info.pem, media_type=PEM_CERTS, headers={"Cache-Control": "max-age=300"})

    @router.post(PUBLIC_PATHS[2])
    async def ocsp_post(request: Request) -> Response:
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != OCSP_REQUEST:
            return Response(status_code=415, content=f"Content-Type must be {OCSP_REQUEST}\n")
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_OCSP_REQUEST_BYTES):
            return Response(status_code=413, content="OCSP request too large\n")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_OCSP_REQUEST_BYTES:
                return Response(status_code=413, content="OCSP request too large\n")
        return await _ocsp_answer(get_ctx, bytes(body))

    @router.get(PUBLIC_PATHS[3])
    async def ocsp_get(request: str) -> Response:
        if len(request) > MAX_OCSP_REQUEST_BYTES * 2:
            return Response(status_code=414, content="OCSP request too large\n")
        try:
            der = base64.b64decode(request, validate=True)
        except (binascii.Error, ValueError):
            try:
                der = base64.urlsafe_b64decode(request + "=" * (-len(request) % 4))
            except (binascii.Error, ValueError):
                return Response(unsuccessful_response("malformed"), media_type=OCSP_RESPONSE)
        return await _ocsp_answer(get_ctx, der)

    return router


async def _ocsp_answer(get_ctx, der: bytes) -> Response:
    from starlette.concurrency import run_in_threadpool

    try:
        answer = await run_in_threadpool(ocsp.respond, get_ctx(), der)
    except PkiError:
        answer = unsuccessful_response("internal")
    return Response(answer, media_type=OCSP_RESPONSE)


def create_app(ctx_factory: Callable[[], Context]) -> FastAPI:
    """The app; ``ctx_factory`` makes the one Context it serves from, on first use."""
    holder: dict[str, Context] = {}
    lock = threading.Lock()

    def get_ctx() -> Context:
        with lock:
            if "ctx" not in holder:
                holder["ctx"] = ctx_factory()
            return holder["ctx"]

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        if "ctx" in holder:
            holder.pop("ctx").close()

    app = FastAPI(title="Device PKI", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.add_exception_handler(PkiError, lambda _request, exc: _problem(exc))
    app.include_router(_public_router(get_ctx))
    return app
