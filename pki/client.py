"""A Python client for the /v1 API: every request signed, connections kept alive.

::

    from pki.client import Client

    with Client("http://127.0.0.1:8080", access_key_id, secret) as pki:
        ca = pki.call("POST", "/v1/cas", json={"name": "Factory Root"})
        dev = pki.issue_device(ca["sn"], csr_pem=csr_pem)
        pki.call("GET", f"/v1/cas/{ca['sn']}/devices/{dev['sn']}")

Errors come back as :class:`ApiError`, a :class:`pki.errors.PkiError` with
the server's stable ``code`` and the family its HTTP status stands for, so a
caller (the CLI's remote mode included) handles them as local errors.
:class:`SigningAuth` is the signing step alone, an ``httpx.Auth``, for use
with any httpx client (or Starlette's TestClient).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from .errors import ERROR_CODES, FAMILIES, PkiError
from . import signing

__all__ = ["Client", "SigningAuth", "ApiError", "from_env"]

#: A status's family, for an answer whose body names neither a family nor a known code (a proxy's page).
_FAMILY = {400: "invalid_input", 401: "unauthenticated", 403: "permission_denied", 404: "not_found",
           409: "conflict", 413: "invalid_input", 429: "rate_limited", 503: "store"}
_KNOWN_FAMILIES = frozenset(f.family for f in FAMILIES)


class ApiError(PkiError):
    """A problem document from the server, as a PkiError."""

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        data = {k: v for k, v in problem.items() if k not in ("code", "detail", "type", "title", "status", "family")}
        super().__init__(str(problem.get("detail") or f"HTTP {status}"), code=str(problem.get("code") or
                                                                                  f"http_{status}"), **data)
        self.status = status
        family = problem.get("family")
        if not isinstance(family, str) or family not in _KNOWN_FAMILIES:
            family = ERROR_CODES.get(self.code) or _FAMILY.get(status, "internal")
        self.family = family  # type: ignore[misc]


class SigningAuth(httpx.Auth):
    """Adds the four X-Pki-* headers to each request (a fresh nonce every time, retries included).

    An ``httpx.Auth``, and a ``requests`` auth callable too.
    """

    requires_request_body = True

    def __init__(self, access_key_id: str, secret: str | bytes) -> None:
        self.access_key_id = access_key_id
        self.secret = secret.encode("ascii") if isinstance(secret, str) else secret

    def auth_flow(self, request: httpx.Request):
        raw = request.url.raw_path.decode("ascii")
        path, _, query = raw.partition("?")
        request.headers.update(signing.signed_headers(
            access_key_id=self.access_key_id, secret=self.secret, method=request.method, path=path, query=query,
            body=request.content))
        yield request

    def __call__(self, prepared):
        """The same for a ``requests`` PreparedRequest (``requests.get(url, auth=SigningAuth(...))``)."""
        from urllib.parse import urlsplit

        parts = urlsplit(prepared.url)
        body = prepared.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
            prepared.body = body
        prepared.headers.update(signing.signed_headers(
            access_key_id=self.access_key_id, secret=self.secret, method=prepared.method, path=parts.path or "/",
            query=parts.query, body=body))
        return prepared


class Client:
    """Signed calls to one server; thread-safe like the httpx.Client under it."""

    def __init__(self, server: str, access_key_id: str, secret: str | bytes, *, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None, http: httpx.Client | None = None,
                 ca_bundle: str | None = None) -> None:
        self.auth = SigningAuth(access_key_id, secret)
        # ca_bundle: the PEM file an https server's certificate must chain to (a private CA, say, for
        # `pki serve --tls-cert`); None: the system's trust store.
        verify = _verify_context(ca_bundle) if ca_bundle else True
        self.http = http or httpx.Client(base_url=server.rstrip("/"), timeout=timeout, transport=transport,
                                         verify=verify)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def request(self, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None,
                headers: Mapping[str, str] | None = None) -> httpx.Response:
        """The raw response (no error mapping)."""
        clean = {k: _param(v) for k, v in (params or {}).items() if v is not None}
        return self.http.request(method, path, json=json, params=clean or None, headers=headers, auth=self.auth)

    def call(self, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None) -> Any:
        """The decoded JSON answer, or :class:`ApiError`."""
        response = self.request(method, path, json=json, params=params)
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {"detail": response.text[:500]}
            raise ApiError(response.status_code, problem if isinstance(problem, dict) else {})
        return response.json()

    # -- a few conveniences; call() reaches everything else ------------------------------------

    def show_ca(self, ca_sn: str) -> dict:
        return self.call("GET", f"/v1/cas/{_seg(ca_sn)}")

    def issue_device(self, ca_sn: str, **body: Any) -> dict:
        return self.call("POST", f"/v1/cas/{_seg(ca_sn)}/devices", json=body)

    def show_device(self, ca_sn: str, sn: str) -> dict:
        return self.call("GET", f"/v1/cas/{_seg(ca_sn)}/devices/{_seg(sn)}")

    def list_devices(self, ca_sn: str, **params: Any) -> dict:
        return self.call("GET", f"/v1/cas/{_seg(ca_sn)}/devices", params=params)

    def revoke_device(self, ca_sn: str, sn: str, reason: str = "unspecified") -> dict:
        return self.call("POST", f"/v1/cas/{_seg(ca_sn)}/devices/{_seg(sn)}/revoke", json={"reason": reason})


def _verify_context(ca_bundle: str):
    import ssl

    try:
        return ssl.create_default_context(cafile=ca_bundle)
    except (OSError, ssl.SSLError) as exc:
        from .errors import ConfigError

        raise ConfigError(f"cannot use the CA bundle {ca_bundle}: {exc}", code="invalid_config") from None


def _seg(value: str) -> str:
    return quote(str(value), safe="")


def _param(value: Any) -> Any:
    return ("true" if value else "false") if isinstance(value, bool) else value


def from_env(environ: Mapping[str, str] | None = None) -> Client | None:
    """A Client from PKI_SERVER, PKI_ACCESS_KEY_ID, PKI_ACCESS_KEY_SECRET; None without PKI_SERVER."""
    env = os.environ if environ is None else environ
    server = env.get("PKI_SERVER")
    if not server:
        return None
    key_id, secret = env.get("PKI_ACCESS_KEY_ID"), env.get("PKI_ACCESS_KEY_SECRET")
    if not key_id or not secret:
        from .errors import ConfigError

        raise ConfigError("PKI_SERVER is set: also set PKI_ACCESS_KEY_ID and PKI_ACCESS_KEY_SECRET "
                          "(from `pki user create` or `pki user key create`)", code="missing_credentials")
    return Client(server, key_id, secret, ca_bundle=env.get("PKI_CA_BUNDLE") or None)
