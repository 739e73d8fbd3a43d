"""Broker tokens over HTTP and the CLI: a token verifies with PyJWT (an independent JOSE library) against
the keys fetched from /.well-known/jwks.json; the JWKS answer's caching headers; the /v1 routes under
the seed's actions; `pki token ...`."""

from __future__ import annotations

import json

import jwt as pyjwt
import pytest

from pki.services import tokens
from tests.support import cli_json, snapshot
from tests.support.http_app import app_for, make_user, plain_client, signed_client


@pytest.fixture
def admin(ctx):
    return make_user(ctx, "admin", "PkiAdministratorAccess")


def test_token_verifies_with_pyjwt_against_the_published_jwks(ctx, admin):
    api = signed_client(app_for(ctx), admin)
    applied = api.call("POST", "/v1/tokens", json={"client_id": "app-1", "username": "u", "topics": ["t/#"],
                                                   "action": "publish", "ttl": "10m"})
    public = plain_client(app_for(ctx))  # no credentials: the key set is public
    r = public.get("/.well-known/jwks.json")
    assert r.status_code == 200 and r.headers["content-type"] == "application/jwk-set+json"
    assert r.headers["cache-control"] == "public, max-age=60" and r.headers["etag"].startswith('"')
    key_set = pyjwt.PyJWKSet.from_dict(r.json())
    kid = pyjwt.get_unverified_header(applied["token"])["kid"]
    key = next(k for k in key_set.keys if k.key_id == kid)
    claims = pyjwt.decode(applied["token"], key, algorithms=["ES256"], issuer="acs:mq:local:default:default",
                          options={"require": ["exp", "nbf", "iat", "iss", "sub", "jti"]})
    assert claims["clientid"] == claims["sub"] == "app-1" and claims["username"] == "u"
    assert claims["jti"] == applied["token_id"]
    assert claims["acl"] == [{"permission": "allow", "action": "publish", "topic": "t/#"},
                             {"permission": "deny", "action": "all", "topic": "#"}]
    # EMQX's documented rule fields, and nothing else.
    for rule in claims["acl"]:
        assert set(rule) == {"permission", "action", "topic"}
        assert rule["permission"] in ("allow", "deny") and rule["action"] in ("publish", "subscribe", "all")
    # A tampered token fails in PyJWT too.
    head, payload, sig = applied["token"].split(".")
    with pytest.raises(pyjwt.InvalidSignatureError):
        pyjwt.decode(f"{head}.{payload[:-2]}AA.{sig}", key, algorithms=["ES256"])


def test_jwks_etag_and_rotation(ctx, admin):
    public = plain_client(app_for(ctx))
    empty = public.get("/.well-known/jwks.json")
    assert empty.json() == {"keys": []}
    tokens.apply(ctx, client_id="c", topics=["a"])
    first = public.get("/.well-known/jwks.json")
    assert first.headers["etag"] != empty.headers["etag"] and len(first.json()["keys"]) == 1
    again = public.get("/.well-known/jwks.json", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == first.headers["etag"]
    api = signed_client(app_for(ctx), admin)
    rotated = api.call("POST", "/v1/token-keys/rotate", json={"alg": "RS256"})
    assert rotated["status"] == "CURRENT" and rotated["alg"] == "RS256"
    after = public.get("/.well-known/jwks.json", headers={"If-None-Match": first.headers["etag"]})
    assert after.status_code == 200 and {k["kid"] for k in after.json()["keys"]} >= {rotated["kid"]}
    assert all("d" not in k and "p" not in k for k in after.json()["keys"])  # public halves only
    listed = api.call("GET", "/v1/token-keys")["items"]
    assert [k["status"] for k in listed] == ["CURRENT", "PREVIOUS"]


def test_v1_routes_and_policies(ctx, admin):
    app = app_for(ctx)
    api = signed_client(app, admin)
    applied = api.call("POST", "/v1/tokens", json={"client_id": "app-1", "topics": ["a/b"]})
    shown = api.call("GET", f"/v1/tokens/{applied['token_id']}")
    assert shown["status"] == "ACTIVE" and "token" not in shown
    assert [t["token_id"] for t in api.call("GET", "/v1/tokens", params={"client_id": "app-1"})["items"]] == \
        [applied["token_id"]]
    reader = signed_client(app, make_user(ctx, "reader", "PkiReadOnlyAccess"))
    assert reader.call("GET", f"/v1/tokens/{applied['token_id']}")["client_id"] == "app-1"
    before = snapshot(ctx)
    refused = reader.request("POST", "/v1/tokens", json={"client_id": "x", "topics": ["a"]})
    assert refused.status_code == 403 and refused.json()["code"] == "access_denied"
    after = snapshot(ctx)  # the refusal changed no token, key or revision (only its audit record and nonce)
    assert [after[t] for t in ("broker_token", "token_signing_key", "token_revision", "custody_key")] == \
        [before[t] for t in ("broker_token", "token_signing_key", "token_revision", "custody_key")]
    revoker = signed_client(app, make_user(ctx, "revoker", "PkiRevoker"))
    assert revoker.call("POST", f"/v1/tokens/{applied['token_id']}/revoke")["status"] == "REVOKED"
    again = api.request("POST", f"/v1/tokens/{applied['token_id']}/revoke")
    assert again.status_code == 409 and again.json()["code"] == "token_not_active"
    missing = api.request("GET", "/v1/tokens/tok_" + "0" * 24)
    assert missing.status_code == 404 and missing.json()["code"] == "token_not_found"
    bad = api.request("POST", "/v1/tokens", json={"client_id": "x", "topics": ["a"], "action": "connect"})
    assert bad.status_code == 400


def test_cli_token_commands(pki):
    code, out, err = pki("token", "apply", "--client-id", "c1", "--topic", "a/#", "--topic", "b",
                         "--action", "subscribe", "--ttl", "15m")
    assert code == 0, err
    applied = json.loads(out)
    assert set(applied) == {"token", "token_id", "expires_at"}
    shown = cli_json(pki, "token", "show", applied["token_id"])
    assert shown["acl"][0] == {"permission": "allow", "action": "subscribe", "topic": "a/#"}
    assert [t["token_id"] for t in cli_json(pki, "token", "list", "--client-id", "c1")["items"]] == \
        [applied["token_id"]]
    assert cli_json(pki, "token", "revoke", applied["token_id"])["status"] == "REVOKED"
    code, _, err = pki("token", "revoke", applied["token_id"])
    assert code != 0 and "token_not_active" in err and "pki token show" in err
    rotated = cli_json(pki, "token", "key", "rotate", "--alg", "EdDSA")
    assert [k["kid"] for k in cli_json(pki, "token", "key", "list")["items"]][0] == rotated["kid"]
    code, _, err = pki("token", "apply", "--client-id", "c1", "--topic", "a", "--ttl", "2d")
    assert code != 0 and "invalid_ttl" in err and "--ttl" in err
