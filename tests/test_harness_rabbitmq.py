"""The private RabbitMQ harness against a real node: MQTT 3.1.1 clients, an HTTP auth backend in the test.

The backend (the relay of tests/support/rabbitmq.py) allows user "good" with
password "pw", every vhost and resource, reading topics a/b and c/d, and
writing a/b only (a/+ and a/# arrive as the routing keys a.* and a.#). Each scenario also pins the exact requests RabbitMQ sent to
tests/data/rabbitmq_auth_requests.json, which the broker hooks must accept.
After a deliberate change (another RabbitMQ), rewrite that file with
``PKI_WRITE_RABBITMQ_REQUESTS=1`` and review the diff.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from tests.support.mqtt import MqttSession, connect_result
from tests.support.rabbitmq import AuthRelay, AuthRequest

pytestmark = pytest.mark.slow

REQUESTS_FILE = Path(__file__).parent / "data" / "rabbitmq_auth_requests.json"

#: CONNACK return codes, MQTT 3.1.1 section 3.2.2.3.
ACCEPTED, BAD_CREDENTIALS = 0, 4


def backend(request: AuthRequest) -> str:
    p = request.params
    if request.path == "user":
        ok = p.get("username") == "good" and p.get("password") == "pw"
    elif request.path == "topic":
        allowed = {"write": {"a.b"}, "read": {"a.b", "c.d", "a.*", "a.#"}}.get(p.get("permission"), set())
        ok = p.get("routing_key") in allowed
    else:
        ok = request.path in ("vhost", "resource")
    return "allow" if ok else "deny"


def pin(scenario: str, requests: list[AuthRequest]) -> None:
    """The recorded requests equal the file's (or rewrite that scenario in it)."""
    got = [r.as_dict() for r in requests]
    data = json.loads(REQUESTS_FILE.read_text()) if REQUESTS_FILE.exists() else {}
    if os.environ.get("PKI_WRITE_RABBITMQ_REQUESTS") == "1":
        data.setdefault("scenarios", {})[scenario] = got
        REQUESTS_FILE.parent.mkdir(exist_ok=True)
        REQUESTS_FILE.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        return
    assert got == data["scenarios"][scenario]


def test_node_is_private(rabbitmq):
    assert rabbitmq.name.startswith("pkitest-") and rabbitmq.name.endswith("@localhost")
    assert {rabbitmq.amqp_port, rabbitmq.dist_port, rabbitmq.mqtt_port}.isdisjoint({5672, 25672, 1883})
    # Its own HOME, so its own cookie (private_rabbitmq also compared erlang:get_cookie()).
    home = rabbitmq.ctl("eval", 'os:getenv("HOME").')
    assert home.stdout.strip() == f'"{rabbitmq.home}"', home
    plugins = rabbitmq.ctl("eval", "[A || {A, _, _} <- application:which_applications(), "
                                   "lists:member(A, [rabbitmq_mqtt, rabbitmq_auth_backend_http, "
                                   "rabbitmq_management, rabbitmq_prometheus])].")
    assert plugins.stdout.strip() in ("[rabbitmq_mqtt,rabbitmq_auth_backend_http]",
                                      "[rabbitmq_auth_backend_http,rabbitmq_mqtt]"), plugins
    assert rabbitmq.startup_seconds is not None
    print(f"RabbitMQ node {rabbitmq.name} accepted MQTT {rabbitmq.startup_seconds:.1f}s after start")


def test_connect_good_and_wrong_credentials(rabbitmq, rabbitmq_auth):
    rabbitmq_auth.decide = backend
    assert connect_result(rabbitmq.mqtt_port, "good", "pw", client_id="conn-good") == ACCEPTED
    pin("connect_good", rabbitmq_auth.requests)
    rabbitmq_auth.reset(backend)
    assert connect_result(rabbitmq.mqtt_port, "good", "wrong", client_id="conn-wrong") == BAD_CREDENTIALS
    pin("connect_wrong_password", rabbitmq_auth.requests)
    rabbitmq_auth.reset(backend)
    assert connect_result(rabbitmq.mqtt_port, "stranger", "pw", client_id="conn-stranger") == BAD_CREDENTIALS
    # Without credentials the plugin refuses by itself (mqtt.allow_anonymous = false).
    assert connect_result(rabbitmq.mqtt_port, None, None, client_id="conn-anonymous") == BAD_CREDENTIALS
    assert [(r.path, r.params["username"]) for r in rabbitmq_auth.requests] == [("user", "stranger")]


