"""The operator console: ``/console``, server-rendered HTML over the same services and policies as the API.

Jinja2 templates and a small vendored script (``static/``), no build step and no CDN, so that it works
on an air-gapped network.  Every page works without JavaScript; the script only turns the
confirmation pages into dialogs.  Sign-in, sessions and CSRF: :mod:`pki.services.console_sessions`
and :mod:`pki.http.console.web`.
"""

from __future__ import annotations

from fastapi import APIRouter

from . import more_pages, pages
from .web import BASE

__all__ = ["console_router", "BASE"]


def console_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)
    router.include_router(pages.router)
    router.include_router(more_pages.router)
    return router
