"""EST benchmark: simplereenroll over TLS beside `pki serve` issuance from a CSR over plain HTTP, in one run.

    .venv/bin/python scripts/bench_est.py [--n 800] [--clients 4] [--database-url URL]

(a) baseline: POST /v1/cas/{ca}/devices from a CSR, signed (HMAC), over plain HTTP/1.1 keep-alive,
    `--clients` client processes;
(b) EST: POST /.well-known/est/simplereenroll over TLS (`pki serve --tls-cert --tls-key --tls-client-ca`),
    each request a different device renewing its own certificate: a new TLS connection per request,
    with that device's certificate as the client certificate (as a fleet of devices does), `--clients`
    client processes;
(c) EST over one kept-alive TLS connection per client (one device renewing again and again; each repeat
    supersedes the previous replacement): the handshake out of the picture, to show where the time goes.

Both (a) and (b) sign with the same EC P-256 managed CA, store and audit each certificate in its
transaction.  The clients are plain `http.client` connections in their own processes (CSRs made before
timing starts).  Prints rates, the ratio of (b) and (c) to (a), the server CPU per request, and the load
average.  Target: (b) >= 0.5x (a).
"""

from __future__ import annotations

import argparse
import base64
import datetime as _dt
import http.client
import ipaddress
import json
import multiprocessing
import os
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

from pki import signing  # noqa: E402
from scripts.bench_service import cpu_seconds, free_port, split, wait_port  # noqa: E402


def _csr_der(key, cn: str) -> bytes:
    return (x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))


