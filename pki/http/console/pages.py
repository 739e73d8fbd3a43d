"""Console pages: sign-in, the overview, CAs and device certificates.

Each route parses, calls one service operation as the signed-in principal (authorized as the API
authorizes it: :meth:`View.run`) and renders.  A change is a POST with the session's CSRF token; without
``confirm=yes`` it first answers a confirmation page (the console's JavaScript asks in a dialog instead).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from ...errors import PkiError
from ...services import cas, console, console_sessions, devices
from ...services.devices import REVOCATION_REASONS
from .web import BASE, COOKIE, PRE_COOKIE, View, _form, handle, new_pre_token, render_page, security_headers

__all__ = ["router"]

router = APIRouter(prefix=BASE, include_in_schema=False)

DEVICE_ACTIONS = {"activate": ("device.activate", devices.activate_device),
                  "deactivate": ("device.deactivate", devices.deactivate_device),
                  "revoke": ("device.revoke", devices.revoke_device)}
CA_ACTIONS = {"activate": ("ca.activate", cas.activate_ca), "deactivate": ("ca.deactivate", cas.deactivate_ca)}


def _pem(text: str, name: str) -> Response:
    return security_headers(Response(text, media_type="application/x-pem-file",
                                     headers={"Content-Disposition": f'attachment; filename="{name}"'}))


def _next(value: str | None) -> str:
    # Only a path of this console: never an open redirect to another site.
    if value and value.startswith(BASE) and not value.startswith("//") and "\\" not in value:
        return value
    return BASE


# -- sign-in and sign-out --------------------------------------------------------------------------


def _sign_in_page(request: Request, *, status: int = 200, error: PkiError | None = None) -> Response:
    pre = new_pre_token()
    headers = {"Retry-After": str(error.data.get("retry_after", 1))} if error and error.family == "rate_limited" \
        else None
    response = render_page("sign_in.html", status, headers, pre=pre, error=error,
                           next=_next(request.query_params.get("next")), principal=None, csrf=None)
    response.set_cookie(PRE_COOKIE, pre, path=BASE, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")
    return response


@router.get("/sign-in", include_in_schema=False)
def sign_in_form(request: Request) -> Response:
    return _sign_in_page(request)


@router.post("/sign-in", include_in_schema=False)
def sign_in(request: Request) -> Response:
    form = _form(request)
    state = request.scope.get("state", {})
    try:
        console_sessions.check_pre_token(request.cookies.get(PRE_COOKIE), form.get("csrf"))
        signed = console_sessions.sign_in(request.app.state.get_ctx(), access_key_id=form.get("access_key_id", ""),
                                          secret=form.get("secret", ""), source_ip=state.get("source_ip"),
                                          request_id=state.get("request_id"))
    except PkiError as exc:
        return _sign_in_page(request, status=403 if exc.code == "console_csrf_invalid" else
                             (429 if exc.family == "rate_limited" else 401), error=exc)
    response = security_headers(RedirectResponse(_next(form.get("next")), status_code=303))
    response.set_cookie(COOKIE, signed.token, path=BASE, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")
    response.delete_cookie(PRE_COOKIE, path=BASE)
    return response


@router.post("/sign-out", include_in_schema=False)
def sign_out(request: Request) -> Response:
    def page(view: View) -> Response:
        console_sessions.sign_out(view.ctx, view.token, principal=view.principal.name)
        response = security_headers(RedirectResponse(f"{BASE}/sign-in", status_code=303))
        response.delete_cookie(COOKIE, path=BASE)
        return response
    return handle(request, page, post=True)


# -- overview --------------------------------------------------------------------------------------


@router.get("", include_in_schema=False)
def overview(request: Request) -> Response:
    return handle(request, lambda v: v.render("overview.html", overview=v.run(("ca.list", "device.list"),
                                                                                 console.overview)))


# -- CAs -------------------------------------------------------------------------------------------


@router.get("/cas", include_in_schema=False)
def ca_list(request: Request) -> Response:
    return handle(request, lambda v: v.render(
        "cas.html", page=v.run("ca.list", cas.list_cas, status=v.arg("status"), limit=100, cursor=v.arg("cursor")),
        status=v.arg("status")))


@router.get("/cas/{ca_sn}", include_in_schema=False)
def ca_show(request: Request, ca_sn: str) -> Response:
    return handle(request, lambda v: v.render("ca.html", ca=v.run("ca.show", cas.show_ca, ca_sn),
                                              can=v.can("ca.activate", "ca.deactivate", "device.list")))


@router.get("/cas/{ca_sn}/pem", include_in_schema=False)
def ca_pem(request: Request, ca_sn: str) -> Response:
    return handle(request, lambda v: _pem(v.run("ca.show", console.ca_pem, ca_sn), f"ca-{ca_sn[:42]}.pem"))


@router.get("/cas/{ca_sn}/crl", include_in_schema=False)
def ca_crl(request: Request, ca_sn: str) -> Response:
    def page(view: View) -> Response:
        info, entries = view.run("ca.show", console.crl_entries, ca=ca_sn)
        return view.render("crl.html", info=info, entries=entries, now=view.ctx.clock.now())
    return handle(request, page)


@router.post("/cas/{ca_sn}/{action}", include_in_schema=False)
def ca_change(request: Request, ca_sn: str, action: str) -> Response:
    def page(view: View) -> Response:
        if action not in CA_ACTIONS:
            return view.render("error.html", 404, error=None, status=404)
        operation, fn = CA_ACTIONS[action]
        if view.form.get("confirm") != "yes":
            return view.render("confirm.html", action=action, what=f"CA {ca_sn}", url=view.request.url.path,
                               back=view.request.url.path.rsplit("/", 1)[0], fields={})
        ca = view.run(operation, fn, ca_sn)
        return view.redirect(f"{BASE}/cas/{ca.sn}", f"CA {ca.sn} is {ca.status}")
    return handle(request, page, post=True)


# -- device certificates ---------------------------------------------------------------------------


def _device_list(view: View, ca_sn: str | None) -> Response:
    limit = int(view.arg("limit", 8)) if (view.arg("limit", 8) or "").isdigit() else None
    query, status, cursor = view.arg("q"), view.arg("status"), view.arg("cursor", 1024)
    expiring = view.arg("expiring", 8) == "30d"
    # Across CAs it is device.find (by client id, serial, fingerprint), as over the API; of one CA, device.list.
    page = view.run("device.find" if ca_sn is None else "device.list", console.list_devices, ca=ca_sn,
                    query=query if ca_sn is None else None, status=status, limit=limit, cursor=cursor,
                    expiring_soon=expiring)
    return view.render("devices.html", page=page, ca_sn=ca_sn, q=query, status=status, limit=limit,
                       expiring="30d" if expiring else None)


@router.get("/devices", include_in_schema=False)
def device_search(request: Request) -> Response:
    return handle(request, lambda v: _device_list(v, None))


@router.get("/cas/{ca_sn}/devices", include_in_schema=False)
def device_list(request: Request, ca_sn: str) -> Response:
    return handle(request, lambda v: _device_list(v, ca_sn))


@router.get("/cas/{ca_sn}/devices/{sn}", include_in_schema=False)
def device_show(request: Request, ca_sn: str, sn: str) -> Response:
    return handle(request, lambda v: v.render(
        "device.html", device=v.run("device.show", devices.show_device, ca=ca_sn, sn=sn),
        can=v.can(*(op for op, _ in DEVICE_ACTIONS.values())), reasons=REVOCATION_REASONS))


@router.get("/cas/{ca_sn}/devices/{sn}/pem", include_in_schema=False)
def device_pem(request: Request, ca_sn: str, sn: str) -> Response:
    return handle(request, lambda v: _pem(v.run("device.show", console.device_pem, ca=ca_sn, sn=sn),
                                          f"device-{sn[:42]}.pem"))


@router.post("/cas/{ca_sn}/devices/{sn}/{action}", include_in_schema=False)
def device_change(request: Request, ca_sn: str, sn: str, action: str) -> Response:
    def page(view: View) -> Response:
        if action not in DEVICE_ACTIONS:
            return view.render("error.html", 404, error=None, status=404)
        operation, fn = DEVICE_ACTIONS[action]
        extra = {"reason": view.form.get("reason") or "unspecified"} if action == "revoke" else {}
        if view.form.get("confirm") != "yes":
            return view.render("confirm.html", action=action, what=f"device certificate {sn} of CA {ca_sn}",
                               url=view.request.url.path, back=view.request.url.path.rsplit("/", 1)[0],
                               fields=extra)
        device = view.run(operation, fn, ca=ca_sn, sn=sn, **extra)
        return view.redirect(f"{BASE}/cas/{device.ca_sn}/devices/{device.sn}",
                             f"device certificate {device.sn} is {device.status}")
    return handle(request, page, post=True)
