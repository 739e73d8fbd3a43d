"""Signed requests: tampering with anything signed is refused, so are unsigned and replayed requests."""

from __future__ import annotations

import json
import time

import pytest

from tests.support.http_app import app_for, make_user, plain_client
from pki import signing
from pki.http import create_app
from pki.services.context import Context
from pki.store import Store


def test_canonical_query_sorts_and_normalises():
    assert signing.canonical_query("b=2&a=1&a=0") == "a=0&a=1&b=2"
    assert signing.canonical_query("x=a%20b&y=") == signing.canonical_query("y=&x=a+b") == "x=a%20b&y="
    assert signing.canonical_query("") == ""


def test_canonical_request_covers_every_part():
    base = dict(method="POST", path="/v1/cas", query="a=1", timestamp="1700000000", nonce="n" * 16,
                access_key_id="AK.x", body=b"{}")
    reference = signing.canonical_request(**base)
    for key, value in (("method", "PUT"), ("path", "/v1/cat"), ("query", "a=2"), ("timestamp", "1700000001"),
                       ("nonce", "m" * 16), ("access_key_id", "AK.y"), ("body", b"{ }")):
        assert signing.canonical_request(**{**base, key: value}) != reference, key


@pytest.fixture
def admin(ctx):
    return make_user(ctx, "admin", "PkiAdministratorAccess")


@pytest.fixture
def tc(ctx):
    return plain_client(app_for(ctx))


def _headers(user, *, method, path, query="", body=b"", **kw):
    return signing.signed_headers(access_key_id=user.access_key_id, secret=user.access_key_secret, method=method,
                                  path=path, query=query, body=body, **kw)


def _assert_401(response, code):
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code
    assert response.headers["www-authenticate"] == signing.ALGORITHM


def test_correctly_signed_request_passes(tc, admin):
    body = json.dumps({"client_id": "dev-1"}).encode()
    r = tc.post("/v1/secrets", content=body, headers={**_headers(admin, method="POST", path="/v1/secrets",
                                                                 body=body), "Content-Type": "application/json"})
    assert r.status_code == 201, r.text
    assert r.json()["client_id"] == "dev-1"


def test_unsigned_request_refused(tc):
    _assert_401(tc.get("/v1/cas"), "signature_missing")
    _assert_401(tc.post("/v1/secrets", json={"client_id": "x"}), "signature_missing")


def test_changed_body_refused(tc, admin, ctx):
    body = json.dumps({"client_id": "dev-1"}).encode()
    headers = {**_headers(admin, method="POST", path="/v1/secrets", body=body), "Content-Type": "application/json"}
    _assert_401(tc.post("/v1/secrets", content=body.replace(b"dev-1", b"dev-2"), headers=headers),
                "signature_invalid")
    from pki.services import secrets

    assert secrets.list_secrets(ctx).items == []


def test_changed_path_refused(tc, admin):
    headers = _headers(admin, method="GET", path="/v1/cas")
    _assert_401(tc.get("/v1/secrets", headers=headers), "signature_invalid")


def test_changed_method_refused(tc, admin):
    headers = _headers(admin, method="GET", path="/v1/cas")
    _assert_401(tc.post("/v1/cas", json={"name": "x"}, headers=headers), "signature_invalid")


def test_changed_query_refused(tc, admin):
    headers = _headers(admin, method="GET", path="/v1/cas", query="limit=1")
    assert tc.get("/v1/cas?limit=1", headers=headers).status_code == 200
    headers = _headers(admin, method="GET", path="/v1/cas", query="limit=1")
    _assert_401(tc.get("/v1/cas?limit=2", headers=headers), "signature_invalid")
    headers = _headers(admin, method="GET", path="/v1/cas", query="limit=1")
    _assert_401(tc.get("/v1/cas?limit=1&status=ACTIVE", headers=headers), "signature_invalid")


def test_query_order_does_not_matter(tc, admin):
    headers = _headers(admin, method="GET", path="/v1/cas", query="status=ACTIVE&limit=5")
    assert tc.get("/v1/cas?limit=5&status=ACTIVE", headers=headers).status_code == 200


def test_changed_timestamp_refused(tc, admin):
    headers = _headers(admin, method="GET", path="/v1/cas")
    headers[signing.HEADER_TIMESTAMP] = str(int(headers[signing.HEADER_TIMESTAMP]) + 1)
    _assert_401(tc.get("/v1/cas", headers=headers), "signature_invalid")


