"""The service's own paths, none of them signed: liveness, readiness, metrics, and the API's docs.

- ``/healthz``: the process answers (touches nothing else);
- ``/readyz``: the store answers one query (503 ``store_unavailable`` when not);
- ``/metrics``: Prometheus text (:mod:`pki.http.metrics`); open like most exporters' unless the server
  was given a metrics token, then only with ``Authorization: Bearer <token>``;
- ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), from assets shipped in a Python package
  (``fastapi-offline``: Swagger UI, Apache-2.0, and ReDoc, MIT), served at ``/docs/assets/``, so
  the docs work with no network (a factory line, an air-gapped site).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from importlib import resources

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from ..errors import PkiError, Unauthenticated
from ..services import health
from ..services.context import Context
from .. import signing
from . import metrics
from .problems import PROBLEM, error_problem, problem_body

__all__ = ["SERVICE_PATHS", "install", "ASSETS", "security_scheme"]

#: Unsigned paths besides :data:`pki.http.app.PUBLIC_PATHS` (and the docs).
SERVICE_PATHS = ("/healthz", "/readyz", "/metrics")
ASSETS = "/docs/assets"
#: The asset files served, from the package that ships them.
_ASSET_FILES = {"swagger-ui-bundle.js": "application/javascript", "swagger-ui.css": "text/css",
                "redoc.standalone.js": "application/javascript", "favicon.png": "image/png"}
_SCHEME = "PkiSignature"

_DOCS = f"""<!doctype html><html><head><meta charset="utf-8"><title>Device PKI API</title>
<link rel="icon" href="{ASSETS}/favicon.png"><link rel="stylesheet" href="{ASSETS}/swagger-ui.css"></head>
<body><div id="ui"></div>
<noscript>The API description is at <a href="/openapi.json">/openapi.json</a>.</noscript>
<script src="{ASSETS}/swagger-ui-bundle.js"></script>
<script>window.ui = SwaggerUIBundle({{url: "/openapi.json", dom_id: "#ui"}});</script>
<p>The machine-readable description: <a href="/openapi.json">/openapi.json</a>; the same as ReDoc:
<a href="/redoc">/redoc</a>.</p></body></html>"""

_REDOC = f"""<!doctype html><html><head><meta charset="utf-8"><title>Device PKI API</title>
<link rel="icon" href="{ASSETS}/favicon.png"></head><body>
<noscript>The API description is at <a href="/openapi.json">/openapi.json</a>.</noscript>
<redoc spec-url="/openapi.json"></redoc><script src="{ASSETS}/redoc.standalone.js"></script></body></html>"""


#: The docs pages may load nothing but this server's own files: offline they would wait on a CDN, and
#: ReDoc's footer fetches its logo from one (blocked here, so nothing leaves the machine).
_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'")


def security_scheme() -> dict:
    """The OpenAPI securitySchemes entry for the request signature (pki.signing).

    OpenAPI has no HMAC request-signing type; an apiKey in the access-key header, with the rest of the
    scheme in its description, is what a generated client or Swagger UI can show.
    """
    return {_SCHEME: {
        "type": "apiKey", "in": "header", "name": signing.HEADER_ACCESS_KEY,
        "description": (f"HMAC-SHA256 request signing ({signing.ALGORITHM}): send the access key id in "
                        f"{signing.HEADER_ACCESS_KEY}, with {signing.HEADER_TIMESTAMP}, {signing.HEADER_NONCE} "
                        f"and {signing.HEADER_SIGNATURE}, as the API description says. Swagger UI cannot "
                        "compute the signature: use pki.client.Client or the CLI."),
    }}


def declare_security(schema: dict, prefix: str) -> dict:
    """Add the scheme to ``schema``'s components and require it on every operation under ``prefix``."""
    schema.setdefault("components", {})["securitySchemes"] = security_scheme()
    for path, item in schema.get("paths", {}).items():
        if path.startswith(prefix + "/"):
            for op in item.values():
                if isinstance(op, dict):
                    op["security"] = [{_SCHEME: []}]
    return schema


def _asset(name: str) -> bytes:
    return resources.files("fastapi_offline").joinpath("static", name).read_bytes()


def _check_token(authorization: str, token: bytes) -> None:
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token):
        raise Unauthenticated("this server's /metrics needs Authorization: Bearer <its metrics token>",
                              code="metrics_token_invalid")


def install(app: FastAPI, get_ctx: Callable[[], Context], *, metrics_token: str | None = None) -> None:
    """Add the service paths and the metrics middleware to ``app``."""
    router = APIRouter(include_in_schema=False)
    token = metrics_token.encode() if metrics_token else None

    @router.get("/healthz")
    def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @router.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        try:
            return JSONResponse(await run_in_threadpool(lambda: health.store_ready(get_ctx())))
        except PkiError as exc:
            status, body, headers = error_problem(exc, request.scope.get("state", {}).get("request_id"))
            return JSONResponse(body, status_code=503 if status < 500 else status, media_type=PROBLEM,
                                headers=headers or None)

    @router.get("/metrics")
    async def metrics_page(request: Request) -> Response:
        if token is not None:
            try:
                _check_token(request.headers.get("authorization", ""), token)
            except PkiError as exc:
                status, body, headers = error_problem(exc, request.scope.get("state", {}).get("request_id"))
                return JSONResponse(body, status_code=status, media_type=PROBLEM,
                                    headers={**headers, "WWW-Authenticate": 'Bearer realm="metrics"'})
        try:
            now, rows = await run_in_threadpool(lambda: health.crl_ages(get_ctx()))
        except PkiError:
            from ..clock import SystemClock

            now, rows = SystemClock().now(), []  # the store is down: /readyz says so; the counters still show
        return Response(metrics.render(rows, now), media_type=metrics.CONTENT_TYPE)

    @router.get("/docs")
    def docs() -> HTMLResponse:
        return HTMLResponse(_DOCS, headers={"Content-Security-Policy": _CSP})

    @router.get("/redoc")
    def redoc() -> HTMLResponse:
        return HTMLResponse(_REDOC, headers={"Content-Security-Policy": _CSP})

    @router.get(ASSETS + "/{name}")
    def asset(name: str) -> Response:
        if name not in _ASSET_FILES:
            return JSONResponse(problem_body(404, "route_not_found", f"no such asset {name!r}", None),
                                status_code=404, media_type=PROBLEM)
        return Response(_asset(name), media_type=_ASSET_FILES[name],
                        headers={"Cache-Control": "public, max-age=86400"})

    app.include_router(router)
    app.add_middleware(metrics.MetricsMiddleware)
