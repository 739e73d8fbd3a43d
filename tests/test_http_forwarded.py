"""X-Forwarded-For behind a trusted proxy: several header lines are one list, and only addresses count."""

from __future__ import annotations

import asyncio
import json

import pytest

from pki.http.middleware import PkiMiddleware


async def _echo_source(scope, receive, send):
    body = json.dumps({"source_ip": scope["state"]["source_ip"]}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def _call(peer: str, *xff_lines: str) -> tuple[int, dict]:
    app = PkiMiddleware(_echo_source, max_body=1024, trusted_proxies=["10.0.0.0/8"])
    scope = {"type": "http", "method": "GET", "path": "/x", "client": (peer, 4000),
             "headers": [(b"x-forwarded-for", line.encode("latin-1")) for line in xff_lines]}
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    status = sent[0]["status"]
    return status, json.loads(b"".join(m.get("body", b"") for m in sent[1:]))


def test_two_header_lines_are_read_as_one_list():
    # The client wrote the first line; the trusted proxy appended the second.  The source is the
    # right-most hop that is not a trusted proxy: the proxy's view of its peer.
    assert _call("10.0.0.1", "198.51.100.7", "203.0.113.9") == (200, {"source_ip": "203.0.113.9"})
    assert _call("10.0.0.1", "198.51.100.7, 203.0.113.9", "10.0.0.2") == (200, {"source_ip": "203.0.113.9"})


def test_an_untrusted_peer_is_its_own_source_whatever_it_sends():
    assert _call("192.0.2.1", "198.51.100.7", "garbage") == (200, {"source_ip": "192.0.2.1"})


@pytest.mark.parametrize("value", ["not-an-ip", "198.51.100.7<script>", "unknown", "1.2.3.4:80"])
def test_a_hop_that_is_not_an_address_is_refused_from_a_trusted_proxy(value):
    status, body = _call("10.0.0.1", value)
    assert status == 400 and body["code"] == "invalid_forwarded_for" and body["family"] == "invalid_input"
    assert value not in body["detail"]


def test_addresses_are_normalised():
    assert _call("10.0.0.1", "2001:DB8::1") == (200, {"source_ip": "2001:db8::1"})


def test_a_refused_forwarded_for_changes_nothing_in_the_store(ctx):
    # Through the whole app and a signed write: refused before authentication, so not even the
    # nonce is spent.
    from starlette.testclient import TestClient

    from pki.client import Client
    from tests.support import snapshot
    from tests.support.http_app import app_for, make_user

    user = make_user(ctx, "proxied", "PkiAdministratorAccess")
    tc = TestClient(app_for(ctx, trusted_proxies=["10.0.0.0/8"]), raise_server_exceptions=False,
                    client=("10.0.0.1", 4000))
    api = Client("http://testserver", user.access_key_id, user.access_key_secret, http=tc)
    before = snapshot(ctx)
    refused = api.request("POST", "/v1/cas", json={"name": "Via Proxy"}, headers={"X-Forwarded-For": "not-an-ip"})
    assert refused.status_code == 400 and refused.json()["code"] == "invalid_forwarded_for"
    assert snapshot(ctx) == before
    accepted = api.request("POST", "/v1/cas", json={"name": "Via Proxy"}, headers={"X-Forwarded-For": "198.51.100.7"})
    assert accepted.status_code == 201, accepted.text
