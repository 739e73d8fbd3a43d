"""The /v1 API: one module per endpoint family, and the one route table below.

Every route here needs a signed request (:mod:`pki.signing`) and is
authorized per operation (:func:`pki.services.authorize.authorize`); the paths
that need neither are :data:`pki.http.app.PUBLIC_PATHS`, and only those.
"""

from __future__ import annotations

from . import access, artifacts, ca_requests, cas, checks, dataplane, devices, keys, lifecycle, secrets, tokens

__all__ = ["ROUTE_TABLE", "PREFIX"]

PREFIX = "/v1"

#: (router, OpenAPI tag): every /v1 endpoint family.
ROUTE_TABLE = (
    (ca_requests.router, "CAs"),  # before cas: /cas/requests is not /cas/{ca_sn}
    (cas.router, "CAs"),
    (devices.router, "Device certificates"),
    (secrets.router, "Device secrets"),
    (dataplane.router, "Broker identities, permissions, blocklist and hook tokens"),
    (tokens.router, "Broker tokens"),
    (artifacts.router, "Artifacts"),
    (access.router, "Users, policies and audit"),
    (keys.router, "Key custody"),
    (lifecycle.router, "Certificate lifecycle"),
    (checks.router, "Fleet checks"),
)
