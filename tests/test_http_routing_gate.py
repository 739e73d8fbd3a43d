"""pki.http.routing_gate: the prefix check in front of the included routers changes no routing answer."""

from __future__ import annotations

import re

import pytest
from starlette.routing import Match

from pki.http import routing_gate
from pki.http.app import create_app


def _top_match(routes, path: str, method: str):
    """What the app's router picks for ``method path``: the kind of match, the index of the top-level route
    (the first full match, else the first partial) and, inside an included router, the route's path and name."""
    scope = {"type": "http", "path": path, "method": method, "root_path": "", "headers": [], "query_string": b""}
    partial = None
    for index, route in enumerate(routes):
        match, _child = route.matches(scope)
        if match == Match.FULL:
            return "full", index, _inner(route, scope)
        if match == Match.PARTIAL and partial is None:
            partial = ("partial", index, _inner(route, scope))
    return partial or ("none", None, None)


def _inner(route, scope):
    if hasattr(route, "_match"):  # an included router: the route it hands the request to
        _match, _child, inner, _context = route._match(scope)
        return getattr(inner, "path", None), getattr(inner, "name", None)
    return getattr(route, "path", None), getattr(route, "name", None)


def _requests(app):
    """A request for every documented and undocumented route, and ones for no route at all."""
    found = set()
    for path in app.openapi()["paths"]:
        found.add(re.sub(r"\{[^}]+\}", "0A1B", path))
    for extra in ("/v1/nothing", "/console/nothing", "/", "/v1", "/v1/", "/ocsp/MEQwQjBAMD4wPDAJBgUrDgMCGgUABBQ",
                  "/console/static/app.css", "/console/sign-in", "/.well-known/est/a/cacerts", "/healthz",
                  "/v1/cas/0A1B/devices/", "/crl/0A1B.pem", "/metrics", "/docs", "/openapi.json"):
        found.add(extra)
    return sorted(found)


def test_every_request_is_routed_as_without_the_gates():
    gated = create_app(lambda: None)
    assert sum(1 for r in gated.router.routes if "matches" in vars(r)) >= 14  # public, console, EST, each /v1 family
    plain = create_app(lambda: None)
    for route in plain.router.routes:
        vars(route).pop("matches", None)
    assert not any("matches" in vars(r) for r in plain.router.routes)
    checked = 0
    for path in _requests(plain):
        for method in ("GET", "POST", "DELETE", "PUT"):
            answer = _top_match(gated.router.routes, path, method)
            assert answer == _top_match(plain.router.routes, path, method), (method, path)
            checked += answer[0] == "full"
    assert checked > 100  # most requests above do reach a route


def test_a_v1_request_skips_the_other_routers_unscanned(monkeypatch):
    app = create_app(lambda: None)
    scanned = []
    for route in app.router.routes:
        original = getattr(route, "original_router", None)
        if original is not None:
            first = getattr(original.routes[0], "path", "?")
            real = type(route).matches

            def spy(scope, route=route, real=real, first=first):
                scanned.append(first)
                return real(route, scope)
            monkeypatch.setattr(route, "matches", routing_gate._gated(spy, tuple(routing_gate.literal_prefixes(
                original.routes, route.include_context.prefix))))
    kind, _index, (_path, name) = _top_match(app.router.routes, "/v1/cas/0A1B/devices", "POST")
    assert kind == "full" and name == "device_issue"
    # Only the /v1 families whose literal prefixes begin the path were scanned: none of the public,
    # console or EST routers.
    assert scanned and all(p.startswith("/") and not p.startswith(("/console", "/.well-known", "/ca-bundle"))
                           for p in scanned), scanned


def test_a_router_with_something_unknown_is_not_gated():
    class Odd:
        pass
    assert routing_gate.literal_prefixes([Odd()], "") is None
    assert routing_gate.literal_prefixes([], "/v1") == []


@pytest.mark.parametrize("template, prefix", [("/v1/cas/{ca_sn}/devices", "/v1/cas/"), ("/healthz", "/healthz"),
                                              ("/ocsp/{request:path}", "/ocsp/")])
def test_literal_part(template, prefix):
    from starlette.routing import Route
    assert routing_gate.literal_prefixes([Route(template, lambda r: None)], "") == [prefix]
