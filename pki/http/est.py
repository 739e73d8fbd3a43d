"""EST (RFC 7030) under ``/.well-known/est/`` and ``/.well-known/est/<label>/``.

Authentication is EST's own (RFC 7030 3.2.3, 3.3.2): HTTP Basic with an
enrollment claim, or the TLS client certificate.  The certificate comes from
the TLS handshake of ``pki serve --tls-*`` (``scope["extensions"]["tls"]``,
filled by :mod:`pki.http.tls`), or, behind a TLS-terminating proxy, from the
``X-SSL-Client-Cert`` header (nginx's ``$ssl_client_escaped_cert``), believed
only when the peer is a ``--trusted-proxy``.

Answers follow RFC 7030 4.2.3 (base64 certs-only PKCS#7); errors are
``text/plain`` saying what is wrong: 400 bad request, 401 (with
``WWW-Authenticate: Basic``) unauthenticated, 403 refused, 404 no such CA,
409 already done, 413 too large, 503 retry later.  Never 500.
"""

from __future__ import annotations

import base64
import binascii
import logging
from urllib.parse import unquote

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from ..errors import PkiError
from ..services import enrollment, est

__all__ = ["est_router", "EST_PREFIX", "CLIENT_CERT_HEADER"]

log = logging.getLogger("pki.http.est")
EST_PREFIX = "/.well-known/est"
CLIENT_CERT_HEADER = "x-ssl-client-cert"
PKCS7 = "application/pkcs7-mime"
_STATUS = {"invalid_input": 400, "unauthenticated": 401, "permission_denied": 403, "not_found": 404,
           "conflict": 409, "invalid_state": 403, "rate_limited": 503, "store": 503}


def _text(status: int, message: str, headers: dict | None = None) -> Response:
    return Response(message.rstrip("\n") + "\n", status_code=status, media_type="text/plain", headers=headers)


def _error(exc: Exception) -> Response:
    if isinstance(exc, PkiError):
        status = 413 if exc.code == "request_too_large" else _STATUS.get(exc.family, 503)
        headers = {"WWW-Authenticate": 'Basic realm="est"'} if status == 401 else None
        if status == 503:
            headers = {"Retry-After": "30"}
        return _text(status, f"{exc.code}: {exc.message}", headers)
    # RFC 7030 leaves a server fault to the client's retry; a 503 says so without a 500's "broken".
    log.exception("EST request failed unexpectedly")
    return _text(503, "internal_error: the server could not answer; retry later", {"Retry-After": "30"})


def _b64(der: bytes) -> bytes:
    text = base64.encodebytes(der)  # 76-column lines, as RFC 2045 base64 content transfer encoding
    return text


def _certs_only(der: bytes) -> Response:
    return Response(_b64(der), media_type=f"{PKCS7}; smime-type=certs-only",
                    headers={"Content-Transfer-Encoding": "base64"})


def client_certificate(request: Request) -> bytes | None:
    """The DER of the client certificate the TLS handshake (or a trusted proxy) proved, if any."""
    tls = (request.scope.get("extensions") or {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or ()
    pem = chain[0] if chain else None
    if pem is None and request.scope.get("state", {}).get("peer_trusted"):
        header = request.headers.get(CLIENT_CERT_HEADER)
        pem = unquote(header) if header else None
    if not pem:
        return None
    try:
        return x509.load_pem_x509_certificate(pem.encode("ascii", "replace")).public_bytes(Encoding.DER)
    except ValueError:
        return None


def _basic(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, ValueError):
        return None
    return (user, password) if sep else None


def _body(request: Request) -> bytes:
    return request.scope.get("state", {}).get("body", b"")


_TEXT = {"content": {"text/plain": {"schema": {"type": "string"}}}}
_ERRORS = {status: {"description": text, **_TEXT} for status, text in (
    (400, "Bad request: not base64, a bad CSR, a subject that differs"), (401, "Not authenticated"),
    (403, "Refused"), (404, "No such EST CA"), (409, "Already enrolled with this claim"), (413, "Body too large"),
    (415, "Not application/pkcs10"), (503, "Retry later"))}
_CERTS = {200: {"description": "base64 certs-only PKCS#7 (RFC 7030 4.1.3, 4.2.3)",
                "content": {f"{PKCS7}; smime-type=certs-only": {"schema": {"type": "string"}}}}}
_ENROLL = {**_CERTS, **_ERRORS}
_CACERTS = {**_CERTS, 404: _ERRORS[404], 503: _ERRORS[503]}
_CSRATTRS = {204: {"description": "No attributes asked (RFC 7030 4.5.2)"}}


def est_router(get_ctx) -> APIRouter:
    router = APIRouter(prefix=EST_PREFIX, tags=["EST (RFC 7030)"])

    async def cacerts(label: str | None) -> Response:
        try:
            return _certs_only(await run_in_threadpool(enrollment.cacerts_der, get_ctx(), label=label))
        except Exception as exc:  # noqa: BLE001 - RFC 7030 errors only, never a 500
            return _error(exc)

    async def enroll(request: Request, label: str | None, *, renew: bool) -> Response:
        try:
            ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype and ctype != "application/pkcs10":
                return _text(415, "unsupported_media_type: send Content-Type application/pkcs10")
            cert = client_certificate(request)
            if renew:
                der = await run_in_threadpool(est.simplereenroll, get_ctx(), label=label, body=_body(request),
                                              client_cert=cert)
            else:
                der = await run_in_threadpool(est.simpleenroll, get_ctx(), label=label, body=_body(request),
                                              basic=_basic(request), client_cert=cert)
            return _certs_only(der)
        except Exception as exc:  # noqa: BLE001 - RFC 7030 errors only, never a 500
            return _error(exc)

    @router.get("/cacerts", response_class=Response, responses=_CACERTS)
    async def est_cacerts() -> Response:
        return await cacerts(None)

    @router.get("/{label}/cacerts", response_class=Response, responses=_CACERTS)
    async def est_cacerts_labelled(label: str) -> Response:
        return await cacerts(label)

    @router.post("/simpleenroll", response_class=Response, responses=_ENROLL)
    async def est_simpleenroll(request: Request) -> Response:
        return await enroll(request, None, renew=False)

    @router.post("/{label}/simpleenroll", response_class=Response, responses=_ENROLL)
    async def est_simpleenroll_labelled(request: Request, label: str) -> Response:
        return await enroll(request, label, renew=False)

    @router.post("/simplereenroll", response_class=Response, responses=_ENROLL)
    async def est_simplereenroll(request: Request) -> Response:
        return await enroll(request, None, renew=True)

    @router.post("/{label}/simplereenroll", response_class=Response, responses=_ENROLL)
    async def est_simplereenroll_labelled(request: Request, label: str) -> Response:
        return await enroll(request, label, renew=True)

    @router.get("/csrattrs", response_class=Response, status_code=204, responses=_CSRATTRS)
    async def est_csrattrs() -> Response:
        return Response(status_code=204)  # RFC 7030 4.5.2: no attributes asked

    @router.get("/{label}/csrattrs", response_class=Response, status_code=204, responses=_CSRATTRS)
    async def est_csrattrs_labelled(label: str) -> Response:
        return Response(status_code=204)

    return router
