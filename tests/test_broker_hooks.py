"""The broker hooks under /broker/: EMQX 5's HTTP authn/authz contract (bodies as its documented body
templates render them), mosquitto-go-auth's HTTP backend (JSON and form), RabbitMQ's paths with the
requests it sends (tests/data/rabbitmq_auth_requests.json), the hook token checks, bad input, and the
aggregated audit of refusals."""

from __future__ import annotations

import base64
import datetime as _dt
import json
import logging
from pathlib import Path

import pytest

from pki.services import audit, cas, managed
from pki.services import devices as device_service
from pki.services import secrets as secret_service
from pki.services.dataplane import blocklist, hook_tokens, hooks, identities, permissions
from tests.support import snapshot
from tests.support.http_app import app_for, plain_client

RABBIT_REQUESTS = Path(__file__).parent / "data" / "rabbitmq_auth_requests.json"


@pytest.fixture
def world(ctx):
    """An identity, a superuser, a device with a secret, rules on devices/<clientid>/#, and a hook token."""
    identities.add(ctx, username="app", password="app-pass-1")
    identities.add(ctx, username="root", password="root-pass-1", superuser=True)
    secret = secret_service.register_secret(ctx, client_id="meter-1")
    permissions.add(ctx, effect="allow", action="all", topic="devices/${clientid}/#", all_clients=True)
    permissions.add(ctx, effect="allow", action="subscribe", topic="a/#", username="app")
    permissions.add(ctx, effect="allow", action="publish", topic="a/b", username="good")
    permissions.add(ctx, effect="allow", action="subscribe", topic="+/+", username="good")
    permissions.add(ctx, effect="allow", action="subscribe", topic="a/#", username="good")
    identities.add(ctx, username="good", password="pw")
    token = hook_tokens.create(ctx, name="broker-1")["token"]
    client = plain_client(app_for(ctx))
    client.headers["Authorization"] = f"Bearer {token}"
    return {"ctx": ctx, "client": client, "token": token, "secret": secret,
            "device_password": secret_service.password_for(secret.secret, "meter-1")}


def emqx_authn(username, password, clientid, peerhost="10.0.0.7", cert_common_name=None):
    # EMQX 5's body template {"username": "${username}", "password": "${password}", "clientid":
    # "${clientid}", "peerhost": "${peerhost}", "cert_common_name": "${cert_common_name}"}: every value text.
    body = {"username": username, "password": password, "clientid": clientid, "peerhost": peerhost}
    if cert_common_name is not None:
        body["cert_common_name"] = cert_common_name
    return body


def test_emqx_authn_identity_device_secret_superuser_ignore(world):
    c, device = world["client"], world["secret"]
    post = lambda body: c.post("/broker/emqx/authn", json=body)  # noqa: E731
    r = post(emqx_authn("app", "app-pass-1", "app-1"))
    assert r.status_code == 200 and r.json() == {"result": "allow", "is_superuser": False}
    assert post(emqx_authn("root", "root-pass-1", "ops")).json() == {"result": "allow", "is_superuser": True}
    assert post(emqx_authn("app", "wrong", "app-1")).json() == {"result": "deny", "is_superuser": False}
    assert post(emqx_authn(device.username, world["device_password"], "meter-1")).json()["result"] == "allow"
    assert post(emqx_authn(device.username, world["device_password"], "meter-2")).json()["result"] == "deny"
    assert post(emqx_authn(device.username, "bm90LWl0", "meter-1")).json()["result"] == "deny"
    # A username nobody here knows: EMQX's next authenticator decides.
    assert post(emqx_authn("stranger", "pw", "x")).json() == {"result": "ignore", "is_superuser": False}
    # Answers never say why.
    assert set(post(emqx_authn("app", "wrong", "app-1")).json()) == {"result", "is_superuser"}


