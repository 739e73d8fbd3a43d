"""schemathesis against /openapi.json: no 5xx, no answer that breaks the schema.

Every /v1 request is signed (pki.client.SigningAuth) by a user with
PkiAdministratorAccess, so the generated requests reach the services rather
than stopping at 401.  Runs on SQLite and PostgreSQL.

Two runs: data that fits the schema (every answer conforms to it), and data
that does not (schemathesis' negative mode, ``--mode negative`` in CLI terms:
wrong types, missing fields, values out of range), where the only rule is that
no input makes the server fail (no 5xx).
"""

from __future__ import annotations

import pytest

pytest.importorskip("schemathesis")

import schemathesis  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
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


def _run(ctx, *, mode: GenerationMode, checks, max_examples: int) -> None:
    admin = make_user(ctx, "schemathesis-admin", "PkiAdministratorAccess")
    ca = managed.create_ca(ctx, name="Fuzz Root")
    devices.issue_device(ctx, ca=ca.sn, generate=True, client_id="fuzz-device")
    schema = schemathesis.openapi.from_asgi("/openapi.json", app_for(ctx))
    auth = SigningAuth(admin.access_key_id, admin.access_key_secret)
    failures: dict[str, str] = {}
    operations = unsatisfiable = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=max_examples, deadline=None, suppress_health_check=list(HealthCheck),
                  derandomize=True, phases=[Phase.explicit, Phase.generate])
        def run(case):
            case.call_and_validate(auth=auth, checks=checks)

        try:
            run()
        except Unsatisfiable as exc:
            if mode is GenerationMode.NEGATIVE:
                # Every value fits the schema (a path segment of any string): no invalid input to send.
                unsatisfiable += 1
            else:
                failures[operation.label] = f"{type(exc).__name__}: {str(exc)[:1500]}"
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collect every failure, report all
            failures[operation.label] = f"{type(exc).__name__}: {str(exc)[:1500]}"
    assert operations >= 45 and operations - unsatisfiable >= 25
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())


@pytest.mark.slow
def test_api_conforms(ctx):
    _run(ctx, mode=GenerationMode.POSITIVE, checks=CHECKS, max_examples=15)


@pytest.mark.slow
def test_no_input_is_a_server_error(ctx):
    """Negative data (what ``schemathesis run --mode all`` adds to the positive run above): never a 5xx.

    Bounded by examples per operation (derandomized, so the same cases every run), about a
    minute per database (31 of the 58 operations have inputs that can break the schema).
    """
    _run(ctx, mode=GenerationMode.NEGATIVE, checks=[not_a_server_error], max_examples=25)