def _server_pair(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = _dt.datetime.now(_dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - _dt.timedelta(minutes=5))
            .not_valid_after(now + _dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "server.pem", directory / "server.key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


# -- clients (one per process) ---------------------------------------------------------------------------


def _baseline_client(spec, bodies, barrier, queue) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", spec["port"])

    def one(body):
        headers = signing.signed_headers(access_key_id=spec["key_id"], secret=spec["secret"], method="POST",
                                         path=spec["path"], body=body)
        headers["Content-Type"] = "application/json"
        conn.request("POST", spec["path"], body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        if response.status != 201:
            raise SystemExit(f"baseline: HTTP {response.status}: {data[:300]!r}")

    one(bodies[0])
    barrier.wait()
    start = time.monotonic()
    for body in bodies[1:]:
        one(body)
    queue.put((start, time.monotonic(), len(bodies) - 1))


def _est_client(spec, jobs, barrier, queue) -> None:
    """jobs: (cert path, key path, base64 CSR); a new TLS connection per job unless spec["keepalive"]."""
    conn = None

    def one(cert, key, body):
        nonlocal conn
        if conn is None or not spec["keepalive"]:
            context = ssl.create_default_context(cafile=spec["server_ca"])
            context.load_cert_chain(cert, key)
            conn = http.client.HTTPSConnection("127.0.0.1", spec["port"], context=context)
        conn.request("POST", "/.well-known/est/simplereenroll", body=body,
                     headers={"Content-Type": "application/pkcs10"})
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise SystemExit(f"est: HTTP {response.status}: {data[:300]!r}")
        if not spec["keepalive"]:
            conn.close()

    one(*jobs[0])
    barrier.wait()
    start = time.monotonic()
    for job in jobs[1:]:
        one(*job)
    queue.put((start, time.monotonic(), len(jobs) - 1))


def _measure(target, spec, per_client, server_pid) -> tuple[float, float]:
    mp = multiprocessing.get_context("spawn")
    barrier = mp.Barrier(len(per_client) + 1)
    queue = mp.Queue()
    procs = [mp.Process(target=target, args=(spec, items, barrier, queue)) for items in per_client]
    for p in procs:
        p.start()
    barrier.wait()
    cpu0 = cpu_seconds(server_pid)
    results = [queue.get(timeout=900) for _ in procs]
    cpu = cpu_seconds(server_pid) - cpu0
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise SystemExit("a client failed")
    count = sum(r[2] for r in results)
    seconds = max(r[1] for r in results) - min(r[0] for r in results)
    return count / seconds, cpu * 1000 / count


def _serve(env, port, *args):
    proc = subprocess.Popen([sys.executable, "-m", "pki.cli.main", "serve", "--host", "127.0.0.1", "--port",
                             str(port), "--no-access-log", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_port(port, proc, "pki serve")
    return proc


def _stop(proc) -> None:
    proc.terminate()
    proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=800, help="Requests per measurement (all clients together).")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--database-url", help="Default: SQLite in a temporary directory.")
    args = parser.parse_args()

    from pki.config import Settings
    from pki.services import devices, enrollment, managed, open_context, users
    from pki.services import policies
    from pki.services.setup import initialise

    tmp = Path(tempfile.mkdtemp(prefix="bench-est-"))
    settings = Settings.load(home=tmp / "home", database_url=args.database_url, environ={})
    initialise(settings)
    ctx = open_context(settings)
    ca = managed.create_ca(ctx, name="Bench Root")
    user = users.create_user(ctx, "bench")
    policies.attach_policy(ctx, "PkiFullAccess", user="bench")
    client_ca = tmp / "client-ca.pem"
    client_ca.write_text(enrollment.update_ca(ctx, ca.sn)["certificate_pem"])
    server_cert, server_key = _server_pair(tmp)

    clients, n = args.clients, args.n
    per = n // clients
    baseline_bodies = [json.dumps({"csr_pem": x509.load_der_x509_csr(
        _csr_der(ec.generate_private_key(ec.SECP256R1()), f"base-{i}")).public_bytes(
        serialization.Encoding.PEM).decode()}).encode() for i in range(per * clients + clients)]
    devdir = tmp / "devices"
    devdir.mkdir()
    jobs = []
    for i in range(per * clients + clients):
        issued = devices.issue_device(ctx, ca=ca.sn, generate=True, client_id=f"dev-{i}")
        cert, key = devdir / f"dev-{i}.crt.pem", devdir / f"dev-{i}.key.pem"
        cert.write_bytes(issued.certificate.public_bytes(serialization.Encoding.PEM))
        key.write_bytes(issued.private_key.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
        jobs.append((str(cert), str(key), base64.encodebytes(_csr_der(issued.private_key, f"dev-{i}"))))
    ctx.close()

    env = {**os.environ, "PKI_HOME": str(settings.home), "PKI_DATABASE_URL": settings.database_url,
           "PKI_MASTER_KEY_FILE": str(settings.master_key_file)}
    port = free_port()
    proc = _serve(env, port)
    try:
        spec = {"port": port, "key_id": user.access_key_id, "secret": user.access_key_secret,
                "path": f"/v1/cas/{ca.sn}/devices"}
        base_rate, base_cpu = _measure(_baseline_client, spec, split(baseline_bodies, clients), proc.pid)
    finally:
        _stop(proc)
    port = free_port()
    proc = _serve(env, port, "--tls-cert", str(server_cert), "--tls-key", str(server_key), "--tls-client-ca",
                  str(client_ca))
    try:
        spec = {"port": port, "server_ca": str(server_cert), "keepalive": False}
        est_rate, est_cpu = _measure(_est_client, spec, split(jobs, clients), proc.pid)
        # (c): each client renews its first device again and again on one connection
        spec = {"port": port, "server_ca": str(server_cert), "keepalive": True}
        repeat = [[chunk[0]] * len(chunk) for chunk in split(jobs, clients)]
        ka_rate, ka_cpu = _measure(_est_client, spec, repeat, proc.pid)
    finally:
        _stop(proc)

    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"database {settings.database_url.split(':')[0]}; {clients} clients, {per * clients} requests each row")
    print(f"{'measurement':<62} {'req/s':>8} {'ratio':>6} {'server CPU ms/req':>18}")
    print(f"{'(a) pki serve, POST /v1/cas/{ca}/devices from a CSR, plain HTTP':<62} {base_rate:8.1f} "
          f"{1.0:6.2f} {base_cpu:18.2f}")
    print(f"{'(b) EST simplereenroll over TLS, a handshake per device':<62} {est_rate:8.1f} "
          f"{est_rate / base_rate:6.2f} {est_cpu:18.2f}")
    print(f"{'(c) EST simplereenroll over TLS, one kept-alive connection':<62} {ka_rate:8.1f} "
          f"{ka_rate / base_rate:6.2f} {ka_cpu:18.2f}")
    print(f"target (b) >= 0.5x (a): {'met' if est_rate / base_rate >= 0.5 else 'MISSED'}")


if __name__ == "__main__":
    main()
