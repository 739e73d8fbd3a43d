"""The HTTP service: ``create_app(ctx_factory)``.

Two kinds of paths on one app:

- what a broker or a device fetches without credentials: the trust bundle,
  CRLs and the OCSP responder, listed in :data:`PUBLIC_PATHS` and nowhere
  else (plus ``/openapi.json`` and ``/docs``, which describe the API);
- the /v1 API (:mod:`pki.http.v1`): every CLI operation, JSON in and out,
  each request signed (:mod:`pki.signing`) and authorized.

Errors are RFC 7807 problem documents (``application/problem+json``) with
the stable code the CLI prints, built in one place (:mod:`pki.http.problems`,
which holds the one table from error family to status).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import threading
from collections.abc import Callable
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import PkiError, io_error
from ..services import artifacts, crls, ocsp
from ..services.context import Context
from ..x509.ocsp import MAX_OCSP_REQUEST_BYTES, unsuccessful_response
from .. import signing
from ..services.authn import RateLimit
from .broker import PREFIX as BROKER_PREFIX, BrokerHooks
from .jwks import JWKS_PATH, jwks_router
from .console import console_router
from .est import est_router
from . import service
from .deps import refuse_unsigned
from .middleware import PkiMiddleware
from .problems import PROBLEM, error_problem, problem_body
from .routing_gate import gate_included_routers
from .models import Problem
from .v1 import PREFIX, ROUTE_TABLE

__all__ = ["create_app", "PUBLIC_PATHS", "MAX_BODY_BYTES"]

log = logging.getLogger("pki.http")

#: Paths answered without authentication: what TLS clients and brokers fetch.
PUBLIC_PATHS: tuple[str, ...] = ("/ca-bundle.pem", "/crl/{ca_sn}.pem", "/ocsp", "/ocsp/{request:path}", JWKS_PATH)

#: Largest request body accepted on any path (413 request_too_large beyond).
MAX_BODY_BYTES = 1024 * 1024

PEM_CERTS = "application/x-pem-file"
OCSP_REQUEST = "application/ocsp-request"
OCSP_RESPONSE = "application/ocsp-response"


def _request_id(request: Request | None) -> str | None:
    return request.scope.get("state", {}).get("request_id") if request is not None else None


def _problem_response(status: int, code: str, detail: str, request: Request | None = None, *, headers=None,
                      **extra) -> JSONResponse:
    body = problem_body(status, code, detail, _request_id(request), **extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _problem(exc: PkiError, request: Request | None = None) -> JSONResponse:
    status, body, headers = error_problem(exc, _request_id(request))
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers or None)


def _unsigned_refusal(request: Request) -> JSONResponse | None:
    """The 401 for a /v1 request not validly signed that is about to be refused on its input, else None.

    Authentication first: only the signing headers and the body's hash are
    looked at before it, so a forged or unsigned request learns nothing about
    the API's validation (see pki.http.deps).  Handlers run in a worker thread
    (they are sync functions), where refuse_unsigned may read the key's secret.
    """
    if not request.scope["path"].startswith(PREFIX + "/"):
        return None
    try:
        refuse_unsigned(request)
    except PkiError as refusal:
        return _problem(refusal, request)
    return None


def _error_problem(request: Request, exc: PkiError) -> JSONResponse:
    if exc.family not in ("unauthenticated", "rate_limited"):  # those come from authentication itself
        refusal = _unsigned_refusal(request)
        if refusal is not None:
            return refusal
    return _problem(exc, request)


def _public_router(get_ctx: Callable[[], Context]) -> APIRouter:
    router = APIRouter()

    pem = {200: {"description": "PEM", "content": {PEM_CERTS: {"schema": {"type": "string"}}}}}
    problem = {"content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    ocsp_answer = {200: {"description": "DER OCSP response (errors as unsuccessful OCSP responses)",
                         "content": {OCSP_RESPONSE: {"schema": {"type": "string", "format": "binary"}}}}}
    text = {"content": {"text/plain": {"schema": {"type": "string"}}}}

    @router.get(PUBLIC_PATHS[0], response_class=Response, responses=pem, tags=["Public"])
    def ca_bundle() -> Response:
        ctx = get_ctx()
        return Response(artifacts.live_trust_bundle(ctx), media_type=PEM_CERTS)

    @router.get(PUBLIC_PATHS[1], response_class=Response, tags=["Public"],
                responses={**pem, 400: {"description": "Bad serial", **problem},
                           404: {"description": "No such CA", **problem},
                           409: {"description": "No CRL", **problem}})
    def crl(ca_sn: str) -> Response:
        info = crls.current_crl(get_ctx(), ca=ca_sn)
        return Response(info.pem, media_type=PEM_CERTS, headers={"Cache-Control": "max-age=300"})

    @router.post(PUBLIC_PATHS[2], response_class=Response, tags=["Public"],
                 responses={**ocsp_answer, 413: {"description": "Too large", **text},
                            415: {"description": "Wrong Content-Type", **text}})
    async def ocsp_post(request: Request) -> Response:
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != OCSP_REQUEST:
            return Response(status_code=415, content=f"Content-Type must be {OCSP_REQUEST}\n", media_type="text/plain")
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_OCSP_REQUEST_BYTES):
            return Response(status_code=413, content="OCSP request too large\n", media_type="text/plain")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_OCSP_REQUEST_BYTES:
                return Response(status_code=413, content="OCSP request too large\n", media_type="text/plain")
        return await _ocsp_answer(get_ctx, bytes(body))

    @router.get(PUBLIC_PATHS[3], response_class=Response, tags=["Public"],
                responses={**ocsp_answer, 414: {"description": "Too large", **text}})
    async def ocsp_get(request: str) -> Response:
        if len(request) > MAX_OCSP_REQUEST_BYTES * 2:
            return Response(status_code=414, content="OCSP request too large\n", media_type="text/plain")
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


def _validation_problem(request: Request, exc: RequestValidationError) -> JSONResponse:
    refusal = _unsigned_refusal(request)
    if refusal is not None:
        return refusal
    # Never echo the input back: it may be a secret or a private key.
    errors = [{"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", ""), "type": e.get("type", "")}
              for e in exc.errors()][:20]
    where = ", ".join(".".join(e["loc"]) + ": " + e["msg"] for e in errors[:3])
    return _problem_response(400, "invalid_request", f"the request does not match the API: {where}; see /docs",
                             request, errors=errors)


def _http_problem(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    codes = {404: "route_not_found", 405: "method_not_allowed"}
    code = codes.get(exc.status_code, f"http_{exc.status_code}")
    detail = exc.detail if isinstance(exc.detail, str) else code
    if exc.status_code == 404:
        detail = f"no such path {request.url.path}; /docs lists the API"
    return _problem_response(exc.status_code, code, detail, request, headers=getattr(exc, "headers", None))


def _os_error(request: Request, exc: OSError) -> JSONResponse:
    # A full disk or a failing device is the store's family (503, retry later); any other OSError on
    # the server's own files is a fault of this server, not of the request.
    err = io_error(exc)
    return _problem(err, request) if err.family == "store" else _unexpected(request, exc)


def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s (request %s)", request.method, request.url.path, _request_id(request))
    return _problem_response(500, "internal_error", f"unexpected {type(exc).__name__}; the server log has the "
                             f"details (request id {_request_id(request)})", request)


_PROBLEM_STATUSES = {400: "Invalid request", 401: "Not signed, or badly signed", 403: "Not allowed",
                     404: "Not found", 409: "Conflict or invalid state", 413: "Body too large",
                     429: "Rate limited (see Retry-After)", 503: "The database is unavailable"}

_DESCRIPTION = f"""Device PKI: CAs, device certificates and secrets for MQTT fleets.

