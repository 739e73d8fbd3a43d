"""The broker hooks under ``/broker/``: each broker's HTTP auth contract over
:mod:`pki.services.dataplane.hooks`.

Not /v1 and not signed: each call carries a hook token (:mod:`pki.services.dataplane.hook_tokens`),
as ``Authorization: Bearer <token>``, or as the password of Basic authentication, which is all
RabbitMQ's HTTP backend can send (it takes it from ``user:password@`` in the configured URL).  A hook
token opens these paths and nothing else: /v1 accepts only signed requests.

- EMQX 5 HTTP authentication and authorization (``/broker/emqx/authn``, ``/broker/emqx/authz``): JSON (or
  form) bodies made from EMQX's body templates; the answer is 200 JSON ``{"result": ...}``.
- mosquitto-go-auth's HTTP backend (``/broker/go-auth/{user,superuser,acl}``): JSON or form bodies;
  200 allows, 403 denies.
- RabbitMQ's rabbitmq_auth_backend_http (``/broker/rabbitmq/{user,vhost,resource,topic}``), GET (query)
  or POST (form); the answer is the text ``allow`` or ``deny``.

Answers never say why; the reason goes to the ``pki.hooks`` log and the audit log.  A call the hooks
cannot read (a missing field, a body that is neither JSON nor a form) is a 400 problem document.
"""

from __future__ import annotations

import base64
import binascii
import json
import urllib.parse
from collections.abc import Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from ..errors import InvalidInput, Unauthenticated
from ..services.context import Context
from ..services.dataplane import hook_tokens, hooks

__all__ = ["PREFIX", "broker_router"]

PREFIX = "/broker"

#: mosquitto-go-auth's ``acc``: what the client asks to do (1 read, 2 write, 3 both, 4 subscribe).
GO_AUTH_ACC = {1: ("subscribe",), 2: ("publish",), 3: ("subscribe", "publish"), 4: ("subscribe",)}


def _bad(detail: str) -> InvalidInput:
    return InvalidInput(detail, code="invalid_hook_request")


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            return ""
        return decoded.partition(":")[2]
    return ""


def _check_token(ctx: Context, request: Request) -> None:
    token = _bearer(request)
    if token is None:
        raise Unauthenticated("the broker hooks need a hook token: Authorization: Bearer <token> (or as the "
                              "Basic password)", code="hook_token_missing")
    state = request.scope.setdefault("state", {})
    name = hook_tokens.verify(ctx, token=token, source_ip=state.get("source_ip"))
    if name is None:
        raise Unauthenticated("the hook token is not valid here: unknown, deleted, or used from outside its "
                              "CIDR blocks", code="hook_token_invalid")
    state["principal"] = f"hook-token:{name}"


def _fields(request: Request) -> dict:
    """The call's fields: the query string of a GET, else the JSON or form body."""
    if request.method == "GET":
        return dict(request.query_params)
    body: bytes = request.scope.get("state", {}).get("body", b"")
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad("the body is not UTF-8") from None
    if kind == "application/json" or (not kind and text.lstrip().startswith("{")):
        try:
            fields = json.loads(text)
        except ValueError:
            raise _bad("the body is not valid JSON") from None
        if not isinstance(fields, dict):
            raise _bad("the JSON body must be an object")
        return fields
    if kind in ("application/x-www-form-urlencoded", ""):
        try:
            return dict(urllib.parse.parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text)))
        except ValueError:
            raise _bad("the body is not a form (application/x-www-form-urlencoded)") from None
    raise _bad("send JSON (application/json) or a form (application/x-www-form-urlencoded)")


def _require(fields: dict, *names: str) -> list:
    missing = [n for n in names if n not in fields]
    if missing:
        raise _bad(f"missing field(s): {', '.join(missing)}")
    wrong = [n for n in names if not isinstance(fields[n], str)]
    if wrong:
        raise _bad(f"field(s) that must be text: {', '.join(wrong)}")
    return [fields[n] for n in names]


def _optional_text(fields: dict, name: str) -> str | None:
    value = fields.get(name)
    if value is not None and not isinstance(value, str):
        raise _bad(f"the field {name} must be text")
    return value or None


def _qos(value) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.isdigit() and len(value) == 1:
        value = int(value)
    if type(value) is not int or value not in (0, 1, 2):
        raise _bad("qos must be 0, 1 or 2")
    return value


def _retain(value) -> bool | None:
    if value is None or value == "" or isinstance(value, bool):
        return value if isinstance(value, bool) else None
    if value in ("true", "false"):
        return value == "true"
    raise _bad("retain must be true or false")


def _routing_key_topic(key: str) -> str:
    """rabbitmq_mqtt's routing key back to the MQTT topic (filter): it swaps ``/`` and ``.``, and an MQTT
    ``+`` is AMQP's ``*`` (https://www.rabbitmq.com/mqtt.html#topic-names)."""
    return key.translate(str.maketrans({".": "/", "/": ".", "*": "+"}))


