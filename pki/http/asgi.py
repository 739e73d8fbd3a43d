"""``pki serve``'s app factory: settings and server options from the environment.

Uvicorn worker processes import the app by name, so what ``pki serve`` was
told travels in ``PKI_*`` variables (each process opens its own Context on
the shared database; nothing else is shared, nothing needs to be).
"""

from __future__ import annotations

import logging
import os
import sys

from ..config import Settings
from ..process import die_with_parent
from ..services import open_context
from .app import MAX_BODY_BYTES, create_app, served
from ..services.authn import RateLimit

__all__ = ["app_from_env", "configure_access_log"]


def configure_access_log(enabled: bool = True) -> None:
    logger = logging.getLogger("pki.http.access")
    logger.propagate = False
    if not enabled:
        logger.setLevel(logging.WARNING)
        return
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def app_from_env():
    env = os.environ
    supervisor = env.get("PKI_HTTP_SUPERVISOR_PID")
    if supervisor and int(supervisor) != os.getpid():
        # A worker of `pki serve --workers N`: it goes when the supervisor goes, even by kill -9.
        die_with_parent(int(supervisor))
    settings = Settings.load()
    rate = env.get("PKI_HTTP_RATE_LIMIT")
    burst = env.get("PKI_HTTP_RATE_BURST")
    proxies = tuple(p for p in env.get("PKI_HTTP_TRUSTED_PROXIES", "").split(",") if p.strip())
    configure_access_log(env.get("PKI_HTTP_ACCESS_LOG", "1") != "0")
    return served(create_app(
        lambda: open_context(settings),
        rate_limit=RateLimit.parse(rate, float(burst) if burst else None) if rate else None,
        max_body=int(env.get("PKI_HTTP_MAX_BODY", MAX_BODY_BYTES)),
        trusted_proxies=proxies,
        artifacts_dir=env.get("PKI_HTTP_ARTIFACTS_DIR") or None,
        metrics_token=env.get("PKI_HTTP_METRICS_TOKEN") or None,
    ))
