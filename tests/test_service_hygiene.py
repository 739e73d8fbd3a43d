"""Service hygiene: /healthz, /readyz, /metrics, the offline docs and the OpenAPI security scheme."""

from __future__ import annotations

import re

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.http_app import app_for, csr_pem, make_user, plain_client, signed_client
from pki.http import metrics
from pki.services import crls, devices, managed


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_healthz_and_readyz_need_no_credentials(ctx):
    anonymous = plain_client(app_for(ctx))
    r = anonymous.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    r = anonymous.get("/readyz")
    assert r.status_code == 200 and r.json()["status"] == "ready"


def test_readyz_is_503_when_the_store_does_not_answer(tmp_path):
    from pki.config import Settings
    from pki.errors import StoreError

    def broken():
        raise StoreError("the database does not answer", code="store_unavailable")

    anonymous = plain_client(app_for_factory(broken))
    r = anonymous.get("/readyz")
    assert r.status_code == 503 and r.json()["code"] == "store_unavailable"
    assert anonymous.get("/healthz").status_code == 200  # the process itself is up
    assert anonymous.get("/metrics").status_code == 200  # counters still show, without CRL gauges


def app_for_factory(factory):
    from pki.http import create_app

    return create_app(factory)


def test_metrics_counts_requests_by_route_template_without_identifiers(ctx):
    app = app_for(ctx)
    admin = signed_client(app, make_user(ctx, "admin", "PkiAdministratorAccess"))
    anonymous = plain_client(app)
    root = managed.create_ca(ctx, name="Metrics Root")
    crls.current_crl(ctx, ca=root.sn)
    before = _samples(anonymous.get("/metrics").text)
    issued = admin.call("POST", f"/v1/cas/{root.sn}/devices", json={"csr_pem": csr_pem("secret-client-id-42")})
    admin.call("GET", f"/v1/cas/{root.sn}/devices/{issued['device']['sn'] if 'device' in issued else issued['sn']}")
    anonymous.get("/no/such/path")
    metrics.record_hook_decision("emqx.authn", "deny", "unknown_client")
    metrics.record_hook_decision("emqx.authn", "deny", "Client-ID dev-7")  # not a code: becomes "other"
    r = anonymous.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    after = _samples(text)

    def grew(name, **labels):
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert grew("pki_http_requests_total", method="POST", route="/v1/cas/{ca_sn}/devices", status="201") == 1
    assert grew("pki_http_requests_total", method="GET", route="/v1/cas/{ca_sn}/devices/{sn}", status="200") == 1
    assert grew("pki_http_requests_total", method="GET", route="unmatched", status="404") == 1
    assert grew("pki_http_request_duration_seconds_count", method="POST", route="/v1/cas/{ca_sn}/devices") == 1
    assert grew("pki_certificates_issued_total", kind="device") == 1
    assert grew("pki_broker_hook_decisions_total", hook="emqx.authn", result="deny", reason="unknown_client") == 1
    assert grew("pki_broker_hook_decisions_total", hook="emqx.authn", result="deny", reason="other") == 1
    age = _value(after, "pki_crl_age_seconds", ca="Metrics Root", source="signed")
    assert age >= 0 and _value(after, "pki_crl_next_update_seconds", ca="Metrics Root", source="signed") > 0
    # No client id, no serial (of the CA or the device), anywhere in the exposition.
    assert "secret-client-id-42" not in text and "dev-7" not in text
    serial = issued["device"]["sn"] if "device" in issued else issued["sn"]
    assert serial not in text.lower() and root.sn not in text.lower()
    assert not re.search(r"[0-9a-f]{20,}", text)


def test_metrics_token(ctx):
    anonymous = plain_client(app_for(ctx, metrics_token="s3cret-token"))
    assert anonymous.get("/metrics").status_code == 401
    r = anonymous.get("/metrics", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and r.json()["code"] == "metrics_token_invalid"
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert anonymous.get("/metrics", headers={"Authorization": "Basic s3cret-token"}).status_code == 401
    ok = anonymous.get("/metrics", headers={"Authorization": "Bearer s3cret-token"})
    assert ok.status_code == 200 and "pki_http_requests_total" in ok.text
    # The other service paths stay open.
    assert anonymous.get("/healthz").status_code == 200


def test_docs_assets_are_served_from_the_package(ctx):
    anonymous = plain_client(app_for(ctx))
    r = anonymous.get("/docs")
    assert "default-src 'self'" in r.headers["content-security-policy"]
    page = r.text
    assert "cdn" not in page.lower() and "https://" not in page
    assets = re.findall(r'(?:src|href)="(/docs/assets/[^"]+)"', page)
    assert {"/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css"} <= set(assets)
    for path in assets:
        r = anonymous.get(path)
        assert r.status_code == 200 and len(r.content) > 1000, path
    redoc = anonymous.get("/redoc").text
    assert "https://" not in redoc and "/docs/assets/redoc.standalone.js" in redoc
    assert anonymous.get("/docs/assets/redoc.standalone.js").status_code == 200
    assert anonymous.get("/docs/assets/..%2f..%2fpyproject.toml").status_code == 404
    assert anonymous.get("/docs/assets/core.py").status_code == 404


def test_openapi_declares_the_signing_scheme(ctx):
    schema = plain_client(app_for(ctx)).get("/openapi.json").json()
    scheme = schema["components"]["securitySchemes"]["PkiSignature"]
    assert scheme["type"] == "apiKey" and scheme["in"] == "header" and scheme["name"] == "X-Pki-Access-Key"
    v1 = [op for path, item in schema["paths"].items() if path.startswith("/v1/") for op in item.values()]
    assert v1 and all(op.get("security") == [{"PkiSignature": []}] for op in v1)
    public = schema["paths"]["/ca-bundle.pem"]["get"]
    assert "security" not in public
    # No reference dangles (ReDoc refuses the whole document over one).
    import json

    text = json.dumps(schema)
    for name in set(re.findall(r"#/components/schemas/([A-Za-z0-9_.-]+)", text)):
        assert name in schema["components"]["schemas"], name
