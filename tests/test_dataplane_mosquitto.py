"""mosquitto's password and ACL files (pki.dataplane.mosquitto), read by a real mosquitto of the test's own.

Each broker runs on a free loopback port with its configuration in tmp_path (the helper of
tests/test_broker.py); the machine's mosquitto service is never touched.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import time

import pytest

from pki.dataplane.mosquitto import (AclWarning, acl_file, check_password, check_username, hash_password,
                                     password_entry, password_line)
from pki.dataplane.rules import Rule, RuleSet
from pki.errors import InvalidInput
from tests.support import skip_or_fail
from tests.support.mosquitto import Mosquitto, require_mosquitto

DEVICE = "DeviceCredential|AK0001|default"
GATEWAY = "gateway|eu"
WATCHER = "watcher"


def test_password_line_format():
    line = password_line(DEVICE, "s3cret", iterations=1, salt=b"\x01" * 12)
    username, encoded = line.split(":", 1)
    assert username == DEVICE
    _, seven, iterations, salt, digest = encoded.split("$")
    assert (seven, iterations) == ("7", "1")
    assert base64.b64decode(salt) == b"\x01" * 12 and len(base64.b64decode(digest)) == 64
    assert check_password(encoded, "s3cret") and not check_password(encoded, "s3creT")
    assert password_entry(DEVICE, encoded) == line
    assert hash_password("x", iterations=3) != hash_password("x", iterations=3)  # a fresh salt each time


@pytest.mark.parametrize("call,code", [
    (lambda: password_line("a:b", "p", iterations=1), "invalid_mosquitto_username"),
    (lambda: password_line("#admin", "p", iterations=1), "invalid_mosquitto_username"),
    (lambda: password_line(" padded", "p", iterations=1), "invalid_mosquitto_username"),
    (lambda: password_line("two\nlines", "p", iterations=1), "invalid_mosquitto_username"),
    (lambda: password_line("", "p", iterations=1), "invalid_mosquitto_username"),
    (lambda: password_line("u", "nul\x00byte", iterations=1), "invalid_mosquitto_password"),
    (lambda: password_line("u", "p", iterations=0), "invalid_iterations"),
    (lambda: password_line("u", "p", iterations=True), "invalid_iterations"),
    (lambda: password_line("u", "p", iterations=1, salt=b"short"), "invalid_salt"),
    (lambda: password_entry("u", "$6$abc"), "invalid_mosquitto_password"),
])
def test_bad_password_inputs(call, code):
    with pytest.raises(InvalidInput) as err:
        call()
    assert err.value.code == code


def test_acl_usernames_may_hold_a_colon_but_not_blanks():
    assert check_username("a:b", password_file=False) == "a:b"
    with pytest.raises(InvalidInput):
        check_username("a ", password_file=False)


def test_check_password_reads_what_mosquitto_passwd_writes(tmp_path):
    if shutil.which("mosquitto_passwd") is None:
        skip_or_fail("mosquitto_passwd is not installed")
    path = tmp_path / "pw"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(path), DEVICE, "from-the-tool"], check=True,
                   capture_output=True)
    username, encoded = path.read_text().strip().split(":", 1)
    assert username == DEVICE and encoded.startswith("$7$")
    assert check_password(encoded, "from-the-tool") and not check_password(encoded, "from-the-too")


# -- acl_file rendering --------------------------------------------------------------------------


def R(id, effect, action, topic, who="all", who_value=None, **kw) -> Rule:
    return Rule(id=id, effect=effect, action=action, topic=topic, who=who, who_value=who_value, **kw)


RULES = [
    R("watch", "allow", "subscribe", "#", "username", WATCHER),
    R("own", "allow", "publish", "devices/${clientid}/up", priority=10),
    R("fleet", "allow", "publish", "fleet/+/status", "username", DEVICE, priority=5),
    R("no-secret", "deny", "publish", "fleet/secret/status", "username", DEVICE, priority=1),
    R("gw", "allow", "all", "gw/${username}/#", "username", GATEWAY),
    R("by-ip", "allow", "publish", "ip/#", "username", DEVICE, ip="10.0.0.0/8"),
    R("by-qos", "allow", "publish", "qos/#", "username", DEVICE, qos=[0]),
    R("by-client", "allow", "publish", "cid/#", "client_id", "dev-1"),
    R("global-deny", "deny", "all", "locked/#", priority=-1),
    R("late-deny", "deny", "publish", "fleet/late/#", "username", DEVICE, priority=50),
]


def test_acl_text_and_warnings():
    text, warnings = acl_file(RULES)
    assert "pattern write devices/%c/up" in text and "pattern deny locked/#" in text
    assert f"user {DEVICE}\ntopic deny locked/#\ntopic deny fleet/secret/status\ntopic deny fleet/late/#\n" \
        f"topic write fleet/+/status\n" in text
    assert f"user {GATEWAY}\ntopic deny locked/#\ntopic readwrite gw/{GATEWAY}/#" in text
    assert "ip/#" not in text and "qos/#" not in text and "cid/#" not in text
    by_rule = {w.rule_id: w.message for w in warnings}
    assert "IP condition" in by_rule["by-ip"] and "QoS condition" in by_rule["by-qos"]
    assert "client id" in by_rule["by-client"]
    assert "late-deny" in by_rule["fleet"]  # an allow before an overlapping deny: mosquitto refuses the overlap
    assert "no-secret" not in by_rule or "reading and writing" in by_rule["no-secret"]
    assert any(w.rule_id is None and "own" in w.message for w in warnings)
    assert acl_file(RULES) == acl_file(list(reversed(RULES)))  # deterministic


def test_acl_denies_it_cannot_express_are_widened_never_dropped():
    text, warnings = acl_file([
        R("d-ip", "deny", "publish", "a/#", ip="10.0.0.0/8"),
        R("d-cid", "deny", "publish", "b", "client_id", "dev-1"),
        R("d-conn", "deny", "connect", "#", "username", "bad"),
        R("d-own", "deny", "all", "x/${clientid}/y", "username", "u"),
        R("d-lit", "deny", "all", "pct/%c"),
    ])
    # In a user's topic lines nothing is substituted: %c stays literal there.
    for line in ("pattern deny a/#", "pattern deny b", "pattern deny pct/+", "user bad\ntopic deny b\ntopic deny #",
                 "user u\ntopic deny b\ntopic deny a/#\ntopic deny pct/%c\ntopic deny x/+/y"):
        assert line in text, line
    assert {w.rule_id for w in warnings} >= {"d-ip", "d-cid", "d-conn", "d-own", "d-lit"}
    assert all(isinstance(w, AclWarning) for w in warnings)
    assert "pattern readwrite #" in acl_file([], default="allow").text
    assert "pattern readwrite #" not in acl_file([]).text


# -- a real mosquitto --------------------------------------------------------------------------


@pytest.fixture
def broker_factory(tmp_path):
    require_mosquitto()
    started: list[Mosquitto] = []

    def start(passwords: list[str], acl: str | None = None) -> Mosquitto:
        (tmp_path / "passwords").write_text("\n".join(passwords) + "\n")
        snippet = f"allow_anonymous false\npassword_file {tmp_path / 'passwords'}\n"
        if acl is not None:
            (tmp_path / "acl").write_text(acl)
            snippet += f"acl_file {tmp_path / 'acl'}\n"
        broker = Mosquitto(tmp_path, snippet)
        broker.start()
        started.append(broker)
        return broker

    yield start
    for broker in started:
        broker.stop()


def _client(port: int, username: str, password: str, client_id: str, on_message=None):
    """A connected paho client (its network loop running), or the refusing CONNACK's reason."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    client.username_pw_set(username, password)
    state: dict = {}
    client.on_connect = lambda _c, _u, _f, reason, _p: state.setdefault("connack", reason)
    if on_message is not None:
        client.on_message = lambda _c, _u, msg: on_message(msg.topic)
    client.connect("127.0.0.1", port, keepalive=30)
    client.loop_start()
    deadline = time.monotonic() + 30
    while "connack" not in state and time.monotonic() < deadline:
        time.sleep(0.02)
    if "connack" not in state or state["connack"].is_failure:
        client.loop_stop()
        client.disconnect()
        return None, state.get("connack")
    return client, None


