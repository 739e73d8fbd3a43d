"""The private mosquitto harness: a password file made by mosquitto_passwd, an ACL file, SIGHUP reload."""

from __future__ import annotations

import pytest

from tests.support.mosquitto import mosquitto_passwd_file, private_mosquitto, require_mosquitto
from tests.support.mqtt import MqttSession, connect_result

#: CONNACK return codes, MQTT 3.1.1 section 3.2.2.3; mosquitto 2.0 answers 5 for a wrong password.
ACCEPTED, NOT_AUTHORISED = 0, 5


@pytest.fixture
def passwords(tmp_path):
    require_mosquitto()
    return mosquitto_passwd_file(tmp_path / "passwords", {"good": "pw", "other": "pw2"})


def test_password_file_and_reload(tmp_path, passwords):
    assert passwords.read_text().startswith("good:$7$")  # PBKDF2-SHA512, mosquitto_passwd(1)
    with private_mosquitto(tmp_path, f"allow_anonymous false\npassword_file {passwords}\n") as broker:
        assert connect_result(broker.port, "good", "pw") == ACCEPTED
        assert connect_result(broker.port, "good", "wrong") == NOT_AUTHORISED
        assert connect_result(broker.port, "nobody", "pw") == NOT_AUTHORISED
        assert connect_result(broker.port, None, None) == NOT_AUTHORISED

        mosquitto_passwd_file(passwords, {"other": "pw2"})
        assert connect_result(broker.port, "good", "pw") == ACCEPTED, "the old file until the reload"
        broker.reload()
        assert connect_result(broker.port, "good", "pw") == NOT_AUTHORISED
        assert connect_result(broker.port, "other", "pw2") == ACCEPTED
    assert "Reloading config." in broker.log.read_text()


def test_acl_file(tmp_path, passwords):
    acl = tmp_path / "acl"
    acl.write_text("user good\ntopic readwrite a/b\ntopic read c/d\n")
    snippet = f"allow_anonymous false\npassword_file {passwords}\nacl_file {acl}\n"
    with private_mosquitto(tmp_path, snippet) as broker:
        with MqttSession(broker.port, "good", "pw") as sub:
            sub.subscribe("a/b")
            sub.subscribe("c/d")
            with MqttSession(broker.port, "good", "pw") as pub:
                # mosquitto acknowledges a denied publish and drops it (mosquitto.conf(5), acl_file).
                assert pub.publish("c/d", b"denied")
                assert pub.publish("a/b", b"allowed")
            assert sub.messages(expect=1) == [("a/b", b"allowed")]
