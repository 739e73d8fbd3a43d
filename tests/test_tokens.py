"""Broker tokens: apply, show, list, revoke; the hooks' checks through EMQX's HTTP contract; the bad tokens
(alg none, HMAC with the public key, tampering, unknown kid, nbf ahead, a retired key, garbage, oversized);
rotation; bad input leaving the store unchanged; audit; races on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import hmac
import json
import threading

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pki.errors import InvalidState, NotFound
from pki.services import audit, tokens
from pki.services.dataplane import hook_tokens, hooks
from pki.services.tokens import verify as token_checks
from pki.store import repos
from pki.store.models import CustodyKey
from tests.support import refused_unchanged, snapshot
from tests.support.http_app import app_for, plain_client


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _parts(token: str) -> tuple[dict, dict]:
    header, payload, _ = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    return json.loads(base64.urlsafe_b64decode(pad(header))), json.loads(base64.urlsafe_b64decode(pad(payload)))


def _private_key(ctx, kid: str):
    """The private half of a signing key, from custody: a test forges with it, the code never exports it."""
    with ctx.store.engine.connect() as conn:
        row = repos.get_custody_key(conn, key_id=kid)
    return ctx.keystore.open_private_key(row.sealed, key_id=kid)


@pytest.fixture
def hook(ctx):
    client = plain_client(app_for(ctx))
    client.headers["Authorization"] = f"Bearer {hook_tokens.create(ctx, name='emqx')['token']}"

    def authn(password, clientid, username="app"):
        body = {"username": username, "password": password, "clientid": clientid, "peerhost": "10.0.0.7"}
        r = client.post("/broker/emqx/authn", json=body)
        assert r.status_code == 200, r.text
        return r.json()

    def authz(clientid, action, topic, username="app"):
        body = {"username": username, "clientid": clientid, "peerhost": "10.0.0.7", "action": action, "topic": topic}
        r = client.post("/broker/emqx/authz", json=body)
        assert r.status_code == 200, r.text
        return r.json()["result"]

    return authn, authz


def test_apply_claims_and_acl_in_emqx_form(ctx):
    applied = tokens.apply(ctx, client_id="app-1", username="app", topics=["t/${clientid}", "cmd/#"],
                           action="subscribe", ttl="15m")
    assert set(applied) == {"token", "token_id", "expires_at"}
    header, claims = _parts(applied["token"])
    kid = tokens.list_keys(ctx).items[0].kid
    assert header == {"alg": "ES256", "kid": kid, "typ": "JWT"}
    now = int(ctx.clock.now().timestamp())
    assert claims["iss"] == "acs:mq:local:default:default"
    assert (claims["sub"], claims["clientid"], claims["username"], claims["jti"]) == ("app-1", "app-1", "app",
                                                                                      applied["token_id"])
    assert claims["iat"] == claims["nbf"] == now and claims["exp"] == now + 900
    # EMQX 5.5+ rule-list form, closed by a deny-everything-else rule (the new format falls through otherwise).
    assert claims["acl"] == [{"permission": "allow", "action": "subscribe", "topic": "t/${clientid}"},
                             {"permission": "allow", "action": "subscribe", "topic": "cmd/#"},
                             {"permission": "deny", "action": "all", "topic": "#"}]
    shown = tokens.show(ctx, token_id=applied["token_id"]).as_json()
    assert shown["status"] == "ACTIVE" and shown["acl"] == claims["acl"] and shown["kid"] == kid
    assert "token" not in shown
    # The store keeps the claims, never the token (nor its signature).
    assert applied["token"].split(".")[2] not in json.dumps(snapshot(ctx), default=str)


def test_hook_accepts_and_refuses(ctx, clock, hook):
    authn, authz = hook
    applied = tokens.apply(ctx, client_id="app-1", topics=["devices/${clientid}/up", "cfg/#"], action="publish",
                           ttl="10m")
    token = applied["token"]
    answer = authn(token, "app-1")
    assert answer["result"] == "allow" and answer["is_superuser"] is False
    assert answer["acl"][-1] == {"permission": "deny", "action": "all", "topic": "#"}
    assert answer["expire_at"] == int(ctx.clock.now().timestamp()) + 600
    assert authn(token, "app-2") == {"result": "deny", "is_superuser": False}  # another client id
    assert authz("app-1", "publish", "devices/app-1/up") == "allow"
    assert authz("app-1", "publish", "cfg/a/b") == "allow"
    assert authz("app-1", "publish", "devices/app-2/up") == "deny"  # outside its acl
    assert authz("app-1", "subscribe", "cfg/#") == "deny"  # publish only
    tokens.revoke(ctx, token_id=applied["token_id"])
    assert authn(token, "app-1")["result"] == "deny"
    assert authz("app-1", "publish", "devices/app-1/up") == "deny"  # no valid token: the rules (default deny)
    fresh = tokens.apply(ctx, client_id="app-1", topics=["x"], action="all", ttl="10m")["token"]
    assert authn(fresh, "app-1")["result"] == "allow"
    clock.advance(_dt.timedelta(minutes=10))
    assert authn(fresh, "app-1")["result"] == "deny"  # expired, on the fake clock
    assert tokens.list_tokens(ctx, client_id="app-1", status="EXPIRED").items[0].status == "EXPIRED"


def test_username_bound_token_and_superuser(ctx, hook):
    authn, authz = hook
    bound = tokens.apply(ctx, client_id="svc", username="svc-user", topics=["a"], ttl="5m")["token"]
    assert authn(bound, "svc", username="svc-user")["result"] == "allow"
    assert authn(bound, "svc", username="other")["result"] == "deny"
    root = tokens.apply(ctx, client_id="ops", superuser=True, ttl="5m")["token"]
    assert authn(root, "ops") == {"result": "allow", "is_superuser": True,
                                  "acl": [{"permission": "allow", "action": "all", "topic": "#"}],
                                  "expire_at": int(ctx.clock.now().timestamp()) + 300}
    assert authz("ops", "publish", "any/thing") == "allow"


def _claims(ctx, **over) -> dict:
    now = int(ctx.clock.now().timestamp())
    claims = {"iss": "acs:mq:local:default:default", "sub": "app-1", "iat": now, "nbf": now, "exp": now + 600,
              "jti": "tok_" + "0" * 24, "clientid": "app-1", "acl": [{"permission": "allow", "action": "all",
                                                                      "topic": "#"}]}
    claims.update(over)
    return claims


def test_bad_tokens_are_refused(ctx, hook):
    authn, _ = hook
    good = tokens.apply(ctx, client_id="app-1", topics=["a"], ttl="10m")["token"]
    kid = tokens.list_keys(ctx).items[0].kid
    key = _private_key(ctx, kid)
    assert authn(good, "app-1")["result"] == "allow"
    # alg none
    none = f"{_b64(json.dumps({'alg': 'none', 'kid': kid, 'typ': 'JWT'}).encode())}." \
           f"{_b64(json.dumps(_claims(ctx)).encode())}."
    # HS256 keyed with the public key (PEM and JWK): the algorithm confusion attack
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    jwk_text = json.dumps(tokens.list_keys(ctx).items[0].public_jwk).encode()
    confused = []
    for secret in (pem, jwk_text):
        signing_input = f"{_b64(json.dumps({'alg': 'HS256', 'kid': kid, 'typ': 'JWT'}).encode())}." \
                        f"{_b64(json.dumps(_claims(ctx)).encode())}"
        sig = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        confused.append(f"{signing_input}.{_b64(sig)}")
    # a tampered payload: the good token's signature over a widened acl
    head, _, sig = good.split(".")
    tampered = f"{head}.{_b64(json.dumps(_claims(ctx)).encode())}.{sig}"
    # an unknown kid, signed by a key that is not ours
    stranger = pyjwt.encode(_claims(ctx), ec.generate_private_key(ec.SECP256R1()), algorithm="ES256",
                            headers={"kid": "key_" + "f" * 24})
    # our key, our kid, but not valid yet
    early = pyjwt.encode(_claims(ctx, nbf=_claims(ctx)["nbf"] + 3600), key, algorithm="ES256", headers={"kid": kid})
    # a header naming our kid with another of our algorithms
    wrong_alg = ".".join([_b64(json.dumps({"alg": "RS256", "kid": kid, "typ": "JWT"}).encode()),
                          *good.split(".")[1:]])
    garbage = "eyJub3Q.a.jwt"
    oversized = pyjwt.encode(_claims(ctx, pad="x" * 20_000), key, algorithm="ES256", headers={"kid": kid})
    cases = {"none": none, "hs256_pem": confused[0], "hs256_jwk": confused[1], "tampered": tampered,
             "unknown_kid": stranger, "nbf_ahead": early, "wrong_alg": wrong_alg, "garbage": garbage,
             "oversized": oversized}
    reasons = {}
    for name, bad in cases.items():
        assert authn(bad, "app-1") == {"result": "deny", "is_superuser": False}, name
        reasons[name] = token_checks.authenticate(ctx, token=bad, client_id="app-1", username="app").reason
    assert reasons == {"none": "token_wrong_algorithm", "hs256_pem": "token_wrong_algorithm",
                       "hs256_jwk": "token_wrong_algorithm", "tampered": "token_bad_signature",
                       "unknown_kid": "token_unknown_kid", "nbf_ahead": "token_not_yet_valid",
                       "wrong_alg": "token_wrong_algorithm", "garbage": "token_malformed",
                       "oversized": "token_oversized"}
    # The same forged claims signed properly do pass: the refusals above are about the forgery.
    assert authn(pyjwt.encode(_claims(ctx), key, algorithm="ES256", headers={"kid": kid}), "app-1")["result"] == "allow"
    # Not a JWT at all, with no username we know: not ours to decide (EMQX asks its next authenticator).
    assert authn("plain garbage", "app-1", username="nobody")["result"] == "ignore"


def test_rotation_old_tokens_pass_until_they_expire(ctx, clock, hook):
    authn, _ = hook
    old = tokens.apply(ctx, client_id="app-1", topics=["a"], ttl="30m")["token"]
    old_kid = _parts(old)[0]["kid"]
    new = tokens.rotate(ctx, alg="EdDSA")
    assert new.status == "CURRENT" and new.alg == "EdDSA" and new.kid != old_kid
    fresh = tokens.apply(ctx, client_id="app-1", topics=["a"], ttl="2h")["token"]
    assert _parts(fresh)[0] == {"alg": "EdDSA", "kid": new.kid, "typ": "JWT"}
    assert authn(old, "app-1")["result"] == "allow" and authn(fresh, "app-1")["result"] == "allow"
    assert {k["kid"] for k in json.loads(tokens.jwks(ctx)[0])["keys"]} == {old_kid, new.kid}
    listed = {k.kid: k for k in tokens.list_keys(ctx).items}
    assert listed[old_kid].status == "PREVIOUS"
    assert listed[old_kid].verify_until == ctx.clock.now().replace(microsecond=0) + _dt.timedelta(minutes=30)
    clock.advance(_dt.timedelta(minutes=31))
    assert authn(old, "app-1")["result"] == "deny" and authn(fresh, "app-1")["result"] == "allow"
    assert {k["kid"] for k in json.loads(tokens.jwks(ctx)[0])["keys"]} == {new.kid}
    assert {k.kid: k.status for k in tokens.list_keys(ctx).items} == {old_kid: "RETIRED", new.kid: "CURRENT"}
    # A token forged with the retired key, still within its own exp, is refused: the key verifies nothing now.
    forged = pyjwt.encode(_claims(ctx), _private_key(ctx, old_kid), algorithm="ES256", headers={"kid": old_kid})
    assert authn(forged, "app-1")["result"] == "deny"
    assert token_checks.authenticate(ctx, token=forged, client_id="app-1", username=None).reason == \
        "token_key_retired"
    tokens.rotate(ctx)  # a later rotation records the retirement for good
    assert token_checks.authenticate(ctx, token=forged, client_id="app-1", username=None).reason == \
        "token_unknown_kid"
    assert {k.kid: k.status for k in tokens.list_keys(ctx).items}[old_kid] == "RETIRED"


def test_bad_input_leaves_the_store_unchanged(ctx):
    tokens.apply(ctx, client_id="c", topics=["a"])  # the key exists: later refusals must not add one
    bad = {
        "invalid_client_id": dict(client_id="a/b", topics=["x"]),
        "invalid_topic_filter": dict(client_id="c", topics=["a/#/b"]),
        "invalid_mqtt_action": dict(client_id="c", topics=["a"], action="connect"),
        "invalid_ttl": dict(client_id="c", topics=["a"], ttl="2d"),
        "invalid_duration": dict(client_id="c", topics=["a"], ttl="soon"),
        "invalid_username": dict(client_id="c", topics=["a"], username="a\nb"),
    }
    for code, kwargs in bad.items():
        refused_unchanged(ctx, code, lambda kw=kwargs: tokens.apply(ctx, **kw))
    refused_unchanged(ctx, "invalid_topic_filter", lambda: tokens.apply(ctx, client_id="c", topics=[]))
    refused_unchanged(ctx, "invalid_topic_filter",
                      lambda: tokens.apply(ctx, client_id="c", topics=[f"t/{i}" for i in range(33)]))
    refused_unchanged(ctx, "invalid_topic_filter", lambda: tokens.apply(ctx, client_id="c", topics=["a" * 300]))
    refused_unchanged(ctx, "invalid_token_id", lambda: tokens.revoke(ctx, token_id="tok_../x"))
    refused_unchanged(ctx, "invalid_token_algorithm", lambda: tokens.rotate(ctx, alg="HS256"))
    refused_unchanged(ctx, "invalid_status", lambda: tokens.list_tokens(ctx, status="GONE"))
    before = snapshot(ctx)
    with pytest.raises(NotFound):
        tokens.revoke(ctx, token_id="tok_" + "a" * 24)
    assert snapshot(ctx) == before


def test_ttl_cap_comes_from_configuration(tmp_path, clock):
    from pki.config import Settings
    from pki.errors import ConfigError
    from pki.services.context import Context
    from pki.services.setup import initialise
    from pki.store import Store

    settings = Settings.load(home=tmp_path / "h", instance="default", environ={"PKI_TOKEN_MAX_TTL": "2h"})
    initialise(settings)
    ctx = Context(settings=settings, store=Store(settings.database_url), clock=clock)
    try:
        assert tokens.apply(ctx, client_id="c", topics=["a"], ttl="2h")["token"]
        refused_unchanged(ctx, "invalid_ttl", lambda: tokens.apply(ctx, client_id="c", topics=["a"], ttl="121m"))
    finally:
        ctx.close()
    with pytest.raises(ConfigError):
        Settings.load(home=tmp_path / "h", environ={"PKI_TOKEN_MAX_TTL": "forever"})


def test_audit_records_the_token_id_never_the_token(ctx):
    applied = tokens.apply(ctx, client_id="app-1", topics=["a"])
    tokens.revoke(ctx, token_id=applied["token_id"])
    records = audit.list_records(ctx, limit=10).items
    by_action = {r.action: r for r in records}
    assert by_action["mq:ApplyToken"].details["subject"] == applied["token_id"]
    assert by_action["mq:RevokeToken"].details["subject"] == applied["token_id"]
    dumped = json.dumps([r.as_json() for r in records])
    assert applied["token"] not in dumped and applied["token"].split(".")[2] not in dumped
    assert audit.check(ctx).ok
    with pytest.raises(InvalidState) as again:
        tokens.revoke(ctx, token_id=applied["token_id"])
    assert again.value.code == "token_not_active"


def test_concurrent_revokes_one_wins(ctx):
    """On SQLite and PostgreSQL: of two revokes of one token, one changes it and one is refused."""
    ids = [tokens.apply(ctx, client_id=f"c{i}", topics=["a"])["token_id"] for i in range(5)]
    for token_id in ids:
        start, outcomes = threading.Barrier(2), []

        def run(token_id=token_id, start=start, outcomes=outcomes):
            start.wait()
            try:
                tokens.revoke(ctx, token_id=token_id)
                outcomes.append("revoked")
            except InvalidState as exc:
                outcomes.append(exc.code)

        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert sorted(outcomes) == ["revoked", "token_not_active"]
    revokes = [r for r in audit.list_records(ctx, limit=100).items if r.action == "mq:RevokeToken"]
    assert len(revokes) == len(ids)


def test_concurrent_first_applies_make_one_key(ctx):
    """Several first applies at once (no key yet): one CURRENT key signs them all."""
    start, kids = threading.Barrier(4), []

    def run():
        start.wait()
        kids.append(_parts(tokens.apply(ctx, client_id="c", topics=["a"])["token"])[0]["kid"])

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(kids) == 4 and len(set(kids)) == 1
    assert [k.status for k in tokens.list_keys(ctx).items] == ["CURRENT"]
    with ctx.store.engine.connect() as conn:
        assert conn.execute(CustodyKey.__table__.select()).all()[0].key_id == kids[0]


def test_go_auth_and_rabbitmq_hooks_take_tokens(ctx):
    """The other brokers' hooks run the same checks: a token as the password, its acl per topic."""
    client = plain_client(app_for(ctx))
    client.headers["Authorization"] = f"Bearer {hook_tokens.create(ctx, name='go')['token']}"
    applied = tokens.apply(ctx, client_id="gw-1", username="gw", topics=["up/${clientid}"], action="publish")
    user = {"username": "gw", "password": applied["token"], "clientid": "gw-1"}
    assert client.post("/broker/go-auth/user", json=user).status_code == 200
    assert client.post("/broker/go-auth/user", json={**user, "clientid": "gw-2"}).status_code == 403
    acl = {"username": "gw", "clientid": "gw-1", "topic": "up/gw-1", "acc": 2}
    assert client.post("/broker/go-auth/acl", json=acl).status_code == 200
    assert client.post("/broker/go-auth/acl", json={**acl, "topic": "up/gw-2"}).status_code == 403
    assert client.post("/broker/go-auth/acl", json={**acl, "acc": 1}).status_code == 403  # publish only
    rabbit = {"username": "gw", "password": applied["token"], "client_id": "gw-1"}
    assert client.post("/broker/rabbitmq/user", data=rabbit).text == "allow"
    tokens.revoke(ctx, token_id=applied["token_id"])
    assert client.post("/broker/rabbitmq/user", data=rabbit).text == "deny"
    assert client.post("/broker/go-auth/user", json=user).status_code == 403