def test_emqx_authn_blocklist_and_deactivation(world):
    ctx, c, device = world["ctx"], world["client"], world["secret"]
    body = emqx_authn(device.username, world["device_password"], "meter-1", peerhost="192.0.2.9")
    assert c.post("/broker/emqx/authn", json=body).json()["result"] == "allow"
    block = blocklist.add(ctx, ip="192.0.2.0/24")
    assert c.post("/broker/emqx/authn", json=body).json()["result"] == "deny"
    blocklist.delete(ctx, id=block.id)
    assert c.post("/broker/emqx/authn", json=body).json()["result"] == "allow"
    secret_service.deactivate_secret(ctx, client_id="meter-1")
    assert c.post("/broker/emqx/authn", json=body).json()["result"] == "deny"


def test_emqx_authn_device_certificate_common_name(world):
    ctx, c = world["ctx"], world["client"]
    root = managed.create_ca(ctx, name="Hook Root")
    issued = device_service.issue_device(ctx, ca=root.sn, generate=True, client_id="cam-7")
    body = emqx_authn("", "", "cam-7", cert_common_name="cam-7")
    assert c.post("/broker/emqx/authn", json=body).json() == {"result": "allow", "is_superuser": False}
    other = emqx_authn("", "", "cam-8", cert_common_name="cam-7")
    assert c.post("/broker/emqx/authn", json=other).json()["result"] == "deny"
    assert c.post("/broker/emqx/authn", json=emqx_authn("", "", "cam-9", cert_common_name="cam-9")).json()[
        "result"] == "deny"
    # A deactivated issuing CA refuses its devices at once, as the trust bundle does at the next handshake.
    cas.deactivate_ca(ctx, root.sn)
    assert c.post("/broker/emqx/authn", json=body).json()["result"] == "deny"
    cas.activate_ca(ctx, root.sn)
    assert c.post("/broker/emqx/authn", json=body).json()["result"] == "allow"
    device_service.deactivate_device(ctx, ca=root.sn, sn=issued.device.sn)
    assert c.post("/broker/emqx/authn", json=body).json()["result"] == "deny"


def test_emqx_authz(world):
    c = world["client"]
    # EMQX 5's authz body template: username, clientid, peerhost, action, topic, qos, retain (all text).
    def authz(username, clientid, action, topic, **extra):
        body = {"username": username, "clientid": clientid, "peerhost": "10.0.0.7", "action": action,
                "topic": topic, **extra}
        r = c.post("/broker/emqx/authz", json=body)
        assert r.status_code == 200, r.text
        return r.json()["result"]

    assert authz("x", "meter-1", "publish", "devices/meter-1/up", qos="1", retain="false") == "allow"
    assert authz("x", "meter-1", "publish", "devices/meter-2/up", qos="0", retain="true") == "deny"
    assert authz("app", "app-1", "subscribe", "a/#") == "allow"
    assert authz("app", "app-1", "publish", "a/b") == "deny"
    assert authz("root", "ops", "publish", "anything/at/all") == "allow"  # superuser
    assert authz("x", "meter-1", "publish", "devices/+/up") == "deny"  # not a topic name


def test_go_auth_json_and_form(world):
    c, device = world["client"], world["secret"]
    for send in (lambda path, body: c.post(path, json=body), lambda path, body: c.post(path, data=body)):
        assert send("/broker/go-auth/user", {"username": "app", "password": "app-pass-1", "clientid": "a"}
                    ).status_code == 200
        assert send("/broker/go-auth/user", {"username": "app", "password": "nope", "clientid": "a"}
                    ).status_code == 403
        assert send("/broker/go-auth/user", {"username": "stranger", "password": "x", "clientid": "a"}
                    ).status_code == 403
        assert send("/broker/go-auth/user", {"username": device.username, "password": world["device_password"],
                                             "clientid": "meter-1"}).status_code == 200
        assert send("/broker/go-auth/superuser", {"username": "root"}).status_code == 200
        assert send("/broker/go-auth/superuser", {"username": "app"}).status_code == 403
        acl = {"username": "meter-1", "clientid": "meter-1", "topic": "devices/meter-1/up"}
        assert send("/broker/go-auth/acl", {**acl, "acc": 2}).status_code == 200
        assert send("/broker/go-auth/acl", {**acl, "acc": "1"}).status_code == 200
        assert send("/broker/go-auth/acl", {**acl, "topic": "devices/other/up", "acc": 2}).status_code == 403
        assert send("/broker/go-auth/acl", {"username": "app", "clientid": "a", "topic": "a/b", "acc": 4}
                    ).status_code == 200
        assert send("/broker/go-auth/acl", {"username": "app", "clientid": "a", "topic": "a/b", "acc": 3}
                    ).status_code == 403


