"""Published artifacts against real consumers: openssl verify, Python's ssl, mosquitto + paho-mqtt.

Each consumer sees the four outcomes README describes: an ACTIVE device is
accepted; a REVOKED one is refused; an INACTIVE one is refused and accepted
again after reactivation and a new publish; a device of a deactivated CA is
refused.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import ssl
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support import openssl as openssl_tools
from tests.support.certs import make_root, pem
from tests.support.http_app import free_port
from tests.support.mosquitto import Mosquitto, require_mosquitto
from pki.services import artifacts, cas, devices, managed

#: Bounds only so that a wedged process cannot hang the run; nothing asserts on time.
_WAIT_SECONDS = 30


@dataclass
class Device:
    sn: str
    ca_sn: str
    cert: Path
    key: Path


def _issue(ctx, tmp_path: Path, ca_sn: str, client_id: str) -> Device:
    issued = devices.issue_device(ctx, ca=ca_sn, generate=True, client_id=client_id)
    cert = tmp_path / f"{client_id}.pem"
    key = tmp_path / f"{client_id}.key.pem"
    cert.write_text(issued.certificate_pem)
    key.write_bytes(devices.private_key_pem(issued.private_key))
    return Device(issued.device.sn, ca_sn, cert, key)


@dataclass
class World:
    ctx: object
    out: Path
    root: str
    other: str
    active: Device
    revoked: Device
    held: Device
    other_dev: Device

    def publish(self, **kw):
        return artifacts.publish(self.ctx, out_dir=self.out, **kw)

    @property
    def current(self) -> Path:
        return self.out / "current"


@pytest.fixture
def world(sqlite_ctx, tmp_path) -> World:
    ctx = sqlite_ctx
    root = managed.create_ca(ctx, name="Fleet Root").sn
    other = managed.create_ca(ctx, name="Other Root").sn
    d = tmp_path / "devices"
    d.mkdir()
    return World(
        ctx=ctx, out=tmp_path / "artifacts", root=root, other=other,
        active=_issue(ctx, d, root, "dev-active"), revoked=_issue(ctx, d, root, "dev-revoked"),
        held=_issue(ctx, d, root, "dev-held"), other_dev=_issue(ctx, d, other, "dev-other"),
    )


def _lock_out(w: World) -> None:
    devices.revoke_device(w.ctx, ca=w.root, sn=w.revoked.sn, reason="keyCompromise")
    devices.deactivate_device(w.ctx, ca=w.root, sn=w.held.sn)
    cas.deactivate_ca(w.ctx, w.other)


def _server_pair(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A broker certificate for 127.0.0.1 from a test-only CA: (server cert, key, its CA)."""
    ca_cert, ca_key = make_root("Broker Test CA")
    key = ec.generate_private_key(ec.SECP256R1())
    now = _dt.datetime.now(_dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .sign(ca_key, hashes.SHA256())
    )
    paths = tmp_path / "server.pem", tmp_path / "server.key.pem", tmp_path / "server-ca.pem"
    paths[0].write_bytes(pem(cert))
    paths[1].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    paths[2].write_bytes(pem(ca_cert))
    return paths


# -- openssl verify ----------------------------------------------------------------------


def _openssl_ok(w: World, dev: Device) -> tuple[bool, str]:
    return openssl_tools.verify(w.current / "ca-bundle.pem", dev.cert, crlfile=w.current / "crl.pem",
                                purpose="sslclient")


def test_openssl_verify_four_outcomes(world, openssl):
    w = world
    w.publish()
    for dev in (w.active, w.revoked, w.held, w.other_dev):
        ok, text = _openssl_ok(w, dev)
        assert ok, text
    _lock_out(w)
    w.publish()
    assert _openssl_ok(w, w.active)[0]
    ok, text = _openssl_ok(w, w.revoked)
    assert not ok and "certificate revoked" in text
    ok, text = _openssl_ok(w, w.held)
    assert not ok and "certificate revoked" in text
    ok, text = _openssl_ok(w, w.other_dev)
    assert not ok and "unable to get local issuer certificate" in text
    devices.activate_device(w.ctx, ca=w.root, sn=w.held.sn)
    ok, _ = _openssl_ok(w, w.held)
    assert not ok, "still on hold until the next publish"
    w.publish()
    ok, text = _openssl_ok(w, w.held)
    assert ok, text


# -- Python ssl server ---------------------------------------------------------------------


def _handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> bool:
    """A real TLS handshake over memory BIOs; True iff the server accepted the client certificate."""
    s_in, s_out, c_in, c_out = (ssl.MemoryBIO() for _ in range(4))
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname="127.0.0.1")
    done = {"server": False, "client": False}
    for _ in range(100):
        for name, end in (("client", client), ("server", server)):
            if done[name]:
                continue
            try:
                end.do_handshake()
                done[name] = True
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError:
                if name == "server":
                    return False
                done[name] = True  # the client learns of a refusal from the server's alert
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if done["server"]:
            return bool(server.getpeercert())
    raise AssertionError("the handshake did not finish")