def test_mosquitto_accepts_the_right_password_and_refuses_a_wrong_one(broker_factory):
    broker = broker_factory([password_line(DEVICE, "device-secret", iterations=1),
                             password_line(GATEWAY, "gateway-pass", iterations=210_000)])
    for username, password in ((DEVICE, "device-secret"), (GATEWAY, "gateway-pass")):
        client, _ = _client(broker.port, username, password, "c-ok")
        assert client is not None, broker.log.read_text()
        client.loop_stop()
        client.disconnect()
        refused, reason = _client(broker.port, username, password + "x", "c-bad")
        assert refused is None and reason is not None
    assert _client(broker.port, "nobody", "device-secret", "c-none")[0] is None


def test_mosquitto_enforces_the_acl_file_like_the_rule_set(broker_factory):
    rules = [r for r in RULES if r.id != "late-deny"]
    text, _ = acl_file(rules)
    broker = broker_factory([password_line(DEVICE, "d", iterations=1), password_line(WATCHER, "w", iterations=1),
                             password_line(GATEWAY, "g", iterations=1)], text)
    received: list[str] = []
    watcher, _ = _client(broker.port, WATCHER, "w", "watcher-1", on_message=received.append)
    assert watcher is not None, broker.log.read_text()
    subscribed = watcher.subscribe("#", qos=1)
    device, _ = _client(broker.port, DEVICE, "d", "dev-1")
    gateway, _ = _client(broker.port, GATEWAY, "g", "gw-1")
    assert device is not None and gateway is not None
    time.sleep(0.3)  # the SUBACK; mosquitto accepts every subscription and checks each delivery
    assert subscribed[0] == 0
    rule_set = RuleSet(rules)
    attempts = [(device, DEVICE, "dev-1", "devices/dev-1/up"), (device, DEVICE, "dev-1", "devices/dev-2/up"),
                (device, DEVICE, "dev-1", "fleet/a/status"), (device, DEVICE, "dev-1", "fleet/secret/status"),
                (device, DEVICE, "dev-1", "locked/x"), (device, DEVICE, "dev-1", "cid/x"),
                (gateway, GATEWAY, "gw-1", f"gw/{GATEWAY}/x"), (gateway, GATEWAY, "gw-1", "gw/other/x")]
    for client, _u, _c, topic in attempts:
        client.publish(topic, b"m", qos=1).wait_for_publish(timeout=10)
    device.publish("devices/dev-1/up", b"sentinel", qos=1).wait_for_publish(timeout=10)
    deadline = time.monotonic() + 10
    while received.count("devices/dev-1/up") < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    for client, username, client_id, topic in attempts:
        allowed = rule_set.decide(username, client_id, "127.0.0.1", "publish", topic, qos=1, retain=False).allowed
        if topic == "cid/x":  # a client-id rule, left out of the file (a warning): stricter, never looser
            assert allowed and topic not in received
        else:
            assert (topic in received) is allowed, (topic, received)
    assert set(received) == {"devices/dev-1/up", "fleet/a/status", f"gw/{GATEWAY}/x"}
    for client in (watcher, device, gateway):
        client.loop_stop()
        client.disconnect()
