"""The one dependency every /v1 route takes: who is calling, and how to act for them.

``caller: Caller = Depends(signed)`` refuses at once a request without
well-formed signature headers or outside the time window (no database
work); the rest of authentication (key, signature, nonce, rate limit:
:mod:`pki.services.authn`) happens when the route first acts, in the same
thread as the operation, so a request pays for one thread hop at most.

A route then calls ``caller.run("ca.show", cas.show_ca, ...)`` (in the
worker thread FastAPI runs a sync route in) or ``await caller.call(...)``
(from an async route), which authenticates, authorizes the operation
(:func:`authorize.authorize`: 403 ``access_denied``, audited) and runs the
service inside :func:`audit.acting_as`, so its audit records carry the
principal, source IP and request id.

``call`` runs short operations on the event loop itself when the store is
SQLite: the work is CPU under the GIL either way, with no network wait to
overlap, and the hop to a worker thread cost more than the operation's own
database work (measured: BENCHMARKS.md).  On PostgreSQL, and for anything
long, it is one hop to the thread pool.  The price: while such an operation
waits for SQLite's write lock (held by the CLI, or by another worker with
``--workers N``), the process answers nothing else; that is one reason one
worker is the setting for SQLite, and PostgreSQL the store for several.

Authentication comes before any answer about the request's input: FastAPI
validates the body and query (and a route may parse a duration) before the
route acts, so the app's error handlers call :func:`refuse_unsigned` before
answering such an error.  It checks the signature only (no nonce, no token:
it writes nothing, and with the key's secret cached it reads nothing), so a
request that is not validly signed gets 401 whatever its input, and learns
nothing about the API's validation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from ..services import audit, authn, authorize
from ..services.authorize import Principal, RequestContext
from ..services.context import Context

__all__ = ["Caller", "signed", "refuse_unsigned"]

R = TypeVar("R")


@dataclass
class Caller:
    ctx: Context
    source_ip: str | None
    secure_transport: bool
    request_id: str
    _request: dict = field(repr=False)
    _state: dict = field(repr=False)
    _principal: Principal | None = field(default=None, repr=False)

    @property
    def principal(self) -> Principal:
        """The signer: authenticated on first use (SignatureError, RateLimited)."""
        if self._principal is None:
            self._principal = authn.authenticate(self.ctx, **self._request)
            self._state["principal"] = self._principal.name
        return self._principal

    def authenticate(self) -> Principal:
        """For a route any signer may use: check the signature, nonce and rate limit, nothing more."""
        return self.principal

    def authorize(self, operation: str) -> None:
        principal = self.principal
        rc = RequestContext(now=self.ctx.clock.now(), source_ip=self.source_ip,
                            secure_transport=self.secure_transport, request_id=self.request_id)
        with self._acting(principal):
            authorize.authorize(self.ctx, principal, operation, request_context=rc)

    def _acting(self, principal: Principal):
        return audit.acting_as(audit.Actor(principal=principal.name, source_ip=self.source_ip,
                                           request_id=self.request_id))

    def run(self, operation: str, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        """Authorize ``operation``, then call ``fn(ctx, *args, **kwargs)`` as this caller (blocking)."""
        self.authorize(operation)
        with self._acting(self.principal):
            return fn(self.ctx, *args, **kwargs)

    async def call(self, operation: str, fn: Callable[..., R], *args: Any, short: bool = True,
                   **kwargs: Any) -> R:
        """:meth:`run` from an async route: on the loop if ``short`` and the store is SQLite, else in a thread."""
        if short and self.ctx.store.dialect == "sqlite":
            return self.run(operation, fn, *args, **kwargs)
        return await run_in_threadpool(self.run, operation, fn, *args, **kwargs)


def _signed_values(request: Request) -> dict[str, Any]:
    """The Starlette request as the plain values :func:`authn.authenticate` takes: the path as sent
    (undecoded), the query string, the headers as a dict (a repeated header keeps its first value, as
    ``request.headers.get`` would) and the body the middleware read."""
    raw_path = request.scope.get("raw_path") or request.scope["path"].encode()
    return dict(method=request.method, path=raw_path.decode("latin-1").split("?", 1)[0],
                query=request.scope.get("query_string", b"").decode("latin-1"), headers=dict(request.headers),
                body=request.scope.get("state", {}).get("body", b""))


async def signed(request: Request) -> Caller:
    """No database work here (see the module docstring): it runs on the event loop."""
    state = request.scope["state"]
    ctx = request.app.state.get_ctx()
    signed_request = _signed_values(request)
    authn.check_headers(ctx, signed_request["headers"])  # unsigned or stale: 401 now
    signed_request["rate_limit"] = request.app.state.rate_limit
    return Caller(ctx=ctx, source_ip=state.get("source_ip"), secure_transport=request.url.scheme == "https",
                  request_id=state["request_id"], _request=signed_request, _state=state)


def refuse_unsigned(request: Request) -> None:
    """SignatureError unless the request is validly signed, or the route already authenticated it.

    For an error answered before the route authenticated: a body or query that
    fails validation, or a value the route parses before acting.  Blocking (it
    may read the key's secret the first time): call it from a worker thread.
    """
    if "principal" in request.scope.get("state", {}):
        return
    authn.verify_signature(request.app.state.get_ctx(), **_signed_values(request), confirm_active=True)