def test_changed_access_key_refused(ctx, tc, admin):
    other = make_user(ctx, "other")
    headers = _headers(admin, method="GET", path="/v1/cas")
    headers[signing.HEADER_ACCESS_KEY] = other.access_key_id
    _assert_401(tc.get("/v1/cas", headers=headers), "signature_invalid")


def test_wrong_secret_refused(tc, admin):
    headers = signing.signed_headers(access_key_id=admin.access_key_id, secret="not-the-secret", method="GET",
                                     path="/v1/cas")
    _assert_401(tc.get("/v1/cas", headers=headers), "signature_invalid")


def test_timestamp_outside_window_refused(tc, admin, clock):
    now = int(clock.now().timestamp())
    for ts in (now - signing.MAX_SKEW - 5, now + signing.MAX_SKEW + 5):
        headers = _headers(admin, method="GET", path="/v1/cas", timestamp=ts)
        _assert_401(tc.get("/v1/cas", headers=headers), "signature_expired")
    headers = _headers(admin, method="GET", path="/v1/cas", timestamp=now - signing.MAX_SKEW + 30)
    assert tc.get("/v1/cas", headers=headers).status_code == 200


def test_replayed_nonce_refused(tc, admin):
    headers = _headers(admin, method="GET", path="/v1/cas")
    assert tc.get("/v1/cas", headers=headers).status_code == 200
    _assert_401(tc.get("/v1/cas", headers=headers), "nonce_replayed")
    # The same nonce in a new, correctly signed request is still a replay.
    again = _headers(admin, method="GET", path="/v1/secrets", nonce=headers[signing.HEADER_NONCE])
    _assert_401(tc.get("/v1/secrets", headers=again), "nonce_replayed")


def test_nonce_is_shared_between_processes(settings, clock, admin, tmp_path):
    """Two apps, two Contexts on one database (as two `pki serve`): a replay to the other is refused."""
    ctxs = [Context(settings=settings, store=Store(settings.database_url), clock=clock) for _ in range(2)]
    try:
        a, b = (plain_client(create_app(lambda c=c: c)) for c in ctxs)
        headers = _headers(admin, method="GET", path="/v1/cas")
        assert a.get("/v1/cas", headers=headers).status_code == 200
        _assert_401(b.get("/v1/cas", headers=headers), "nonce_replayed")
    finally:
        for c in ctxs:
            c.close()


def test_malformed_headers_refused(tc, admin):
    for name, value in ((signing.HEADER_TIMESTAMP, "yesterday"), (signing.HEADER_NONCE, "short"),
                        (signing.HEADER_SIGNATURE, "zz"), (signing.HEADER_ACCESS_KEY, "a b")):
        headers = _headers(admin, method="GET", path="/v1/cas")
        headers[name] = value
        _assert_401(tc.get("/v1/cas", headers=headers), "signature_invalid")


def test_disabled_or_unknown_key_refused(ctx, tc, admin):
    from pki.services import users

    user = make_user(ctx, "line-1", "PkiReadOnlyAccess")
    assert tc.get("/v1/cas", headers=_headers(user, method="GET", path="/v1/cas")).status_code == 200
    users.disable_access_key(ctx, user.access_key_id)
    _assert_401(tc.get("/v1/cas", headers=_headers(user, method="GET", path="/v1/cas")), "invalid_access_key")
    headers = _headers(admin, method="GET", path="/v1/cas")
    headers[signing.HEADER_ACCESS_KEY] = "AK." + "0" * 20
    _assert_401(tc.get("/v1/cas", headers=headers), "invalid_access_key")


def test_signing_uses_the_raw_path(tc, admin):
    """A percent-encoded path segment is signed as sent."""
    path = "/v1/secrets/dev%2F1"
    r = tc.get(path, headers=_headers(admin, method="GET", path=path))
    assert r.status_code in (400, 404), r.text
    assert r.json()["code"] not in ("signature_invalid",)


def test_signed_headers_defaults_are_fresh():
    h1 = signing.signed_headers(access_key_id="AK.a", secret="s", method="GET", path="/")
    h2 = signing.signed_headers(access_key_id="AK.a", secret="s", method="GET", path="/")
    assert h1[signing.HEADER_NONCE] != h2[signing.HEADER_NONCE]
    assert abs(int(h1[signing.HEADER_TIMESTAMP]) - time.time()) < signing.MAX_SKEW


