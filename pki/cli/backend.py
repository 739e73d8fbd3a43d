"""The one place where the CLI chooses between the local store and a server.

Each CLI operation is one row of :data:`OPERATIONS`: how to run it on the
local store (a service call) and how to ask a server for it (method, path,
body).  A command calls ``backend.call(state, "ca.register", certificate=...,
...)`` with the values it parsed, and gets the same JSON-able answer either
way: a local result's ``as_json()`` or the server's JSON, which is the same
shape by construction (the HTTP layer renders the services' models).  Errors
are PkiErrors either way (:class:`pki.client.ApiError` carries the server's
code and family), so ``main`` prints and exits the same.

Operation names are the access-policy operation names (``pki policy actions``).
Remote request building, by default:

- ``{name}`` in the path takes that argument (percent-encoded);
- GET and DELETE send the other arguments as the query, POST as the JSON body
  (arguments that are None are left out, so the server's defaults apply);
- a row may give its own ``body`` builder (files read as bytes become PEM text)
  and ``query`` names for a POST.
"""

from __future__ import annotations

import base64
import datetime as _dt
import importlib
import json
import string
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import click

from ..errors import ConfigError, NotFound, PkiError, ServerUnreachable
from ..ids import looks_like_fingerprint, parse_duration, parse_serial

__all__ = ["call", "is_remote", "require_local", "OPERATIONS", "Operation", "resolve_device", "iter_devices", "iter_device_rows",
           "revoke_lines"]


class _LazyModule:
    """A service module imported on first attribute access: a command imports only the services it calls
    (and none in remote mode), which keeps the CLI's start-up short (pki/cli/main.py LAZY_COMMANDS)."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str):
        module = importlib.import_module(self._name)
        self.__dict__.update(vars(module))
        return getattr(module, attribute)


_S = "pki.services."
(artifacts, audit, authorize, cas, codes, crls, devices, managed, policies, users, device_lookup,
 bulk_revoke) = (
    _LazyModule(_S + n) for n in ("artifacts", "audit", "authorize", "cas", "codes", "crls", "devices", "managed",
                                   "policies", "users", "device_lookup", "bulk_revoke"))
blocklist, hook_tokens, identities, permissions = (
    _LazyModule(_S + "dataplane." + n) for n in ("blocklist", "hook_tokens", "identities", "permissions"))
ca_requests, checks, custody, master_keys, enrollment, renewal, tokens = (
    _LazyModule(_S + n) for n in ("ca_requests", "checks", "custody", "master_keys", "enrollment", "renewal",
                                  "tokens"))
secret_service = _LazyModule(_S + "secrets")
quick = _LazyModule(_S + "quick")
_policy = _LazyModule(_S + "policy")


@dataclass(frozen=True)
class Operation:
    local: Callable[..., Any]
    method: str | None = None
    path: str = ""
    query: tuple[str, ...] = ()
    body: Callable[..., dict] | None = None
    #: False for what needs no store locally (the action catalogue).
    store: bool = True
    #: A local answer without the store layer (``quick(settings, **kwargs)``, pki/services/quick.py), or
    #: None when it cannot give one; then :attr:`local` runs.
    quick: Callable[..., Any] | None = None


def is_remote(state) -> bool:
    return state.remote() is not None


def require_local(state, command: str, why: str) -> None:
    """Refuse a command that only runs on the local store while remote mode is on."""
    if state.server is not None:
        raise ConfigError(f"`pki {command}` is local-only: {why}. Unset PKI_SERVER (or pass --local) to run it "
                          "on this machine's store", code="local_only", server=state.server)


def call(state, operation: str, **kwargs: Any) -> Any:
    """Run one operation on the store or the server; a JSON-able answer either way."""
    op = OPERATIONS[operation]
    client = state.remote()
    if client is None:
        if op.quick is not None:
            answer = op.quick(state.settings, **kwargs)
            if answer is not None:
                return answer
        result = op.local(state.context() if op.store else None, **kwargs)
        return result.as_json() if hasattr(result, "as_json") else result
    if op.method is None:
        raise ConfigError(f"{operation} has no remote form; run it without PKI_SERVER", code="local_only")
    import httpx

    method, path, params, body = _request(op, kwargs)
    try:
        return client.call(method, path, json=body, params=params)
    except httpx.TransportError as exc:
        raise ServerUnreachable(f"no answer from {client.http.base_url} ({type(exc).__name__}: {exc}); check "
                                "PKI_SERVER and that `pki serve` runs there", server=str(client.http.base_url)) \
            from None
    except ValueError:
        raise ServerUnreachable(f"{client.http.base_url} did not answer JSON; is PKI_SERVER a `pki serve`?",
                                code="bad_server_response") from None


# -- device certificates named or listed across the instance (pki/services/device_lookup.py) --------------


def resolve_device(state, *, ca=None, sn=None, client_id=None, fingerprint=None) -> dict:
    """``{"ca_sn", "sn"}`` of the one device certificate named; a server's answer resolved by the same rule."""
    if sn is not None:
        return {"ca_sn": ca, "sn": sn}
    if state.remote() is None:
        return device_lookup.resolve(state.context(), ca=ca, client_id=client_id, fingerprint=fingerprint)
    items = call(state, "device.find", fingerprint=fingerprint, client_id=client_id)["items"]
    if ca is not None and not looks_like_fingerprint(ca):
        items = [i for i in items if i["ca_sn"] == parse_serial(ca)]
    if fingerprint is not None:
        if not items:
            raise NotFound(f"the server has no device certificate with fingerprint {fingerprint!r}",
                           code="device_not_found")
        return items[0]
    return device_lookup.choose(items, client_id=client_id, instance=state.server)