def broker_router(get_ctx: Callable[[], Context]) -> APIRouter:
    router = APIRouter(prefix=PREFIX, include_in_schema=False)

    def hook(path: str, *methods: str):
        """Register a hook.  With SQLite it runs on the event loop: its reads take microseconds, and a
        thread hop per call costs more than the decision (scripts/bench_broker_hooks.py); with
        PostgreSQL, whose reads are network round trips, in the thread pool.  A refusal's audit record
        is a write that can wait for SQLite's lock; the same trade is made, and documented, for the
        short /v1 routes in pki/http/deps.py."""
        def register(fn: Callable[[Request], Response]):
            async def endpoint(request: Request) -> Response:
                if get_ctx().store.dialect == "sqlite":
                    return fn(request)
                return await run_in_threadpool(fn, request)

            endpoint.__name__ = fn.__name__
            router.add_api_route(path, endpoint, methods=list(methods or ("POST",)))
            return fn
        return register

    def call(request: Request) -> tuple[Context, dict]:
        ctx = get_ctx()
        _check_token(ctx, request)
        return ctx, _fields(request)

    # -- EMQX 5 --------------------------------------------------------------------------------------

    @hook("/emqx/authn")
    def emqx_authn(request: Request) -> Response:
        ctx, f = call(request)
        username, password, clientid = _require(f, "username", "password", "clientid")
        answer = hooks.authenticate(ctx, username, password, clientid, _optional_text(f, "peerhost"),
                                    cert_cn=_optional_text(f, "cert_common_name"))
        body = {"result": answer.result, "is_superuser": answer.superuser}
        if answer.acl is not None:  # a token's: EMQX 5.8+ enforces it per connection, and disconnects at expiry
            body.update(acl=answer.acl, expire_at=answer.expire_at)
        return JSONResponse(body)

    @hook("/emqx/authz")
    def emqx_authz(request: Request) -> Response:
        ctx, f = call(request)
        username, clientid, action, topic = _require(f, "username", "clientid", "action", "topic")
        qos, retain = _qos(f.get("qos")), _retain(f.get("retain"))
        answer = hooks.authorize(ctx, username, clientid, _optional_text(f, "peerhost"), action, topic, qos, retain)
        return JSONResponse({"result": answer.result})

    # -- mosquitto-go-auth ---------------------------------------------------------------------------

    def go_auth(allowed: bool) -> Response:
        return PlainTextResponse("allow" if allowed else "deny", status_code=200 if allowed else 403)

    @hook("/go-auth/user")
    def go_auth_user(request: Request) -> Response:
        ctx, f = call(request)
        username, password, clientid = _require(f, "username", "password", "clientid")
        return go_auth(hooks.authenticate(ctx, username, password, clientid, None).result == "allow")

    @hook("/go-auth/superuser")
    def go_auth_superuser(request: Request) -> Response:
        ctx, f = call(request)
        (username,) = _require(f, "username")
        return go_auth(hooks.is_superuser(ctx, username))

    @hook("/go-auth/acl")
    def go_auth_acl(request: Request) -> Response:
        ctx, f = call(request)
        username, clientid, topic = _require(f, "username", "clientid", "topic")
        acc = f.get("acc")
        acc = int(acc) if isinstance(acc, str) and acc.isdigit() and len(acc) == 1 else acc
        if type(acc) is not int or acc not in GO_AUTH_ACC:
            raise _bad("acc must be 1 (read), 2 (write), 3 (read and write) or 4 (subscribe)")
        return go_auth(all(hooks.authorize(ctx, username, clientid, None, action, topic).result == "allow"
                           for action in GO_AUTH_ACC[acc]))

    # -- RabbitMQ ------------------------------------------------------------------------------------

    def rabbit(allowed: bool) -> Response:
        return PlainTextResponse("allow" if allowed else "deny")

    @hook("/rabbitmq/user", "GET", "POST")
    def rabbitmq_user(request: Request) -> Response:
        ctx, f = call(request)
        username, password = _require(f, "username", "password")
        answer = hooks.authenticate(ctx, username, password, _optional_text(f, "client_id"), None)
        return rabbit(answer.result == "allow")

    @hook("/rabbitmq/vhost", "GET", "POST")
    def rabbitmq_vhost(request: Request) -> Response:
        ctx, f = call(request)
        username, _vhost = _require(f, "username", "vhost")
        answer = hooks.admit(ctx, username, _optional_text(f, "client_id"), _optional_text(f, "ip"))
        return rabbit(answer.result == "allow")

    @hook("/rabbitmq/resource", "GET", "POST")
    def rabbitmq_resource(request: Request) -> Response:
        # The queues and the amq.topic exchange rabbitmq_mqtt declares for a client: what it may do with
        # them is decided per topic (topic_path), so only the blocklist applies here.
        ctx, f = call(request)
        username, *_ = _require(f, "username", "vhost", "resource", "name", "permission")
        return rabbit(hooks.admit(ctx, username, _optional_text(f, "client_id"), None).result == "allow")

    @hook("/rabbitmq/topic", "GET", "POST")
    def rabbitmq_topic(request: Request) -> Response:
        ctx, f = call(request)
        username, _vhost, permission, key = _require(f, "username", "vhost", "permission", "routing_key")
        action = {"write": "publish", "read": "subscribe"}.get(permission)
        if action is None:
            return rabbit(False)
        client_id = _optional_text(f, "variable_map.client_id") or _optional_text(f, "client_id")
        answer = hooks.authorize(ctx, username, client_id, None, action, _routing_key_topic(key))
        return rabbit(answer.result == "allow")

    return router
