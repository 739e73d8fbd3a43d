"""paho-mqtt (MQTT 3.1.1) as a test client of a real broker, with every wait bounded.

    with MqttSession(port, "good", "pw", client_id="sub") as sub:   # raises Refused on a bad CONNACK
        sub.subscribe("a/b")
        with MqttSession(port, "good", "pw", client_id="pub") as pub:
            pub.publish("a/b", b"x")
        assert sub.messages(expect=1) == [("a/b", b"x")]

`connect_result` answers only the CONNACK: 0 accepted, 4 bad username or
password, 5 not authorised (MQTT 3.1.1 section 3.2.2.3), or None when the
broker closed the socket without a CONNACK.
"""

from __future__ import annotations

import threading
import time
import uuid

__all__ = ["MqttSession", "Refused", "connect_result"]

#: Bounds only so that a wedged broker cannot hang the run; nothing asserts on time.
WAIT_SECONDS = 20
#: How long to wait for a message that must NOT arrive, after a later one did or the publish was taken.
QUIET_SECONDS = 1.0


_CONNACK_CODES = {"Success": 0, "Unsupported protocol version": 1, "Client identifier not valid": 2,
                  "Server unavailable": 3, "Bad user name or password": 4, "Not authorized": 5}


class Refused(Exception):
    """The broker refused the connection: ``code`` is the CONNACK return code, or None."""

    def __init__(self, code: int | None) -> None:
        super().__init__(f"CONNACK {code}")
        self.code = code


class MqttSession:
    def __init__(self, port: int, username: str | None = None, password: str | None = None, *,
                 client_id: str | None = None, host: str = "127.0.0.1") -> None:
        import paho.mqtt.client as mqtt

        self._mqtt = mqtt
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"t-{uuid.uuid4().hex[:12]}",
                                  protocol=mqtt.MQTTv311, reconnect_on_failure=False)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.host, self.port = host, port
        self._connack: list[int | None] = []
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._messages: list[tuple[str, bytes]] = []
        self._subacks: dict[int, list[int]] = {}
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe

    # -- callbacks (paho's network thread) --
    def _on_connect(self, _c, _u, _flags, reason, _props) -> None:
        # paho 2 turns a 3.1.1 return code into an MQTT 5 reason code; back by name.
        self._connack.append(_CONNACK_CODES.get(reason.getName(), reason.value))

    def _on_disconnect(self, _c, _u, _flags, _reason, _props) -> None:
        self._closed.set()

    def _on_message(self, _c, _u, msg) -> None:
        with self._lock:
            self._messages.append((msg.topic, msg.payload))

    def _on_subscribe(self, _c, _u, mid, reasons, _props) -> None:
        self._subacks[mid] = [r.value for r in reasons]

    def _until(self, condition, what: str) -> None:
        deadline = time.monotonic() + WAIT_SECONDS
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"MQTT: no {what} within {WAIT_SECONDS}s")
            time.sleep(0.02)

    # -- API --
    def __enter__(self) -> MqttSession:
        self.client.connect(self.host, self.port, keepalive=30)
        self.client.loop_start()
        try:
            self._until(lambda: self._connack or self._closed.is_set(), "CONNACK")
        except BaseException:
            self.close()
            raise
        code = self._connack[0] if self._connack else None
        if code != 0:
            self.close()
            raise Refused(code)
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if not self._closed.is_set():
            self.client.disconnect()
        self.client.loop_stop()

    @property
    def connected(self) -> bool:
        return not self._closed.is_set()

    def subscribe(self, topic: str, qos: int = 1) -> int:
        """The SUBACK's granted QoS for the filter, 128 when refused (MQTT 3.1.1 section 3.9.3)."""
        _, mid = self.client.subscribe(topic, qos=qos)
        self._until(lambda: mid in self._subacks or self._closed.is_set(), "SUBACK")
        return self._subacks[mid][0] if mid in self._subacks else 128

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> bool:
        """True iff the broker acknowledged the publish (PUBACK at QoS 1) and kept the connection."""
        info = self.client.publish(topic, payload, qos=qos)
        deadline = time.monotonic() + WAIT_SECONDS
        while not info.is_published() and not self._closed.is_set() and time.monotonic() < deadline:
            time.sleep(0.02)
        return info.is_published() and not self._closed.is_set()

    def messages(self, expect: int = 0, quiet: float = QUIET_SECONDS) -> list[tuple[str, bytes]]:
        """What arrived: waits for ``expect`` messages (bounded), then ``quiet`` seconds more."""
        self._until(lambda: len(self._messages) >= expect, f"{expect} message(s)")
        time.sleep(quiet)
        with self._lock:
            return list(self._messages)


def connect_result(port: int, username: str | None, password: str | None, *,
                   client_id: str | None = None) -> int | None:
    """The CONNACK return code for these credentials (0 accepted), None if the broker just hung up."""
    try:
        with MqttSession(port, username, password, client_id=client_id):
            return 0
    except Refused as refused:
        return refused.code
