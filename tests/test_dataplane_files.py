"""mosquitto's password and ACL files in a publish (pki/services/dataplane/files.py): their content, the
device secrets' stored line hashes, what leaves the files, and refusals (store unchanged)."""

from __future__ import annotations

import datetime as _dt

from tests.support import refused_unchanged, snapshot
from pki.dataplane import mosquitto
from pki.services import artifacts, secrets
from pki.services.dataplane import blocklist, identities, permissions
from pki.services.dataplane.files import ACL, PASSWORDS
from pki.store import secret_repos


def _publish(ctx, out, **kw):
    result = artifacts.publish(ctx, out_dir=out, **kw)
    current = out / "current"
    acl = current / ACL
    return result, (current / PASSWORDS).read_text(), acl.read_text() if acl.exists() else None


def _entries(text: str) -> dict[str, str]:
    return dict(line.split(":", 1) for line in text.splitlines())


def _stored_hash(ctx, client_id):
    with ctx.store.transaction(readonly=True) as session:
        row = secret_repos.get_secret(session, instance=ctx.instance, client_id=client_id)
        return row.mosquitto_hash, row.version


def test_files_hold_active_identities_and_secrets_and_the_rules(ctx, tmp_path):
    identities.add(ctx, username="app-1", password="app-password-1")
    identities.add(ctx, username="app-off", password="other-password")
    identities.update(ctx, username="app-off", status="INACTIVE")
    dev = secrets.register_secret(ctx, client_id="meter-1")
    permissions.add(ctx, effect="allow", action="publish", topic="meters/${clientid}/up", all_clients=True)
    permissions.add(ctx, effect="allow", action="subscribe", topic="ops/#", username="app-1", ip="10.0.0.0/8")
    result, passwords, acl = _publish(ctx, tmp_path / "out")

    entries = _entries(passwords)
    assert passwords.endswith("\n") and list(entries) == sorted(entries)
    assert mosquitto.check_password(entries["app-1"], "app-password-1") and "app-off" not in entries
    device_hash = entries[dev.username]
    assert device_hash.startswith("$7$1$")
    assert mosquitto.check_password(device_hash, secrets.password_for(dev.secret, "meter-1"))
    assert not mosquitto.check_password(device_hash, secrets.password_for(dev.secret, "meter-2"))
    assert device_hash == _stored_hash(ctx, "meter-1")[0]

    ruleset = permissions.rule_set(ctx).rules
    expected = mosquitto.acl_file(ruleset.rules, default=ruleset.default)
    assert acl == expected.text and "pattern write meters/%c/up" in acl
    listed = [w.message for w in result.warnings if w.code == "acl_rule_inexpressible"]
    assert len(listed) == len(expected.warnings) >= 1
    assert any("IP condition" in m for m in listed)
    assert {PASSWORDS, ACL} <= set(result.files)

    conf = (tmp_path / "out" / "current" / "mosquitto.conf").read_text()
    current = tmp_path / "out" / "current"
    assert f"password_file {current / PASSWORDS}" in conf and f"acl_file {current / ACL}" in conf
    assert "require_certificate true" in conf and f"cafile {current / 'ca-bundle.pem'}" in conf


def test_a_secrets_line_is_hashed_once_per_version_and_follows_the_new_primary(ctx, tmp_path):
    dev = secrets.register_secret(ctx, client_id="meter-1")
    _, first, _ = _publish(ctx, tmp_path / "out")
    _, second, _ = _publish(ctx, tmp_path / "out")
    assert first == second  # a fresh salt at each publish would change the line

    fresh = secrets.refresh_secret(ctx, client_id="meter-1", grace=_dt.timedelta(hours=1))
    _, third, _ = _publish(ctx, tmp_path / "out")
    line = _entries(third)[dev.username]
    # One line per username: the new primary's, also during the grace period.
    assert mosquitto.check_password(line, secrets.password_for(fresh.secret, "meter-1"))
    assert not mosquitto.check_password(line, secrets.password_for(dev.secret, "meter-1"))


def test_rows_without_a_stored_hash_are_filled_at_publish(ctx, tmp_path):
    dev = secrets.register_secret(ctx, client_id="meter-1")
    with ctx.store.transaction() as session:
        row = secret_repos.get_secret(session, instance=ctx.instance, client_id="meter-1")
        row.mosquitto_hash = None  # as migration 0011 leaves rows registered before it
        session.add(row)
    _, version = _stored_hash(ctx, "meter-1")
    _, passwords, _ = _publish(ctx, tmp_path / "out")
    stored, after = _stored_hash(ctx, "meter-1")
    assert after == version and stored == _entries(passwords)[dev.username]
    assert mosquitto.check_password(stored, secrets.password_for(dev.secret, "meter-1"))


