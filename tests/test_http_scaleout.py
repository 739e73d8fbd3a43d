"""Scale-out: two `pki serve` processes on one PostgreSQL, 8 concurrent clients issuing through both.

No duplicate serial, no lost record, every issuance on the audit log exactly
once (matched by request id), the chain intact; and a nonce used on one
process is refused by the other.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from http_helpers import csr_pem, make_user
from pki.client import Client
from pki.config import Settings
from pki import signing
from pki.services import audit, devices, managed, open_context
from pki.services.setup import initialise

CLIENTS = 8
PER_CLIENT = 6


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url: str, proc: subprocess.Popen, log: Path) -> None:
    for _ in range(300):  # a bound on waiting for start-up, not a timed assertion
        if proc.poll() is not None:
            pytest.fail(f"pki serve exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/openapi.json", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    pytest.fail(f"pki serve did not start: {log.read_text()[-2000:]}")


@pytest.mark.postgres
@pytest.mark.slow
def test_two_servers_eight_clients(pg_url, tmp_path):
    settings = Settings.load(home=tmp_path / "home", database_url=pg_url, environ={})
    initialise(settings)
    ctx = open_context(settings)
    procs = []
    try:
        admin = make_user(ctx, "factory", "PkiFactoryProvisioner")
        ca = managed.create_ca(ctx, name="Scale Root")
        env = {**os.environ, "PKI_HOME": str(settings.home), "PKI_DATABASE_URL": pg_url,
               "PKI_MASTER_KEY_FILE": str(settings.master_key_file)}
        urls = []
        for i in range(2):
            port = _free_port()
            log = tmp_path / f"serve{i}.log"
            proc = subprocess.Popen(
                [sys.executable, "-m", "pki.cli.main", "serve", "--host", "127.0.0.1", "--port", str(port)],
                env=env, stdout=subprocess.DEVNULL, stderr=log.open("wb"))
            procs.append((proc, log))
            urls.append(f"http://127.0.0.1:{port}")
        for (proc, log), url in zip(procs, urls):
            _wait_ready(url, proc, log)

        def worker(index: int) -> list[tuple[str, str]]:
            out = []
            with Client(urls[index % 2], admin.access_key_id, admin.access_key_secret) as client:
                for n in range(PER_CLIENT):
                    r = client.request("POST", f"/v1/cas/{ca.sn}/devices",
                                       json={"csr_pem": csr_pem(f"c{index}-d{n}")})
                    assert r.status_code == 201, r.text
                    out.append((r.json()["sn"], r.headers["x-request-id"]))
            return out

        with ThreadPoolExecutor(CLIENTS) as pool:
            results = [pair for chunk in pool.map(worker, range(CLIENTS)) for pair in chunk]

        serials = [sn for sn, _ in results]
        assert len(serials) == CLIENTS * PER_CLIENT
        assert len(set(serials)) == len(serials), "duplicate serial"
        stored = devices.list_devices(ctx, ca=ca.sn, limit=1000).items
        assert sorted(d.sn for d in stored) == sorted(serials), "lost or extra record"

        records = audit.list_records(ctx, action="mq:IssueDeviceCertificate", limit=1000).items
        assert all(r.principal == "factory" and r.result == "success" for r in records)
        logged = [r.request_id for r in records]
        assert sorted(logged) == sorted(rid for _, rid in results), "issuance missing or doubled on the audit log"
        assert audit.verify(ctx).ok

        # A nonce spent on one process is refused by the other.
        headers = signing.signed_headers(access_key_id=admin.access_key_id, secret=admin.access_key_secret,
                                         method="GET", path=f"/v1/cas/{ca.sn}")
        first = httpx.get(f"{urls[0]}/v1/cas/{ca.sn}", headers=headers)
        second = httpx.get(f"{urls[1]}/v1/cas/{ca.sn}", headers=headers)
        assert first.status_code == 403  # signed fine; the provisioner may not read CAs
        assert second.status_code == 401 and second.json()["code"] == "nonce_replayed"
    finally:
        for proc, _log in procs:
            proc.terminate()
        for proc, _log in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        ctx.close()
