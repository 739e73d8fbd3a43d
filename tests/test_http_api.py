"""The /v1 API: the CLI's operations over HTTP, problems, request ids, access log, limits, authorization."""

from __future__ import annotations

import json
import logging

import pytest

from tests.support.http_app import app_for, csr_pem, make_user, plain_client, signed_client
from pki.client import ApiError
from pki.http import PUBLIC_PATHS
from pki.services.authn import RateLimit
from pki.services import audit
from pki.services.policy import ACTIONS


@pytest.fixture
def admin(ctx):
    return make_user(ctx, "admin", "PkiAdministratorAccess")


@pytest.fixture
def api(ctx, admin):
    return signed_client(app_for(ctx), admin)


def test_ca_and_device_lifecycle(api):
    ca = api.call("POST", "/v1/cas", json={"name": "Factory Root"})
    assert ca["source"] == "managed" and ca["status"] == "ACTIVE"
    assert api.show_ca(ca["sn"].upper())["sn"] == ca["sn"]
    issued = api.issue_device(ca["sn"], csr_pem=csr_pem("dev-1"))
    assert issued["client_id"] == "dev-1" and "BEGIN CERTIFICATE" in issued["certificate_pem"]
    assert "private_key_pem" not in issued
    generated = api.issue_device(ca["sn"], generate=True, client_id="dev-2")
    assert "PRIVATE KEY" in generated["private_key_pem"]
    assert api.show_device(ca["sn"], issued["sn"])["status"] == "ACTIVE"
    page = api.list_devices(ca["sn"], limit=1)
    assert len(page["items"]) == 1 and page["next_cursor"]
    assert api.call("GET", "/v1/devices", params={"client_id": "dev-2"})["items"][0]["sn"] == generated["sn"]
    revoked = api.revoke_device(ca["sn"], issued["sn"], reason="keyCompromise")
    assert revoked["status"] == "REVOKED" and revoked["revocation_reason"] == "keyCompromise"
    assert api.call("POST", f"/v1/cas/{ca['sn']}/deactivate")["status"] == "INACTIVE"
    with pytest.raises(ApiError) as err:
        api.issue_device(ca["sn"], generate=True, client_id="dev-3")
    assert err.value.status == 409 and err.value.family == "invalid_state"


def test_secrets_users_policies_over_http(api):
    created = api.call("POST", "/v1/secrets", json={"client_id": "meter-1"})
    assert created["secret"]
    assert "secret" not in api.call("GET", "/v1/secrets/meter-1")
    assert api.call("GET", "/v1/secrets/meter-1", params={"reveal": True})["secret"] == created["secret"]
    user = api.call("POST", "/v1/users", json={"name": "line-1"})
    assert set(user) == {"name", "access_key_id", "access_key_secret"}
    api.call("POST", "/v1/policies/PkiFactoryProvisioner/attach", json={"user": "line-1"})
    decision = api.call("POST", "/v1/policies/simulate", json={"user": "line-1", "action": "device.issue"})
    assert decision["allowed"] is True
    decision = api.call("POST", "/v1/policies/simulate", json={"user": "line-1", "action": "ca.create"})
    assert decision["allowed"] is False and decision["decision"] == "implicit_deny"
    assert api.call("GET", "/v1/audit/verify")["ok"] is True
    assert {i["operation"] for i in api.call("GET", "/v1/policies/actions")["items"]} == set(ACTIONS)


def test_audit_records_carry_principal_ip_and_request_id(ctx, api):
    ca = api.call("POST", "/v1/cas", json={"name": "Root"})
    response = api.request("POST", f"/v1/cas/{ca['sn']}/devices", json={"generate": True, "client_id": "d1"},
                           headers={"X-Request-Id": "factory-line-7.42"})
    assert response.status_code == 201 and response.headers["x-request-id"] == "factory-line-7.42"
    records = audit.list_records(ctx, action="mq:IssueDeviceCertificate").items
    assert len(records) == 1
    assert (records[0].principal, records[0].request_id, records[0].source_ip) == (
        "admin", "factory-line-7.42", "testclient")


def test_request_id_generated_when_missing_or_malformed(api):
    r1 = api.request("GET", "/v1/cas")
    r2 = api.request("GET", "/v1/cas", headers={"X-Request-Id": "bad id with spaces"})
    assert r1.headers["x-request-id"] and r2.headers["x-request-id"] != "bad id with spaces"
    r3 = plain_client(api.http.app).get("/v1/cas")
    assert r3.json()["request_id"] == r3.headers["x-request-id"]


