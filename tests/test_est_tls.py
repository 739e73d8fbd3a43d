"""EST over real TLS: `pki serve --tls-*`, curl and openssl as the independent client, mosquitto as the judge.

Also: the remote CLI over https (PKI_CA_BUNDLE), the client certificate header from a --trusted-proxy only,
and `pki est reenroll` killed between writing its .new files and the swap.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as _dt
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import types
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pki.clock import SystemClock
from pki.services import artifacts, devices, enrollment, managed
from tests.support import skip_or_fail, snapshot
from tests.support.http_app import free_port, make_user, serve_process
from tests.support.mosquitto import Mosquitto, require_mosquitto
from tests.support.openssl import require_openssl
from tests.test_broker import _mqtt_publish, _server_pair

pytestmark = pytest.mark.slow

WAIT = 60  # a bound on waiting for start-up or for a file, never a timed assertion


def _require_curl() -> None:
    if shutil.which("curl") is None:
        skip_or_fail("curl is not installed")


def _env(settings) -> dict:
    return {**os.environ, "PKI_HOME": str(settings.home), "PKI_DATABASE_URL": settings.database_url,
            "PKI_MASTER_KEY_FILE": str(settings.master_key_file)}


@contextlib.contextmanager
def tls_serve(settings, tmp_path: Path, server_cert, server_key, server_ca, *args: str):
    """`pki serve --tls-cert --tls-key [args]` on a free port; yields its https URL."""
    port = free_port()
    log = tmp_path / f"serve-{port}.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pki.cli.main", "serve", "--host", "127.0.0.1", "--port", str(port),
             "--tls-cert", str(server_cert), "--tls-key", str(server_key), *args],
            env=_env(settings), stdout=subprocess.DEVNULL, stderr=err)
    url = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + WAIT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"pki serve exited: {log.read_text()[-2000:]}")
            try:
                verify = ssl.create_default_context(cafile=str(server_ca))
                if httpx.get(url + "/.well-known/est/csrattrs", verify=verify, timeout=1).status_code == 204:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"pki serve did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _write_device(directory: Path, issued) -> types.SimpleNamespace:
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "dev.crt.pem", directory / "dev.key.pem"
    cert.write_bytes(issued.certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(issued.private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))
    key.chmod(0o600)
    return types.SimpleNamespace(cert=cert, key=key)


def _curl(*args: str) -> tuple[int, bytes]:
    done = subprocess.run(["curl", "-s", "-o", "-", "-w", "\n%{http_code}", *args], capture_output=True, timeout=WAIT)
    body, _, status = done.stdout.rpartition(b"\n")
    return int(status or 0), body


def test_curl_openssl_reenroll_then_mosquitto_refuses_the_old_after_grace(ctx, clock, settings, tmp_path):
    require_openssl()
    _require_curl()
    require_mosquitto()
    ca = managed.create_ca(ctx, name="Fleet Root")
    enrollment.update_ca(ctx, ca.sn, supersede_after=_dt.timedelta(seconds=3))
    dev = _write_device(tmp_path / "dev", devices.issue_device(ctx, ca=ca.sn, generate=True, client_id="gw-1"))
    client_ca = tmp_path / "client-ca.pem"
    client_ca.write_text(enrollment.update_ca(ctx, ca.sn)["certificate_pem"])
    server_cert, server_key, server_ca = _server_pair(tmp_path)
    port = free_port()
    out = tmp_path / "out"

    def publish():
        clock.set(SystemClock().now())  # the server process renews on the real clock
        artifacts.publish(ctx, out_dir=out, listener_port=port, listener_address="127.0.0.1",
                          server_cert=str(server_cert), server_key=str(server_key))

    publish()
    broker = Mosquitto(tmp_path, (out / "current" / "mosquitto.conf").read_text(), port=port)
    broker.start()
    try:
        assert _mqtt_publish(port, dev, server_ca, "gw-1")
        with tls_serve(settings, tmp_path, server_cert, server_key, server_ca, "--tls-client-ca",
                       str(client_ca)) as url:
            est = url + "/.well-known/est"
            # openssl makes the CSR (base64 DER, as RFC 7030 4.2.1 sends it); curl does TLS with the device pair
            der = subprocess.run(["openssl", "req", "-new", "-key", str(dev.key), "-subj", "/CN=gw-1",
                                  "-outform", "DER"], capture_output=True, check=True, timeout=WAIT).stdout
            csr = tmp_path / "csr.b64"
            csr.write_bytes(base64.encodebytes(der))
            tls = ["--cacert", str(server_ca)]
            auth = ["--cert", str(dev.cert), "--key", str(dev.key)]
            post = ["--data-binary", f"@{csr}", "-H", "Content-Type: application/pkcs10"]
            status, body = _curl(*tls, *post, f"{est}/simplereenroll")  # no client certificate
            assert status == 401 and b"est_unauthenticated" in body
            header = quote(dev.cert.read_text())  # not from a --trusted-proxy: ignored
            status, body = _curl(*tls, *post, "-H", f"X-SSL-Client-Cert: {header}", f"{est}/simplereenroll")
            assert status == 401
            before = snapshot(ctx)
            bad = tmp_path / "bad.b64"
            bad.write_bytes(b"not base64 at all!")
            status, body = _curl(*tls, *auth, "--data-binary", f"@{bad}", "-H", "Content-Type: application/pkcs10",
                                 f"{est}/simplereenroll")
            assert status == 400 and b"invalid_base64" in body and snapshot(ctx) == before
            status, body = _curl(*tls, *auth, *post, f"{est}/simplereenroll")
            assert status == 200, body
            p7 = tmp_path / "new.p7"
            p7.write_bytes(b"-----BEGIN PKCS7-----\n" + body.strip() + b"\n-----END PKCS7-----\n")
            printed = subprocess.run(["openssl", "pkcs7", "-in", str(p7), "-print_certs"], capture_output=True,
                                     check=True, timeout=WAIT).stdout
            new_cert = x509.load_pem_x509_certificate(printed[printed.index(b"-----BEGIN"):])
            new = types.SimpleNamespace(cert=tmp_path / "new.crt.pem", key=dev.key)
            new.cert.write_bytes(new_cert.public_bytes(serialization.Encoding.PEM))
            done = subprocess.run(["openssl", "verify", "-CAfile", str(client_ca), str(new.cert)],
                                  capture_output=True, timeout=WAIT)
            assert done.returncode == 0, done.stdout + done.stderr
        # within the grace both connect; after it, the next publish's CRL refuses the old one
        publish()
        broker.reload()
        assert _mqtt_publish(port, new, server_ca, "gw-1")
        assert _mqtt_publish(port, dev, server_ca, "gw-1")
        old_sn = format(x509.load_pem_x509_certificate(dev.cert.read_bytes()).serial_number, "x")
        deadline = time.monotonic() + WAIT
        while devices.show_device(ctx, ca=ca.sn, sn=old_sn).status == "ACTIVE":
            assert time.monotonic() < deadline, "the old certificate was never superseded"
            time.sleep(0.5)  # until the 3 s grace has passed; each publish applies what is due
            publish()
        broker.reload()
        assert not _mqtt_publish(port, dev, server_ca, "gw-1")
        assert _mqtt_publish(port, new, server_ca, "gw-1")
        assert devices.show_device(ctx, ca=ca.sn, sn=old_sn).revocation_reason == "superseded"
    finally:
        broker.stop()


def test_remote_cli_over_https_and_client_swap_survives_a_kill(ctx, settings, tmp_path):
    _require_curl()
    ca = managed.create_ca(ctx, name="Fleet Root")
    enrollment.update_ca(ctx, ca.sn, est_label="fab")
    issued = devices.issue_device(ctx, ca=ca.sn, generate=True, client_id="gw-5")
    dev = _write_device(tmp_path / "dev", issued)
    client_ca = tmp_path / "client-ca.pem"
    client_ca.write_text(enrollment.update_ca(ctx, ca.sn)["certificate_pem"])
    server_cert, server_key, server_ca = _server_pair(tmp_path)
    admin = make_user(ctx, "admin", "PkiAdministratorAccess")
    with tls_serve(settings, tmp_path, server_cert, server_key, server_ca, "--tls-client-ca", str(client_ca)) as url:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PKI_")}
        env.update(PKI_SERVER=url, PKI_ACCESS_KEY_ID=admin.access_key_id, PKI_ACCESS_KEY_SECRET=admin.access_key_secret,
                   HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "xdg"))
        cli = [sys.executable, "-m", "pki.cli.main"]
        done = subprocess.run([*cli, "ca", "show", ca.sn, "--json"], env=env, capture_output=True, timeout=WAIT)
        assert done.returncode != 0 and b"server_unreachable" in done.stderr  # the server's CA is not trusted
        done = subprocess.run([*cli, "ca", "show", ca.sn, "--json"], env={**env, "PKI_CA_BUNDLE": str(server_ca)},
                              capture_output=True, timeout=WAIT)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["certificate_pem"].startswith("-----BEGIN CERTIFICATE-----")
        env["PKI_CA_BUNDLE"] = str(server_ca)
        done = subprocess.run([*cli, "claim", "create", "--ca", ca.sn, "--uses", "2", "--json"], env=env,
                              capture_output=True, timeout=WAIT)
        assert done.returncode == 0 and set(json.loads(done.stdout)) >= {"claim_id", "password"}, done.stderr
        other = devices.issue_device(ctx, ca=ca.sn, generate=True, client_id="gw-6")
        done = subprocess.run([*cli, "device", "renew", other.device.sn, "--ca", ca.sn, "--supersede-after", "0",
                               "--json"], env=env, capture_output=True, timeout=WAIT)
        assert done.returncode == 0 and json.loads(done.stdout)["replaces"] == other.device.sn, done.stderr
        env.pop("PKI_CA_BUNDLE")

        # the device-side client, killed after writing .new and before the swap
        old_cert, old_key = dev.cert.read_bytes(), dev.key.read_bytes()
        args = [*cli, "est", "reenroll", "--url", url + "/fab", "--ca-bundle", str(server_ca), "--out",
                str(dev.cert.parent), "--name", "dev", "--rekey", "--json"]
        proc = subprocess.Popen(args, env={**env, "PKI_EST_PAUSE_BEFORE_SWAP": "120"}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        new_file = dev.cert.parent / "dev.crt.pem.new"
        deadline = time.monotonic() + WAIT
        while not new_file.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the client never wrote its .new files"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert dev.cert.read_bytes() == old_cert and dev.key.read_bytes() == old_key
        assert (dev.cert.parent / "dev.key.pem.new").exists()
        # the old pair still works: it authenticates a TLS handshake and renews
        done = subprocess.run([*args[:-2], "--json"], env=env, capture_output=True, timeout=WAIT)
        assert done.returncode == 0, done.stderr
        answer = json.loads(done.stdout)
        assert answer["rekeyed"] is False
        new = x509.load_pem_x509_certificate(dev.cert.read_bytes())
        key = serialization.load_pem_private_key(dev.key.read_bytes(), None)
        assert new.public_key() == key.public_key() and dev.key.read_bytes() == old_key
        assert not new_file.exists() and (dev.cert.parent / "dev.crt.pem.old").read_bytes() == old_cert
        # and rekey completes
        done = subprocess.run(args, env=env, capture_output=True, timeout=WAIT)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["rekeyed"] is True
        rekeyed = x509.load_pem_x509_certificate(dev.cert.read_bytes())
        assert rekeyed.public_key() == serialization.load_pem_private_key(dev.key.read_bytes(), None).public_key()
        assert dev.key.read_bytes() != old_key


def test_client_certificate_header_from_a_trusted_proxy(ctx, settings, tmp_path):
    """Behind nginx (ssl_verify_client on; proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert)."""
    ca = managed.create_ca(ctx, name="Fleet Root")
    issued = devices.issue_device(ctx, ca=ca.sn, generate=True, client_id="gw-9")
    from tests.test_est import _csr

    header = {"X-SSL-Client-Cert": quote(issued.certificate.public_bytes(serialization.Encoding.PEM).decode()),
              "Content-Type": "application/pkcs10"}
    body = _csr(issued.private_key, "gw-9")
    with serve_process(settings, tmp_path / "trusted.log", "--trusted-proxy", "127.0.0.1/32") as url:
        response = httpx.post(url + "/.well-known/est/simplereenroll", content=body, headers=header, timeout=30)
        assert response.status_code == 200, response.text
    with serve_process(settings, tmp_path / "untrusted.log") as url:
        before = snapshot(ctx)
        response = httpx.post(url + "/.well-known/est/simplereenroll", content=body, headers=header, timeout=30)
        assert response.status_code == 401 and snapshot(ctx) == before


def test_ca_bundle_from_environment_or_profile(tmp_path):
    """Not slow, but beside the https test it serves: PKI_CA_BUNDLE first, then the profile's ca_bundle."""
    from pki.cli.common import Remote

    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps({"server": "https://pki.example:8443", "access_key_id": "AK",
                                   "access_key_secret": "s", "ca_bundle": "/etc/pki/server-ca.pem"}))
    profile.chmod(0o600)
    remote = Remote(server=None, access_key_id=None, profile=str(profile), local=False)
    assert remote.ca_bundle({}) == "/etc/pki/server-ca.pem"
    assert remote.ca_bundle({"PKI_CA_BUNDLE": "/tmp/other.pem"}) == "/tmp/other.pem"
