"""The one dependency every /v1 route takes: who is calling, and how to act for them.

``caller: Caller = Depends(signed)`` checks the signature, the nonce and the
rate limit (:mod:`pki.services.authn`); the route then calls
``caller.run("ca.show", cas.show_ca, ctx_arg...)``, which authorizes the
operation (:func:`access.authorize`: 403 ``access_denied``, audited) and
runs the service inside :func:`audit.acting_as`, so its audit records carry
the principal, source IP and request id.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Request

from ..services import access, audit
from ..services.access import Principal
from ..services.context import Context
from ..services.policy import RequestContext
from ..services import authn

__all__ = ["Caller", "signed"]

R = TypeVar("R")


@dataclass
class Caller:
    ctx: Context
    principal: Principal
    source_ip: str | None
    secure_transport: bool
    request_id: str

    def authorize(self, operation: str) -> None:
        rc = RequestContext(now=self.ctx.clock.now(), source_ip=self.source_ip,
                            secure_transport=self.secure_transport, request_id=self.request_id)
        with self._acting():
            access.authorize(self.ctx, self.principal, operation, request_context=rc)

    def _acting(self):
        return audit.acting_as(audit.Actor(principal=self.principal.name, source_ip=self.source_ip,
                                           request_id=self.request_id))

    def run(self, operation: str, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        """Authorize ``operation``, then call ``fn(ctx, *args, **kwargs)`` as this caller."""
        self.authorize(operation)
        with self._acting():
            return fn(self.ctx, *args, **kwargs)


def signed(request: Request) -> Caller:
    """Sync on purpose: FastAPI runs it in the worker thread pool (it reads the database)."""
    state = request.scope["state"]
    ctx = request.app.state.get_ctx()
    raw_path = request.scope.get("raw_path") or request.scope["path"].encode()
    principal = authn.authenticate(
        ctx, method=request.method, path=raw_path.decode("latin-1").split("?", 1)[0],
        query=request.scope.get("query_string", b"").decode("latin-1"), headers=request.headers,
        body=state.get("body", b""), rate_limit=request.app.state.rate_limit,
    )
    state["principal"] = principal.name
    return Caller(ctx=ctx, principal=principal, source_ip=state.get("source_ip"),
                  secure_transport=request.url.scheme == "https", request_id=state["request_id"])