def test_forged_requests_write_nothing_not_even_their_nonce(ctx, admin):
    """A bad signature rolls back the one authentication transaction: no nonce stored, no token spent,
    no device issued, on the routes that run on the event loop and on those that run in threads."""
    from tests.support import snapshot
    from tests.support.http_app import csr_pem
    from pki.services import managed
    from pki.services.authn import RateLimit

    ca = managed.create_ca(ctx, name="Forgery Root")
    tc = plain_client(app_for(ctx, rate_limit=RateLimit(rate=0.001, burst=1)))
    before = snapshot(ctx)
    issue = json.dumps({"csr_pem": csr_pem("forged")}).encode()
    path = f"/v1/cas/{ca.sn}/devices"
    nonce = "n" * 24
    forged = [
        ("POST", path, issue, _headers(admin, method="POST", path=path, body=issue + b" ", nonce=nonce)),
        ("GET", "/v1/cas", b"", {**_headers(admin, method="GET", path="/v1/cas", nonce=nonce),
                                 signing.HEADER_SIGNATURE: "0" * 64}),
    ]
    for method, url, body, headers in forged:
        r = tc.request(method, url, content=body, headers={**headers, "Content-Type": "application/json"})
        _assert_401(r, "signature_invalid")
    assert snapshot(ctx) == before
    # The genuine request with that nonce still passes, and takes the one token of the bucket.
    r = tc.post(path, content=issue, headers={**_headers(admin, method="POST", path=path, body=issue, nonce=nonce),
                                              "Content-Type": "application/json"})
    assert r.status_code == 201, r.text
    r = tc.get("/v1/cas", headers=_headers(admin, method="GET", path="/v1/cas"))
    assert r.status_code == 429 and r.json()["code"] == "rate_limited"


def test_every_v1_route_refuses_a_forged_signature(ctx, admin):
    """Routes authenticate lazily (when they first act): each must, whatever it does."""
    from fastapi.routing import APIRoute

    from pki.http.v1 import PREFIX, ROUTE_TABLE

    tc = plain_client(app_for(ctx))
    routes = [r for router, _tag in ROUTE_TABLE for r in router.routes if isinstance(r, APIRoute)]
    assert len(routes) > 30
    for route in routes:
        path = PREFIX + route.path.replace("{", "").replace("}", "")  # placeholders become plain segments
        for method in route.methods:
            headers = _headers(admin, method=method, path=path)
            headers[signing.HEADER_SIGNATURE] = "0" * 64
            r = tc.request(method, path, headers=headers)
            assert r.status_code in (401, 422, 400), (method, route.path, r.status_code, r.text)
            if r.status_code != 401:
                # Refused on its input before the signature was looked at: then it must not have acted.
                assert r.json()["code"] in ("invalid_request", "invalid_serial", "invalid_time"), (route.path, r.text)


def test_forged_requests_are_refused_while_another_writer_holds_the_database(sqlite_ctx):
    """The signature is checked before the write transaction: a flood of forged requests
    does not queue for (or take) SQLite's write lock."""
    import sqlite3
    import threading

    ctx = sqlite_ctx
    user = make_user(ctx, "admin", "PkiAdministratorAccess")
    tc = plain_client(app_for(ctx))
    assert tc.get("/v1/cas", headers=_headers(user, method="GET", path="/v1/cas")).status_code == 200
    forged = [
        {**_headers(user, method="GET", path="/v1/cas"), signing.HEADER_SIGNATURE: "0" * 64},  # known key
        {**_headers(user, method="GET", path="/v1/cas"), signing.HEADER_ACCESS_KEY: "AK." + "0" * 20},  # unknown
    ]
    holder = sqlite3.connect(ctx.settings.database_url.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer, mid-transaction
    answers: list = []
    try:
        worker = threading.Thread(target=lambda: answers.extend(tc.get("/v1/cas", headers=h) for h in forged))
        worker.start()
        worker.join(timeout=20)  # a bound on waiting, not a timed assertion: with the lock held throughout
        answered_while_locked = not worker.is_alive()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    worker.join()
    assert answered_while_locked, "a forged request waited for the write lock"
    assert [(r.status_code, r.json()["code"]) for r in answers] == [(401, "signature_invalid"),
                                                                   (401, "invalid_access_key")]
