"""A real mosquitto (no plugin) with a publish's password and ACL files and its generated snippet.

mosquitto runs on its own ports with its config in the test's directory (tests/support/mosquitto.py);
under CI=true a missing mosquitto fails the run.
"""

from __future__ import annotations

from tests.support import snapshot
from tests.support.mosquitto import Mosquitto, require_mosquitto
from tests.support.http_app import free_port
from tests.support.mqtt import MqttSession, Refused
from tests.test_broker import _server_pair
from pki.services import artifacts, managed, secrets
from pki.services.dataplane import blocklist, identities, permissions

#: CONNACK return codes, MQTT 3.1.1 section 3.2.2.3; mosquitto 2.0 answers 5 for a wrong password.
ACCEPTED, NOT_AUTHORISED = 0, 5


def _session(port: int, ca, username: str, password: str, client_id: str) -> MqttSession:
    session = MqttSession(port, username, password, client_id=client_id)
    session.client.tls_set(ca_certs=str(ca))  # the password listener is TLS without a client certificate
    return session


def _connack(port: int, ca, username: str, password: str, client_id: str) -> int | None:
    try:
        with _session(port, ca, username, password, client_id):
            return ACCEPTED
    except Refused as refused:
        return refused.code


def test_mosquitto_with_the_published_password_and_acl_files(ctx, tmp_path):
    require_mosquitto()
    managed.create_ca(ctx, name="Fleet Root")  # mosquitto refuses an empty cafile
    server_cert, server_key, server_ca = _server_pair(tmp_path)
    meter1 = secrets.register_secret(ctx, client_id="meter-1")
    meter2 = secrets.register_secret(ctx, client_id="meter-2")
    identities.add(ctx, username="dashboard", password="dashboard-password")
    permissions.add(ctx, effect="allow", action="publish", topic="meters/${clientid}/up", all_clients=True)
    permissions.add(ctx, effect="allow", action="subscribe", topic="meters/#", username="dashboard")
    cert_port, port = free_port(), free_port()
    out = tmp_path / "out"

    def publish():
        return artifacts.publish(ctx, out_dir=out, listener_port=cert_port, listener_address="127.0.0.1",
                                 password_listener_port=port, server_cert=str(server_cert),
                                 server_key=str(server_key))

    publish()
    snippet = (out / "current" / "mosquitto.conf").read_text()
    broker = Mosquitto(tmp_path, snippet, port=port)
    broker.start()
    try:
        password1 = secrets.password_for(meter1.secret, "meter-1")
        password2 = secrets.password_for(meter2.secret, "meter-2")
        before = snapshot(ctx)
        assert _connack(port, server_ca, meter1.username, password1, "meter-1") == ACCEPTED
        assert _connack(port, server_ca, meter1.username, password2, "meter-1") == NOT_AUTHORISED
        assert _connack(port, server_ca, meter1.username, "wrong", "meter-1") == NOT_AUTHORISED
        assert snapshot(ctx) == before  # a refused connect changes nothing

        with _session(port, server_ca, "dashboard", "dashboard-password", "dash-1") as sub:
            sub.subscribe("meters/#")
            with _session(port, server_ca, meter1.username, password1, "meter-1") as pub:
                # mosquitto acknowledges a denied publish and drops it (mosquitto.conf(5), acl_file).
                assert pub.publish("meters/meter-2/up", b"denied")
                assert pub.publish("meters/meter-1/up", b"allowed")
            assert sub.messages(expect=1) == [("meters/meter-1/up", b"allowed")]

        secrets.deactivate_secret(ctx, client_id="meter-1")
        publish()
        assert _connack(port, server_ca, meter1.username, password1, "meter-1") == ACCEPTED, "until the reload"
        broker.reload()
        assert _connack(port, server_ca, meter1.username, password1, "meter-1") == NOT_AUTHORISED
        assert _connack(port, server_ca, meter2.username, password2, "meter-2") == ACCEPTED

        blocklist.add(ctx, client_id="meter-2")
        publish()
        broker.reload()
        assert _connack(port, server_ca, meter2.username, password2, "meter-2") == NOT_AUTHORISED
        assert _connack(port, server_ca, "dashboard", "dashboard-password", "dash-1") == ACCEPTED
    finally:
        broker.stop()

