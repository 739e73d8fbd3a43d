"""Prometheus metrics of ``pki serve`` (prometheus_client), exposed at ``/metrics``.

What is measured, and nothing else (labels never carry a client id, a username, a serial or a path
with one: routes are their templates, ``/v1/cas/{ca_sn}/devices/{sn}``, and CAs their names):

- ``pki_http_requests_total{method,route,status}`` and
  ``pki_http_request_duration_seconds{method,route}`` (histogram), for every request;
- ``pki_certificates_issued_total{kind}``: successful issuance over HTTP (``device``, ``ca``), see
  :data:`ISSUING_ROUTES`;
- ``pki_broker_hook_decisions_total{hook,result,reason}``: what the broker hooks answered, through
  :func:`record_hook_decision`;
- ``pki_crl_age_seconds{ca,source}`` and ``pki_crl_next_update_seconds{ca,source}``: for each ACTIVE
  CA that has a CRL, how old it is and how long until its nextUpdate, read from the store at each scrape.

The counters live in this process (:data:`REGISTRY`).  With ``pki serve --workers N`` each worker
keeps its own, and a scrape sees one worker's: ``pki serve`` then sets ``PROMETHEUS_MULTIPROC_DIR``
(prometheus_client's multiprocess mode) so every scrape adds all the workers' up.
"""

from __future__ import annotations

import os
import re
import time

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

__all__ = ["REGISTRY", "record_hook_decision", "record_issuance", "MetricsMiddleware", "render", "CONTENT_TYPE",
           "ISSUING_ROUTES"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

REGISTRY = CollectorRegistry()
REQUESTS = Counter("pki_http_requests", "HTTP requests answered, by route template and status.",
                   ["method", "route", "status"], registry=REGISTRY)
LATENCY = Histogram("pki_http_request_duration_seconds", "Time to answer an HTTP request, by route template.",
                    ["method", "route"], registry=REGISTRY,
                    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
ISSUED = Counter("pki_certificates_issued", "Certificates issued over HTTP, by kind.", ["kind"], registry=REGISTRY)
HOOK_DECISIONS = Counter("pki_broker_hook_decisions", "Answers of the broker hooks, by hook, result and reason.",
                         ["hook", "result", "reason"], registry=REGISTRY)

#: Route name (the endpoint function's name) -> the kind of certificate a 2xx answer of it issued.
ISSUING_ROUTES = {"device_issue": "device", "ca_create": "ca"}

#: A label value from a caller must look like a short code: anything else (a client id that slipped in,
#: say) becomes "other", so no identifier can reach a label and the label set stays bounded.
_CODE = re.compile(r"^[a-z][a-z0-9_.]{0,39}\Z")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _code(value: object) -> str:
    text = str(value).lower()
    return text if _CODE.match(text) else "other"


def record_hook_decision(hook: str, result: str, reason: str) -> None:
    """Count one broker hook answer: ``hook`` (``emqx.authn``, ``go_auth.acl``...), ``result`` (``allow``,
    ``deny``, ``ignore``), ``reason`` (a short stable word, as :attr:`pki.dataplane.rules.Decision.reason`)."""
    HOOK_DECISIONS.labels(_code(hook), _code(result), _code(reason)).inc()


def record_issuance(kind: str, count: int = 1) -> None:
    ISSUED.labels(_code(kind)).inc(count)


def _template(scope, route) -> str:
    """The matched route's path template with its router's prefix, ``/v1/cas/{ca_sn}/devices``.

    FastAPI (0.13x on) matches an included router's routes as they were declared, without the prefix
    (``/cas/{ca_sn}/devices``); the prefix is what the request path has before the part the route
    matched.  Prefixes here are static (``/v1``), so no value of a parameter ever lands in a label.
    """
    if route is None:
        return "unmatched"
    relative = getattr(route, "path_format", None) or getattr(route, "path", None)
    if not relative:
        return "unmatched"
    path = scope.get("path", "")
    try:
        concrete = relative.format(**scope.get("path_params", {}))
    except (KeyError, IndexError, ValueError):
        return relative
    if concrete and path.endswith(concrete) and "{" not in path[: len(path) - len(concrete)]:
        prefix = path[: len(path) - len(concrete)]
        if prefix.count("/") <= 2:  # a mount like /v1, never a parameter's worth of path
            return prefix + relative
    return relative


class MetricsMiddleware:
    """Pure ASGI: counts and times every HTTP request by its route template, once the app has answered."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = 500

        async def send_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")  # set by the router on a match (starlette.routing.Router)
            template = _template(scope, route)
            method = scope.get("method", "GET")
            method = method if method in _METHODS else "other"
            REQUESTS.labels(method, template, str(status)).inc()
            LATENCY.labels(method, template).observe(time.perf_counter() - start)
            kind = ISSUING_ROUTES.get(getattr(route, "name", None) or "")
            if kind is not None and 200 <= status < 300:
                ISSUED.labels(kind).inc()


class _CrlCollector:
    """The CRL gauges, read from the store when scraped (one query over the CAs)."""

    def __init__(self, rows, now) -> None:
        self.rows, self.now = rows, now

    def collect(self):
        age = GaugeMetricFamily("pki_crl_age_seconds", "Seconds since the thisUpdate of each ACTIVE CA's CRL.",
                                labels=["ca", "source"])
        left = GaugeMetricFamily("pki_crl_next_update_seconds",
                                 "Seconds until the nextUpdate of each ACTIVE CA's CRL (negative: stale).",
                                 labels=["ca", "source"])
        for name, source, this_update, next_update in self.rows:
            age.add_metric([name, source], (self.now - this_update).total_seconds())
            left.add_metric([name, source], (next_update - self.now).total_seconds())
        yield age
        yield left


def render(crl_rows, now) -> bytes:
    """The exposition text: this process's (or, in multiprocess mode, every worker's) metrics, then the CRLs.

    ``crl_rows``: ``(ca name, source, this_update, next_update)`` per ACTIVE CA with a CRL.
    """
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        text = generate_latest(registry)
    else:
        text = generate_latest(REGISTRY)
    crl_registry = CollectorRegistry()
    crl_registry.register(_CrlCollector(crl_rows, now))
    return text + generate_latest(crl_registry)
