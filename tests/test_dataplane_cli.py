"""`pki identity|permission|blocklist|hook-token`: locally, remotely (a live `pki serve`), over /v1 directly,
with the refusals of bad input (exit 3 / HTTP 400, store unchanged) and RAM's denials for a read-only user."""

from __future__ import annotations

import json

import pytest

from tests.support import snapshot
from tests.support.http_app import app_for, make_user, signed_client
from tests.test_remote_cli import _keys, admin, env, local, ok_json, remote, run, serve  # noqa: F401 (fixtures)
from pki.cli.render import EXIT_CODES
from pki.client import ApiError
from pki.services.dataplane import identities

#: Tables a signed request or a refusal writes to whatever it asks (nonces, rate buckets, the audit log).
_BOOKKEEPING = ("http_nonce", "http_rate_bucket", "audit_record", "audit_head")


def _data(ctx) -> dict:
    return {k: v for k, v in snapshot(ctx).items() if k not in _BOOKKEEPING}


def _tour(runner, monkeypatch, suffix: str) -> dict:
    """Every command once; the answers, by command."""
    monkeypatch.setenv("APP_PW", "pw-" + suffix)
    answers = {}
    user = f"app-{suffix}"
    answers["identity add"] = ok_json(runner, "identity", "add", user, "--password-env", "APP_PW",
                                      "--client-id", f"gw-{suffix}")
    answers["identity update"] = ok_json(runner, "identity", "update", user, "--superuser", "--no-client-id")
    answers["identity show"] = ok_json(runner, "identity", "show", user)
    answers["identity list"] = ok_json(runner, "identity", "list")
    answers["permission add"] = ok_json(runner, "permission", "add", "--effect", "allow", "--action", "publish",
                                        "--topic", "devices/${clientid}/#", "--all", "--qos", "0,1",
                                        "--priority", "10")
    rule = answers["permission add"]["id"]
    answers["permission add deny"] = ok_json(runner, "permission", "add", "--effect", "deny", "--action", "all",
                                             "--topic", "devices/+/secret", "--username", user, "--ip",
                                             "10.0.0.0/8", "--no-retain", "--priority", "-5")
    answers["permission show"] = ok_json(runner, "permission", "show", str(rule))
    answers["permission list"] = ok_json(runner, "permission", "list")
    answers["permission default"] = ok_json(runner, "permission", "default")
    answers["permission default allow"] = ok_json(runner, "permission", "default", "allow")
    answers["permission check"] = ok_json(runner, "permission", "check", "--username", user, "--client-id",
                                          f"gw-{suffix}", "--action", "publish", "--topic",
                                          f"devices/gw-{suffix}/t", "--qos", "1")
    answers["blocklist add"] = ok_json(runner, "blocklist", "add", "--ip", "192.0.2.0/24",
                                       "--until", "2999-01-01T00:00:00Z")
    answers["blocklist list"] = ok_json(runner, "blocklist", "list")
    answers["blocklist delete"] = ok_json(runner, "blocklist", "delete", str(answers["blocklist add"]["id"]))
    answers["hook-token create"] = ok_json(runner, "hook-token", "create", f"emqx-{suffix}", "--cidr", "10.0.0.0/8")
    answers["hook-token list"] = ok_json(runner, "hook-token", "list")
    answers["hook-token delete"] = ok_json(runner, "hook-token", "delete", f"emqx-{suffix}")
    answers["permission delete"] = ok_json(runner, "permission", "delete", str(rule))
    answers["identity delete"] = ok_json(runner, "identity", "delete", user)
    return answers


def test_every_command_locally(ctx, pki, monkeypatch):
    answers = _tour(pki, monkeypatch, "l")
    assert answers["identity add"]["client_id"] == "gw-l" and "password" not in json.dumps(answers)
    assert answers["identity update"]["superuser"] is True and answers["identity update"]["client_id"] is None
    assert answers["permission add"]["qos"] == [0, 1] and answers["permission add"]["priority"] == 10
    assert answers["permission check"]["decision"] == "allow"
    assert answers["permission check"]["rule"]["id"] == answers["permission add"]["id"]
    assert answers["permission default"] == {"instance": ctx.instance, "default": "deny"}
    assert set(answers["hook-token create"]) == {"name", "token"}
    assert identities.authenticate(ctx, username="app-l", password="pw-l").result == "unknown"  # deleted


