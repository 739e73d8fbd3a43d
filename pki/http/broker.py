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

These paths are answered by :class:`BrokerHooks`, a bare ASGI layer inside
:class:`~pki.http.middleware.PkiMiddleware` (request id, body cap, source IP and access log still
apply), not by FastAPI's router: a broker asks thousands of times a second, and routing, the request
object and the exception middlewares cost more than the decision (BENCHMARKS.md, "Broker hooks").
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import urllib.parse
from collections.abc import Callable
from typing import NamedTuple

from starlette.concurrency import run_in_threadpool

from ..errors import InvalidInput, PkiError, Unauthenticated, io_error
from ..services.context import Context
from ..services.dataplane import hook_tokens, hooks
from ..services.dataplane.common import one_reading
from .metrics import record_hook_decision
from .problems import error_problem, problem_bytes

__all__ = ["PREFIX", "ROUTES", "BrokerHooks"]

log = logging.getLogger("pki.http")

PREFIX = "/broker"

#: mosquitto-go-auth's ``acc``: what the client asks to do (1 read, 2 write, 3 both, 4 subscribe).
GO_AUTH_ACC = {1: ("subscribe",), 2: ("publish",), 3: ("subscribe", "publish"), 4: ("subscribe",)}

_JSON = b"application/json"
_TEXT = b"text/plain; charset=utf-8"


class Call(NamedTuple):
    """What a hook reads of a request: no more than this is decoded."""

    method: str
    authorization: str | None
    content_type: str
    query: bytes
    body: bytes
    source_ip: str | None


class Answer(NamedTuple):
    status: int
    content_type: bytes
    body: bytes


def _bad(detail: str) -> InvalidInput:
    return InvalidInput(detail, code="invalid_hook_request")


def _bearer(call: Call) -> str | None:
    header = call.authorization
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


def _check_token(ctx: Context, call: Call) -> str:
    """The principal of the call (``hook-token:NAME``), or Unauthenticated."""
    token = _bearer(call)
    if token is None:
        raise Unauthenticated("the broker hooks need a hook token: Authorization: Bearer <token> (or as the "
                              "Basic password)", code="hook_token_missing")
    name = hook_tokens.verify(ctx, token=token, source_ip=call.source_ip)
    if name is None:
        raise Unauthenticated("the hook token is not valid here: unknown, deleted, or used from outside its "
                              "CIDR blocks", code="hook_token_invalid")
    return f"hook-token:{name}"


def _fields(call: Call) -> dict:
    """The call's fields: the query string of a GET, else the JSON or form body."""
    if call.method == "GET":
        try:
            return dict(urllib.parse.parse_qsl(call.query.decode("latin-1"), keep_blank_values=True))
        except ValueError:
            raise _bad("the query string is not valid") from None
    kind = call.content_type
    try:
        text = call.body.decode("utf-8")
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


def _json(value: dict) -> Answer:
    return Answer(200, _JSON, json.dumps(value, separators=(",", ":")).encode())


#: EMQX's answers, encoded once: there are five of them.
_EMQX_AUTHN = {(result, superuser): _json({"result": result, "is_superuser": superuser})
               for result in ("allow", "deny", "ignore") for superuser in (False, True)}
_EMQX_AUTHZ = {result: _json({"result": result}) for result in ("allow", "deny")}


def _counted(hook: str, decide, *args, **kwargs):
    """A decision of :mod:`pki.services.dataplane.hooks`, counted on /metrics by hook, result and reason (the
    reason goes nowhere else a broker can read)."""
    answer = decide(*args, **kwargs)
    record_hook_decision(hook, answer.result, answer.reason)
    return answer


# -- EMQX 5 ------------------------------------------------------------------------------------------

def emqx_authn(ctx: Context, f: dict) -> Answer:
    username, password, clientid = _require(f, "username", "password", "clientid")
    answer = _counted("emqx.authn", hooks.authenticate, ctx, username, password, clientid,
                      _optional_text(f, "peerhost"), cert_cn=_optional_text(f, "cert_common_name"))
    if answer.acl is not None:  # a token's: EMQX 5.8+ enforces it per connection, and disconnects at expiry
        return _json({"result": answer.result, "is_superuser": answer.superuser, "acl": answer.acl,
                      "expire_at": answer.expire_at})
    return _EMQX_AUTHN[answer.result, answer.superuser]


