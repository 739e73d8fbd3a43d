"""Listing device secrets' client ids needs an action of its own, not instance access alone.

mq:MqttInstanceAccess is a dependent of most actions, so every instance user
holds it (the factory provisioner included): it alone must not list every
device's credential.
"""

from __future__ import annotations

import datetime as _dt

import pytest

from pki.services import secrets as secret_service
from pki.services.policy import ACTIONS, SYSTEM_POLICIES, RequestContext, authorize, parse_policy
from tests.support.http_app import app_for, make_user, signed_client

PROD = "acs:mq:local:default:prod-eu"

CONTEXT = RequestContext(now=_dt.datetime(2026, 3, 1, 12, 0, tzinfo=_dt.timezone.utc), source_ip="10.1.2.3",
                         secure_transport=True)


def _may_list(*policies) -> bool:
    return authorize(list(policies), operation="secret.list", resource=PROD, context=CONTEXT).allowed


def test_secret_list_has_its_own_action_with_instance_access_as_dependent():
    assert ACTIONS["secret.list"].actions == ("mq:ListDeviceCredential", "mq:MqttInstanceAccess")


@pytest.mark.parametrize("policy,allowed", [
    ("PkiAdministratorAccess", True),
    ("PkiFullAccess", True),
    ("PkiReadOnlyAccess", True),
    ("PkiRevoker", True),
    ("PkiFactoryProvisioner", False),
])
def test_system_policies_and_secret_list(policy, allowed):
    assert _may_list(SYSTEM_POLICIES[policy]) is allowed


def test_instance_access_alone_does_not_list():
    only_instance = parse_policy({"Version": "1", "Statement": [
        {"Effect": "Allow", "Action": "mq:MqttInstanceAccess", "Resource": "*"}]}, name="OnlyInstance")
    assert not _may_list(only_instance)
    both = parse_policy({"Version": "1", "Statement": [
        {"Effect": "Allow", "Action": ["mq:ListDeviceCredential", "mq:MqttInstanceAccess"], "Resource": "*"}]},
        name="Both")
    assert _may_list(both)


def test_factory_provisioner_cannot_list_secrets_over_http(ctx):
    secret_service.register_secret(ctx, client_id="dev-1")
    factory = make_user(ctx, "factory", "PkiFactoryProvisioner")
    reader = make_user(ctx, "reader", "PkiReadOnlyAccess")
    app = app_for(ctx)
    r = signed_client(app, factory).request("GET", "/v1/secrets")
    assert r.status_code == 403, r.text
    assert (r.json()["code"], r.json()["action"]) == ("access_denied", "mq:ListDeviceCredential")
    listed = signed_client(app, reader).call("GET", "/v1/secrets")
    assert [s["client_id"] for s in listed["items"]] == ["dev-1"]
