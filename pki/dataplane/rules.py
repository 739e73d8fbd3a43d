"""Permission rules for the broker data plane, and their evaluation.

A :class:`Rule` allows or denies one action (``connect``, ``publish``, ``subscribe`` or ``all``) on a
topic filter to a username, a client id or everyone, optionally only from a CIDR, only at some QoS
levels, only with or without the retain flag.  A :class:`RuleSet` holds the rules of one instance:
they are tried in order of ``priority`` (lowest first; equal priorities by ``id``), the first rule
that matches decides, and when none does the set's ``default`` (allow or deny) does.

What a rule matches, precisely:

- ``publish``: the rule's filter matches the topic name (:func:`pki.dataplane.topics.match_levels`).
- ``subscribe``: the rule's filter covers the subscription's filter, every topic name the
  subscription can receive (:func:`pki.dataplane.topics.covers`).  A shared subscription
  ``$share/<group>/<filter>`` is checked as its ``<filter>``.
- ``connect`` has no topic: it is matched by the ``connect`` rules, and by the ``all`` rules whose
  filter is ``#`` (everything).  An ``all`` rule on ``a/#`` does not decide whether a client may
  connect.
- Placeholders in the filter are resolved per connection (:func:`pki.dataplane.topics.substitute`);
  a rule whose placeholder cannot be resolved safely matches nothing.
- A condition the request leaves unknown (no client IP, no QoS, no retain flag, an unparsable IP)
  counts as met for a ``deny`` rule and as unmet for an ``allow`` rule: what is not known never
  widens access.
- A request whose topic is not a valid topic name (publish) or filter (subscribe) is denied, with
  the reason ``invalid_topic`` and no rule.

Evaluation does not scan every rule: rules are indexed by who they name (one username, one client
id, everyone), then in a trie over the leading literal levels of their filter; each list found is
walked in order only until it cannot beat the best match found so far.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Iterable

from ..errors import InvalidInput
from . import topics

__all__ = [
    "EFFECTS",
    "ACTIONS",
    "CHECK_ACTIONS",
    "WHO",
    "REASON_RULE",
    "REASON_DEFAULT",
    "REASON_INVALID_TOPIC",
    "PRIORITY_MIN",
    "PRIORITY_MAX",
    "Rule",
    "Decision",
    "RuleSet",
    "parse_priority",
    "parse_client_ip",
]

EFFECTS = ("allow", "deny")
#: What a rule may name; ``all`` stands for the three others.
ACTIONS = ("connect", "publish", "subscribe", "all")
#: What a broker asks about.
CHECK_ACTIONS = ("connect", "publish", "subscribe")
WHO = ("username", "client_id", "all")
#: :attr:`Decision.reason`: a short stable word, fit for a metric label.
REASON_RULE = "rule"
REASON_DEFAULT = "default"
REASON_INVALID_TOPIC = "invalid_topic"
#: A signed 32-bit integer: what any database column holds.
PRIORITY_MIN, PRIORITY_MAX = -(2**31), 2**31 - 1


def _bad(code: str, message: str) -> InvalidInput:
    return InvalidInput(message, code=code)


def parse_priority(value: object) -> int:
    """An integer priority from an int or its decimal text; InvalidInput ``invalid_priority``."""
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("+-").isdigit() and text.lstrip("+-").isascii():
            value = int(text)
    if not isinstance(value, int) or isinstance(value, bool) or not PRIORITY_MIN <= value <= PRIORITY_MAX:
        raise _bad("invalid_priority", f"the priority {str(value)[:40]!r} is not an integer between "
                   f"{PRIORITY_MIN} and {PRIORITY_MAX}")
    return value


def parse_client_ip(text: str | None):
    """A client address as an ``ipaddress`` object, or None when absent or unparsable.

    An IPv4-mapped IPv6 address (``::ffff:10.0.0.1``, what a dual-stack listener reports) is the
    IPv4 address, so that an IPv4 CIDR rule sees it.
    """
    if not text:
        return None
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _mqtt_string(value: object, what: str) -> str:
    if not isinstance(value, str) or not value or topics._FORBIDDEN.search(value) \
            or len(value.encode("utf-8", "surrogatepass")) > topics.MAX_TOPIC_BYTES:
        raise _bad("invalid_permission", f"the {what} {str(value)[:80]!r} must be 1 to "
                   f"{topics.MAX_TOPIC_BYTES} bytes of UTF-8 without control characters")
    return value


@dataclass(frozen=True, slots=True)
class Rule:
    """One permission rule, validated and normalised on construction (InvalidInput otherwise).

    ``who_value`` is the username or client id for ``who`` ``username``/``client_id``, None for
    ``all``.  ``ip`` is kept as the normalised network text (``10.0.0.0/8``).  ``qos`` is a frozenset
    of 0, 1, 2 or None (any QoS); ``retain`` True, False or None (either).
    """

    id: str
    effect: str
    action: str
    topic: str
    who: str
    who_value: str | None = None
    ip: str | None = None
    qos: frozenset[int] | None = None
    retain: bool | None = None
    priority: int = 0
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = field(
        default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise _bad("invalid_permission", "a rule id must be a non-empty string")
        if self.effect not in EFFECTS:
            raise _bad("invalid_permission", f"the effect {str(self.effect)[:40]!r} is not allow or deny")
        if self.action not in ACTIONS:
            raise _bad("invalid_permission", f"the action {str(self.action)[:40]!r} is not one of "
                       f"{', '.join(ACTIONS)}")
        topics.validate_filter(self.topic, placeholders=True)
        if self.who not in WHO:
            raise _bad("invalid_permission", f"who {str(self.who)[:40]!r} is not one of {', '.join(WHO)}")
        if self.who == "all":
            if self.who_value is not None:
                raise _bad("invalid_permission", "a rule for all clients names no username or client id")
        else:
            _mqtt_string(self.who_value, self.who.replace("_", " "))
        if self.ip is not None:
            try:
                network = ipaddress.ip_network(self.ip.strip(), strict=False) if isinstance(self.ip, str) else None
            except ValueError:
                network = None
            if network is None:
                raise _bad("invalid_cidr", f"{str(self.ip)[:60]!r} is not an IP address or CIDR block "
                           "(e.g. 10.0.0.0/8 or 2001:db8::/32)")
            object.__setattr__(self, "ip", str(network))
            object.__setattr__(self, "network", network)
        if self.qos is not None:
            levels = self.qos if not isinstance(self.qos, (str, bytes)) else None
            try:
                qos = frozenset(levels) if levels is not None else None
            except TypeError:
                qos = None
            if not qos or not all(type(q) is int and q in (0, 1, 2) for q in qos):
                raise _bad("invalid_qos", f"the QoS {str(self.qos)[:40]!r} must be a non-empty set of 0, 1 and 2")
            object.__setattr__(self, "qos", qos)
        if self.retain is not None and not isinstance(self.retain, bool):
            raise _bad("invalid_permission", "retain must be true, false or absent")
        object.__setattr__(self, "priority", parse_priority(self.priority))

    @property
    def order(self) -> tuple[int, str]:
        """The evaluation order: priority, then id."""
        return (self.priority, self.id)


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    rule_id: str | None
    reason: str


class _Compiled:
    """A rule ready for matching: its filter split once, its conditions as plain attributes.

    ``plan`` lists the levels that hold placeholders, to be filled per connection; ``uses`` says
    which values they need.
    """

    __slots__ = ("rule", "rank", "deny", "actions", "text", "levels", "exact", "plan", "uses",
                 "network", "qos", "retain")

    def __init__(self, rule: Rule, rank: int) -> None:
        self.rule, self.rank = rule, rank
        self.deny = rule.effect == "deny"
        self.actions = CHECK_ACTIONS if rule.action == "all" else (rule.action,)
        self.text = rule.topic
        self.levels = tuple(rule.topic.split("/"))
        self.plan = tuple((i, level) for i, level in enumerate(self.levels) if topics.has_placeholders(level))
        self.uses = (any("${clientid}" in lv for _, lv in self.plan), any("${username}" in lv for _, lv in self.plan))
        self.exact = not self.plan and "+" not in rule.topic and "#" not in rule.topic
        self.network, self.qos, self.retain = rule.network, rule.qos, rule.retain


class _Node:
    """A trie over the leading literal levels of the filters: a rule sits where its literal prefix ends."""

    __slots__ = ("rules", "children")

    def __init__(self) -> None:
        self.rules: list[_Compiled] = []
        self.children: dict[str, _Node] = {}

    def add(self, c: _Compiled) -> None:
        node = self
        for level in c.levels:
            if level in ("+", "#") or "${" in level:
                break
            node = node.children.setdefault(level, _Node())
        node.rules.append(c)  # added in rank order: every list stays sorted

    def collect(self, levels: list[str], into: list) -> None:
        """The lists of every rule whose literal prefix is a prefix of ``levels``."""
        node = self
        if node.rules:
            into.append(node.rules)
        for level in levels:
            node = node.children.get(level)
            if node is None:
                return
            if node.rules:
                into.append(node.rules)


def _safe(value: str | None) -> bool:
    """Whether a placeholder may take this value (see pki.dataplane.topics.substitute)."""
    return bool(value) and topics._UNSAFE_VALUE.search(value) is None


class RuleSet:
    """The rules of one instance, compiled once; :meth:`decide` answers a broker's question.

    ``default`` (``allow`` or ``deny``) decides when no rule matches.  A RuleSet is immutable:
    build a new one when the rules change.
    """

    def __init__(self, rules: Iterable[Rule], *, default: str = "deny") -> None:
        if default not in EFFECTS:
            raise _bad("invalid_permission", f"the default {str(default)[:40]!r} is not allow or deny")
        self.default = default
        self.rules: tuple[Rule, ...] = tuple(sorted(rules, key=lambda r: r.order))
        ids = [r.id for r in self.rules]
        if len(set(ids)) != len(ids):
            raise _bad("invalid_permission", "two rules share one id")
        # who-key -> trie for publish/subscribe; who-key -> ordered list for connect.
        self._topic: dict[tuple[str, str | None], _Node] = {}
        self._connect: dict[tuple[str, str | None], list[_Compiled]] = {}
        for rank, rule in enumerate(self.rules):
            c = _Compiled(rule, rank)
            key = (rule.who, rule.who_value)
            if rule.action != "connect":
                self._topic.setdefault(key, _Node()).add(c)
            if rule.action == "connect" or (rule.action == "all" and rule.topic == "#"):
                self._connect.setdefault(key, []).append(c)
        self._all_topic = self._topic.get(("all", None), _Node())

    def __len__(self) -> int:
        return len(self.rules)

    def decide(self, username: str | None, client_id: str | None, ip: str | None, action: str,
               topic: str | None, qos: int | None = None, retain: bool | None = None) -> Decision:
        """Whether the client may do ``action`` (connect, publish, subscribe) on ``topic``.

        ``topic`` is a topic name for publish, a topic filter for subscribe, ignored for connect.
        InvalidInput ``invalid_mqtt_action`` for an action other than those three; a bad topic is a
        denial (reason ``invalid_topic``), never an error, since it comes from a client.
        """
        lists: list[list[_Compiled]] = []
        if action == "connect":
            for found in (self._connect.get(("username", username)) if username else None,
                          self._connect.get(("client_id", client_id)) if client_id else None,
                          self._connect.get(("all", None))):
                if found:
                    lists.append(found)
            split = None
        elif action in ("publish", "subscribe"):
            if action == "subscribe" and isinstance(topic, str) and topic.startswith("$share/"):
                try:
                    topic = topics.split_shared(topic)[1]
                except InvalidInput:
                    topic = None
            valid = topics.is_valid_topic(topic) if action == "publish" else topics.is_valid_filter(topic)
            if not valid:
                return Decision(False, None, REASON_INVALID_TOPIC)
            split = topic.split("/")
            if username:
                trie = self._topic.get(("username", username))
                if trie is not None:
                    trie.collect(split, lists)
            if client_id:
                trie = self._topic.get(("client_id", client_id))
                if trie is not None:
                    trie.collect(split, lists)
            self._all_topic.collect(split, lists)
        else:
            raise _bad("invalid_mqtt_action", f"the action {str(action)[:40]!r} is not connect, publish or subscribe")

        best: _Compiled | None = None
        client_ip: object = _UNKNOWN
        safe: tuple[bool, bool] | None = None
        for candidates in lists:
            for c in candidates:
                if best is not None and c.rank > best.rank:
                    break
                if action not in c.actions:
                    continue
                if split is not None:
                    if c.exact:
                        if c.text != topic:
                            continue
                    else:
                        levels = c.levels
                        if c.plan:
                            if safe is None:
                                safe = (_safe(client_id), _safe(username))
                            if (c.uses[0] and not safe[0]) or (c.uses[1] and not safe[1]):
                                continue
                            levels = list(levels)
                            for i, template in c.plan:
                                levels[i] = template.replace("${clientid}", client_id or "").replace(
                                    "${username}", username or "")
                        if action == "publish":
                            if not topics.match_levels(levels, split):
                                continue
                        elif not topics.covers_levels(levels, split):
                            continue
                if c.network is not None:
                    if client_ip is _UNKNOWN:
                        client_ip = parse_client_ip(ip)
                    if client_ip is None:
                        if not c.deny:
                            continue
                    elif client_ip.version != c.network.version or client_ip not in c.network:
                        continue
                if c.qos is not None:
                    if qos is None:
                        if not c.deny:
                            continue
                    elif qos not in c.qos:
                        continue
                if c.retain is not None:
                    if retain is None:
                        if not c.deny:
                            continue
                    elif retain is not c.retain:
                        continue
                best = c
                break
        if best is None:
            return Decision(self.default == "allow", None, REASON_DEFAULT)
        return Decision(not best.deny, best.rule.id, REASON_RULE)


_UNKNOWN = object()
