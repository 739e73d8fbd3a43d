"""HTTP service benchmark: `pki serve` beside cfssl's signing server and the in-process calls, in one run.

    .venv/bin/python scripts/bench_service.py [--n 2000] [--workers 1,2] [--database-url URL] [--cfssl PATH]

Measures, with keep-alive HTTP/1.1 clients on 127.0.0.1, each client its own
process (a lean `http.client` connection, so the client is not what is
measured; the same client code drives both servers):

(a) GET /v1/cas/{ca}/devices/{sn}, 1 client and 4 concurrent clients;
(b) POST /v1/cas/{ca}/devices from a CSR, 1 client and 4 concurrent clients;

for `pki serve --workers W` for each W given.  Every pki request is signed
(HMAC-SHA256, `pki.signing`), its nonce stored, its policy checked; each
issuance is stored and audited in the same transaction.  Beside it, when the
`cfssl` binary is installed (Debian: `apt-get install golang-cfssl`):

(c) `cfssl serve` /api/v1/cfssl/authsign (HMAC-authenticated) with its SQLite
    certdb recording each certificate: the nearest thing cfssl has to what
    pki does;
(d) `cfssl serve` /api/v1/cfssl/sign with no authentication and no database.

Both sign with an EC P-256 CA and answer with the PEM certificate.  Each row
prints its rate, its ratio to the in-process service call and to cfssl
(c) for the same number of clients, and the server's CPU time per request
(user+system of the server processes, from /proc), which does not depend on
the client.  CSRs are made before timing starts.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import http.client
import json
import multiprocessing
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import datetime as _dt  # noqa: E402

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

from pki import signing  # noqa: E402

CFSSL_AUTH_KEY = "00112233445566778899aabbccddeeff"
# cfssl's certdb schema for SQLite (certdb/sqlite/migrations in the cfssl repository).
CFSSL_SCHEMA = """
CREATE TABLE certificates (serial_number blob NOT NULL, authority_key_identifier blob NOT NULL, ca_label blob,
  status blob NOT NULL, reason int, expiry timestamp, revoked_at timestamp, pem blob NOT NULL,
  PRIMARY KEY(serial_number, authority_key_identifier));
CREATE TABLE ocsp_responses (serial_number blob NOT NULL, authority_key_identifier blob NOT NULL,
  body blob NOT NULL, expiry timestamp, PRIMARY KEY(serial_number, authority_key_identifier));