def _pinned(scenario: str) -> list[dict]:
    return json.loads(RABBIT_REQUESTS.read_text())["scenarios"][scenario]


@pytest.mark.parametrize("scenario", ["connect_good", "connect_wrong_password", "publish_allowed",
                                      "publish_denied", "subscribe", "connect_good_get_with_url_userinfo"])
def test_rabbitmq_pinned_requests_get_the_recorded_answers(world, scenario):
    """The exact requests RabbitMQ 3.10 sent, replayed: "good"/"pw" is an identity here, with the rules the
    recording's backend had (publish a/b; subscribe a/b, c/d, a/+, a/#)."""
    c = world["client"]
    c.headers["Authorization"] = "Basic " + base64.b64encode(f"hook:{world['token']}".encode()).decode()
    for request in _pinned(scenario):
        url = f"/broker/rabbitmq/{request['path']}"
        if request["method"] == "GET":
            r = c.get(url, params=request["params"])
        else:
            r = c.post(url, data=request["params"])
        assert (r.status_code, r.text) == tuple(request["answer"]), request


def test_hook_token_checks(world):
    ctx, c, token = world["ctx"], world["client"], world["token"]
    body = emqx_authn("app", "app-pass-1", "app-1")
    plain = plain_client(app_for(ctx))
    r = plain.post("/broker/emqx/authn", json=body)
    assert r.status_code == 401 and r.json()["code"] == "hook_token_missing"
    r = plain.post("/broker/emqx/authn", json=body, headers={"Authorization": "Bearer pkh_wrong"})
    assert r.status_code == 401 and r.json()["code"] == "hook_token_invalid"
    r = plain.post("/broker/rabbitmq/user", data={"username": "app", "password": "app-pass-1"},
                   headers={"Authorization": "Basic " + base64.b64encode(b"hook:nope").decode()})
    assert r.status_code == 401
    # A token limited to a network the caller is not in (the test client's address is "testclient").
    far = hook_tokens.create(ctx, name="far", cidrs=["198.51.100.0/24"])["token"]
    r = plain.post("/broker/emqx/authn", json=body, headers={"Authorization": f"Bearer {far}"})
    assert r.status_code == 401 and r.json()["code"] == "hook_token_invalid"
    # A hook token opens the hooks and nothing else.
    for path in ("/v1/identities", "/v1/cas"):
        r = plain.get(path, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401, (path, r.status_code)
    # The token from inside its CIDR works.
    near = hook_tokens.create(ctx, name="near", cidrs=["127.0.0.0/8"])["token"]
    import httpx  # the test client's peer is not an address: give it one

    transport = httpx.ASGITransport(app=app_for(ctx), client=("127.0.0.1", 5000))
    import anyio

    async def call(tok):
        async with httpx.AsyncClient(transport=transport, base_url="http://hooks") as ac:
            return await ac.post("/broker/emqx/authn", json=body, headers={"Authorization": f"Bearer {tok}"})

    assert anyio.run(call, near).json()["result"] == "allow"
    assert anyio.run(call, far).status_code == 401


@pytest.mark.parametrize("path,kwargs", [
    ("/broker/emqx/authn", {"json": {"username": "app", "clientid": "c"}}),  # no password
    ("/broker/emqx/authn", {"content": b"{not json", "headers": {"Content-Type": "application/json"}}),
    ("/broker/emqx/authn", {"json": ["a", "list"]}),
    ("/broker/emqx/authn", {"json": {"username": 1, "password": "p", "clientid": "c"}}),
    ("/broker/emqx/authn", {"content": b"\xff\xfe", "headers": {"Content-Type": "application/json"}}),
    ("/broker/emqx/authn", {"content": b"<xml/>", "headers": {"Content-Type": "application/xml"}}),
    ("/broker/emqx/authz", {"json": {"username": "app", "clientid": "c", "action": "publish"}}),
    ("/broker/emqx/authz", {"json": {"username": "a", "clientid": "c", "action": "publish", "topic": "t",
                                     "qos": "7"}}),
    ("/broker/emqx/authz", {"json": {"username": "a", "clientid": "c", "action": "publish", "topic": "t",
                                     "retain": "maybe"}}),
    ("/broker/go-auth/acl", {"json": {"username": "a", "clientid": "c", "topic": "t", "acc": 9}}),
    ("/broker/go-auth/acl", {"data": {"username": "a", "clientid": "c", "topic": "t"}}),
    ("/broker/go-auth/user", {"data": {"username": "a"}}),
    ("/broker/rabbitmq/topic", {"data": {"username": "a", "vhost": "/"}}),
    ("/broker/rabbitmq/user", {"content": b"=&&==", "headers": {
        "Content-Type": "application/x-www-form-urlencoded"}}),
    ("/broker/emqx/authn", {"content": b"{" + b" " * (2 * 1024 * 1024) + b"}",
                            "headers": {"Content-Type": "application/json"}}),
])
def test_bad_input_is_4xx_and_store_unchanged(world, path, kwargs):
    before = snapshot(world["ctx"])
    r = world["client"].post(path, **kwargs)
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert snapshot(world["ctx"]) == before


def test_get_on_rabbitmq_without_query_is_400(world):
    r = world["client"].get("/broker/rabbitmq/user")
    assert r.status_code == 400 and r.json()["code"] == "invalid_hook_request"


def test_refusals_audited_once_per_principal_reason_minute_never_the_password(world, caplog):
    ctx, c = world["ctx"], world["client"]
    caplog.set_level(logging.INFO, logger="pki.hooks")
    before = len(audit.list_records(ctx, limit=1000).items)
    for _ in range(5):
        assert c.post("/broker/emqx/authn", json=emqx_authn("app", "bad-pass-xyz", "app-1")).json()[
            "result"] == "deny"
    c.post("/broker/emqx/authz", json={"username": "app", "clientid": "app-1", "peerhost": "10.0.0.7",
                                       "action": "publish", "topic": "a/b"})
    records = audit.list_records(ctx, limit=1000).items[before:]
    refusals = [r for r in records if r.action in (hooks.AUDIT_ACTION_CONNECT, hooks.AUDIT_ACTION_AUTHORIZE)]
    assert [(r.action, r.principal, r.result, r.details["reason"]) for r in refusals] == [
        (hooks.AUDIT_ACTION_CONNECT, "app", "denied", "wrong_password"),
        (hooks.AUDIT_ACTION_AUTHORIZE, "app", "denied", refusals[1].details["reason"])]
    assert "bad-pass-xyz" not in repr([r.details for r in records]) and "bad-pass-xyz" not in caplog.text
    assert "wrong_password" in caplog.text
    # The next minute, a new record.
    ctx.clock.advance(_dt.timedelta(seconds=60))
    c.post("/broker/emqx/authn", json=emqx_authn("app", "bad-pass-xyz", "app-1"))
    later = [r for r in audit.list_records(ctx, limit=1000).items[before:] if r.action == hooks.AUDIT_ACTION_CONNECT]
    assert len(later) == 2
    # An allowed call writes nothing.
    count = len(audit.list_records(ctx, limit=1000).items)
    c.post("/broker/emqx/authn", json=emqx_authn("app", "app-pass-1", "app-1"))
    assert len(audit.list_records(ctx, limit=1000).items) == count
