"""pki.client: signing httpx client, errors as PkiError, configuration from the environment."""

from __future__ import annotations

import pytest

from tests.support.http_app import app_for, make_user, signed_client
from pki.client import ApiError, from_env
from pki.errors import ConfigError, PkiError


def test_client_round_trip_and_errors(ctx):
    admin = make_user(ctx, "admin", "PkiAdministratorAccess")
    client = signed_client(app_for(ctx), admin)
    ca = client.call("POST", "/v1/cas", json={"name": "Root"})
    dev = client.issue_device(ca["sn"], generate=True, client_id="d1")
    assert client.list_devices(ca["sn"], status="ACTIVE")["items"][0]["sn"] == dev["sn"]
    with pytest.raises(ApiError) as err:
        client.show_device(ca["sn"], "abcdef")
    assert isinstance(err.value, PkiError)
    assert err.value.status == 404 and err.value.family == "not_found" and err.value.code
    with pytest.raises(ApiError) as err:
        client.call("POST", "/v1/secrets", json={"client_id": 5})
    assert err.value.code == "invalid_request" and err.value.family == "invalid_input"


def test_from_env():
    assert from_env({}) is None
    with pytest.raises(ConfigError):
        from_env({"PKI_SERVER": "http://127.0.0.1:1"})
    client = from_env({"PKI_SERVER": "http://127.0.0.1:1", "PKI_ACCESS_KEY_ID": "AK.x", "PKI_ACCESS_KEY_SECRET": "s"})
    assert client.auth.access_key_id == "AK.x"
    client.close()