"""


def csr_pem(i: int) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return (x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"bench-{i}")]))
            .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, what: str) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{what} did not start")


def cpu_seconds(pid: int) -> float:
    """user+system CPU of a process and its children (uvicorn's workers), now."""
    total = 0
    pids = [pid]
    try:
        pids += [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        pass
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


# -- the client (one per process) ----------------------------------------------------------------


def _requests(spec: dict, bodies: list[bytes]):
    """The request maker a client process uses: (method, path, body, headers) per call."""
    kind = spec["kind"]
    if kind == "pki-get":
        def make(i):
            headers = signing.signed_headers(access_key_id=spec["key_id"], secret=spec["secret"], method="GET",
                                             path=spec["path"])
            return "GET", spec["path"], b"", headers
    elif kind == "pki-issue":
        def make(i):
            body = bodies[i]
            headers = signing.signed_headers(access_key_id=spec["key_id"], secret=spec["secret"], method="POST",
                                             path=spec["path"], body=body)
            headers["Content-Type"] = "application/json"
            return "POST", spec["path"], body, headers
    elif kind == "cfssl-authsign":
        key = bytes.fromhex(CFSSL_AUTH_KEY)

        def make(i):
            request = bodies[i]
            token = base64.b64encode(hmac.new(key, request, hashlib.sha256).digest()).decode()
            body = json.dumps({"token": token, "request": base64.b64encode(request).decode()}).encode()
            return "POST", spec["path"], body, {"Content-Type": "application/json"}
    elif kind == "cfssl-sign":
        def make(i):
            return "POST", spec["path"], bodies[i], {"Content-Type": "application/json"}
    else:
        raise ValueError(kind)
    return make


def _client(spec: dict, bodies: list[bytes], start_barrier, out_queue) -> None:
    make = _requests(spec, bodies)
    conn = http.client.HTTPConnection("127.0.0.1", spec["port"])
    expect = spec["status"]

    def one(i):
        method, path, body, headers = make(i)
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        if response.status != expect:
            raise SystemExit(f"{spec['kind']}: HTTP {response.status}: {data[:300]!r}")
        if spec["kind"].startswith("cfssl") and not json.loads(data)["success"]:
            raise SystemExit(f"{spec['kind']}: {data[:300]!r}")

    warm = spec["warm"]
    for i in range(warm):
        one(i)
    start_barrier.wait()
    start = time.monotonic()
    for i in range(warm, len(bodies)):
        one(i)
    out_queue.put((start, time.monotonic(), len(bodies) - warm))
    conn.close()


def measure(spec: dict, bodies_per_client: list[list[bytes]], server_pid: int) -> tuple[float, float]:
    """(requests/s, server CPU ms per request) with one client process per body list."""
    mp = multiprocessing.get_context("spawn")
    barrier = mp.Barrier(len(bodies_per_client) + 1)
    queue = mp.Queue()
    procs = [mp.Process(target=_client, args=(spec, bodies, barrier, queue)) for bodies in bodies_per_client]
    for p in procs:
        p.start()
    barrier.wait()
    cpu0 = cpu_seconds(server_pid)
    results = [queue.get(timeout=600) for _ in procs]
    cpu = cpu_seconds(server_pid) - cpu0
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise SystemExit(f"a {spec['kind']} client failed")
    count = sum(r[2] for r in results)
    seconds = max(r[1] for r in results) - min(r[0] for r in results)
    return count / seconds, cpu * 1000 / count


def split(bodies: list[bytes], clients: int) -> list[list[bytes]]:
    per = len(bodies) // clients
    return [bodies[c * per:(c + 1) * per] for c in range(clients)]


# -- the servers ---------------------------------------------------------------------------------


def run_pki(args, settings, user, ca_sn: str, device_sn: str, csrs, rows) -> None:
    for workers in args.workers:
        port = free_port()
        env = {**os.environ, "PKI_HOME": str(settings.home), "PKI_DATABASE_URL": settings.database_url,
               "PKI_MASTER_KEY_FILE": str(settings.master_key_file)}
        server = subprocess.Popen(
            [sys.executable, "-m", "pki.cli.main", "serve", "--port", str(port), "--workers", str(workers),
             "--no-access-log"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(port, server, "pki serve")
            time.sleep(0.5 * workers)  # every worker up, not just the listening socket
            base = {"port": port, "key_id": user.access_key_id, "secret": user.access_key_secret, "warm": 20}
            get_spec = {**base, "kind": "pki-get", "path": f"/v1/cas/{ca_sn}/devices/{device_sn}", "status": 200}
            issue_spec = {**base, "kind": "pki-issue", "path": f"/v1/cas/{ca_sn}/devices", "status": 201}
            label = f"pki serve --workers {workers}"
            for clients in (1, 4):
                rate, cpu = measure(get_spec, split([b""] * (args.n + 20 * clients), clients), server.pid)
                rows.append((label, "GET device", clients, rate, cpu))
            for clients in (1, 4):
                bodies = [json.dumps({"csr_pem": next(csrs)}).encode() for _ in range(args.n + 20 * clients)]
                rate, cpu = measure(issue_spec, split(bodies, clients), server.pid)
                rows.append((label, "issue from CSR", clients, rate, cpu))
        finally:
            server.terminate()
            server.wait(timeout=30)


def run_cfssl(args, tmp: Path, csrs, rows) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cfssl bench root")])
    now = _dt.datetime.now(_dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + _dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(key, hashes.SHA256()))
    d = tmp / "cfssl"
    d.mkdir()
    (d / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "ca-key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                     serialization.PrivateFormat.TraditionalOpenSSL,
                                                     serialization.NoEncryption()))
    profile = {"expiry": "8760h", "usages": ["digital signature", "client auth"]}
    setups = [
        ("cfssl authsign + certdb", "cfssl-authsign", "/api/v1/cfssl/authsign",
         {"signing": {"default": {**profile, "auth_key": "bench"}},
          "auth_keys": {"bench": {"type": "standard", "key": CFSSL_AUTH_KEY}}}, True),
        ("cfssl sign (no auth, no db)", "cfssl-sign", "/api/v1/cfssl/sign", {"signing": {"default": profile}}, False),
    ]
    for label, kind, path, config, with_db in setups:
        (d / "config.json").write_text(json.dumps(config))
        argv = [args.cfssl, "serve", "-ca", str(d / "ca.pem"), "-ca-key", str(d / "ca-key.pem"),
                "-config", str(d / "config.json"), "-loglevel", "4"]
        db = d / "certs.db"
        if with_db:
            db.unlink(missing_ok=True)
            with sqlite3.connect(db) as conn:
                conn.executescript(CFSSL_SCHEMA)
            (d / "db.json").write_text(json.dumps({"driver": "sqlite3", "data_source": str(db)}))
            argv += ["-db-config", str(d / "db.json")]
        port = free_port()
        server = subprocess.Popen(argv + ["-address", "127.0.0.1", "-port", str(port)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(port, server, "cfssl serve")
            spec = {"port": port, "kind": kind, "path": path, "status": 200, "warm": 20}
            for clients in (1, 4):
                bodies = [json.dumps({"certificate_request": next(csrs)}).encode()
                          for _ in range(args.n + 20 * clients)]
                rate, cpu = measure(spec, split(bodies, clients), server.pid)
                rows.append((label, "issue from CSR", clients, rate, cpu))
        finally:
            server.terminate()
            server.wait(timeout=30)
        if with_db:
            with sqlite3.connect(db) as conn:
                stored = conn.execute("SELECT count(*) FROM certificates").fetchone()[0]
            rows.append((label, f"(certdb rows: {stored})", 0, 0.0, 0.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="requests per measurement")
    parser.add_argument("--workers", default="1,2", help="pki serve --workers values, comma separated")
    parser.add_argument("--database-url", help="default: SQLite in a temporary directory")
    parser.add_argument("--cfssl", default=shutil.which("cfssl"), help="the cfssl binary (default: on PATH)")
    args = parser.parse_args()
    args.workers = [int(w) for w in args.workers.split(",")]

    from pki.config import Settings
    from pki.services import devices, managed, policies, users
    from pki.services.context import open_context
    from pki.services.setup import initialise

    tmp = Path(tempfile.mkdtemp(prefix="pki-bench-service-"))
    settings = Settings.load(home=tmp / "home", database_url=args.database_url, environ={})
    initialise(settings)
    ctx = open_context(settings)
    name = f"bench-{os.getpid()}-{int(time.time())}"  # a --database-url may hold earlier runs
    user = users.create_user(ctx, name)
    policies.attach_policy(ctx, "PkiAdministratorAccess", user=name)
    ca = managed.create_ca(ctx, name="Bench Root")
    n = args.n
    per_issue_run = n + 80
    total = per_issue_run * (2 * len(args.workers) + 4) + n
    print(f"database: {'sqlite' if settings.database_url.startswith('sqlite') else 'postgresql'}; "
          f"n={n} per measurement; {os.cpu_count()} CPUs; making {total} CSRs first", flush=True)
    csrs = iter([csr_pem(i) for i in range(total)])

    def timed(fn, count: int) -> float:
        start = time.perf_counter()
        for _ in range(count):
            fn()
        return count / (time.perf_counter() - start)

    sample = devices.issue_device(ctx, ca=ca.sn, csr=next(csrs).encode())
    base_get = timed(lambda: devices.show_device(ctx, ca=ca.sn, sn=sample.device.sn), n)
    base_issue = timed(lambda: devices.issue_device(ctx, ca=ca.sn, csr=next(csrs).encode()), n // 2)
    print(f"in-process show_device:            {base_get:8,.0f}/s")
    print(f"in-process issue_device (CSR):     {base_issue:8,.0f}/s", flush=True)
    ctx.close()

    rows: list[tuple] = []
    run_pki(args, settings, user, ca.sn, sample.device.sn, csrs, rows)
    if args.cfssl:
        run_cfssl(args, tmp, csrs, rows)
    cfssl_rate = {r[2]: r[3] for r in rows if r[0].startswith("cfssl authsign") and r[2]}
    print(f"{'server':<30} {'request':<16} {'clients':>7} {'rate':>9} {'in-proc':>8} {'vs cfssl':>9} "
          f"{'server CPU/req':>15}")
    for label, what, clients, rate, cpu in rows:
        if not clients:
            print(f"{label:<30} {what}")
            continue
        base = base_get if what.startswith("GET") else base_issue
        versus = (f"{rate / cfssl_rate[clients]:8.2f}x" if what.startswith("issue") and clients in cfssl_rate
                  else f"{'-':>9}")
        print(f"{label:<30} {what:<16} {clients:>7} {rate:8,.0f}/s {rate / base:7.2f}x {versus} {cpu:11.3f} ms")
    if not args.cfssl:
        print("cfssl: not run (not on PATH, or --cfssl ''); Debian: apt-get install golang-cfssl")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
