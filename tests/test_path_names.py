"""Names that are also API path segments (users, groups, policies, client ids): one validator, no dot-segments.

`secret register ..` used to succeed, and remote deactivation then reached /v1/deactivate; `user create ..`
and `secret group create a/b` made names the API could not address."""

from __future__ import annotations

import pytest

from tests.support import snapshot
from pki.errors import InvalidInput
from pki.ids import validate_path_name
from pki.services import policies, users
from pki.services import secrets as secret_service

DOCUMENT = {"Version": "1", "Statement": [{"Effect": "Allow", "Action": "mq:ListCaCertificate", "Resource": "*"}]}
BAD = [".", "..", "a/b", "a b", "a%2Fb", "", "x\x00", "a\\b", "é"]


@pytest.mark.parametrize("name", BAD)
def test_every_creation_refuses_names_a_path_cannot_carry(ctx, name):
    before = snapshot(ctx)
    for create, code in (
        (lambda: users.create_user(ctx, name), {"invalid_user_name"}),
        (lambda: policies.create_policy(ctx, name, DOCUMENT), {"invalid_policy_name"}),
        (lambda: secret_service.create_group(ctx, name=name), {"invalid_name"}),
        # empty or with control characters: the general name check speaks first
        (lambda: secret_service.register_secret(ctx, client_id=name), {"invalid_client_id", "invalid_name"}),
    ):
        with pytest.raises(InvalidInput) as err:
            create()
        assert err.value.code in code, (name, code)
    assert snapshot(ctx) == before


def test_dots_inside_a_name_are_fine(ctx):
    assert users.create_user(ctx, "a.b").name == "a.b"
    assert policies.create_policy(ctx, "Line.3:read", DOCUMENT).name == "Line.3:read"
    assert secret_service.create_group(ctx, name="...").name == "..."
    assert secret_service.register_secret(ctx, client_id=".dev.").client_id == ".dev."


def test_the_validator_bounds_length():
    assert validate_path_name("a" * 64, what="x", code="c") == "a" * 64
    with pytest.raises(InvalidInput):
        validate_path_name("a" * 65, what="x", code="c")
    assert validate_path_name("a" * 128, what="x", code="c", max_length=128)
