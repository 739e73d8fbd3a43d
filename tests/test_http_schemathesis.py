"""schemathesis against /openapi.json: no 5xx, no answer that breaks the schema.

Every /v1 request is signed (pki.client.SigningAuth) by a user with
PkiAdministratorAccess, so the generated requests reach the services rather
than stopping at 401.  Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import pytest

pytest.importorskip("schemathesis")

import schemathesis  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.checks import not_a_server_error  # noqa: E402

from tests.support.http_app import app_for, make_user  # noqa: E402
from pki.client import SigningAuth  # noqa: E402
from pki.services import devices, managed  # noqa: E402



CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance, status_code_conformance]


@pytest.mark.slow
def test_api_conforms(ctx):
    admin = make_user(ctx, "schemathesis-admin", "PkiAdministratorAccess")
    ca = managed.create_ca(ctx, name="Fuzz Root")
    devices.issue_device(ctx, ca=ca.sn, generate=True, client_id="fuzz-device")
    schema = schemathesis.openapi.from_asgi("/openapi.json", app_for(ctx))
    auth = SigningAuth(admin.access_key_id, admin.access_key_secret)
    failures: dict[str, str] = {}
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                  phases=[Phase.explicit, Phase.generate])
        def run(case):
            case.call_and_validate(auth=auth, checks=CHECKS)

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collect every failure, report all
            failures[operation.label] = f"{type(exc).__name__}: {str(exc)[:1500]}"
    assert operations >= 45
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())