def test_human_output_and_check_exit_codes(ctx, pki, monkeypatch):
    monkeypatch.setenv("PW", "x-pw")
    code, out, err = pki("identity", "add", "app", "--password-env", "PW")
    assert code == 0 and "x-pw" not in out + err and "username" in out
    code, out, _ = pki("permission", "add", "--effect", "allow", "--action", "subscribe", "--topic", "a/#",
                       "--username", "app")
    assert code == 0
    code, out, _ = pki("permission", "check", "--username", "app", "--client-id", "c", "--action", "subscribe",
                       "--topic", "a/b/+")
    assert code == 0 and "allow" in out and "rule 1" in out
    code, out, _ = pki("permission", "check", "--username", "app", "--client-id", "c", "--action", "publish",
                       "--topic", "a/b")
    assert code == EXIT_CODES["permission_denied"] == 7 and "deny" in out and "default" in out
    code, out, _ = pki("permission", "check", "--username", "app", "--action", "publish", "--topic", "a", "--json")
    assert code == 7 and json.loads(out)["decision"] == "deny"
    for command in ("identity", "permission", "blocklist", "hook-token"):
        code, out, _ = pki(command, "--help")
        assert code == 0 and out.strip()
    code, _, err = pki("identity", "add", "app2", "--password-env", "UNSET_VARIABLE_XYZ")
    assert code == 2 and "UNSET_VARIABLE_XYZ" in err


@pytest.mark.slow
def test_every_command_remote_answers_like_local(ctx, remote, local, monkeypatch):
    remote_answers = _tour(remote, monkeypatch, "r")
    local_answers = _tour(local, monkeypatch, "l")
    assert remote_answers.keys() == local_answers.keys()
    for command in remote_answers:
        assert _keys(remote_answers[command]) == _keys(local_answers[command]), command
    # a deny is exit 7 remotely too, and a bad topic exit 3 with the flag named
    before = _data(ctx)
    code, _, _ = remote("permission", "check", "--client-id", "x", "--action", "publish", "--topic", "nope/x")
    assert code == 0  # the default is allow now
    remote("permission", "default", "deny")
    code, _, _ = remote("permission", "check", "--client-id", "x", "--action", "publish", "--topic", "nope/x")
    assert code == 7
    before = _data(ctx)
    code, _, err = remote("permission", "add", "--effect", "allow", "--action", "publish", "--topic", "a/#/b", "--all")
    assert code == 3 and err.startswith("error[invalid_topic_filter]: --topic: ")
    code, _, err = remote("identity", "show", "ghost")
    assert code == 4 and "hint: `pki identity list`" in err
    assert _data(ctx) == before


# -- bad input: exit 3 / HTTP 400, the store unchanged ---------------------------------------------


_ADD = ("permission", "add", "--effect", "allow", "--action", "publish", "--all")
BAD_CLI = [
    ((*_ADD, "--topic", "a/#/b"), "invalid_topic_filter", "--topic"),
    ((*_ADD, "--topic", "a+/b"), "invalid_topic_filter", "--topic"),
    ((*_ADD, "--topic", "#/a"), "invalid_topic_filter", "--topic"),
    ((*_ADD, "--topic", "a/" + "x" * 65_535), "invalid_topic_filter", "--topic"),
    ((*_ADD, "--topic", "a", "--ip", "10.0.0.0/40"), "invalid_cidr", "--ip"),
    ((*_ADD, "--topic", "a", "--ip", "not-an-ip"), "invalid_cidr", "--ip"),
    ((*_ADD, "--topic", "a", "--priority", "high"), "invalid_priority", "--priority"),
    ((*_ADD, "--topic", "a", "--priority", "1.5"), "invalid_priority", "--priority"),
    ((*_ADD, "--topic", "a", "--qos", "0,5"), "invalid_qos", "--qos"),
    (("permission", "add", "--effect", "allow", "--action", "publish", "--topic", "a"), "invalid_permission",
     "--username"),
    (("permission", "check", "--action", "publish", "--topic", "a/#"), "invalid_topic", "--topic"),
    (("blocklist", "add", "--ip", "1.2.3.4/99"), "invalid_cidr", "--ip"),
    (("blocklist", "add", "--client-id", "c", "--until", "tomorrow"), "invalid_time", "--until"),
    (("hook-token", "create", "t", "--cidr", "10.0.0.0/8", "--cidr", "bad"), "invalid_cidr", "--cidr"),
    (("identity", "add", "has space", "--password-env", "PW"), "invalid_username", "--username"),
    (("permission", "show", "abc"), "invalid_permission", "--id"),
]