Every `/v1` request is signed with an access key (`pki user create`,
`pki user key create`); the Python client `pki.client.Client` does it.
The scheme (see `pki.signing`): headers `{signing.HEADER_ACCESS_KEY}`,
`{signing.HEADER_TIMESTAMP}` (Unix seconds), `{signing.HEADER_NONCE}` (16-128 of A-Z a-z 0-9 _ -,
never reused) and `{signing.HEADER_SIGNATURE}` = hex HMAC-SHA256, keyed with the secret, of

    {signing.ALGORITHM}\\nMETHOD\\nPATH\\nSORTED_QUERY\\nTIMESTAMP\\nNONCE\\nACCESS_KEY_ID\\nhex(SHA-256(body))

Timestamps more than {signing.MAX_SKEW} s off are refused (401 `signature_expired`), so is a nonce
used twice (401 `nonce_replayed`). Errors are RFC 7807 problem documents with a stable `code`.

Not over HTTP: `pki device provision` (it writes key files where it runs: use it there, or issue one
device per request), and the offline helpers `pki ca verification-cert` and `pki crl sign`
(they need a CA private key that must never reach the server).
Unauthenticated: {", ".join(PUBLIC_PATHS + service.SERVICE_PATHS)} (`/metrics` needs a bearer token when
the server was started with one).
"""


def _openapi(app: FastAPI) -> dict:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=_DESCRIPTION, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    ref = {"$ref": "#/components/schemas/Problem"}
    for path, item in schema.get("paths", {}).items():
        if not path.startswith(PREFIX + "/"):
            # FastAPI's 422 names the HTTPValidationError schema dropped below (ReDoc refuses the whole
            # document over such a dangling reference); a bad request is a 400 problem here too.
            for op in item.values():
                if op.get("responses", {}).pop("422", None) is not None:
                    op["responses"].setdefault("400", {"description": _PROBLEM_STATUSES[400],
                                                       "content": {PROBLEM: {"schema": ref}}})
            continue
        for op in item.values():
            responses = op.setdefault("responses", {})
            responses.pop("422", None)
            for status, text in _PROBLEM_STATUSES.items():
                responses.setdefault(str(status), {"description": text, "content": {PROBLEM: {"schema": ref}}})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    service.declare_security(schema, PREFIX)
    app.openapi_schema = schema
    return schema


def served(app: FastAPI):
    """What ``pki serve`` runs: ``/broker/`` calls go straight to the hooks, through PkiMiddleware alone
    (request id, body cap, source IP, access log), and every other request to ``app``.

    FastAPI's own outer layers (its error and telemetry middlewares, its body limit) cost a broker call a
    tenth of its server time, for nothing the hooks use (BENCHMARKS.md, "Broker hooks").  ``app`` answers
    /broker/ the same way for whoever calls it directly (the tests' ASGI clients).
    """
    hooks = app.state.broker_hooks

    async def asgi(scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(BROKER_PREFIX + "/"):
            await hooks(scope, receive, send)
        else:
            await app(scope, receive, send)

    asgi.app = app  # the FastAPI app behind, for whoever needs its state
    return asgi


def create_app(
    ctx_factory: Callable[[], Context],
    *,
    rate_limit: RateLimit | None = None,
    max_body: int = MAX_BODY_BYTES,
    trusted_proxies: tuple[str, ...] = (),
    artifacts_dir: str | Path | None = None,
    metrics_token: str | None = None,
) -> FastAPI:
    """The app; ``ctx_factory`` makes the one Context it serves from, on first use.

    ``rate_limit``: token bucket per access key (None: no limit).
    ``trusted_proxies``: CIDRs whose ``X-Forwarded-For`` is believed.
    ``artifacts_dir``: where ``POST /v1/artifacts/publish`` writes (None: refused).
    ``metrics_token``: the bearer token ``/metrics`` requires (None: open, as most exporters are).
    """
    holder: dict[str, Context] = {}
    lock = threading.Lock()

    def get_ctx() -> Context:
        ctx = holder.get("ctx")
        if ctx is not None:
            return ctx
        with lock:
            if "ctx" not in holder:
                holder["ctx"] = ctx_factory()
            return holder["ctx"]

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        if "ctx" in holder:
            holder.pop("ctx").close()

    app = FastAPI(title="Device PKI", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None, generate_unique_id_function=lambda route: route.name)
    app.state.get_ctx = get_ctx
    app.state.rate_limit = rate_limit
    app.state.artifacts_dir = str(artifacts_dir) if artifacts_dir is not None else None
    app.add_exception_handler(PkiError, _error_problem)
    app.add_exception_handler(RequestValidationError, _validation_problem)
    app.add_exception_handler(StarletteHTTPException, _http_problem)
    app.add_exception_handler(OSError, _os_error)
    app.add_exception_handler(Exception, _unexpected)
    app.include_router(_public_router(get_ctx))
    app.include_router(jwks_router(get_ctx))
    app.include_router(console_router())
    app.include_router(est_router(get_ctx))
    for router, tag in ROUTE_TABLE:
        app.include_router(router, prefix=PREFIX, tags=[tag])

    @app.get("/openapi.json", include_in_schema=False)
    def openapi_json() -> JSONResponse:
        return JSONResponse(_openapi(app))

    app.openapi = lambda: _openapi(app)
    # Inside PkiMiddleware (added after it: Starlette puts the last added outermost), so that the hooks
    # keep the request id, the body cap, the source IP and the access log.
    app.add_middleware(BrokerHooks, get_ctx=get_ctx)
    service.install(app, get_ctx, metrics_token=metrics_token)
    app.add_middleware(PkiMiddleware, max_body=max_body, trusted_proxies=trusted_proxies)
    app.state.broker_hooks = PkiMiddleware(BrokerHooks(app, get_ctx=get_ctx), max_body=max_body,
                                           trusted_proxies=trusted_proxies)
    # Last, with every router included: a /v1 request skips the 37 public, console and EST routes unscanned.
    gate_included_routers(app)
    return app
