"""Authentication comes first: a /v1 request that is not validly signed learns nothing about the API.

Whatever its body or query, a request with a missing, forged or unknown-key
signature gets 401 (never 400, 422 or 500), and the store is unchanged (not
even a nonce).  A validly signed request with a bad body still gets 400 with
the validation details.
"""

from __future__ import annotations

import json

import pytest
from fastapi.routing import APIRoute

from pki import signing
from pki.http.v1 import PREFIX, ROUTE_TABLE
from tests.support import snapshot
from tests.support.http_app import app_for, make_user, plain_client

UNAUTHENTICATED = {"signature_missing", "signature_invalid", "invalid_access_key"}
UNKNOWN_KEY = "AK." + "0" * 20


def _v1_routes() -> list[tuple[str, APIRoute]]:
    """(method, route) for every /v1 route: the app mounts exactly the routers of ROUTE_TABLE."""
    return [(method, route) for router, _tag in ROUTE_TABLE for route in router.routes
            if isinstance(route, APIRoute) for method in sorted(route.methods)]


def _path(route: APIRoute) -> str:
    path = PREFIX + route.path
    for param in route.dependant.path_params:
        path = path.replace("{" + param.name + "}", "bogus")
    return path


def _bogus_value(schema: dict):
    kind = schema.get("type")
    if kind == "integer":
        return -1
    if kind == "boolean":
        return "maybe"
    if kind == "array":
        return ["bogus"]
    if kind == "object":
        return {"bogus": "bogus"}
    return "bogus"


def _bodies(route: APIRoute) -> list[bytes]:
    """Bodies that fail the route's model, or its service's parsing (durations, times) before it acts."""
    bodies = [b"", b"{"]
    if route.body_field is not None:
        bodies += [b"[]", b'{"unexpected": 1}']
        model = route.body_field.field_info.annotation
        schema = model.model_json_schema()
        props = schema.get("properties", {})
        bodies.append(json.dumps({name: _bogus_value(s) for name, s in props.items()}).encode())
        bodies.append(json.dumps({name: "bogus" for name in props}).encode())
    return bodies


def _queries(route: APIRoute) -> list[str]:
    names = [p.alias or p.name for p in route.dependant.query_params]
    if not names:
        return ["", "limit=0"]
    return ["&".join(f"{n}={v}" for n in names) for v in ("bogus", "-1", "x" * 2000, "")]


def _signatures(admin, method: str, path: str, query: str, body: bytes) -> dict[str, dict[str, str]]:
    def sign(key_id: str, secret: str) -> dict[str, str]:
        return signing.signed_headers(access_key_id=key_id, secret=secret, method=method, path=path, query=query,
                                      body=body)

    return {
        "missing": {},
        "forged": sign(admin.access_key_id, "not-the-secret"),
        "unknown key": sign(UNKNOWN_KEY, "not-the-secret"),
    }


@pytest.fixture
def admin(ctx):
    return make_user(ctx, "admin", "PkiAdministratorAccess")


def test_every_v1_route_refuses_unsigned_before_validating(ctx, admin):
    app = app_for(ctx)
    tc = plain_client(app)
    routes = _v1_routes()
    assert len(routes) >= 45
    before = snapshot(ctx)
    wrong: list[str] = []
    for method, route in routes:
        path = _path(route)
        for query in _queries(route):
            for body in _bodies(route):
                for kind, headers in _signatures(admin, method, path, query, body).items():
                    r = tc.request(method, path + ("?" + query if query else ""), content=body,
                                   headers={**headers, "Content-Type": "application/json"})
                    code = r.json().get("code") if r.headers.get("content-type") == "application/problem+json" \
                        else None
                    if r.status_code != 401 or code not in UNAUTHENTICATED or "errors" in r.json():
                        wrong.append(f"{method} {path}?{query[:40]} body={body[:40]!r} ({kind}): "
                                     f"{r.status_code} {r.text[:200]}")
    assert not wrong, f"{len(wrong)} answers were not 401:\n" + "\n".join(wrong[:40])
    assert snapshot(ctx) == before


def test_unsigned_malformed_json_is_401(ctx):
    tc = plain_client(app_for(ctx))
    r = tc.post("/v1/secrets", content=b"{", headers={"Content-Type": "application/json"})
    assert r.status_code == 401, r.text
    assert r.json()["code"] == "signature_missing"
    assert r.headers["www-authenticate"] == signing.ALGORITHM


def test_signed_bad_body_still_gets_the_details(ctx, admin):
    tc = plain_client(app_for(ctx))
    body = b'{"client_id": 5}'
    headers = signing.signed_headers(access_key_id=admin.access_key_id, secret=admin.access_key_secret,
                                     method="POST", path="/v1/secrets", body=body)
    r = tc.post("/v1/secrets", content=body, headers={**headers, "Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "invalid_request"
    assert r.json()["errors"][0]["loc"] == ["body", "client_id"]


def test_signed_bad_duration_is_400_forged_is_401(ctx, admin):
    tc = plain_client(app_for(ctx))
    body = b'{"ttl": "bogus"}'
    good = signing.signed_headers(access_key_id=admin.access_key_id, secret=admin.access_key_secret,
                                  method="POST", path="/v1/codes", body=body)
    forged = signing.signed_headers(access_key_id=admin.access_key_id, secret="nope", method="POST",
                                    path="/v1/codes", body=body)
    before = snapshot(ctx)
    r = tc.post("/v1/codes", content=body, headers={**forged, "Content-Type": "application/json"})
    assert (r.status_code, r.json()["code"]) == (401, "signature_invalid"), r.text
    assert snapshot(ctx) == before
    r = tc.post("/v1/codes", content=body, headers={**good, "Content-Type": "application/json"})
    assert r.status_code == 400, r.text


def test_a_key_disabled_after_it_was_cached_learns_nothing_about_its_input(ctx):
    from pki.services import users
    from tests.support.http_app import signed_client

    user = make_user(ctx, "soon-gone", "PkiAdministratorAccess")
    api = signed_client(app_for(ctx), user)
    assert api.request("GET", "/v1/cas").status_code == 200  # the process now holds the key's secret
    assert api.request("POST", "/v1/cas", json={"name": 5}).status_code == 400  # signed: told why
    users.disable_access_key(ctx, user.access_key_id)  # as another process would
    refused = api.request("POST", "/v1/cas", json={"name": 5})
    assert refused.status_code == 401 and refused.json()["code"] == "invalid_access_key"
    assert "errors" not in refused.json()
