"""The broker hooks' fast path: what ``pki serve`` runs (:func:`pki.http.app.served`) answers /broker/
without FastAPI, with PkiMiddleware's request id and access log, and one reading of the revision
counters per call, which still sees every change at the next call."""

from __future__ import annotations

import json
import logging

import pytest

from pki.http.app import served
from pki.services.dataplane import blocklist, hook_tokens, identities, permissions
from pki.store import dataplane_repos
from pki.store.engine import Store
from tests.support.http_app import app_for, plain_client


@pytest.fixture
def hooks_client(ctx):
    identities.add(ctx, username="app", password="app-pass-1")
    permissions.add(ctx, effect="allow", action="publish", topic="up/${clientid}", all_clients=True)
    token = hook_tokens.create(ctx, name="broker-1")["token"]
    client = plain_client(served(app_for(ctx)))
    client.headers["Authorization"] = f"Bearer {token}"
    return client


def _authz(client, clientid="c-1", topic="up/c-1"):
    return client.post("/broker/emqx/authz", json={"username": "app", "clientid": clientid, "peerhost": "10.0.0.1",
                                                   "action": "publish", "topic": topic})


def test_served_answers_hooks_and_the_rest(hooks_client):
    r = hooks_client.post("/broker/emqx/authn", json={"username": "app", "password": "app-pass-1",
                                                      "clientid": "c-1", "peerhost": "10.0.0.1"})
    assert r.status_code == 200 and r.json() == {"result": "allow", "is_superuser": False}
    assert r.headers["content-type"] == "application/json"
    assert len(r.headers["x-request-id"]) == 32
    assert _authz(hooks_client).json() == {"result": "allow"}
    assert _authz(hooks_client, topic="up/other").json() == {"result": "deny"}
    # Everything else is still the FastAPI app behind.
    assert hooks_client.get("/ca-bundle.pem").status_code == 200
    assert hooks_client.get("/v1/cas").status_code == 401


def test_unknown_hook_and_wrong_method(hooks_client):
    r = hooks_client.post("/broker/emqx/nothing", json={})
    assert r.status_code == 404 and r.json()["code"] == "route_not_found"
    r = hooks_client.get("/broker/emqx/authn")
    assert r.status_code == 405 and r.json()["code"] == "method_not_allowed"
    assert r.headers["allow"] == "POST"
    r = hooks_client.post("/broker/emqx/authz", content=b"{", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["code"] == "invalid_hook_request"


def test_body_cap_applies_to_hooks(ctx):
    token = hook_tokens.create(ctx, name="b")["token"]
    client = plain_client(served(app_for(ctx)))
    r = client.post("/broker/emqx/authn", content=b"{" + b" " * (2 << 20) + b"}",
                    headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["code"] == "request_too_large"


def test_access_log_names_the_hook_token(hooks_client, caplog):
    logger = logging.getLogger("pki.http.access")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(caplog.handler)
    try:
        _authz(hooks_client)
    finally:
        logger.removeHandler(caplog.handler)
        logger.setLevel(level)
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "pki.http.access"]
    assert lines and lines[-1]["path"] == "/broker/emqx/authz" and lines[-1]["principal"] == "hook-token:broker-1"


def test_one_revision_statement_per_call(hooks_client, monkeypatch):
    reads = []
    original = dataplane_repos.RevisionReader.read

    def counting(self, instances):
        reads.append(tuple(instances))
        return original(self, instances)

    monkeypatch.setattr(dataplane_repos.RevisionReader, "read", counting)
    for _ in range(3):
        assert _authz(hooks_client).json() == {"result": "allow"}
    # The token, the blocklist, the superusers and the rules: one statement for all of them, per call.
    assert len(reads) == 3
    assert all(dataplane_repos.HOOK_TOKENS in r for r in reads)


def test_a_change_is_seen_at_the_next_call(ctx, hooks_client):
    assert _authz(hooks_client).json() == {"result": "allow"}
    blocklist.add(ctx, client_id="c-1")
    assert _authz(hooks_client).json() == {"result": "deny"}
    # A change made through another connection, as another process would make it.
    other = Store(ctx.store.url)
    try:
        with other.transaction() as session:
            dataplane_repos.bump_revision(session, ctx.instance)
    finally:
        other.engine.dispose()
    assert _authz(hooks_client, clientid="c-2", topic="up/c-2").json() == {"result": "allow"}


def test_revision_reader_sees_other_connections_commits(ctx):
    reader = dataplane_repos.RevisionReader(ctx.store.engine)
    before = reader.read((ctx.instance, "elsewhere"))
    assert before["elsewhere"] == 0
    other = Store(ctx.store.url)
    try:
        for _ in range(2):
            with other.transaction() as session:
                dataplane_repos.bump_revision(session, "elsewhere")
    finally:
        other.engine.dispose()
    after = reader.read((ctx.instance, "elsewhere"))
    assert after == {ctx.instance: before[ctx.instance], "elsewhere": 2}


def test_hook_decisions_are_counted_on_metrics_without_client_ids(hooks_client):
    def count(text: str, **labels) -> float:
        # Summed over the series that carry these labels: other tests in this process may have made
        # series that differ in another label (the counters are process-wide).
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("pki_broker_hook_decisions_total{")
                   and all(f'{k}="{v}"' in line for k, v in labels.items()))

    before = hooks_client.get("/metrics").text
    _authz(hooks_client)
    _authz(hooks_client, topic="up/other")
    after = hooks_client.get("/metrics").text
    assert count(after, hook="emqx.authz", result="allow") == count(before, hook="emqx.authz", result="allow") + 1
    assert count(after, hook="emqx.authz", result="deny") == count(before, hook="emqx.authz", result="deny") + 1
    assert "c-1" not in after and "up/other" not in after