def emqx_authz(ctx: Context, f: dict) -> Answer:
    username, clientid, action, topic = _require(f, "username", "clientid", "action", "topic")
    qos, retain = _qos(f.get("qos")), _retain(f.get("retain"))
    answer = _counted("emqx.authz", hooks.authorize, ctx, username, clientid, _optional_text(f, "peerhost"), action,
                      topic, qos, retain)
    return _EMQX_AUTHZ[answer.result]


# -- mosquitto-go-auth -------------------------------------------------------------------------------

def _go_auth(allowed: bool) -> Answer:
    return Answer(200, _TEXT, b"allow") if allowed else Answer(403, _TEXT, b"deny")


def go_auth_user(ctx: Context, f: dict) -> Answer:
    username, password, clientid = _require(f, "username", "password", "clientid")
    return _go_auth(_counted("go_auth.user", hooks.authenticate, ctx, username, password, clientid, None).result
                    == "allow")


def go_auth_superuser(ctx: Context, f: dict) -> Answer:
    (username,) = _require(f, "username")
    superuser = hooks.is_superuser(ctx, username)
    record_hook_decision("go_auth.superuser", "allow" if superuser else "deny", "superuser" if superuser else
                         "not_superuser")
    return _go_auth(superuser)


def go_auth_acl(ctx: Context, f: dict) -> Answer:
    username, clientid, topic = _require(f, "username", "clientid", "topic")
    acc = f.get("acc")
    acc = int(acc) if isinstance(acc, str) and acc.isdigit() and len(acc) == 1 else acc
    if type(acc) is not int or acc not in GO_AUTH_ACC:
        raise _bad("acc must be 1 (read), 2 (write), 3 (read and write) or 4 (subscribe)")
    return _go_auth(all(_counted("go_auth.acl", hooks.authorize, ctx, username, clientid, None, action, topic).result
                        == "allow"
                        for action in GO_AUTH_ACC[acc]))


# -- RabbitMQ ----------------------------------------------------------------------------------------

def _rabbit(allowed: bool) -> Answer:
    return Answer(200, _TEXT, b"allow" if allowed else b"deny")


def rabbitmq_user(ctx: Context, f: dict) -> Answer:
    username, password = _require(f, "username", "password")
    answer = _counted("rabbitmq.user", hooks.authenticate, ctx, username, password,
                      _optional_text(f, "client_id"), None)
    return _rabbit(answer.result == "allow")


def rabbitmq_vhost(ctx: Context, f: dict) -> Answer:
    username, _vhost = _require(f, "username", "vhost")
    answer = _counted("rabbitmq.vhost", hooks.admit, ctx, username, _optional_text(f, "client_id"),
                      _optional_text(f, "ip"))
    return _rabbit(answer.result == "allow")


def rabbitmq_resource(ctx: Context, f: dict) -> Answer:
    # The queues and the amq.topic exchange rabbitmq_mqtt declares for a client: what it may do with
    # them is decided per topic (topic_path), so only the blocklist applies here.
    username, *_ = _require(f, "username", "vhost", "resource", "name", "permission")
    return _rabbit(_counted("rabbitmq.resource", hooks.admit, ctx, username, _optional_text(f, "client_id"), None)
                   .result == "allow")


def rabbitmq_topic(ctx: Context, f: dict) -> Answer:
    username, _vhost, permission, key = _require(f, "username", "vhost", "permission", "routing_key")
    action = {"write": "publish", "read": "subscribe"}.get(permission)
    if action is None:
        return _rabbit(False)
    client_id = _optional_text(f, "variable_map.client_id") or _optional_text(f, "client_id")
    answer = _counted("rabbitmq.topic", hooks.authorize, ctx, username, client_id, None, action,
                      _routing_key_topic(key))
    return _rabbit(answer.result == "allow")


_POST, _GET_POST = ("POST",), ("GET", "POST")

