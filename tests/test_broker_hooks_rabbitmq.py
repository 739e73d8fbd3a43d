"""A real RabbitMQ (rabbitmq_mqtt + rabbitmq_auth_backend_http, tests/support/rabbitmq.py) pointed at the
hooks of the app served by uvicorn in this test, with paho-mqtt clients (MQTT 3.1.1): a device with its
secret connects and a wrong password is refused; a publish to an allowed topic reaches a subscriber and
one to a denied topic does not; after a deactivation, or a blocklist entry, the device is refused."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest
import uvicorn

from pki.services import secrets as secret_service
from pki.services.dataplane import blocklist, hook_tokens, identities, permissions
from tests.support.http_app import app_for, free_port
from tests.support.mqtt import MqttSession, connect_result

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]

#: CONNACK return codes, MQTT 3.1.1 section 3.2.2.3.
ACCEPTED, BAD_CREDENTIALS, NOT_AUTHORIZED = 0, 4, 5


@contextlib.contextmanager
def served(ctx):
    """The app on a free loopback port, in a thread of this process; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app_for(ctx), host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):  # a bound on start-up, not a timed assertion
        if server.started:
            break
        time.sleep(0.05)
    assert server.started
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_rabbitmq_through_the_hooks(ctx, rabbitmq, rabbitmq_auth):
    secret = secret_service.register_secret(ctx, client_id="meter-1")
    password = secret_service.password_for(secret.secret, "meter-1")
    identities.add(ctx, username="app", password="app-pass-1")
    permissions.add(ctx, effect="allow", action="publish", topic="devices/${clientid}/up", all_clients=True)
    permissions.add(ctx, effect="allow", action="subscribe", topic="devices/#", username="app")
    token = hook_tokens.create(ctx, name="rabbit", cidrs=["127.0.0.0/8"])["token"]
    port = rabbitmq.mqtt_port
    with served(ctx) as url:
        # RabbitMQ's HTTP backend sends Basic authentication from the URL's userinfo; the relay (which
        # records what RabbitMQ sent) passes the same header on.
        rabbitmq.point_http_backend(method="post", userinfo=f"hook:{token}")
        rabbitmq_auth.forward_to(url + "/broker/rabbitmq")

        assert connect_result(port, secret.username, password, client_id="meter-1") == ACCEPTED
        assert connect_result(port, secret.username, "d3JvbmctcGFzc3dvcmQ=", client_id="meter-1") == BAD_CREDENTIALS
        assert connect_result(port, "stranger", "pw", client_id="x-1") == BAD_CREDENTIALS

        with MqttSession(port, "app", "app-pass-1", client_id="app-sub") as sub:
            assert sub.subscribe("devices/#") == 1
            with MqttSession(port, secret.username, password, client_id="meter-1") as pub:
                assert pub.publish("devices/meter-1/up", b"allowed")
            with MqttSession(port, secret.username, password, client_id="meter-1") as pub:
                # RabbitMQ 3.10 answers a refused publish by closing the connection.
                assert not pub.publish("devices/meter-2/up", b"denied")
            assert sub.messages(expect=1) == [("devices/meter-1/up", b"allowed")]

        secret_service.deactivate_secret(ctx, client_id="meter-1")
        assert connect_result(port, secret.username, password, client_id="meter-1") == BAD_CREDENTIALS
        secret_service.activate_secret(ctx, client_id="meter-1")
        assert connect_result(port, secret.username, password, client_id="meter-1") == ACCEPTED
        blocklist.add(ctx, client_id="meter-1")
        assert connect_result(port, secret.username, password, client_id="meter-1") == BAD_CREDENTIALS

        answers = {(r.path, r.answer[1]) for r in rabbitmq_auth.requests}
        assert all(status == 200 for status, _ in (r.answer for r in rabbitmq_auth.requests)), \
            [r.answer for r in rabbitmq_auth.requests if r.answer[0] != 200]
        assert ("topic", "deny") in answers and ("user", "deny") in answers
