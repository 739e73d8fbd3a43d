"""Permission rules of the broker data plane: add, list, show, delete, the instance's default, and the check.

A rule is a :class:`pki.dataplane.rules.Rule`; every input is validated by pki.dataplane (topic filter
with placeholders, CIDR, QoS, priority) before anything is written.  :func:`decide` is the hooks'
check: the instance's rules, compiled once per data-plane revision into a
:class:`~pki.dataplane.rules.RuleSet`, and the connect blocklist.  :func:`check` is the same for an
operator: it validates its input and answers the decision with the rule that made it.
"""

from __future__ import annotations

from typing import NamedTuple

from ...dataplane import topics
from ...dataplane.rules import ACTIONS, CHECK_ACTIONS, EFFECTS, Rule, RuleSet, parse_priority
from ...errors import InvalidInput, NotFound
from ...store import dataplane_repos as repos
from ...store.dataplane_models import BrokerPermission
from .. import audit
from ..context import Context
from ..paging import after_position, page_limit, page_of
from ..schemas import Page, UtcTime
from . import blocklist
from .common import Public, cached, field, log, memoised, parse_id

__all__ = ["PermissionPublic", "Compiled", "add", "list_permissions", "show", "delete", "set_default",
           "get_default", "decide", "check", "parse_qos"]


class PermissionPublic(Public):
    id: int
    effect: str
    action: str
    topic: str
    who: str
    username: str | None
    client_id: str | None
    ip: str | None
    qos: list[int] | None
    retain: bool | None
    priority: int
    instance: str
    created_at: UtcTime
    updated_at: UtcTime

    @classmethod
    def of(cls, row: BrokerPermission) -> "PermissionPublic":
        return cls(id=row.id, effect=row.effect, action=row.action, topic=row.topic, who=row.who,
                   username=row.who_value if row.who == "username" else None,
                   client_id=row.who_value if row.who == "client_id" else None, ip=row.ip,
                   qos=_qos_list(row.qos), retain=row.retain, priority=row.priority, instance=row.instance,
                   created_at=row.created_at, updated_at=row.updated_at)


def _qos_list(text: str | None) -> list[int] | None:
    return None if text is None else [int(q) for q in text.split(",")]


