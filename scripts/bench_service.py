"""HTTP service benchmark: `pki serve` against the in-process service calls, in one run.

    .venv/bin/python scripts/bench_service.py [--n 2000] [--workers 1] [--database-url URL]

Measures, over keep-alive httpx clients on 127.0.0.1 (every request signed,
nonce stored, policy checked, audit record written for issuance):
(a) GET /v1/cas/{ca}/devices/{sn}, sequential and 4 concurrent clients;
(b) POST /v1/cas/{ca}/devices from a CSR, sequential and 4 concurrent;
and prints each with its ratio to the in-process service call
(devices.show_device / devices.issue_device) measured in the same run.
CSRs are made before timing starts.  cfssl is run beside it only when installed
(it is not started here otherwise).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pki.client import Client  # noqa: E402
from pki.config import Settings  # noqa: E402
from pki.services import access, devices, managed  # noqa: E402
from pki.services.context import open_context  # noqa: E402
from pki.services.setup import initialise  # noqa: E402


def csr_pem(i: int) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return (x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"bench-{i}")]))
            .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode())


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds else float("inf")


def timed(fn, n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return rate(n, time.perf_counter() - start)


def timed_concurrent(make_fn, n: int, threads: int) -> float:
    fns = [make_fn(t) for t in range(threads)]
    per = n // threads
    barrier = threading.Barrier(threads + 1)

    def run(t):
        barrier.wait()
        for i in range(per):
            fns[t](t * per + i)

    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    barrier.wait()
    start = time.perf_counter()
    for w in workers:
        w.join()
    return rate(per * threads, time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="requests per measurement")
    parser.add_argument("--workers", type=int, default=1, help="pki serve --workers")
    parser.add_argument("--database-url", help="default: SQLite in a temporary directory")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="pki-bench-service-"))
    settings = Settings.load(home=tmp / "home", database_url=args.database_url, environ={})
    initialise(settings)
    ctx = open_context(settings)
    user = access.create_user(ctx, "bench")
    access.attach_policy(ctx, "PkiAdministratorAccess", user="bench")
    ca = managed.create_ca(ctx, name="Bench Root")
    n = args.n
    total_csrs = 4 * n + 200
    print(f"database: {'sqlite' if settings.database_url.startswith('sqlite') else 'postgresql'}; "
          f"pki serve --workers {args.workers}; n={n} per measurement; {os.cpu_count()} CPUs")
    csrs = [csr_pem(i) for i in range(total_csrs)]
    next_csr = iter(range(total_csrs))
    lock = threading.Lock()

    def take_csr() -> str:
        with lock:
            return csrs[next(next_csr)]

    # -- in process ---------------------------------------------------------------------
    sample = devices.issue_device(ctx, ca=ca.sn, csr=take_csr().encode())
    base_get = timed(lambda i: devices.show_device(ctx, ca=ca.sn, sn=sample.device.sn), n)
    base_issue = timed(lambda i: devices.issue_device(ctx, ca=ca.sn, csr=take_csr().encode()), n // 2)
    print(f"in-process show_device:           {base_get:8,.0f}/s")
    print(f"in-process issue_device (CSR):    {base_issue:8,.0f}/s")

    # -- over HTTP ----------------------------------------------------------------------
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PKI_HOME": str(settings.home), "PKI_DATABASE_URL": settings.database_url,
           "PKI_MASTER_KEY_FILE": str(settings.master_key_file)}
    server = subprocess.Popen([sys.executable, "-m", "pki.cli.main", "serve", "--port", str(port), "--workers",
                               str(args.workers)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(url + "/openapi.json").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        clients = [Client(url, user.access_key_id, user.access_key_secret) for _ in range(4)]
        get_path = f"/v1/cas/{ca.sn}/devices/{sample.device.sn}"
        issue_path = f"/v1/cas/{ca.sn}/devices"

        def get(client):
            def call(i):
                r = client.request("GET", get_path)
                assert r.status_code == 200, r.text
            return call

        def issue(client):
            def call(i):
                r = client.request("POST", issue_path, json={"csr_pem": take_csr()})
                assert r.status_code == 201, r.text
            return call

        get(clients[0])(0)  # warm up: connection, unsealed key, parsed CA
        issue(clients[0])(0)
        rows = [
            ("GET device, 1 client", timed(get(clients[0]), n), base_get),
            ("GET device, 4 clients", timed_concurrent(lambda t: get(clients[t]), n, 4), base_get),
            ("issue from CSR, 1 client", timed(issue(clients[0]), n), base_issue),
            ("issue from CSR, 4 clients", timed_concurrent(lambda t: issue(clients[t]), n, 4), base_issue),
        ]
        for label, value, base in rows:
            print(f"HTTP {label:<26} {value:8,.0f}/s   {value / base:5.2f}x in-process")
        for c in clients:
            c.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
        ctx.close()
    if shutil.which("cfssl"):
        print("cfssl is installed: run `cfssl serve` beside this for the comparison (not automated here)")
    else:
        print("cfssl: not installed on this machine; no side-by-side figure")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