def iter_devices(state, *, ca=None, status=None, expiring_before=None) -> Iterator[dict]:
    """Every matching device certificate, page after page, from the store or the server."""
    if state.remote() is None:
        yield from device_lookup.iter_devices(state.context(), ca=ca, status=status,
                                              expiring_before=_iso(expiring_before))
        return
    cursor = None
    while True:
        if ca is not None:
            page = call(state, "device.list", ca=ca, status=status, expiring_before=expiring_before, limit=1000,
                        cursor=cursor)
        else:
            page = call(state, "device.find", status=status, expiring_before=expiring_before, limit=1000,
                        cursor=cursor)
        yield from page["items"]
        cursor = page.get("next_cursor")
        if not cursor:
            return


def iter_device_rows(state, *, ca=None, status=None, expiring_before=None, columns) -> Iterator[list]:
    """:func:`iter_devices` as pages of value lists in ``columns`` order (the CSV export's fast path)."""
    if state.remote() is None:
        yield from device_lookup.iter_device_rows(state.context(), ca=ca, status=status,
                                                  expiring_before=_iso(expiring_before))
        return
    page: list = []
    for item in iter_devices(state, ca=ca, status=status, expiring_before=expiring_before):
        page.append([item.get(c) for c in columns])
        if len(page) >= 1000:
            yield page
            page = []
    yield page


def revoke_lines(state, lines, *, reason: str, ca: str | None, batch_size: int) -> dict:
    """Bulk revoke: batches in the store; against a server, one request per line (same report)."""
    if state.remote() is None:
        return bulk_revoke.revoke_lines(state.context(), lines, reason=reason, ca=ca, batch_size=batch_size).as_json()
    result = {"lines": 0, "revoked": 0, "already_revoked": 0, "failed": [], "crls_signed": []}
    for number, text in bulk_revoke._numbered(lines):
        result["lines"] += 1
        try:
            found = resolve_device(state, **bulk_revoke.parse_line(text, ca=ca))
            shown = call(state, "device.show", ca=found["ca_sn"], sn=found["sn"])
            if shown["status"] == "REVOKED":
                result["already_revoked"] += 1
                continue
            call(state, "device.revoke", ca=found["ca_sn"], sn=found["sn"], reason=reason)
            result["revoked"] += 1
        except PkiError as exc:
            result["failed"].append({"line": number, "text": text, "code": exc.code, "message": exc.message})
    return result


