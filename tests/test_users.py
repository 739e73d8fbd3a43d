"""Users and access keys; secrets shown once and never stored in clear; policies through the CLI."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from tests.support import cli_json as _json

from pki.cli.render import EXIT_CODES
from pki.errors import Conflict, InvalidInput, InvalidState, NotFound, PermissionDenied
from pki.services import audit, authn, authorize, policies, users
from pki.store import access_repos


def test_create_user_answers_name_key_and_secret_once(ctx):
    created = users.create_user(ctx, "alice")
    body = created.as_json()
    assert set(body) == {"name", "access_key_id", "access_key_secret"}
    assert body["name"] == "alice" and body["access_key_id"].startswith("AK.")
    assert len(body["access_key_secret"]) >= 40
    shown = users.show_user(ctx, "alice").as_json()
    assert shown["status"] == "ACTIVE" and shown["policies"] == []
    assert [k["access_key_id"] for k in shown["access_keys"]] == [body["access_key_id"]]
    dumped = json.dumps([shown, users.list_users(ctx).as_json(), audit.list_records(ctx).as_json()])
    assert body["access_key_secret"] not in dumped


def test_user_names_and_duplicates(ctx):
    users.create_user(ctx, "line-7@fab.example")
    with pytest.raises(Conflict) as info:
        users.create_user(ctx, "line-7@fab.example")
    assert info.value.code == "user_exists"
    for bad in ("", "a b", "x" * 65, "account", "Account", "a/b"):
        with pytest.raises(InvalidInput) as info:
            users.create_user(ctx, bad)
        assert info.value.code == "invalid_user_name"
    with pytest.raises(NotFound) as info:
        users.show_user(ctx, "ghost")
    assert info.value.code == "user_not_found"


def test_resolve_access_key_follows_key_and_user_status(ctx):
    created = users.create_user(ctx, "bob")
    akid, secret = created.access_key_id, created.access_key_secret
    principal, key = authn.resolve_access_key(ctx, akid)
    assert principal.name == "bob" and principal.kind == "user" and principal.access_key_id == akid
    assert key == secret.encode("ascii")
    assert authn.resolve_access_key(ctx, akid)[1] == key  # cached path

    def refused(akid_):
        with pytest.raises(PermissionDenied) as info:
            authn.resolve_access_key(ctx, akid_)
        assert info.value.code == "invalid_access_key"
        return info.value.message

    users.disable_access_key(ctx, akid)
    message = refused(akid)
    users.enable_access_key(ctx, akid)
    assert authn.resolve_access_key(ctx, akid)[0].name == "bob"
    users.disable_user(ctx, "bob")
    assert refused(akid) == message  # same answer whatever the cause
    users.enable_user(ctx, "bob")
    refused("AK.00000000000000000000")
    refused("not a key id")
    users.delete_access_key(ctx, akid)
    refused(akid)


def test_access_keys_limit_and_delete_user(ctx):
    users.create_user(ctx, "carol")
    second = users.create_access_key(ctx, "carol")
    assert second.user == "carol" and second.status == "ACTIVE" and second.access_key_secret
    with pytest.raises(InvalidState) as info:
        users.create_access_key(ctx, "carol")
    assert info.value.code == "access_key_limit"
    policies.attach_policy(ctx, "PkiReadOnlyAccess", user="carol")
    result = users.delete_user(ctx, "carol")
    assert result == {"name": "carol", "deleted": True, "access_keys_deleted": 2, "policies_detached": 1}
    with pytest.raises(PermissionDenied):
        authn.resolve_access_key(ctx, second.access_key_id)
    with pytest.raises(NotFound):
        users.delete_access_key(ctx, second.access_key_id)
    assert policies.show_policy(ctx, "PkiReadOnlyAccess").attached_to == []


def _encodings(secret: str) -> list[bytes]:
    raw = secret.encode("ascii")
    forms = [raw, raw.hex().encode(), base64.b64encode(raw)]
    try:
        decoded = base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))
        forms += [decoded, decoded.hex().encode()]
    except ValueError:
        pass
    return forms


def test_secrets_are_not_stored_in_clear(sqlite_ctx):
    ctx = sqlite_ctx
    secrets = [users.create_user(ctx, f"user{i}").access_key_secret for i in range(3)]
    secrets.append(users.create_access_key(ctx, "user0").access_key_secret)
    for s in secrets:  # they still resolve, so they are there, sealed
        assert s
    db = Path(ctx.settings.home) / "pki.db"
    data = b"".join(p.read_bytes() for p in db.parent.glob("pki.db*"))
    assert len(data) > 0
    for s in secrets:
        for form in _encodings(s):
            assert form not in data


# -- policies -------------------------------------------------------------------------------------


def test_policies_system_present_custom_validated(ctx):
    names = [p.name for p in policies.list_policies(ctx).items]
    assert names[:5] == ["PkiAdministratorAccess", "PkiFullAccess", "PkiReadOnlyAccess",
                         "PkiFactoryProvisioner", "PkiRevoker"]
    doc = {"Version": "1", "Statement": [{"Effect": "Allow", "Action": "mq:Get*", "Resource": "*"}]}
    created = policies.create_policy(ctx, "Readers", json.dumps(doc), description="read")
    assert created.type == "Custom" and created.document == doc
    for name, code in (("PkiFullAccess", "policy_exists"), ("pkifullaccess", "policy_exists"),
                       ("Readers", "policy_exists")):
        with pytest.raises(Conflict) as info:
            policies.create_policy(ctx, name, doc)
        assert info.value.code == code
    with pytest.raises(InvalidInput) as info:
        policies.create_policy(ctx, "Bad", {"Version": "1", "Statement": [{"Effect": "Allow"}]})
    assert info.value.code == "invalid_policy" and "Statement[0].Action" in info.value.message
    with pytest.raises(InvalidInput):
        policies.create_policy(ctx, "bad name", doc)
    with pytest.raises(InvalidInput) as info:
        policies.delete_policy(ctx, "PkiFullAccess")
    assert info.value.code == "system_policy"
    users.create_user(ctx, "dora")
    policies.attach_policy(ctx, "Readers", user="dora")
    policies.attach_policy(ctx, "Readers", user="dora")  # idempotent
    with pytest.raises(InvalidState) as info:
        policies.delete_policy(ctx, "Readers")
    assert info.value.code == "policy_in_use" and "dora" in info.value.message
    with pytest.raises(NotFound) as info:
        policies.attach_policy(ctx, "Nope", user="dora")
    assert info.value.code == "policy_not_found"
    policies.detach_policy(ctx, "Readers", user="dora")
    with pytest.raises(NotFound) as info:
        policies.detach_policy(ctx, "Readers", user="dora")
    assert info.value.code == "policy_not_attached"
    assert policies.delete_policy(ctx, "Readers") == {"name": "Readers", "deleted": True}
    ops = [r.details["operation"] for r in audit.list_records(ctx).items]
    assert ops == ["policy.create", "user.create", "policy.attach", "policy.detach", "policy.delete"]
    assert audit.verify(ctx).ok


def _revision(ctx) -> int:
    with ctx.store.transaction(readonly=True) as session:
        return access_repos.access_revision(session)


def test_every_access_change_moves_the_revision_a_server_cache_checks(ctx):
    created = users.create_user(ctx, "rita")
    changes = [
        lambda: users.create_user(ctx, "sam"),
        lambda: users.disable_user(ctx, "sam"),
        lambda: users.enable_user(ctx, "sam"),
        lambda: users.create_access_key(ctx, "rita"),
        lambda: users.disable_access_key(ctx, created.access_key_id),
        lambda: users.enable_access_key(ctx, created.access_key_id),
        lambda: policies.create_policy(ctx, "Mine", {"Version": "1", "Statement": [
            {"Effect": "Allow", "Action": "mq:GetCaCertificate", "Resource": "*"}]}),
        lambda: policies.attach_policy(ctx, "Mine", user="rita"),
        lambda: policies.detach_policy(ctx, "Mine", user="rita"),
        lambda: policies.delete_policy(ctx, "Mine"),
        lambda: users.delete_access_key(ctx, users.show_user(ctx, "rita").access_keys[-1]["access_key_id"]),
        lambda: users.delete_user(ctx, "sam"),
    ]
    for change in changes:
        before = _revision(ctx)
        change()
        assert _revision(ctx) > before, change
    before = _revision(ctx)
    with pytest.raises(Conflict):
        users.create_user(ctx, "rita")  # refused: nothing changed, nothing moved
    users.show_user(ctx, "rita")
    assert _revision(ctx) == before


def test_key_grant_carries_policies_read_with_the_key_and_follows_changes(ctx):
    created = users.create_user(ctx, "tia")

    def grant():
        with ctx.store.core_transaction() as conn:
            return authn.key_grant(ctx, conn, created.access_key_id)

    principal, secret = grant()
    assert principal.policies == () and secret == created.access_key_secret.encode()
    assert grant()[0] is principal  # unchanged revision: the cached grant
    policies.attach_policy(ctx, "PkiReadOnlyAccess", user="tia")
    principal = grant()[0]
    assert [p.name for p in principal.policies] == ["PkiReadOnlyAccess"]
    assert authorize.authorize(ctx, principal, "ca.list").allowed
    users.disable_user(ctx, "tia")
    with pytest.raises(PermissionDenied) as info:
        grant()
    assert info.value.code == "invalid_access_key"
    # resolve_access_key's principal is kept longer than a request: no snapshot, authorize reads.
    users.enable_user(ctx, "tia")
    assert authn.resolve_access_key(ctx, created.access_key_id)[0].policies is None


def test_authorize_refusal_tells_what_to_do_and_is_audited(ctx):
    users.create_user(ctx, "eve")
    principal, _ = authn.resolve_access_key(ctx, users.show_user(ctx, "eve").access_keys[0]["access_key_id"])
    rc = authorize.RequestContext(source_ip="203.0.113.5", request_id="req-42", secure_transport=True)
    with pytest.raises(PermissionDenied) as info:
        authorize.authorize(ctx, principal, "ca.register", request_context=rc)
    err = info.value
    assert err.code == "access_denied" and err.data["action"] == "mq:RegisterCa"
    assert "mq:RegisterCa" in err.message and "attach" in err.message and "eve" in err.message
    assert err.data["user"] == "eve"
    rec = audit.list_records(ctx, result="denied").items[-1]
    assert (rec.principal, rec.action, rec.source_ip, rec.request_id) == ("eve", "mq:RegisterCa", "203.0.113.5",
                                                                         "req-42")
    assert rec.resource == "acs:mq:local:default:default" and rec.details["access_key_id"] == principal.access_key_id
    policies.attach_policy(ctx, "PkiFullAccess", user="eve")
    assert authorize.authorize(ctx, principal, "ca.register", request_context=rc).allowed
    with pytest.raises(PermissionDenied) as info:
        authorize.authorize(ctx, principal, "policy.attach", request_context=rc)
    assert info.value.data["resource"] == "acs:mq:local:default:*"
    users.disable_user(ctx, "eve")
    with pytest.raises(PermissionDenied) as info:
        authorize.authorize(ctx, principal, "ca.show")
    assert "disabled" in info.value.message
    with pytest.raises(InvalidInput):
        authorize.authorize(ctx, principal, "ca.frobnicate")


# -- the CLI ----------------------------------------------------------------------------------------




def test_cli_users_keys_policies_simulate(pki, tmp_path):
    created = _json(pki, "user", "create", "factory-7")
    assert set(created) == {"name", "access_key_id", "access_key_secret"}
    key2 = _json(pki, "user", "key", "create", "factory-7")
    assert key2["user"] == "factory-7" and key2["access_key_secret"]
    assert _json(pki, "user", "key", "disable", key2["access_key_id"])["status"] == "INACTIVE"
    assert _json(pki, "user", "key", "delete", key2["access_key_id"])["deleted"] is True
    listed = _json(pki, "user", "list")
    assert [u["name"] for u in listed["items"]] == ["factory-7"] and listed["next_cursor"] is None
    assert created["access_key_secret"] not in json.dumps(listed)

    policy_file = tmp_path / "lan-only.json"
    policy_file.write_text(json.dumps({"Version": "1", "Statement": [
        {"Effect": "Deny", "Action": "*", "Resource": "*",
         "Condition": {"NotIpAddress": {"acs:SourceIp": ["10.0.0.0/8"]}}},
    ]}))
    made = _json(pki, "policy", "create", "LanOnly", "--document", str(policy_file))
    assert made["name"] == "LanOnly" and made["type"] == "Custom"
    assert _json(pki, "policy", "attach", "PkiFactoryProvisioner", "--user", "factory-7")["attached"] is True
    assert _json(pki, "policy", "attach", "LanOnly", "--user", "factory-7")["attached"] is True
    names = [p["name"] for p in _json(pki, "policy", "list")["items"]]
    assert "PkiFactoryProvisioner" in names and "LanOnly" in names

    sim = _json(pki, "policy", "simulate", "--user", "factory-7", "--action", "mq:IssueDeviceCertificate",
                "--resource", "acs:mq:local:default:default", "--source-ip", "10.2.3.4")
    assert sim["allowed"] is True and sim["decided_by"] == {"policy": "PkiFactoryProvisioner", "statement": 0}
    sim = _json(pki, "policy", "simulate", "--user", "factory-7", "--action", "mq:IssueDeviceCertificate",
                "--resource", "acs:mq:local:default:default", "--source-ip", "198.51.100.1")
    assert sim["allowed"] is False and sim["decision"] == "explicit_deny"
    assert sim["decided_by"] == {"policy": "LanOnly", "statement": 0}
    sim = _json(pki, "policy", "simulate", "--user", "factory-7", "--action", "device.revoke",
                "--source-ip", "10.2.3.4")
    assert sim["allowed"] is False and sim["decision"] == "implicit_deny" and sim["decided_by"] is None
    code, out, err = pki("policy", "simulate", "--user", "factory-7", "--action", "ca.register")
    assert code == 0 and "allowed" in out and "false" in out

    assert _json(pki, "policy", "detach", "PkiFactoryProvisioner", "--user", "factory-7")["attached"] is False
    sim = _json(pki, "policy", "simulate", "--user", "factory-7", "--action", "mq:IssueDeviceCertificate",
                "--source-ip", "10.2.3.4")
    assert sim["allowed"] is False and sim["decision"] == "implicit_deny"
    shown = _json(pki, "policy", "show", "LanOnly")
    assert shown["attached_to"] == ["factory-7"]
    catalogue = _json(pki, "policy", "actions")["items"]
    assert {"operation": "ca.register", "action": "mq:RegisterCa", "dependents": ["mq:MqttInstanceAccess"],
            "access": "create", "scope": "instance"} in catalogue

    audit_items = _json(pki, "audit", "list")["items"]
    assert [r["details"]["operation"] for r in audit_items] == [
        "user.create", "user.key.create", "user.key.disable", "user.key.delete", "policy.create",
        "policy.attach", "policy.attach", "policy.detach"]
    assert created["access_key_secret"] not in json.dumps(audit_items)
    assert key2["access_key_secret"] not in json.dumps(audit_items)
    assert _json(pki, "audit", "verify")["ok"] is True

    assert _json(pki, "user", "disable", "factory-7")["status"] == "INACTIVE"
    assert _json(pki, "user", "delete", "factory-7")["deleted"] is True


def test_cli_malformed_policy_and_errors(pki, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"Version": "1", "Statement": [
        {"Effect": "Allow", "Action": "mq:GetCaCertificate", "Resource": "*"},
        {"Effect": "Permit", "Action": "mq:GetCaCertificate", "Resource": "*"},
    ]}))
    code, out, err = pki("policy", "create", "Bad", "--document", str(bad), "--json")
    assert code == EXIT_CODES["invalid_input"] and out == ""
    assert err.startswith("error[invalid_policy]:") and "Statement[1].Effect" in err and "Traceback" not in err
    bad.write_text("{not json")
    code, _, err = pki("policy", "create", "Bad", "--document", str(bad))
    assert code == EXIT_CODES["invalid_input"] and "error[invalid_policy]" in err
    code, _, err = pki("policy", "attach", "PkiRevoker", "--user", "nobody")
    assert code == EXIT_CODES["not_found"] and "error[user_not_found]" in err
    code, _, err = pki("user", "key", "disable", "AK.0123")
    assert code == EXIT_CODES["not_found"] and "error[access_key_not_found]" in err
    code, _, err = pki("policy", "simulate", "--user", "nobody", "--action", "ca.register")
    assert code == EXIT_CODES["not_found"]
