"""The broker data plane's management services: identities, permissions, the default, the blocklist, hook
tokens; their audit records, their caches' invalidation, and their refusals (store unchanged)."""

from __future__ import annotations

import datetime as _dt

import pytest

from tests.support import snapshot
from pki.dataplane import mosquitto
from pki.errors import Conflict, InvalidInput, NotFound
from pki.services import audit
from pki.services.dataplane import blocklist, hook_tokens, identities, permissions
from pki.store import dataplane_repos


def _audited(ctx) -> list[tuple[str, str]]:
    return [(r.details["operation"], r.details["subject"]) for r in audit.list_records(ctx, limit=1000).items
            if "operation" in r.details]


def _revision(ctx) -> int:
    with ctx.store.engine.connect() as conn:
        return dataplane_repos.revision(conn, ctx.instance)


def test_identity_lifecycle_hash_audit_and_no_password_anywhere(ctx, caplog):
    caplog.set_level("DEBUG")
    before = _revision(ctx)
    added = identities.add(ctx, username="gateway-1", password="s3cret-pass", client_id="gw-1")
    assert added.as_json()["superuser"] is False and "password" not in added.as_json()
    assert _revision(ctx) == before + 1
    rows = snapshot(ctx)["broker_identity"]
    stored = [v for v in rows[0] if isinstance(v, str) and v.startswith("$7$")][0]
    assert stored.startswith("$7$210000$") and mosquitto.check_password(stored, "s3cret-pass")
    assert "s3cret-pass" not in repr(rows) and "s3cret-pass" not in caplog.text
    assert identities.show(ctx, username="gateway-1").client_id == "gw-1"
    updated = identities.update(ctx, username="gateway-1", superuser=True, clear_client_id=True)
    assert updated.superuser and updated.client_id is None and updated.version == 2
    page = identities.list_identities(ctx).as_json()
    assert [i["username"] for i in page["items"]] == ["gateway-1"]
    assert identities.delete(ctx, username="gateway-1") == {"username": "gateway-1", "deleted": True}
    with pytest.raises(NotFound) as exc:
        identities.show(ctx, username="gateway-1")
    assert exc.value.code == "identity_not_found" and exc.value.data["username"] == "gateway-1"
    assert _audited(ctx) == [("identity.add", "gateway-1"), ("identity.update", "gateway-1"),
                             ("identity.delete", "gateway-1")]
    records = audit.list_records(ctx, limit=10).items
    assert [r.action for r in records[-3:]] == ["mq:AddCustomAuthIdentity", "mq:UpdateCustomAuthIdentity",
                                                "mq:DeleteCustomAuthIdentity"]
    assert "s3cret-pass" not in repr([r.details for r in records])


def test_identity_duplicate_is_a_conflict(ctx):
    identities.add(ctx, username="app", password="pw")
    before = snapshot(ctx)
    with pytest.raises(Conflict) as exc:
        identities.add(ctx, username="app", password="other")
    assert exc.value.code == "identity_exists"
    assert snapshot(ctx) == before


def test_verified_password_cache_and_its_invalidation(ctx, monkeypatch):
    identities.add(ctx, username="app", password="first-pw", client_id="c1")
    calls = []
    real = mosquitto.check_password
    monkeypatch.setattr(mosquitto, "check_password", lambda h, p: calls.append(1) or real(h, p))
    assert identities.authenticate(ctx, username="app", password="first-pw", client_id="c1").result == "allow"
    assert identities.authenticate(ctx, username="app", password="first-pw", client_id="c1").reason == "cached"
    assert len(calls) == 1  # the second check skipped PBKDF2
    assert identities.authenticate(ctx, username="app", password="wrong", client_id="c1").result == "deny"
    assert identities.authenticate(ctx, username="app", password="first-pw", client_id="c2").reason == \
        "wrong_client_id"
    # a password change takes effect at the next check: the old one no longer passes, cached or not
    identities.update(ctx, username="app", password="second-pw")
    assert identities.authenticate(ctx, username="app", password="first-pw", client_id="c1").result == "deny"
    assert identities.authenticate(ctx, username="app", password="second-pw", client_id="c1").result == "allow"
    identities.update(ctx, username="app", status="inactive")
    assert identities.authenticate(ctx, username="app", password="second-pw", client_id="c1").reason == \
        "identity_inactive"
    identities.update(ctx, username="app", status="ACTIVE")
    assert identities.authenticate(ctx, username="app", password="second-pw", client_id="c1").result == "allow"
    identities.delete(ctx, username="app")
    assert identities.authenticate(ctx, username="app", password="second-pw", client_id="c1").result == "unknown"