def _request(op: Operation, kwargs: Mapping[str, Any]) -> tuple[str, str, dict | None, dict | None]:
    names = [field for _, field, _, _ in string.Formatter().parse(op.path) if field]
    path = op.path.format_map({n: quote(str(kwargs[n]), safe="") for n in names})
    rest = {k: v for k, v in kwargs.items() if k not in names}
    if op.method in ("GET", "DELETE"):
        return op.method, path, _drop_none(rest), None
    params = _drop_none({k: rest.pop(k) for k in op.query if k in rest})
    body = op.body(**rest) if op.body is not None else _drop_none(rest)
    return op.method, path, params or None, body


def _drop_none(values: Mapping[str, Any]) -> dict:
    return {k: v for k, v in values.items() if v is not None}


def _pem(data: bytes | None, label: str) -> str | None:
    """A file as read (PEM or DER) as the PEM text the API takes."""
    if data is None:
        return None
    if data.lstrip().startswith(b"-----BEGIN"):
        return data.decode("utf-8", errors="replace")
    b64 = base64.b64encode(data).decode("ascii")
    lines = "\n".join(b64[i:i + 64] for i in range(0, len(b64), 64))
    return f"-----BEGIN {label}-----\n{lines}\n-----END {label}-----\n"


def _iso(text: str | None) -> _dt.datetime | None:
    return _dt.datetime.fromisoformat(text) if text is not None else None


# -- local forms that need more than one service call --------------------------------------------


def _issue(ctx, *, ca, csr, generate, client_id, days, sans, key_type) -> dict:
    return devices.issue_device(ctx, ca=ca, csr=csr, generate=generate, client_id=client_id, days=days,
                                sans=tuple(sans), key_type=key_type).as_json()


def _publish_local(ctx, *, out_dir, crl_lifetime, **kw):
    if out_dir is None:
        raise click.UsageError("Missing option '--out'.")
    return artifacts.publish(ctx, out_dir=out_dir, crl_lifetime=parse_duration(crl_lifetime), **kw)


#: What only a local publish can do: the files (and the broker) are on the server's machine.
_PUBLISH_LOCAL_ONLY = {"out_dir": "--out", "reload_cmd": "--reload-cmd", "listener_address": "--listener-address",
                       "server_cert": "--server-cert", "server_key": "--server-key"}


def _publish_body(*, require_crls, keep, crl_lifetime, listener_port, password_listener_port, **local_only) -> dict:
    given = [flag for name, flag in _PUBLISH_LOCAL_ONLY.items() if local_only.get(name) is not None]
    if given:
        raise click.UsageError(
            f"{', '.join(given)}: local-only with `pki artifacts publish`; against a server it publishes into the "
            "directory `pki serve --artifacts-dir` names, on the server's machine (run the reload there)")
    return {"require_crls": require_crls, "keep": keep, "crl_lifetime": crl_lifetime, "listener_port": listener_port,
            "password_listener_port": password_listener_port}


def _policy_document(name: str, document: bytes) -> dict:
    _policy.parse_policy(document, name=name)  # refused here, naming the bad field, exactly as locally
    return json.loads(document)


# -- the table -------------------------------------------------------------------------------------