#: path -> (hook, methods).
ROUTES: dict[str, tuple[Callable[[Context, dict], Answer], tuple[str, ...]]] = {
    f"{PREFIX}/emqx/authn": (emqx_authn, _POST),
    f"{PREFIX}/emqx/authz": (emqx_authz, _POST),
    f"{PREFIX}/go-auth/user": (go_auth_user, _POST),
    f"{PREFIX}/go-auth/superuser": (go_auth_superuser, _POST),
    f"{PREFIX}/go-auth/acl": (go_auth_acl, _POST),
    f"{PREFIX}/rabbitmq/user": (rabbitmq_user, _GET_POST),
    f"{PREFIX}/rabbitmq/vhost": (rabbitmq_vhost, _GET_POST),
    f"{PREFIX}/rabbitmq/resource": (rabbitmq_resource, _GET_POST),
    f"{PREFIX}/rabbitmq/topic": (rabbitmq_topic, _GET_POST),
}


def _run(ctx: Context, hook: Callable[[Context, dict], Answer], call: Call, state: dict) -> Answer:
    """Token, fields, decision: all on one reading of the revision counters."""
    with one_reading(ctx):
        state["principal"] = _check_token(ctx, call)
        return hook(ctx, _fields(call))


def _problem(status: int, code: str, detail: str, request_id, headers=()) -> tuple[Answer, list]:
    return Answer(status, b"application/problem+json", problem_bytes(status, code, detail, request_id)), list(headers)


class BrokerHooks:
    """ASGI middleware: answers ``/broker/...`` itself and hands every other path to ``app``.

    With SQLite a hook runs on the event loop: its reads take microseconds, and a thread hop per call
    costs more than the decision (scripts/bench_broker_hooks.py).  With PostgreSQL, whose reads are
    network round trips, it runs in the thread pool.  A refusal's audit record is a write that can wait
    for SQLite's lock; the same trade is made, and documented, for the short /v1 routes in
    pki/http/deps.py.
    """

    def __init__(self, app, *, get_ctx: Callable[[], Context]) -> None:
        self.app = app
        self.get_ctx = get_ctx

    async def __call__(self, scope, receive, send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(PREFIX + "/"):
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        request_id = state.get("request_id")
        route = ROUTES.get(path)
        method = scope["method"]
        headers: list = []
        if route is None:
            answer, headers = _problem(404, "route_not_found", f"no broker hook at {path[:100]}", request_id)
        elif method not in route[1]:
            answer, headers = _problem(405, "method_not_allowed", f"{path} takes {' or '.join(route[1])}",
                                       request_id, [(b"allow", ", ".join(route[1]).encode())])
        else:
            authorization, content_type = None, ""
            for name, value in scope.get("headers", ()):
                if name == b"authorization":
                    authorization = value.decode("latin-1")
                elif name == b"content-type":
                    content_type = value.decode("latin-1").split(";")[0].strip().lower()
            body = state.get("body")
            if body is None:  # PkiMiddleware reads and caps the body; without it (a bare mount), read here
                body = await _read_body(receive)
            call = Call(method, authorization, content_type, scope.get("query_string", b""), body,
                        state.get("source_ip"))
            try:
                ctx = self.get_ctx()
                if ctx.store.dialect == "sqlite":
                    answer = _run(ctx, route[0], call, state)
                else:
                    answer = await run_in_threadpool(_run, ctx, route[0], call, state)
            except Exception as exc:  # noqa: BLE001 - every failure is an answer, never a dropped call
                answer, headers = _failure(exc, request_id)
        await send({"type": "http.response.start", "status": answer.status, "headers": [
            (b"content-type", answer.content_type), (b"content-length", str(len(answer.body)).encode()),
            *headers]})
        await send({"type": "http.response.body", "body": answer.body})


async def _read_body(receive) -> bytes:
    chunks, more = [], True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


def _failure(exc: Exception, request_id) -> tuple[Answer, list]:
    """A PkiError as its problem document (400 for what the call sent, 401 for the token, 503 for the
    store); anything else is logged and is a 500 that says where to look, as on every other path."""
    if isinstance(exc, OSError):
        err = io_error(exc)
        if err.family == "store":
            exc = err
    if isinstance(exc, PkiError):
        status, body, extra = error_problem(exc, request_id)
        if exc.family == "unauthenticated":
            extra["WWW-Authenticate"] = "Bearer"
        return (Answer(status, b"application/problem+json", json.dumps(body).encode()),
                [(k.lower().encode(), str(v).encode()) for k, v in extra.items()])
    log.exception("unexpected error in a broker hook (request %s)", request_id)
    return _problem(500, "internal_error", f"unexpected {type(exc).__name__}; the server log has the details "
                    f"(request id {request_id})", request_id)
