"""A literal-prefix check in front of each included router's route scan.

FastAPI (0.165 here) matches a request against an included router by trying
each of its routes in turn, with bookkeeping of its own around every regex
(about 6 microseconds a route, measured in process).  The app's routers are
included in order: the public paths, the JWKS, the console (23 routes), EST,
then the /v1 families; so a signed /v1 request tried some 37 routes that
could never match before reaching its own family, on every request.

A path can match a route only if it starts with the route's literal part (its
template up to the first ``{``): Starlette compiles the literal part into the
route's regex as is.  So a router none of whose routes' literal parts begin
the path answers ``Match.NONE`` without the scan, the answer the scan would
give.  The check is installed on the router objects once the app is built
(:func:`gate_included_routers`); a router holding anything other than plain
routes, mounts and included routers is left as it is, and so is everything
if FastAPI's router class is not found.  Routes added to a router after the
app is built would need the gates rebuilt; nothing here does that.
"""

from __future__ import annotations

from starlette.routing import Match, Mount, Route

try:
    from starlette._utils import get_route_path
    from fastapi.routing import _IncludedRouter as IncludedRouter
except ImportError:  # another FastAPI or Starlette: no gates, the same answers
    IncludedRouter = None

__all__ = ["gate_included_routers", "literal_prefixes"]


def literal_prefixes(routes, base: str) -> list[str] | None:
    """The literal parts of ``routes`` (under the path prefix ``base``), or None if one is not a plain route."""
    found: list[str] = []
    for route in routes:
        if IncludedRouter is not None and isinstance(route, IncludedRouter):
            inner = literal_prefixes(route.original_router.routes, base + route.include_context.prefix)
            if inner is None:
                return None
            found += inner
        elif isinstance(route, (Route, Mount)):  # an APIRoute is a Route
            found.append((base + route.path).split("{", 1)[0])
        else:
            return None
    return found


def _gated(matches, prefixes: tuple[str, ...]):
    def gated(scope):
        if scope["type"] == "http" and not get_route_path(scope).startswith(prefixes):
            return Match.NONE, {}
        return matches(scope)

    return gated


def gate_included_routers(app) -> int:
    """Put the check in front of every router included in ``app`` that can have one; how many got it."""
    if IncludedRouter is None:
        return 0
    gated = 0
    for route in app.router.routes:
        if not isinstance(route, IncludedRouter) or "matches" in vars(route):
            continue
        prefixes = literal_prefixes(route.original_router.routes, route.include_context.prefix)
        if not prefixes or "" in prefixes:
            continue
        route.matches = _gated(route.matches, tuple(sorted(set(prefixes))))
        gated += 1
    return gated
