"""Console pages: device secrets (metadata only), the audit log, the broker data plane, static files."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ...errors import InvalidInput
from ...services import audit as audit_service
from ...services import secrets as secret_service
from ...services.dataplane import blocklist, identities, permissions
from .web import BASE, View, handle, security_headers

__all__ = ["router"]

router = APIRouter(prefix=BASE, include_in_schema=False)

SECRET_ACTIONS = {"activate": ("secret.activate", secret_service.activate_secret),
                  "deactivate": ("secret.deactivate", secret_service.deactivate_secret)}

#: The vendored files, read once: no build step, no CDN (an air-gapped network has none).
_STATIC = {name: (resources.files("pki.http.console").joinpath("static", name).read_bytes(), media)
           for name, media in (("console.css", "text/css"), ("console.js", "text/javascript"))}


@router.get("/static/{name}", include_in_schema=False)
def static(name: str) -> Response:
    if name not in _STATIC:
        return security_headers(Response("no such file\n", status_code=404, media_type="text/plain"))
    body, media = _STATIC[name]
    response = security_headers(Response(body, media_type=media))
    response.headers["Cache-Control"] = "max-age=3600"
    return response


def _limit(view: View) -> int | None:
    text = view.arg("limit", 8) or ""
    return int(text) if text.isdigit() else None


# -- device secrets --------------------------------------------------------------------------------


@router.get("/secrets", include_in_schema=False)
def secret_list(request: Request) -> Response:
    return handle(request, lambda v: v.render(
        "secrets.html", page=v.run("secret.list", secret_service.list_secrets, status=v.arg("status"),
                                   limit=_limit(v), cursor=v.arg("cursor", 1024)),
        can=v.can("secret.activate", "secret.deactivate"), status=v.arg("status")))


@router.post("/secrets/{client_id}/{action}", include_in_schema=False)
def secret_change(request: Request, client_id: str, action: str) -> Response:
    def page(view: View) -> Response:
        if action not in SECRET_ACTIONS:
            return view.render("error.html", 404, error=None, status=404)
        operation, fn = SECRET_ACTIONS[action]
        if view.form.get("confirm") != "yes":
            return view.render("confirm.html", action=action, what=f"the secret of client id {client_id}",
                               url=view.request.url.path, fields={}, back=f"{BASE}/secrets")
        secret = view.run(operation, fn, client_id=client_id)
        return view.redirect(f"{BASE}/secrets", f"the secret of {secret.client_id} is {secret.status}")
    return handle(request, page, post=True)


# -- audit -----------------------------------------------------------------------------------------


@router.get("/audit", include_in_schema=False)
def audit_list(request: Request) -> Response:
    def page(view: View) -> Response:
        result = view.arg("result", 16)
        records = view.run("audit.list", audit_service.list_records, limit=_limit(view) or 100,
                           cursor=view.arg("cursor", 1024), principal=view.arg("principal", 128),
                           action=view.arg("action", 128), result=result, newest_first=True)
        return view.render("audit.html", page=records, action=view.arg("action", 128),
                           principal_filter=view.arg("principal", 128), result=result, verified=None)
    return handle(request, page)


@router.get("/audit/verify", include_in_schema=False)
def audit_verify(request: Request) -> Response:
    def page(view: View) -> Response:
        verified = view.run("audit.verify", audit_service.verify, expect_head=view.arg("expect_head", 128))
        return view.render("audit.html", page=None, action=None, principal_filter=None, result=None,
                           verified=verified)
    return handle(request, page)


# -- the broker data plane -------------------------------------------------------------------------


@router.get("/identities", include_in_schema=False)
def identity_list(request: Request) -> Response:
    return handle(request, lambda v: v.render(
        "identities.html", page=v.run("identity.list", identities.list_identities, status=v.arg("status"),
                                      limit=_limit(v), cursor=v.arg("cursor", 1024))))


@router.get("/permissions", include_in_schema=False)
def permission_list(request: Request) -> Response:
    return handle(request, lambda v: v.render(
        "permissions.html", page=v.run("permission.list", permissions.list_permissions, limit=_limit(v),
                                       cursor=v.arg("cursor", 1024))))


@router.get("/blocklist", include_in_schema=False)
def blocklist_list(request: Request) -> Response:
    return handle(request, lambda v: v.render(
        "blocklist.html", page=v.run("blocklist.list", blocklist.list_blocks, limit=_limit(v),
                                     cursor=v.arg("cursor", 1024))))


def _qos(text: str | None) -> int | None:
    if not text:
        return None
    if text not in ("0", "1", "2"):
        raise InvalidInput("the QoS must be 0, 1 or 2", code="invalid_qos")
    return int(text)


@router.get("/check-access", include_in_schema=False)
def check_access(request: Request) -> Response:
    """A read: the form is a GET, so its answer can be bookmarked and needs no CSRF token."""
    def page(view: View) -> Response:
        asked = {name: view.arg(name, 70_000) for name in ("username", "client_id", "ip", "action", "topic")}
        answer = None
        if asked["action"]:
            retain = {"yes": True, "no": False}.get(view.arg("retain", 8) or "")
            answer = view.run("permission.check", permissions.check, **asked, qos=_qos(view.arg("qos", 8)),
                              retain=retain)
        return view.render("check_access.html", asked=asked, answer=answer, qos=view.arg("qos", 8),
                           retain=view.arg("retain", 8))
    return handle(request, page)