def test_allowed_publish_reaches_subscriber_denied_does_not(rabbitmq, rabbitmq_auth):
    rabbitmq_auth.decide = backend
    with MqttSession(rabbitmq.mqtt_port, "good", "pw", client_id="sub-1") as sub:
        assert sub.subscribe("a/b") == 1
        assert sub.subscribe("c/d") == 1
        assert sub.subscribe("a/+") == 1  # routing key a.*
        assert sub.subscribe("a/#") == 1  # routing key a.#
        pin("subscribe", rabbitmq_auth.requests)

        rabbitmq_auth.reset(backend)
        with MqttSession(rabbitmq.mqtt_port, "good", "pw", client_id="pub-1") as pub:
            assert pub.publish("a/b", b"allowed")
        pin("publish_allowed", rabbitmq_auth.requests)

        rabbitmq_auth.reset(backend)
        with MqttSession(rabbitmq.mqtt_port, "good", "pw", client_id="pub-2") as pub:
            # RabbitMQ 3.10 answers a refused publish by closing the connection, with no PUBACK.
            assert not pub.publish("c/d", b"denied")
            assert not pub.connected
        pin("publish_denied", rabbitmq_auth.requests)

        assert sub.messages(expect=1) == [("a/b", b"allowed")]
        assert sub.connected


def test_denied_subscribe(rabbitmq, rabbitmq_auth):
    rabbitmq_auth.decide = backend
    with MqttSession(rabbitmq.mqtt_port, "good", "pw", client_id="sub-2") as sub:
        rabbitmq_auth.reset(backend)
        assert sub.subscribe("x/y") == 128
        # RabbitMQ 3.10 closes the connection after a refused SUBSCRIBE.
        assert not sub.connected
    pin("subscribe_denied", rabbitmq_auth.requests)


def test_get_method_and_basic_auth_from_url(rabbitmq, rabbitmq_auth):
    rabbitmq.point_http_backend(method="get", userinfo="pkitest-hook:t0ken")
    rabbitmq_auth.decide = backend
    assert connect_result(rabbitmq.mqtt_port, "good", "pw", client_id="conn-get") == ACCEPTED
    assert {r.authorization for r in rabbitmq_auth.requests} == {
        "Basic " + base64.b64encode(b"pkitest-hook:t0ken").decode()}
    pin("connect_good_get_with_url_userinfo", rabbitmq_auth.requests)


def test_forward_to_another_server(rabbitmq, rabbitmq_auth):
    upstream = AuthRelay(decide=backend)
    try:
        rabbitmq_auth.forward_to(f"http://127.0.0.1:{upstream.port}/broker/rabbitmq",
                                 headers={"Authorization": "Bearer hook-token"})
        assert connect_result(rabbitmq.mqtt_port, "good", "pw", client_id="conn-fwd") == ACCEPTED
        assert connect_result(rabbitmq.mqtt_port, "good", "no", client_id="conn-fwd") == BAD_CREDENTIALS
    finally:
        upstream.close()
    assert [(r.path, r.method, r.authorization) for r in upstream.requests] == [
        ("user", "POST", "Bearer hook-token"), ("vhost", "POST", "Bearer hook-token"),
        ("user", "POST", "Bearer hook-token")]
    assert [r.params for r in upstream.requests] == [r.params for r in rabbitmq_auth.requests]
    assert [r.answer for r in rabbitmq_auth.requests] == [(200, "allow"), (200, "allow"), (200, "deny")]