def test_deactivated_unregistered_deleted_and_blocked_clients_leave_the_file(ctx, tmp_path, clock):
    out = tmp_path / "out"
    names = {c: secrets.register_secret(ctx, client_id=c).username for c in ("m-off", "m-gone", "m-blocked",
                                                                            "m-user-blocked", "m-later", "m-ok")}
    identities.add(ctx, username="app-gone", password="app-password-1")
    identities.add(ctx, username="app-blocked", password="app-password-2")
    assert set(_entries(_publish(ctx, out)[1])) == {*names.values(), "app-gone", "app-blocked"}

    secrets.deactivate_secret(ctx, client_id="m-off")
    secrets.unregister_secret(ctx, client_id="m-gone")
    identities.delete(ctx, username="app-gone")
    blocklist.add(ctx, client_id="m-blocked")
    blocklist.add(ctx, username=names["m-user-blocked"])
    blocklist.add(ctx, username="app-blocked")
    blocklist.add(ctx, client_id="m-later", until=clock.now() + _dt.timedelta(minutes=5))
    blocklist.add(ctx, ip="10.1.0.0/16")
    result, passwords, _ = _publish(ctx, out)
    assert set(_entries(passwords)) == {names["m-ok"]}
    assert [w.code for w in result.warnings if w.code == "blocklist_ip_ignored"] == ["blocklist_ip_ignored"]

    clock.advance(_dt.timedelta(minutes=6))  # the timed entry has run out
    assert set(_entries(_publish(ctx, out)[1])) == {names["m-ok"], names["m-later"]}
    secrets.activate_secret(ctx, client_id="m-off")
    assert names["m-off"] in _entries(_publish(ctx, out)[1])


def test_bad_password_listener_ports_are_refused_and_change_nothing(ctx, tmp_path):
    secrets.register_secret(ctx, client_id="meter-1")
    out = tmp_path / "out"
    for port in (0, 70000, "1883", 8883):
        refused_unchanged(ctx, "invalid_port", lambda: artifacts.publish(ctx, out_dir=out, listener_port=8883,
                                                                          password_listener_port=port))
    assert not (out / "current").exists()


def test_the_password_listener_gets_the_brokers_certificate(ctx, tmp_path):
    before = snapshot(ctx)
    artifacts.publish(ctx, out_dir=tmp_path / "out", listener_port=8883, password_listener_port=8884,
                      server_cert="/etc/b/cert.pem", server_key="/etc/b/key.pem")
    conf = (tmp_path / "out" / "current" / "mosquitto.conf").read_text()
    second = conf[conf.index("listener 8884"):]
    assert "certfile /etc/b/cert.pem" in second and "keyfile /etc/b/key.pem" in second
    assert "require_certificate" not in second
    assert snapshot(ctx).keys() == before.keys()


def test_cli_publish_lists_each_acl_warning_and_refuses_a_bad_port(ctx, pki, tmp_path):
    permissions.add(ctx, effect="allow", action="publish", topic="a/b", all_clients=True, ip="10.0.0.0/8")
    out = tmp_path / "out"
    before = snapshot(ctx)
    code, _, err = pki("artifacts", "publish", "--out", str(out), "--password-listener-port", "0")
    assert code == 3 and "invalid_port" in err and snapshot(ctx) == before
    code, _, err = pki("artifacts", "publish", "--out", str(out), "--password-listener-port", "8884")
    assert code == 0, err
    assert "warning[acl_rule_inexpressible]: permission rule 1: acl_file cannot express an IP condition" in err
    assert "listener 8884" in (out / "current" / "mosquitto.conf").read_text()


def test_no_acl_is_written_until_a_rule_or_a_default_exists(ctx, tmp_path):
    # A broker of certificate devices that publish freely today must not be cut off by an upgrade:
    # the data plane's default (deny) reaches mosquitto only once the operator uses permissions.
    result, _passwords, acl = _publish(ctx, tmp_path / "out")
    conf = (tmp_path / "out" / "current" / "mosquitto.conf").read_text()
    assert acl is None and ACL not in result.files and "acl_file" not in conf.replace("No acl_file", "")
    permissions.set_default(ctx, effect="deny")
    result, _passwords, acl = _publish(ctx, tmp_path / "out")
    conf = (tmp_path / "out" / "current" / "mosquitto.conf").read_text()
    assert acl is not None and ACL in result.files and f"acl_file {tmp_path / 'out' / 'current' / ACL}" in conf