@pytest.mark.parametrize("args, code, flag", BAD_CLI, ids=[f"{i}-{c}" for i, (_, c, _) in enumerate(BAD_CLI)])
def test_cli_bad_input_exit_3_store_unchanged(ctx, pki, monkeypatch, args, code, flag):
    monkeypatch.setenv("PW", "pw")
    before = snapshot(ctx)
    rc, out, err = pki(*args)
    assert rc == EXIT_CODES["invalid_input"] == 3, err
    assert err.startswith(f"error[{code}]: {flag}: ") and out == ""
    assert snapshot(ctx) == before


def test_cli_nul_in_topic_is_refused(ctx):
    """A NUL cannot travel in argv: the service refuses it (tested in test_dataplane_services) and so does /v1."""
    api = signed_client(app_for(ctx), make_user(ctx, "admin", "PkiAdministratorAccess"))
    before = _data(ctx)
    r = api.request("POST", "/v1/permissions", json={"effect": "allow", "action": "publish", "topic": "a/\x00",
                                                     "all_clients": True})
    assert r.status_code == 400 and r.json()["code"] == "invalid_topic_filter" and r.json()["field"] == "topic"
    assert _data(ctx) == before


BAD_HTTP = [
    ("POST", "/v1/permissions", {"effect": "allow", "action": "publish", "topic": "a/#/b", "all_clients": True},
     "invalid_topic_filter"),
    ("POST", "/v1/permissions", {"effect": "allow", "action": "publish", "topic": "a+/b", "all_clients": True},
     "invalid_topic_filter"),
    ("POST", "/v1/permissions", {"effect": "allow", "action": "publish", "topic": "#/a", "all_clients": True},
     "invalid_topic_filter"),
    ("POST", "/v1/permissions", {"effect": "allow", "action": "publish", "topic": "é" * 40_000,
                                 "all_clients": True}, "invalid_topic_filter"),
    ("POST", "/v1/permissions", {"effect": "allow", "action": "publish", "topic": "x" * 80_000,
                                 "all_clients": True}, "invalid_request"),
    ("POST", "/v1/permissions", {"effect": "allow", "action": "publish", "topic": "a", "all_clients": True,
                                 "ip": "10.0.0.0/33"}, "invalid_cidr"),
    ("POST", "/v1/permissions", {"effect": "allow", "action": "publish", "topic": "a", "all_clients": True,
                                 "priority": "ten"}, "invalid_priority"),
    ("POST", "/v1/permissions", {"effect": "allow", "action": "publish", "topic": "a", "all_clients": True,
                                 "priority": 1.5}, "invalid_request"),
    ("PUT", "/v1/permissions/default", {"effect": "sometimes"}, "invalid_permission"),
    ("POST", "/v1/blocklist", {"ip": "10.0.0.0/8/8"}, "invalid_cidr"),
    ("POST", "/v1/hook-tokens", {"name": "t", "cidrs": ["999.0.0.0/8"]}, "invalid_cidr"),
    ("POST", "/v1/identities", {"username": "u", "password": ""}, "invalid_mosquitto_password"),
]


@pytest.mark.parametrize("method, path, body, code", BAD_HTTP, ids=[f"{i}-{c}" for i, (*_, c) in enumerate(BAD_HTTP)])
def test_http_bad_input_400_store_unchanged(ctx, method, path, body, code):
    api = signed_client(app_for(ctx), make_user(ctx, "admin", "PkiAdministratorAccess"))
    before = _data(ctx)
    r = api.request(method, path, json=body)
    assert r.status_code == 400 and r.json()["code"] == code, r.text
    assert "`pki " not in r.text
    assert _data(ctx) == before