def test_a_change_made_by_another_process_reaches_the_cache(ctx, settings, clock):
    """Another Context (another process) deletes the identity: this one's cache sees the revision move."""
    from tests.conftest import _context

    identities.add(ctx, username="app", password="pw")
    assert identities.authenticate(ctx, username="app", password="pw").result == "allow"
    other = _context(settings, clock)
    try:
        identities.delete(other, username="app")
    finally:
        other.close()
    assert identities.authenticate(ctx, username="app", password="pw").result == "unknown"


def test_permission_rules_default_and_check(ctx):
    assert permissions.get_default(ctx)["default"] == "deny"
    allow = permissions.add(ctx, effect="allow", action="publish", topic="devices/${clientid}/#", all_clients=True,
                            priority="10")
    deny = permissions.add(ctx, effect="deny", action="all", topic="devices/+/secret", username="app",
                           ip="10.0.0.0/8", qos="0,1", retain=False, priority=5)
    assert deny.ip == "10.0.0.0/8" and deny.qos == [0, 1] and deny.username == "app" and deny.who == "username"
    hit = permissions.check(ctx, username="app", client_id="d1", action="publish", topic="devices/d1/x")
    assert hit["decision"] == "allow" and hit["rule"]["id"] == allow.id
    hit = permissions.check(ctx, username="app", client_id="d1", ip="10.1.1.1", action="publish",
                            topic="devices/d1/secret", qos=1, retain=False)
    assert hit["decision"] == "deny" and hit["rule"]["id"] == deny.id
    miss = permissions.check(ctx, username="app", client_id="d1", action="subscribe", topic="other/#")
    assert miss == {"decision": "deny", "allowed": False, "reason": "default", "rule": None, "blocked_by": None}
    permissions.set_default(ctx, effect="allow")
    assert permissions.check(ctx, client_id="d1", action="subscribe", topic="other/#")["allowed"]
    permissions.delete(ctx, id=str(allow.id))
    assert permissions.check(ctx, client_id="d1", action="publish", topic="devices/d1/x")["reason"] == "default"
    assert [p["id"] for p in permissions.list_permissions(ctx).as_json()["items"]] == [deny.id]
    assert permissions.show(ctx, id=deny.id).priority == 5
    assert _audited(ctx) == [("permission.add", str(allow.id)), ("permission.add", str(deny.id)),
                             ("permission.default.set", ctx.instance), ("permission.delete", str(allow.id))]


def test_blocklist_refuses_until_lifted_or_expired(ctx, clock):
    permissions.set_default(ctx, effect="allow")
    entry = blocklist.add(ctx, client_id="bad-1")
    net = blocklist.add(ctx, ip="192.0.2.7/24", until="2999-01-01T00:00:00Z")
    assert net.value == "192.0.2.0/24"
    assert blocklist.is_blocked(ctx, username=None, client_id="bad-1", ip=None).id == entry.id
    assert blocklist.is_blocked(ctx, username="x", client_id="ok", ip="::ffff:192.0.2.9").id == net.id
    check = permissions.check(ctx, client_id="bad-1", action="connect")
    assert check["decision"] == "deny" and check["reason"] == "blocked" and check["blocked_by"]["id"] == entry.id
    device = blocklist.add(ctx, username="DeviceCredential|DC.x|default")
    assert blocklist.is_blocked(ctx, username="DeviceCredential|DC.x|default", client_id="d", ip=None).id == device.id
    soon = blocklist.add(ctx, username="tmp", until=clock.now() + _dt.timedelta(minutes=5))
    assert blocklist.is_blocked(ctx, username="tmp", client_id=None, ip=None).id == soon.id
    clock.advance(_dt.timedelta(minutes=6))
    assert blocklist.is_blocked(ctx, username="tmp", client_id=None, ip=None) is None
    blocklist.delete(ctx, id=entry.id)
    assert permissions.check(ctx, client_id="bad-1", action="connect")["allowed"]
    with pytest.raises(Conflict):
        blocklist.add(ctx, ip="192.0.2.0/24")
    with pytest.raises(NotFound):
        blocklist.delete(ctx, id=entry.id)
    assert [k for k, _ in _audited(ctx)].count("blocklist.add") == 4


