"""`pki serve` as shipped (uvicorn in its own process), where in-process tests cannot look.

The source address an `acs:SourceIp` condition sees comes from the peer, or
from X-Forwarded-For only when the peer is a --trusted-proxy: uvicorn's own
proxy-header handling (which believes any loopback peer) must stay off.
"""

from __future__ import annotations

import pytest

from tests.support.http_app import make_user, serve_process
from pki.client import Client
from pki.config import Settings
from pki.services import audit, managed, open_context, policies
from pki.services.setup import initialise

ONLY_FROM_DOCUMENTATION_NET = {"Version": "1", "Statement": [{
    "Effect": "Allow", "Action": ["mq:GetCaCertificate", "mq:MqttInstanceAccess"], "Resource": "*",
    "Condition": {"IpAddress": {"acs:SourceIp": "198.51.100.0/24"}}}]}


@pytest.mark.slow
def test_forwarded_for_is_believed_only_from_trusted_proxies(tmp_path):
    settings = Settings.load(home=tmp_path / "home", environ={})
    initialise(settings)
    ctx = open_context(settings)
    try:
        ca = managed.create_ca(ctx, name="Proxy Root")
        policies.create_policy(ctx, "FromDocNet", ONLY_FROM_DOCUMENTATION_NET)
        user = make_user(ctx, "remote", "FromDocNet")
        spoofed = {"X-Forwarded-For": "198.51.100.7"}

        with serve_process(settings, tmp_path / "plain.log") as url:
            with Client(url, user.access_key_id, user.access_key_secret) as client:
                r = client.request("GET", f"/v1/cas/{ca.sn}", headers=spoofed)
        assert r.status_code == 403, r.text
        denied = audit.list_records(ctx, result="denied").items[-1]
        assert denied.source_ip == "127.0.0.1" and denied.request_id == r.headers["x-request-id"]

        with serve_process(settings, tmp_path / "proxied.log", "--trusted-proxy", "127.0.0.1/32") as url:
            with Client(url, user.access_key_id, user.access_key_secret) as client:
                assert client.request("GET", f"/v1/cas/{ca.sn}", headers=spoofed).status_code == 200
                assert client.request("GET", f"/v1/cas/{ca.sn}").status_code == 403
    finally:
        ctx.close()
