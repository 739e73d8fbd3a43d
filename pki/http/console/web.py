"""The console's plumbing: the session cookie, forms and their CSRF token, acting as the signed-in
principal, rendering templates and errors.  The pages themselves are in :mod:`pki.http.console.pages`.

A page is a function of a :class:`View`; :func:`handle` resumes the session (a GET without one goes to
the sign-in page, anything else gets 401), checks the CSRF token of a POST, runs the page and renders a
:class:`PkiError` as an HTML error page with the API's status for it (:mod:`pki.http.problems`).
"""

from __future__ import annotations

import datetime as _dt
import html
import secrets as _secrets
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from ...clock import ensure_utc
from ...errors import PkiError
from ...services import audit, authorize, console_sessions
from ...services.authorize import RequestContext
from ...services.context import Context
from ..problems import status_of

__all__ = ["BASE", "COOKIE", "PRE_COOKIE", "View", "handle", "render_page", "security_headers"]

BASE = "/console"
COOKIE = "pki_console"
#: Before sign-in: the double-submit token of the sign-in form (login CSRF).
PRE_COOKIE = "pki_console_pre"
MAX_FORM_FIELDS = 50

#: Every answer of the console: no framing, no foreign script or style, nothing cached, no referrer.
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def security_headers(response: Response) -> Response:
    response.headers.update(_HEADERS)
    return response


def _when(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        value = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    # isoformat is several times cheaper than strftime, and a device list calls this 1,000 times a page.
    return ensure_utc(value).isoformat(sep=" ", timespec="minutes")[:16] + " UTC"


def _device_rows(items, show_ca: bool) -> Markup:
    """The rows of a device table, built in one pass: on a 1,000-device page, a Jinja loop (a macro call
    and a few escapes and yields per cell) took most of the page's time (profile: BENCHMARKS.md)."""
    escape = html.escape
    out = []
    for d in items:
        sn, ca_sn, status = escape(d.sn), escape(d.ca_sn), escape(d.status)
        ca_cell = (f'<td><a href="{BASE}/cas/{ca_sn}"><code class="sn">{ca_sn}</code></a></td>' if show_ca else "")
        out.append(f'<tr><th scope="row"><a href="{BASE}/cas/{ca_sn}/devices/{sn}">{escape(d.client_id)}</a></th>'
                   f'<td><code class="sn">{sn}</code></td>{ca_cell}'
                   f'<td><span class="status status-{status.lower()}">{status}</span></td>'
                   f'<td>{_when(d.not_after)}</td></tr>\n')
    return Markup("".join(out))


def _age(value: _dt.timedelta | None) -> str:
    if value is None:
        return "—"
    seconds = int(value.total_seconds())
    if seconds < 0:
        return "in the future"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


_ENV = Environment(loader=PackageLoader("pki.http.console", "templates"), autoescape=select_autoescape(default=True),
                   trim_blocks=True, lstrip_blocks=True, auto_reload=False)
_ENV.filters["when"] = _when
_ENV.filters["age"] = _age
_ENV.globals["device_rows"] = _device_rows


def _query(values: dict[str, Any]) -> str:
    return urllib.parse.urlencode({k: v for k, v in values.items() if v not in (None, "")})


_ENV.globals["query"] = _query
_ENV.globals["BASE"] = BASE


def render_page(template: str, http_status: int = 200, headers: dict | None = None, /, **values: Any
                ) -> HTMLResponse:
    html = _ENV.get_template(template).render(**values)
    return security_headers(HTMLResponse(html, status_code=http_status, headers=headers))


def _form(request: Request) -> dict[str, str]:
    """The urlencoded body the middleware read (first value of each field)."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return {}
    body = request.scope.get("state", {}).get("body", b"")
    pairs = urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True,
                                   max_num_fields=MAX_FORM_FIELDS)
    form: dict[str, str] = {}
    for name, value in pairs:
        form.setdefault(name, value)
    return form


@dataclass
class View:
    request: Request
    ctx: Context
    session: console_sessions.Session
    token: str
    form: dict[str, str] = field(default_factory=dict)

    @property
    def principal(self):
        return self.session.principal

    def _rc(self) -> RequestContext:
        state = self.request.scope.get("state", {})
        return RequestContext(now=self.ctx.clock.now(), source_ip=state.get("source_ip"),
                              secure_transport=self.request.url.scheme == "https",
                              request_id=state.get("request_id"))

    def _actor(self):
        rc = self._rc()
        return audit.acting_as(audit.Actor(principal=self.principal.name, source_ip=rc.source_ip,
                                           request_id=rc.request_id))

    def run(self, operations: str | Iterable[str], fn: Callable, *args: Any, **kwargs: Any):
        """Authorize each operation as the API would (a refusal is audited, 403), then ``fn(ctx, ...)``."""
        rc = self._rc()
        for operation in ([operations] if isinstance(operations, str) else operations):
            with self._actor():
                authorize.authorize(self.ctx, self.principal, operation, request_context=rc)
        with self._actor():
            return fn(self.ctx, *args, **kwargs)

    def can(self, *operations: str) -> frozenset[str]:
        """What the principal may do of ``operations``: which buttons to show."""
        return authorize.permitted(self.ctx, self.principal, operations, request_context=self._rc())

    def arg(self, name: str, max_length: int = 256) -> str | None:
        value = self.request.query_params.get(name)
        return value[:max_length] if value else None

    def render(self, template: str, http_status: int = 200, /, **values: Any) -> HTMLResponse:
        return render_page(template, http_status, None, principal=self.principal.name, csrf=self.session.csrf,
                           path=self.request.url.path, notice=self.arg("notice", 300), **values)

    def redirect(self, url: str, notice: str | None = None) -> Response:
        if notice:
            url += ("&" if "?" in url else "?") + _query({"notice": notice})
        return security_headers(RedirectResponse(url, status_code=303))


def _error(exc: PkiError, *, principal: str | None, csrf: str | None, path: str = "") -> HTMLResponse:
    status = status_of(exc.code, exc.family)
    headers = {"Retry-After": str(exc.data.get("retry_after", 1))} if exc.family == "rate_limited" else None
    return render_page("error.html", status, headers, error=exc, status=status, principal=principal, csrf=csrf,
                       path=path, notice=None)


def handle(request: Request, page: Callable[[View], Response], *, post: bool = False) -> Response:
    """Run ``page`` for the signed-in principal (see the module docstring)."""
    ctx: Context = request.app.state.get_ctx()
    token = request.cookies.get(COOKIE)
    try:
        session = console_sessions.resume(ctx, token)
    except PkiError as exc:
        if not post and exc.family == "unauthenticated":
            next_path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return security_headers(RedirectResponse(f"{BASE}/sign-in?{_query({'next': next_path})}", 303))
        return _error(exc, principal=None, csrf=None, path=request.url.path)
    view = View(request=request, ctx=ctx, session=session, token=token or "")
    try:
        if post:
            view.form = _form(request)
            console_sessions.check_csrf(view.token, view.form.get("csrf"))
        return page(view)
    except PkiError as exc:
        return _error(exc, principal=session.principal.name, csrf=session.csrf, path=request.url.path)


def new_pre_token() -> str:
    return _secrets.token_urlsafe(24)