def test_permission_denied_is_403_and_audited(ctx):
    reader = make_user(ctx, "reader", "PkiReadOnlyAccess")
    client = signed_client(app_for(ctx), reader)
    assert client.call("GET", "/v1/cas")["items"] == []
    response = client.request("POST", "/v1/cas", json={"name": "Nope"})
    assert response.status_code == 403
    problem = response.json()
    assert problem["code"] == "access_denied" and problem["action"] == "mq:CreateCaCertificate"
    denied = audit.list_records(ctx, result="denied").items
    assert [(r.principal, r.action, r.request_id) for r in denied] == [
        ("reader", "mq:CreateCaCertificate", response.headers["x-request-id"])]


def test_problem_documents(api):
    r = api.request("GET", "/v1/cas/abcdef")
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "ca_not_found" or r.json()["status"] == 404
    r = api.request("POST", "/v1/cas", json={"name": "x", "unexpected": 1})
    assert r.status_code == 400 and r.json()["code"] == "invalid_request"
    r = api.request("POST", "/v1/secrets", json={"client_id": "x", "password": "hunter2-secret"})
    assert "hunter2-secret" not in r.text
    r = api.request("GET", "/v1/nowhere")
    assert r.status_code == 404 and r.json()["code"] == "route_not_found"


def test_body_cap(ctx, admin):
    client = signed_client(app_for(ctx, max_body=2048), admin)
    r = client.request("POST", "/v1/cas", json={"name": "x" * 4000})
    assert r.status_code == 413 and r.json()["code"] == "request_too_large"


def test_public_paths_need_no_signature(ctx, api):
    ca = api.call("POST", "/v1/cas", json={"name": "Root"})
    anonymous = plain_client(api.http.app)
    assert "BEGIN CERTIFICATE" in anonymous.get(PUBLIC_PATHS[0]).text
    assert anonymous.get(f"/crl/{ca['sn']}.pem").status_code == 200
    assert anonymous.get("/openapi.json").json()["openapi"].startswith("3.")
    assert anonymous.get("/docs").status_code == 200


def test_access_log_is_one_json_line_without_bodies(api, caplog):
    with caplog.at_level(logging.INFO, logger="pki.http.access"):
        api.request("POST", "/v1/secrets", json={"client_id": "logged-1"})
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "pki.http.access"]
    assert len(lines) == 1
    line = lines[0]
    assert set(line) == {"method", "path", "status", "duration_ms", "principal", "request_id", "source_ip"}
    assert (line["method"], line["path"], line["status"], line["principal"]) == ("POST", "/v1/secrets", 201, "admin")
    assert "logged-1" not in caplog.text and "secret" not in json.dumps(line).replace("/v1/secrets", "")


def test_rate_limit_answers_429_with_retry_after(ctx, admin):
    client = signed_client(app_for(ctx, rate_limit=RateLimit(rate=0.01, burst=2)), admin)
    assert client.request("GET", "/v1/cas").status_code == 200
    assert client.request("GET", "/v1/cas").status_code == 200
    r = client.request("GET", "/v1/cas")
    assert r.status_code == 429 and r.json()["code"] == "rate_limited"
    assert int(r.headers["retry-after"]) >= 1
    other = make_user(ctx, "other", "PkiReadOnlyAccess")  # buckets are per access key
    assert signed_client(client.http, other).request("GET", "/v1/cas").status_code == 200


def test_rate_limit_parse():
    assert RateLimit.parse("600/m") == RateLimit(rate=10.0, burst=10.0)
    assert RateLimit.parse("5/s", 20) == RateLimit(rate=5.0, burst=20.0)
    with pytest.raises(ValueError):
        RateLimit.parse("fast")


def test_publish_needs_a_server_directory(ctx, admin, tmp_path):
    client = signed_client(app_for(ctx), admin)
    assert client.request("POST", "/v1/artifacts/publish", json={}).json()["code"] == "publish_not_configured"
    client = signed_client(app_for(ctx, artifacts_dir=tmp_path / "out"), admin)
    client.call("POST", "/v1/cas", json={"name": "Root"})
    result = client.call("POST", "/v1/artifacts/publish", json={})
    assert result["generation"] == 1 and (tmp_path / "out" / "current").exists()
    # The password listener travels over HTTP like the certificate listener: both are the snippet's.
    client.call("POST", "/v1/artifacts/publish", json={"password_listener_port": 8884})
    snippet = (tmp_path / "out" / "current" / "mosquitto.conf").read_text()
    assert "listener 8883" in snippet and "listener 8884" in snippet and "password_file" in snippet
    r = client.request("POST", "/v1/artifacts/publish", json={"password_listener_port": 0})
    assert r.status_code == 400


def test_every_operation_has_an_endpoint(api):
    """Each operation of the action table is reachable over HTTP, except the file-writing provision."""
    import re

    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "pki" / "http" / "v1"
    source = "".join(path.read_text() for path in sorted(root.glob("*.py")))
    used = set(re.findall(r'"([a-z]+(?:\.[a-z]+)+)"', source))
    assert set(ACTIONS) - used == {"device.provision"}