@pytest.mark.parametrize("layout", ["cafile", "capath"])
def test_python_ssl_server_four_outcomes(world, tmp_path, layout):
    w = world
    server_cert, server_key, server_ca = _server_pair(tmp_path)

    def accepted(dev: Device) -> bool:
        sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        sctx.load_cert_chain(server_cert, server_key)
        sctx.verify_mode = ssl.CERT_REQUIRED
        sctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
        if layout == "cafile":
            sctx.load_verify_locations(cafile=w.current / "ca-bundle.pem")
            sctx.load_verify_locations(cafile=w.current / "crl.pem")
        else:
            sctx.load_verify_locations(capath=w.current / "capath")
        cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        cctx.load_verify_locations(cafile=server_ca)
        cctx.load_cert_chain(dev.cert, dev.key)
        return _handshake(sctx, cctx)

    w.publish()
    assert all(accepted(d) for d in (w.active, w.revoked, w.held, w.other_dev))
    _lock_out(w)
    w.publish()
    assert accepted(w.active)
    assert not accepted(w.revoked)
    assert not accepted(w.held)
    assert not accepted(w.other_dev)
    devices.activate_device(w.ctx, ca=w.root, sn=w.held.sn)
    w.publish()
    assert accepted(w.held)


# -- mosquitto + paho-mqtt -------------------------------------------------------------------


def _mqtt_publish(port: int, dev: Device, server_ca: Path, client_id: str) -> bool:
    """Connect with the device certificate and publish at QoS 1: True iff the broker took both."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    client.tls_set(ca_certs=str(server_ca), certfile=str(dev.cert), keyfile=str(dev.key))
    state: dict = {}
    client.on_connect = lambda _c, _u, _f, reason, _p: state.setdefault("connack", reason)
    try:
        client.connect("127.0.0.1", port, keepalive=30)
        deadline = time.monotonic() + _WAIT_SECONDS
        while "connack" not in state and time.monotonic() < deadline:
            if client.loop(timeout=0.1) != mqtt.MQTT_ERR_SUCCESS:
                return False
        if "connack" not in state or state["connack"].is_failure:
            return False
        info = client.publish("fleet/test", b"hello", qos=1)
        while not info.is_published() and time.monotonic() < deadline:
            if client.loop(timeout=0.1) != mqtt.MQTT_ERR_SUCCESS:
                return False
        return info.is_published()
    except (ssl.SSLError, OSError, RuntimeError):
        return False
    finally:
        client.disconnect()


@pytest.fixture
def mosquitto_bin():
    require_mosquitto()


def test_mosquitto_accepts_and_refuses_after_publish(world, tmp_path, mosquitto_bin):
    w = world
    server_cert, server_key, server_ca = _server_pair(tmp_path)
    port = free_port()
    w.publish(listener_port=port, listener_address="127.0.0.1", server_cert=str(server_cert),
              server_key=str(server_key))
    snippet = (w.current / "mosquitto.conf").read_text()
    assert "require_certificate true" in snippet and "use_identity_as_username true" in snippet
    # The generated listener snippet, plus what a test broker needs (tests/support/mosquitto.py).
    broker = Mosquitto(tmp_path, snippet, port=port)
    broker.start()
    try:
        assert _mqtt_publish(port, w.active, server_ca, "dev-active")
        assert _mqtt_publish(port, w.revoked, server_ca, "dev-revoked")
        assert _mqtt_publish(port, w.other_dev, server_ca, "dev-other")

        devices.revoke_device(w.ctx, ca=w.root, sn=w.revoked.sn, reason="keyCompromise")
        w.publish(listener_port=port, listener_address="127.0.0.1", server_cert=str(server_cert),
                  server_key=str(server_key))
        broker.reload()
        assert not _mqtt_publish(port, w.revoked, server_ca, "dev-revoked")
        assert _mqtt_publish(port, w.active, server_ca, "dev-active")

        cas.deactivate_ca(w.ctx, w.other)
        w.publish(listener_port=port, listener_address="127.0.0.1", server_cert=str(server_cert),
                  server_key=str(server_key))
        broker.restart()
        assert not _mqtt_publish(port, w.other_dev, server_ca, "dev-other")
        assert _mqtt_publish(port, w.active, server_ca, "dev-active")

        cas.activate_ca(w.ctx, w.other)
        w.publish(listener_port=port, listener_address="127.0.0.1", server_cert=str(server_cert),
                  server_key=str(server_key))
        broker.restart()
        assert _mqtt_publish(port, w.other_dev, server_ca, "dev-other")
        assert not _mqtt_publish(port, w.revoked, server_ca, "dev-revoked")
    finally:
        broker.stop()
    assert "certificate verify failed" in (tmp_path / "mosquitto.log").read_text()
