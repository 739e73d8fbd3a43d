"""A broker token's ``acl`` claim in EMQX 5's rule-list form, and the decision it makes.

EMQX 5.5 and later read an ``acl`` claim of a JWT (and an ``acl`` property of an HTTP authentication
answer, 5.8 and later) as a list of rules ``{"permission": "allow"|"deny", "action":
"publish"|"subscribe"|"all", "topic": FILTER}``, checked in order before any authorizer
(https://docs.emqx.com/en/emqx/latest/access-control/authn/acl.html).  In that format a request no rule
matches goes on to the other authorizers; a token here grants exactly its topics, so its list ends with
a rule that denies everything else (:data:`DENY_REST`).  The topics may hold EMQX's placeholders
``${clientid}`` and ``${username}``, resolved as :func:`pki.dataplane.topics.substitute` does.

Pure: no store, no clock.
"""

from __future__ import annotations

from typing import NamedTuple

from ..errors import InvalidInput
from . import topics

__all__ = ["ACTIONS", "DENY_REST", "MAX_TOPICS", "MAX_TOPIC_BYTES", "build", "Grant", "compile_acl"]

ACTIONS = ("publish", "subscribe", "all")
#: The last rule of every token's list: what the token does not allow, EMQX must not ask elsewhere.
DENY_REST = {"permission": "deny", "action": "all", "topic": "#"}
#: A token travels in every CONNECT: its topics stay few and short.
MAX_TOPICS = 32
MAX_TOPIC_BYTES = 256


def build(topic_filters, action: str, *, superuser: bool = False) -> list[dict]:
    """The ``acl`` claim for ``topic_filters`` and one ``action``; InvalidInput for a bad one."""
    if action not in ACTIONS:
        raise InvalidInput(f"the action {str(action)[:20]!r} is not one of {', '.join(ACTIONS)}",
                           code="invalid_mqtt_action", field="action")
    filters = list(dict.fromkeys(topic_filters or ()))
    if superuser:
        return [{"permission": "allow", "action": "all", "topic": "#"}]
    if not filters:
        raise InvalidInput("give at least one topic filter (or make the token a superuser's)",
                           code="invalid_topic_filter", field="topic")
    if len(filters) > MAX_TOPICS:
        raise InvalidInput(f"at most {MAX_TOPICS} topic filters per token", code="invalid_topic_filter",
                           field="topic")
    for text in filters:
        topics.validate_filter(text, placeholders=True)
        if len(text.encode("utf-8")) > MAX_TOPIC_BYTES:
            raise InvalidInput(f"a token's topic filter is at most {MAX_TOPIC_BYTES} bytes (the token travels in "
                               "every CONNECT)", code="invalid_topic_filter", field="topic")
    return [*({"permission": "allow", "action": action, "topic": text} for text in filters), dict(DENY_REST)]


class _Rule(NamedTuple):
    allow: bool
    actions: frozenset[str]
    topic: str


class Grant(NamedTuple):
    """One token's rules, compiled: :meth:`decide` answers True (allow), False (deny) or None (no rule)."""

    rules: tuple[_Rule, ...]

    def decide(self, *, action: str, topic: str, client_id: str | None, username: str | None) -> bool | None:
        for rule in self.rules:
            if action not in rule.actions:
                continue
            pattern = topics.substitute(rule.topic, client_id=client_id, username=username)
            if pattern is None:
                continue
            hit = topics.covers(pattern, topic) if action == "subscribe" else topics.matches(pattern, topic)
            if hit:
                return rule.allow
        return None


def compile_acl(acl) -> Grant:
    """The rules of an ``acl`` claim made by :func:`build` (a stored one: trusted shape, checked anyway)."""
    rules = []
    for item in acl if isinstance(acl, list) else ():
        if not isinstance(item, dict) or item.get("action") not in ACTIONS or not topics.is_valid_filter(
                item.get("topic")):
            continue
        actions = frozenset(("publish", "subscribe")) if item["action"] == "all" else frozenset((item["action"],))
        rules.append(_Rule(item.get("permission") == "allow", actions, item["topic"]))
    return Grant(tuple(rules))
