"""Refused policies (backtracking wildcards, times UTC cannot hold, over-long patterns) change nothing."""

from __future__ import annotations

import json

import pytest

from pki.errors import InvalidInput
from pki.services import policies, users
from pki.services.policy import MAX_PATTERN_CHARS
from tests.support import snapshot


def _doc(statement: dict) -> str:
    return json.dumps({"Version": "1", "Statement": [{"Effect": "Allow", "Resource": "*", **statement}]})


@pytest.mark.parametrize("statement", [
    {"Action": "mq:************Q"},
    {"Action": "mq:*", "Resource": "acs:mq:" + "*a" * 300},
    {"Action": "mq:*", "Resource": "acs:" + "a" * (MAX_PATTERN_CHARS + 1)},
    {"Action": "mq:*", "Condition": {"DateLessThan": {"acs:CurrentTime": "0001-01-01T00:00:00+01:00"}}},
    {"Action": "mq:*", "Condition": {"DateGreaterThan": {"acs:CurrentTime": "9999-12-31T23:59:59-01:00"}}},
], ids=["stars-action", "many-wildcards", "long-resource", "date-0001", "date-9999"])
def test_refused_policies_leave_the_store_unchanged(ctx, statement):
    users.create_user(ctx, "quinn")
    before = snapshot(ctx)
    with pytest.raises(InvalidInput) as err:
        policies.create_policy(ctx, "Refused", _doc(statement))
    assert err.value.code in ("invalid_policy", "policy_pattern_too_long")
    assert snapshot(ctx) == before