def test_concurrent_applies_share_commits_and_keep_their_own_records(ctx):
    """Applies from many threads at once go in batches (one token insert and one audit append per batch):
    every token is stored once, verifies, and has its own audit record naming its caller, on a sound chain."""
    count, start, answers = 24, threading.Barrier(24), {}

    def run(i):
        with audit.acting_as(audit.Actor(principal=f"acs:ram::default:user/app-{i}", request_id=f"req-{i}")):
            start.wait()
            answers[i] = tokens.apply(ctx, client_id=f"dev-{i}", topics=["t/${clientid}/#"], ttl="10m")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(answers) == list(range(count))
    for i, answer in answers.items():
        assert _parts(answer["token"])[1]["clientid"] == f"dev-{i}"
        shown = tokens.show(ctx, token_id=answer["token_id"])
        assert (shown.client_id, shown.status) == (f"dev-{i}", "ACTIVE")
        assert token_checks.authenticate(ctx, token=answer["token"], client_id=f"dev-{i}", username=None).result == "allow"
    applies = [r for r in audit.list_records(ctx, limit=100).items if r.action == "mq:ApplyToken"]
    by_token = {r.details["subject"]: r for r in applies}
    assert len(applies) == count and len(by_token) == count
    for i, answer in answers.items():
        record = by_token[answer["token_id"]]
        assert (record.principal, record.request_id, record.details["client_id"]) == (
            f"acs:ram::default:user/app-{i}", f"req-{i}", f"dev-{i}")
    assert audit.check(ctx).ok