def parse_qos(value) -> frozenset[int] | None:
    """QoS levels from a list of integers or their text ("0,1"); None for any.  InvalidInput ``invalid_qos``."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else value
    try:
        levels = frozenset(int(q) if isinstance(q, str) and q.strip().isdigit() else q for q in items)
    except TypeError:
        levels = None
    if not levels or not all(type(q) is int and q in (0, 1, 2) for q in levels):
        raise InvalidInput(f"the QoS {str(value)[:40]!r} must be one or more of 0, 1 and 2",
                           code="invalid_qos", field="qos")
    return levels


def _rule_id(permission_id: int) -> str:
    # Zero-padded so that equal priorities are tried in the order the rules were added (Rule.order
    # compares ids as text).
    return f"{permission_id:012d}"


def _rule(row: BrokerPermission) -> Rule:
    return Rule(id=_rule_id(row.id), effect=row.effect, action=row.action, topic=row.topic, who=row.who,
                who_value=row.who_value, ip=row.ip, qos=frozenset(_qos_list(row.qos)) if row.qos else None,
                retain=row.retain, priority=row.priority)


def _choice(value, allowed: tuple[str, ...], name: str) -> str:
    if value not in allowed:
        raise InvalidInput(f"the {name} {str(value)[:40]!r} is not one of {', '.join(allowed)}",
                           code="invalid_permission", field=name)
    return value


def _who(username: str | None, client_id: str | None, all_clients: bool) -> tuple[str, str | None]:
    given = [(w, v) for w, v in (("username", username), ("client_id", client_id)) if v is not None]
    if all_clients:
        given.append(("all", None))
    if len(given) != 1:
        raise InvalidInput("a rule names exactly one of a username, a client id, or all clients",
                           code="invalid_permission", field="username")
    return given[0]


def add(ctx: Context, *, effect: str, action: str, topic: str, username: str | None = None,
        client_id: str | None = None, all_clients: bool = False, ip: str | None = None, qos=None,
        retain: bool | None = None, priority=0) -> PermissionPublic:
    _choice(effect, EFFECTS, "effect")
    _choice(action, ACTIONS, "action")
    who, who_value = _who(username, client_id, all_clients)
    with field("topic"):
        topics.validate_filter(topic, placeholders=True)
    with field("priority"):
        priority = parse_priority(priority)
    levels = parse_qos(qos)
    if retain is not None and not isinstance(retain, bool):
        raise InvalidInput("retain must be true, false or absent", code="invalid_permission", field="retain")
    try:
        # The rule's own validation: the CIDR, the who value; the row stores its normalised form.
        rule = Rule(id="new", effect=effect, action=action, topic=topic, who=who, who_value=who_value, ip=ip,
                    qos=levels, retain=retain, priority=priority)
    except InvalidInput as exc:
        exc.data.setdefault("field", "ip" if exc.code == "invalid_cidr" else who)
        raise
    if who_value is not None and len(who_value) > 256:
        raise InvalidInput(f"the {who.replace('_', ' ')} is longer than 256 characters", code="invalid_permission",
                           field=who)
    now = ctx.clock.now()
    with ctx.store.transaction() as session:
        row = repos.insert_row(session, BrokerPermission(
            instance=ctx.instance, effect=effect, action=action, topic=topic, who=who, who_value=who_value,
            ip=rule.ip, qos=",".join(str(q) for q in sorted(levels)) if levels else None, retain=retain,
            priority=priority, created_at=now, updated_at=now))
        public = PermissionPublic.of(row)
        audit.record_change(session, ctx, "permission.add", subject=str(row.id), effect=effect, action=action,
                            who=who, priority=priority)
    log.info("permission added: instance=%s id=%s %s %s", ctx.instance, row.id, effect, action)
    return public


def _resolve(session, ctx: Context, permission_id, *, lock: bool = False) -> BrokerPermission:
    permission_id = parse_id(permission_id, what="permission", code="invalid_permission")
    row = repos.get_permission(session, instance=ctx.instance, permission_id=permission_id, lock=lock)
    if row is None:
        raise NotFound(f"no permission {permission_id} in instance {ctx.instance!r}", code="permission_not_found",
                       id=permission_id)
    return row


def show(ctx: Context, *, id) -> PermissionPublic:
    with ctx.store.transaction(readonly=True) as session:
        return PermissionPublic.of(_resolve(session, ctx, id))


def list_permissions(ctx: Context, *, limit: int | None = None, cursor: str | None = None) -> Page:
    size, after = page_limit(limit), after_position(cursor)
    with ctx.store.transaction(readonly=True) as session:
        rows = repos.list_permissions(session, instance=ctx.instance, after_id=after, limit=size + 1)
    return page_of(rows, size, PermissionPublic.of)


def delete(ctx: Context, *, id) -> dict:
    with ctx.store.transaction() as session:
        row = _resolve(session, ctx, id, lock=True)
        repos.delete_row(session, row, instance=ctx.instance)
        audit.record_change(session, ctx, "permission.delete", subject=str(row.id))
    log.info("permission deleted: instance=%s id=%s", ctx.instance, row.id)
    return {"id": row.id, "deleted": True}


def set_default(ctx: Context, *, effect: str) -> dict:
    """What the instance decides when no rule matches (deny until set)."""
    _choice(effect, EFFECTS, "effect")
    with ctx.store.transaction() as session:
        repos.set_default(session, instance=ctx.instance, effect=effect, now=ctx.clock.now())
        audit.record_change(session, ctx, "permission.default.set", subject=ctx.instance, effect=effect)
    log.info("permission default set: instance=%s %s", ctx.instance, effect)
    return {"instance": ctx.instance, "default": effect}


def default_is_unset(ctx: Context) -> bool:
    """True while no default was ever set for the instance (the decision then is deny)."""
    with ctx.store.transaction(readonly=True) as session:
        return repos.get_default(session, instance=ctx.instance) is None


def get_default(ctx: Context) -> dict:
    with ctx.store.transaction(readonly=True) as session:
        row = repos.get_default(session, instance=ctx.instance)
    return {"instance": ctx.instance, "default": row.default_effect if row is not None else "deny"}


# -- the check ----------------------------------------------------------------------------------------


class Compiled(NamedTuple):
    rules: RuleSet
    by_id: dict[str, BrokerPermission]


def _compile(ctx: Context) -> Compiled:
    with ctx.store.transaction(readonly=True) as session:
        rows = repos.all_permissions(session, instance=ctx.instance)
        setting = repos.get_default(session, instance=ctx.instance)
        default = setting.default_effect if setting is not None else "deny"
        for row in rows:
            session.expunge(row)
    return Compiled(RuleSet([_rule(r) for r in rows], default=default), {_rule_id(r.id): r for r in rows})


def rule_set(ctx: Context) -> Compiled:
    """The instance's rules as of the current revision (compiled once per revision)."""
    return memoised(cached(ctx, "rules"), "rules", lambda: _compile(ctx))


class Outcome(NamedTuple):
    allowed: bool
    reason: str
    permission: BrokerPermission | None
    block: object | None


def decide(ctx: Context, *, username: str | None, client_id: str | None, ip: str | None, action: str,
           topic: str | None, qos: int | None = None, retain: bool | None = None) -> Outcome:
    """The hooks' check, which never raises for what a client sent: the blocklist, then the rules."""
    block = blocklist.is_blocked(ctx, username=username, client_id=client_id, ip=ip)
    if block is not None:
        return Outcome(False, "blocked", None, block)
    compiled = rule_set(ctx)
    decision = compiled.rules.decide(username, client_id, ip, action, topic, qos, retain)
    return Outcome(decision.allowed, decision.reason, compiled.by_id.get(decision.rule_id), None)


def check(ctx: Context, *, username: str | None = None, client_id: str | None = None, ip: str | None = None,
          action: str, topic: str | None = None, qos: int | None = None, retain: bool | None = None) -> dict:
    """:func:`decide` for an operator: bad input is an error, and the answer names the rule (or entry)."""
    if action not in CHECK_ACTIONS:
        raise InvalidInput(f"the action {str(action)[:40]!r} is not one of {', '.join(CHECK_ACTIONS)}",
                           code="invalid_mqtt_action", field="action")
    if action != "connect":
        with field("topic"):
            if topic is None:
                raise InvalidInput(f"a {action} check needs a topic", code="invalid_topic")
            topics.validate_topic(topic) if action == "publish" else topics.validate_filter(topic)
    if qos is not None and qos not in (0, 1, 2):
        raise InvalidInput("the QoS must be 0, 1 or 2", code="invalid_qos", field="qos")
    outcome = decide(ctx, username=username, client_id=client_id, ip=ip, action=action, topic=topic, qos=qos,
                     retain=retain)
    return {"decision": "allow" if outcome.allowed else "deny", "allowed": outcome.allowed, "reason": outcome.reason,
            "rule": PermissionPublic.of(outcome.permission).as_json() if outcome.permission is not None else None,
            "blocked_by": outcome.block.as_json() if outcome.block is not None else None}