_ = Operation
OPERATIONS: dict[str, Operation] = {
    # register codes, CAs, CRLs
    "code.new": _(lambda ctx, *, ttl: codes.new_code(ctx, ttl=parse_duration(ttl)), "POST", "/v1/codes"),
    "ca.register": _(
        lambda ctx, **kw: cas.register_ca(ctx, **kw), "POST", "/v1/cas/register",
        body=lambda *, certificate, verification, name, inactive, chain: _drop_none({
            "certificate_pem": _pem(certificate, "CERTIFICATE"), "verification_pem": _pem(verification, "CERTIFICATE"),
            "name": name, "inactive": inactive, "chain_pem": _pem(chain, "CERTIFICATE")})),
    "ca.create": _(lambda ctx, **kw: managed.create_ca(ctx, **kw), "POST", "/v1/cas"),
    "ca.request": _(lambda ctx, **kw: ca_requests.request_ca(ctx, **kw), "POST", "/v1/cas/requests"),
    "ca.install": _(
        lambda ctx, **kw: ca_requests.install_signed(ctx, **kw), "POST", "/v1/cas/install-signed",
        body=lambda *, ref, certificate, chain: _drop_none({
            "ref": ref, "certificate_pem": _pem(certificate, "CERTIFICATE"), "chain_pem": _pem(chain, "CERTIFICATE")})),
    "ca.list": _(lambda ctx, **kw: cas.list_cas(ctx, **kw), "GET", "/v1/cas"),
    # key custody (rotate-master reads key files on the machine whose store it rotates)
    "keys.list": _(lambda ctx: custody.list_keys(ctx), "GET", "/v1/keys"),
    "keys.master.rotate": _(lambda ctx, **kw: master_keys.rotate_master(ctx, **kw), "POST", "/v1/keys/rotate-master"),
    "ca.show": _(lambda ctx, *, ref: renewal.ca_detail(ctx, ref), "GET", "/v1/cas/{ref}"),
    "ca.activate": _(lambda ctx, *, ref: cas.activate_ca(ctx, ref), "POST", "/v1/cas/{ref}/activate"),
    "ca.deactivate": _(lambda ctx, *, ref: cas.deactivate_ca(ctx, ref), "POST", "/v1/cas/{ref}/deactivate"),
    "ca.delete": _(lambda ctx, *, ref, cascade: cas.delete_ca(ctx, ref, cascade=cascade), "DELETE", "/v1/cas/{ref}"),
    "crl.request": _(lambda ctx, *, ca, lifetime: crls.crl_request(ctx, ca=ca, lifetime=parse_duration(lifetime)),
                     "GET", "/v1/cas/{ca}/crl-request"),
    "crl.upload": _(lambda ctx, *, ca, crl: crls.upload_crl(ctx, ca=ca, crl=crl), "POST", "/v1/cas/{ca}/crl",
                    body=lambda *, crl: {"crl_pem": _pem(crl, "X509 CRL")}),
    # device certificates
    "device.issue": _(
        _issue, "POST", "/v1/cas/{ca}/devices",
        body=lambda *, csr, generate, client_id, days, sans, key_type: _drop_none({
            "csr_pem": _pem(csr, "CERTIFICATE REQUEST"), "generate": generate, "client_id": client_id,
            "days": days, "sans": list(sans), "key_type": key_type})),
    "device.register": _(lambda ctx, *, certificate: devices.register_device(ctx, certificate=certificate),
                         "POST", "/v1/devices/register",
                         body=lambda *, certificate: {"certificate_pem": _pem(certificate, "CERTIFICATE")}),
    "device.list": _(lambda ctx, *, expiring_before=None, **kw: device_lookup.list_instance_devices(
        ctx, expiring_before=_iso(expiring_before), **kw), "GET", "/v1/cas/{ca}/devices"),
    # By fingerprint or client id; with neither, a page of the whole instance (GET /v1/devices lists it).
    "device.find": _(lambda ctx, *, fingerprint=None, client_id=None, expiring_before=None, **kw:
                     devices.find_devices(ctx, fingerprint=fingerprint, client_id=client_id) if fingerprint or client_id
                     else device_lookup.list_instance_devices(ctx, expiring_before=_iso(expiring_before), **kw),
                     "GET", "/v1/devices"),
    "device.show": _(lambda ctx, **kw: renewal.device_detail(ctx, **kw), "GET", "/v1/cas/{ca}/devices/{sn}",
                     quick=lambda settings, **kw: quick.show_device(settings, **kw)),
    "device.activate": _(lambda ctx, **kw: devices.activate_device(ctx, **kw), "POST",
                         "/v1/cas/{ca}/devices/{sn}/activate"),
    "device.deactivate": _(lambda ctx, **kw: devices.deactivate_device(ctx, **kw), "POST",
                           "/v1/cas/{ca}/devices/{sn}/deactivate"),
    "device.revoke": _(lambda ctx, **kw: devices.revoke_device(ctx, **kw), "POST", "/v1/cas/{ca}/devices/{sn}/revoke"),
    "device.delete": _(lambda ctx, **kw: devices.delete_device(ctx, **kw), "DELETE", "/v1/cas/{ca}/devices/{sn}"),
    # renewal and enrollment (pki/services/renewal.py, enrollment.py)
    "device.renew": _(
        lambda ctx, *, supersede_after, **kw: renewal.renew_device(
            ctx, supersede_after=parse_duration(supersede_after, allow_zero=True) if supersede_after else None,
            **kw), "POST", "/v1/cas/{ca}/devices/{sn}/renew",
        body=lambda *, csr, generate, days, supersede_after, key_type: _drop_none({
            "csr_pem": _pem(csr, "CERTIFICATE REQUEST"), "generate": generate, "days": days,
            "supersede_after": supersede_after, "key_type": key_type})),
    "ca.update": _(
        lambda ctx, *, ref, renew_after_expiry, supersede_after, **kw: enrollment.update_ca(
            ctx, ref, renew_after_expiry=parse_duration(renew_after_expiry, allow_zero=True)
            if renew_after_expiry else None,
            supersede_after=parse_duration(supersede_after, allow_zero=True) if supersede_after else None, **kw),
        "PATCH", "/v1/cas/{ref}"),
    "claim.create": _(lambda ctx, *, ttl, **kw: enrollment.create_claim(ctx, ttl=parse_duration(ttl), **kw),
                      "POST", "/v1/claims"),
    # device secrets and enrollment groups
    "secret.register": _(lambda ctx, **kw: secret_service.register_secret(ctx, **kw), "POST", "/v1/secrets"),
    "secret.show": _(lambda ctx, **kw: secret_service.show_secret(ctx, **kw), "GET", "/v1/secrets/{client_id}"),
    "secret.refresh": _(lambda ctx, *, client_id, grace: secret_service.refresh_secret(
        ctx, client_id=client_id, grace=parse_duration(grace, allow_zero=True)),
        "POST", "/v1/secrets/{client_id}/refresh"),
    "secret.unregister": _(lambda ctx, **kw: secret_service.unregister_secret(ctx, **kw), "DELETE",
                           "/v1/secrets/{client_id}"),
    "secret.activate": _(lambda ctx, **kw: secret_service.activate_secret(ctx, **kw), "POST",
                         "/v1/secrets/{client_id}/activate", query=("group",)),
    "secret.deactivate": _(lambda ctx, **kw: secret_service.deactivate_secret(ctx, **kw), "POST",
                           "/v1/secrets/{client_id}/deactivate", query=("group",)),
    "secret.list": _(lambda ctx, **kw: secret_service.list_secrets(ctx, **kw), "GET", "/v1/secrets"),
    "secret.verify": _(lambda ctx, *, clock_skew, **kw: secret_service.authenticate(
        ctx, clock_skew=parse_duration(clock_skew, allow_zero=True), **kw), "POST", "/v1/secrets/verify"),
    "secret.derive": _(lambda ctx, **kw: secret_service.derive_member_secret(ctx, **kw), "GET",
                       "/v1/secret-groups/{group}/members/{client_id}/secret"),
    "secret.group.create": _(lambda ctx, **kw: secret_service.create_group(ctx, **kw), "POST", "/v1/secret-groups"),
    "secret.group.show": _(lambda ctx, **kw: secret_service.show_group(ctx, **kw), "GET", "/v1/secret-groups/{name}"),
    "secret.group.list": _(lambda ctx, **kw: secret_service.list_groups(ctx, **kw), "GET", "/v1/secret-groups"),
    "secret.group.disable": _(lambda ctx, **kw: secret_service.disable_group(ctx, **kw), "POST",
                              "/v1/secret-groups/{name}/disable"),
    "secret.group.enable": _(lambda ctx, **kw: secret_service.enable_group(ctx, **kw), "POST",
                             "/v1/secret-groups/{name}/enable"),
    # the broker data plane: identities, permission rules, the connect blocklist, hook tokens
    "identity.add": _(lambda ctx, **kw: identities.add(ctx, **kw), "POST", "/v1/identities"),
    "identity.update": _(lambda ctx, **kw: identities.update(ctx, **kw), "PATCH", "/v1/identities/{username}"),
    "identity.show": _(lambda ctx, **kw: identities.show(ctx, **kw), "GET", "/v1/identities/{username}"),
    "identity.list": _(lambda ctx, **kw: identities.list_identities(ctx, **kw), "GET", "/v1/identities"),
    "identity.delete": _(lambda ctx, **kw: identities.delete(ctx, **kw), "DELETE", "/v1/identities/{username}"),
    "permission.add": _(lambda ctx, **kw: permissions.add(ctx, **kw), "POST", "/v1/permissions"),
    "permission.list": _(lambda ctx, **kw: permissions.list_permissions(ctx, **kw), "GET", "/v1/permissions"),
    "permission.show": _(lambda ctx, **kw: permissions.show(ctx, **kw), "GET", "/v1/permissions/{id}"),
    "permission.delete": _(lambda ctx, **kw: permissions.delete(ctx, **kw), "DELETE", "/v1/permissions/{id}"),
    "permission.default.set": _(lambda ctx, **kw: permissions.set_default(ctx, **kw), "PUT",
                                "/v1/permissions/default"),
    "permission.default.get": _(lambda ctx: permissions.get_default(ctx), "GET", "/v1/permissions/default"),
    "permission.check": _(lambda ctx, **kw: permissions.check(ctx, **kw), "POST", "/v1/permissions/check"),
    "blocklist.add": _(lambda ctx, **kw: blocklist.add(ctx, **kw), "POST", "/v1/blocklist"),
    "blocklist.list": _(lambda ctx, **kw: blocklist.list_blocks(ctx, **kw), "GET", "/v1/blocklist"),
    "blocklist.delete": _(lambda ctx, **kw: blocklist.delete(ctx, **kw), "DELETE", "/v1/blocklist/{id}"),
    "hook.token.create": _(lambda ctx, **kw: hook_tokens.create(ctx, **kw), "POST", "/v1/hook-tokens"),
    "hook.token.list": _(lambda ctx, **kw: hook_tokens.list_tokens(ctx, **kw), "GET", "/v1/hook-tokens"),
    "hook.token.delete": _(lambda ctx, **kw: hook_tokens.delete(ctx, **kw), "DELETE", "/v1/hook-tokens/{name}"),
    # broker tokens and their signing keys
    "token.apply": _(lambda ctx, **kw: tokens.apply(ctx, **kw), "POST", "/v1/tokens"),
    "token.show": _(lambda ctx, **kw: tokens.show(ctx, **kw), "GET", "/v1/tokens/{token_id}"),
    "token.list": _(lambda ctx, **kw: tokens.list_tokens(ctx, **kw), "GET", "/v1/tokens"),
    "token.revoke": _(lambda ctx, **kw: tokens.revoke(ctx, **kw), "POST", "/v1/tokens/{token_id}/revoke"),
    "token.key.rotate": _(lambda ctx, **kw: tokens.rotate(ctx, **kw), "POST", "/v1/token-keys/rotate"),
    "token.key.list": _(lambda ctx: tokens.list_keys(ctx), "GET", "/v1/token-keys"),
    # broker artifacts: the server writes into its own --artifacts-dir; the local form takes more options
    "artifacts.publish": _(_publish_local, "POST", "/v1/artifacts/publish", body=_publish_body),
    # users, access keys, policies, audit
    "user.create": _(lambda ctx, *, name: users.create_user(ctx, name), "POST", "/v1/users"),
    "user.list": _(lambda ctx, **kw: users.list_users(ctx, **kw), "GET", "/v1/users"),
    "user.show": _(lambda ctx, *, name: users.show_user(ctx, name), "GET", "/v1/users/{name}"),
    "user.disable": _(lambda ctx, *, name: users.disable_user(ctx, name), "POST", "/v1/users/{name}/disable"),
    "user.enable": _(lambda ctx, *, name: users.enable_user(ctx, name), "POST", "/v1/users/{name}/enable"),
    "user.delete": _(lambda ctx, *, name: users.delete_user(ctx, name), "DELETE", "/v1/users/{name}"),
    "user.key.create": _(lambda ctx, *, user: users.create_access_key(ctx, user), "POST", "/v1/users/{user}/keys"),
    "user.key.disable": _(lambda ctx, *, access_key_id: users.disable_access_key(ctx, access_key_id), "POST",
                          "/v1/access-keys/{access_key_id}/disable"),
    "user.key.enable": _(lambda ctx, *, access_key_id: users.enable_access_key(ctx, access_key_id), "POST",
                         "/v1/access-keys/{access_key_id}/enable"),
    "user.key.delete": _(lambda ctx, *, access_key_id: users.delete_access_key(ctx, access_key_id), "DELETE",
                         "/v1/access-keys/{access_key_id}"),
    "policy.create": _(
        lambda ctx, *, name, document, description: policies.create_policy(ctx, name, document,
                                                                           description=description),
        "POST", "/v1/policies",
        body=lambda *, name, document, description: {"name": name, "document": _policy_document(name, document),
                                                     "description": description}),
    "policy.list": _(lambda ctx, **kw: policies.list_policies(ctx, **kw), "GET", "/v1/policies"),
    "policy.show": _(lambda ctx, *, name: policies.show_policy(ctx, name), "GET", "/v1/policies/{name}"),
    "policy.delete": _(lambda ctx, *, name: policies.delete_policy(ctx, name), "DELETE", "/v1/policies/{name}"),
    "policy.attach": _(lambda ctx, *, name, user: policies.attach_policy(ctx, name, user=user), "POST",
                       "/v1/policies/{name}/attach"),
    "policy.detach": _(lambda ctx, *, name, user: policies.detach_policy(ctx, name, user=user), "POST",
                       "/v1/policies/{name}/detach"),
    "policy.simulate": _(
        lambda ctx, *, user, action, resource, source_ip, secure_transport, at, context: authorize.simulate(
            ctx, user, action, resource, source_ip=source_ip, secure_transport=secure_transport,
            now=_iso(at), extra=context),
        "POST", "/v1/policies/simulate"),
    "policy.actions": _(lambda ctx: _policy.action_catalogue(), "GET", "/v1/policies/actions", store=False),
    "audit.list": _(lambda ctx, **kw: audit.list_records(ctx, **kw), "GET", "/v1/audit"),
    # A broken chain is an audit_chain_broken error carrying the whole result, locally and from the server.
    "audit.batch": _(lambda ctx, *, batch, **kw: audit.batch_devices(ctx, batch, **kw), "GET",
                     "/v1/audit/batches/{batch}"),
    "audit.verify": _(lambda ctx, *, expect_head: audit.check(ctx, expect_head=expect_head), "GET",
                      "/v1/audit/verify"),
    # fleet audit checks: read-only; the artifacts directory is the server's own
    "check.run": _(lambda ctx, **kw: checks.fleet_report(ctx, **kw), "GET", "/v1/checks"),
}
del _