def test_hook_tokens(ctx):
    created = hook_tokens.create(ctx, name="emqx", cidrs=["10.0.0.1/8"])
    assert set(created) == {"name", "token"} and len(created["token"]) >= 40
    row = snapshot(ctx)["hook_token"][0]
    assert created["token"] not in repr(row)
    assert hook_tokens.verify(ctx, token=created["token"], source_ip="10.9.9.9") == "emqx"
    assert hook_tokens.verify(ctx, token=created["token"], source_ip="192.0.2.1") is None
    assert hook_tokens.verify(ctx, token=created["token"] + "x", source_ip="10.9.9.9") is None
    assert hook_tokens.verify(ctx, token=None, source_ip="10.9.9.9") is None
    listed = hook_tokens.list_tokens(ctx).as_json()["items"]
    assert listed[0]["cidrs"] == ["10.0.0.0/8"] and "token" not in listed[0]
    hook_tokens.delete(ctx, name="emqx")
    assert hook_tokens.verify(ctx, token=created["token"], source_ip="10.9.9.9") is None
    anywhere = hook_tokens.create(ctx, name="any")
    assert hook_tokens.verify(ctx, token=anywhere["token"], source_ip=None) == "any"
    assert _audited(ctx) == [("hook.token.create", "emqx"), ("hook.token.delete", "emqx"),
                             ("hook.token.create", "any")]


BAD_FILTERS = ["a/#/b", "a+/b", "#/a", "a/\x00b", "a/" + "x" * 65_535]


@pytest.mark.parametrize("topic", BAD_FILTERS, ids=["hash-inside", "plus-in-level", "hash-first", "nul", "long"])
def test_bad_topic_filters_are_refused_and_change_nothing(ctx, topic):
    before = snapshot(ctx)
    with pytest.raises(InvalidInput) as exc:
        permissions.add(ctx, effect="allow", action="publish", topic=topic, all_clients=True)
    assert exc.value.code == "invalid_topic_filter" and exc.value.data["field"] == "topic"
    assert snapshot(ctx) == before


@pytest.mark.parametrize("call, code, field", [
    (lambda ctx: permissions.add(ctx, effect="allow", action="publish", topic="a", all_clients=True, ip="10.0.0.0/33"),
     "invalid_cidr", "ip"),
    (lambda ctx: permissions.add(ctx, effect="allow", action="publish", topic="a", all_clients=True, priority="1.5"),
     "invalid_priority", "priority"),
    (lambda ctx: permissions.add(ctx, effect="allow", action="publish", topic="a", all_clients=True, priority="x"),
     "invalid_priority", "priority"),
    (lambda ctx: permissions.add(ctx, effect="allow", action="publish", topic="a", all_clients=True, qos="3"),
     "invalid_qos", "qos"),
    (lambda ctx: permissions.add(ctx, effect="maybe", action="publish", topic="a", all_clients=True),
     "invalid_permission", "effect"),
    (lambda ctx: permissions.add(ctx, effect="allow", action="publish", topic="a", username="u", all_clients=True),
     "invalid_permission", "username"),
    (lambda ctx: permissions.add(ctx, effect="allow", action="publish", topic="a", username="a\x01b"),
     "invalid_permission", "username"),
    (lambda ctx: permissions.show(ctx, id="1; drop"), "invalid_permission", "id"),
    (lambda ctx: blocklist.add(ctx, username=" padded"), "invalid_mosquitto_username", "username"),
    (lambda ctx: permissions.set_default(ctx, effect="perhaps"), "invalid_permission", "effect"),
    (lambda ctx: permissions.check(ctx, action="publish", topic="a/+"), "invalid_topic", "topic"),
    (lambda ctx: permissions.check(ctx, action="jump", topic="a"), "invalid_mqtt_action", "action"),
    (lambda ctx: blocklist.add(ctx, ip="300.1.1.1"), "invalid_cidr", "ip"),
    (lambda ctx: blocklist.add(ctx, ip="10.0.0.0/8", username="u"), "invalid_block", "client_id"),
    (lambda ctx: blocklist.add(ctx, client_id="c", until="yesterday"), "invalid_time", "until"),
    (lambda ctx: blocklist.add(ctx, client_id="c", until="2000-01-01T00:00:00Z"), "invalid_time", "until"),
    (lambda ctx: hook_tokens.create(ctx, name="t", cidrs=["not-a-cidr"]), "invalid_cidr", "cidrs"),
    (lambda ctx: hook_tokens.create(ctx, name="a/b"), "invalid_name", "name"),
    (lambda ctx: identities.add(ctx, username="bad user", password="pw"), "invalid_username", "username"),
    (lambda ctx: identities.add(ctx, username="u", password=""), "invalid_mosquitto_password", "password"),
    (lambda ctx: identities.add(ctx, username="u", password="a\x00b"), "invalid_mosquitto_password", "password"),
    (lambda ctx: identities.add(ctx, username="u", password="pw", client_id="a/b"), "invalid_client_id",
     "client_id"),
    (lambda ctx: identities.update(ctx, username="u", status="gone"), "invalid_status", "status"),
])
def test_bad_inputs_are_refused_with_their_field_and_change_nothing(ctx, call, code, field):
    before = snapshot(ctx)
    with pytest.raises(InvalidInput) as exc:
        call(ctx)
    assert (exc.value.code, exc.value.data.get("field")) == (code, field)
    assert snapshot(ctx) == before
