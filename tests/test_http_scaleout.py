"""Scale-out: two `pki serve` processes on one PostgreSQL, 8 concurrent clients issuing through both.

No duplicate serial, no lost record, every issuance on the audit log exactly
once (matched by request id), the chain intact; and a nonce used on one
process is refused by the other.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.support.http_app import csr_pem, make_user, serve_process
from pki.client import Client
from pki.config import Settings
from pki import signing
from pki.services import audit, devices, managed, open_context, policies, users
from pki.services.setup import initialise

CLIENTS = 8
PER_CLIENT = 6


@pytest.mark.postgres
@pytest.mark.slow
def test_two_servers_eight_clients(pg_url, tmp_path):
    settings = Settings.load(home=tmp_path / "home", database_url=pg_url, environ={})
    initialise(settings)
    ctx = open_context(settings)
    try:
        admin = make_user(ctx, "factory", "PkiFactoryProvisioner")
        ca = managed.create_ca(ctx, name="Scale Root")
        with contextlib.ExitStack() as stack:
            urls = [stack.enter_context(serve_process(settings, tmp_path / f"serve{i}.log")) for i in range(2)]
            _eight_clients(ctx, ca, admin, urls)
            _nonce_shared(ca, admin, urls)
            _access_changes_reach_every_process(ctx, ca, admin, urls)
    finally:
        ctx.close()


def _eight_clients(ctx, ca, admin, urls) -> None:
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


def _nonce_shared(ca, admin, urls) -> None:
    """A nonce spent on one process is refused by the other."""
    headers = signing.signed_headers(access_key_id=admin.access_key_id, secret=admin.access_key_secret,
                                     method="GET", path=f"/v1/cas/{ca.sn}")
    first = httpx.get(f"{urls[0]}/v1/cas/{ca.sn}", headers=headers)
    second = httpx.get(f"{urls[1]}/v1/cas/{ca.sn}", headers=headers)
    assert first.status_code == 200  # signed fine; the provisioner may read the CA it provisions under
    assert second.status_code == 401 and second.json()["code"] == "nonce_replayed"


def _access_changes_reach_every_process(ctx, ca, admin, urls) -> None:
    """Both processes have the key, user and policies cached by now: a change made
    elsewhere (here, on the store directly) must still hold at their next request."""
    clients = [Client(url, admin.access_key_id, admin.access_key_secret) for url in urls]
    try:
        # The broker identities: PkiReadOnlyAccess reads them, the factory's own policy does not.
        def read_ca() -> list[int]:
            return [c.request("GET", "/v1/identities").status_code for c in clients]

        assert read_ca() == [403, 403]
        policies.attach_policy(ctx, "PkiReadOnlyAccess", user="factory")
        assert read_ca() == [200, 200]
        policies.detach_policy(ctx, "PkiReadOnlyAccess", user="factory")
        assert read_ca() == [403, 403]
        users.disable_user(ctx, "factory")
        answers = [c.request("GET", "/v1/identities") for c in clients]
        assert [(r.status_code, r.json()["code"]) for r in answers] == [(401, "invalid_access_key")] * 2
        users.enable_user(ctx, "factory")
        users.disable_access_key(ctx, admin.access_key_id)
        answers = [c.request("GET", "/v1/identities") for c in clients]
        assert [(r.status_code, r.json()["code"]) for r in answers] == [(401, "invalid_access_key")] * 2
    finally:
        for c in clients:
            c.close()