# -- /v1 and RAM -----------------------------------------------------------------------------------------


def test_http_answers_are_the_cli_json(ctx, pki, monkeypatch):
    api = signed_client(app_for(ctx), make_user(ctx, "admin", "PkiAdministratorAccess"))
    created = api.call("POST", "/v1/identities", json={"username": "gw", "password": "pw", "superuser": True})
    monkeypatch.setenv("PW", "pw")
    assert created == json.loads(pki("identity", "show", "gw", "--json")[1])
    changed = api.call("PATCH", "/v1/identities/gw", json={"status": "INACTIVE", "password": "new"})
    assert changed["status"] == "INACTIVE" and changed["version"] == 2
    rule = api.call("POST", "/v1/permissions", json={"effect": "deny", "action": "subscribe", "topic": "#",
                                                     "client_id": "c1", "qos": [2], "priority": "3"})
    assert rule == json.loads(pki("permission", "show", str(rule["id"]), "--json")[1])
    check = api.call("POST", "/v1/permissions/check", json={"client_id": "c1", "action": "subscribe",
                                                           "topic": "x/#", "qos": 2})
    assert check["decision"] == "deny" and check["rule"]["id"] == rule["id"]
    assert api.call("GET", "/v1/permissions/default") == {"instance": ctx.instance, "default": "deny"}
    block = api.call("POST", "/v1/blocklist", json={"username": "gw"})
    assert api.call("GET", "/v1/blocklist")["items"] == [block]
    token = api.call("POST", "/v1/hook-tokens", json={"name": "rmq"})
    assert set(token) == {"name", "token"}
    assert [t["name"] for t in api.call("GET", "/v1/hook-tokens")["items"]] == ["rmq"]
    with pytest.raises(ApiError) as exc:
        api.call("GET", "/v1/identities/nobody")
    assert exc.value.status == 404 and exc.value.code == "identity_not_found"


def test_read_only_user_reads_but_never_changes(ctx, monkeypatch):
    app = app_for(ctx)
    admin_api = signed_client(app, make_user(ctx, "admin", "PkiAdministratorAccess"))
    admin_api.call("POST", "/v1/identities", json={"username": "gw", "password": "pw"})
    rule = admin_api.call("POST", "/v1/permissions", json={"effect": "allow", "action": "all", "topic": "#",
                                                           "all_clients": True})
    reader = signed_client(app, make_user(ctx, "reader", "PkiReadOnlyAccess"))
    assert reader.call("GET", "/v1/identities")["items"][0]["username"] == "gw"
    assert reader.call("GET", f"/v1/permissions/{rule['id']}") == rule
    assert reader.call("GET", "/v1/blocklist")["items"] == []
    assert reader.call("POST", "/v1/permissions/check", json={"action": "connect", "client_id": "c"})["allowed"]
    before = _data(ctx)
    for method, path, body in [
        ("POST", "/v1/identities", {"username": "x", "password": "pw"}),
        ("PATCH", "/v1/identities/gw", {"superuser": True}),
        ("DELETE", "/v1/identities/gw", None),
        ("POST", "/v1/permissions", {"effect": "allow", "action": "all", "topic": "#", "all_clients": True}),
        ("DELETE", f"/v1/permissions/{rule['id']}", None),
        ("PUT", "/v1/permissions/default", {"effect": "allow"}),
        ("POST", "/v1/blocklist", {"client_id": "c"}),
        ("POST", "/v1/hook-tokens", {"name": "t"}),
        ("GET", "/v1/hook-tokens", None),
    ]:
        r = reader.request(method, path, json=body)
        assert r.status_code == 403 and r.json()["code"] == "access_denied", (method, path, r.text)
    assert _data(ctx) == before


@pytest.mark.slow
def test_read_only_user_is_refused_by_the_cli_remotely(ctx, serve, env, run):
    reader = make_user(ctx, "reader", "PkiReadOnlyAccess")
    env(serve(), reader)
    assert ok_json(run, "identity", "list")["items"] == []
    before = _data(ctx)
    code, _, err = run("permission", "default", "allow")
    assert code == EXIT_CODES["permission_denied"] and err.startswith("error[access_denied]: ")
    assert _data(ctx) == before
