"""Permission rules and their evaluation (pki.dataplane.rules): validation, semantics, and the index
against a naive linear scan."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pki.dataplane.rules import Decision, Rule, RuleSet, parse_client_ip, parse_priority
from pki.dataplane.topics import covers, is_valid_filter, is_valid_topic, matches, split_shared, substitute
from pki.errors import ERROR_CODES, InvalidInput


def rule(id="r", effect="allow", action="publish", topic="#", who="all", who_value=None, **kw) -> Rule:
    return Rule(id=id, effect=effect, action=action, topic=topic, who=who, who_value=who_value, **kw)


@pytest.mark.parametrize("kwargs,code", [
    ({"topic": "a/#/b"}, "invalid_topic_filter"),
    ({"topic": "a+/b"}, "invalid_topic_filter"),
    ({"topic": "#/a"}, "invalid_topic_filter"),
    ({"topic": "a\x00b"}, "invalid_topic_filter"),
    ({"topic": "a" * 65_536}, "invalid_topic_filter"),
    ({"topic": "a/${client}"}, "invalid_topic_filter"),
    ({"ip": "10.0.0.300/8"}, "invalid_cidr"),
    ({"ip": "example.com"}, "invalid_cidr"),
    ({"ip": ""}, "invalid_cidr"),
    ({"priority": "1.5"}, "invalid_priority"),
    ({"priority": "ten"}, "invalid_priority"),
    ({"priority": True}, "invalid_priority"),
    ({"priority": 2**31}, "invalid_priority"),
    ({"priority": "١"}, "invalid_priority"),
    ({"qos": {3}}, "invalid_qos"),
    ({"qos": set()}, "invalid_qos"),
    ({"qos": "0"}, "invalid_qos"),
    ({"qos": 1}, "invalid_qos"),
    ({"effect": "permit"}, "invalid_permission"),
    ({"action": "read"}, "invalid_permission"),
    ({"who": "group"}, "invalid_permission"),
    ({"who": "username"}, "invalid_permission"),
    ({"who": "username", "who_value": "a\nb"}, "invalid_permission"),
    ({"who": "all", "who_value": "x"}, "invalid_permission"),
    ({"retain": "yes"}, "invalid_permission"),
    ({"id": ""}, "invalid_permission"),
])
def test_bad_rules_are_refused(kwargs, code):
    with pytest.raises(InvalidInput) as err:
        rule(**kwargs)
    assert err.value.code == code and ERROR_CODES[code] == "invalid_input"


def test_rules_are_normalised():
    r = rule(ip="10.1.2.3/8", qos=[0, 1], priority="-7")
    assert (r.ip, r.qos, r.priority) == ("10.0.0.0/8", frozenset({0, 1}), -7)
    assert parse_priority(" 12 ") == 12
    assert parse_client_ip("::ffff:10.0.0.1") == ipaddress.ip_address("10.0.0.1")
    assert parse_client_ip("nonsense") is None and parse_client_ip(None) is None


def test_first_match_in_priority_order_then_default():
    rs = RuleSet([
        rule("allow-fleet", topic="fleet/#", priority=10),
        rule("deny-secret", effect="deny", topic="fleet/secret/#", priority=5),
        rule("tie-b", effect="deny", topic="tie", priority=1),
        rule("tie-a", topic="tie", priority=1),
    ])
    assert rs.decide("u", "c", None, "publish", "fleet/a") == Decision(True, "allow-fleet", "rule")
    assert rs.decide("u", "c", None, "publish", "fleet/secret/x") == Decision(False, "deny-secret", "rule")
    assert rs.decide("u", "c", None, "publish", "tie").rule_id == "tie-a"  # equal priority: by id
    assert rs.decide("u", "c", None, "publish", "other") == Decision(False, None, "default")
    assert RuleSet([], default="allow").decide("u", "c", None, "publish", "x") == Decision(True, None, "default")


def test_who_username_client_id_all():
    rs = RuleSet([rule("u", topic="a", who="username", who_value="DeviceCredential|AK|default"),
                  rule("c", topic="b", who="client_id", who_value="dev1")])
    assert rs.decide("DeviceCredential|AK|default", "x", None, "publish", "a").allowed
    assert not rs.decide("other", "x", None, "publish", "a").allowed
    assert rs.decide(None, "dev1", None, "publish", "b").allowed
    assert not rs.decide("dev1", "x", None, "publish", "b").allowed  # a username is not a client id


def test_actions_and_connect():
    rs = RuleSet([rule("pub", action="publish", topic="p/#"), rule("sub", action="subscribe", topic="s/#"),
                  rule("everything", action="all", topic="#", who="username", who_value="admin"),
                  rule("some", action="all", topic="x/#", who="username", who_value="x"),
                  rule("conn", action="connect", topic="#", who="client_id", who_value="dev1")])
    assert rs.decide("u", "c", None, "publish", "p/1").allowed
    assert not rs.decide("u", "c", None, "subscribe", "p/1").allowed
    assert rs.decide("u", "c", None, "subscribe", "s/+").allowed
    assert rs.decide("admin", "c", None, "connect", None).rule_id == "everything"
    assert rs.decide("x", "c", None, "connect", None) == Decision(False, None, "default")  # x/# says nothing of connect
    assert rs.decide("u", "dev1", None, "connect", None).rule_id == "conn"
    assert rs.decide("u", "dev1", None, "publish", "anything").rule_id is None  # a connect rule, no topic
    with pytest.raises(InvalidInput) as err:
        rs.decide("u", "c", None, "all", "x")
    assert err.value.code == "invalid_mqtt_action"


def test_subscribe_is_checked_as_coverage_and_shared_subscriptions_by_their_filter():
    rs = RuleSet([rule("s", action="subscribe", topic="fleet/${clientid}/#")])
    assert rs.decide("u", "d1", None, "subscribe", "fleet/d1/+/x").allowed
    assert rs.decide("u", "d1", None, "subscribe", "$share/g/fleet/d1/#").allowed
    assert not rs.decide("u", "d1", None, "subscribe", "fleet/+/x").allowed  # reaches other clients
    assert not rs.decide("u", "d1", None, "subscribe", "#").allowed
    assert rs.decide("u", "d1", None, "subscribe", "$share/g+/fleet/d1/#").reason == "invalid_topic"


def test_placeholders_resolve_per_connection_and_never_widen():
    rs = RuleSet([rule("own", topic="devices/${clientid}/${username}/#")])
    assert rs.decide("alice", "d1", None, "publish", "devices/d1/alice/x").allowed
    assert not rs.decide("alice", "d2", None, "publish", "devices/d1/alice/x").allowed
    assert not rs.decide("alice", "+", None, "publish", "devices/+/alice/x").allowed  # invalid topic anyway
    assert not rs.decide("alice", "#", None, "publish", "devices/x/alice/y").allowed
    assert not rs.decide("alice", "d1/alice", None, "publish", "devices/d1/alice/alice/x").allowed
    assert not rs.decide(None, "d1", None, "publish", "devices/d1//x").allowed


def test_unknown_conditions_never_widen_access():
    allow_ip = rule("allow-ip", topic="a", ip="10.0.0.0/8")
    deny_ip = rule("deny-ip", effect="deny", topic="a", ip="10.0.0.0/8")
    assert RuleSet([allow_ip]).decide("u", "c", "10.1.1.1", "publish", "a").allowed
    assert RuleSet([allow_ip]).decide("u", "c", "::ffff:10.1.1.1", "publish", "a").allowed
    assert not RuleSet([allow_ip]).decide("u", "c", "11.1.1.1", "publish", "a").allowed
    assert not RuleSet([allow_ip]).decide("u", "c", None, "publish", "a").allowed
    assert not RuleSet([allow_ip]).decide("u", "c", "garbage", "publish", "a").allowed
    assert not RuleSet([deny_ip], default="allow").decide("u", "c", None, "publish", "a").allowed
    assert RuleSet([deny_ip], default="allow").decide("u", "c", "2001:db8::1", "publish", "a").allowed
    allow_q = rule("q", topic="a", qos=[0], retain=False)
    assert RuleSet([allow_q]).decide("u", "c", None, "publish", "a", qos=0, retain=False).allowed
    assert not RuleSet([allow_q]).decide("u", "c", None, "publish", "a", qos=1, retain=False).allowed
    assert not RuleSet([allow_q]).decide("u", "c", None, "publish", "a", qos=0, retain=True).allowed
    assert not RuleSet([allow_q]).decide("u", "c", None, "publish", "a").allowed
    deny_r = rule("r", effect="deny", topic="a", retain=True)
    assert not RuleSet([deny_r], default="allow").decide("u", "c", None, "publish", "a").allowed
    assert RuleSet([deny_r], default="allow").decide("u", "c", None, "publish", "a", retain=False).allowed


@pytest.mark.parametrize("topic", ["a/+", "a/#", "", "a\x00", None, 7, "x" * 65_536])
def test_a_bad_publish_topic_is_a_denial_not_an_error(topic):
    assert RuleSet([rule()], default="allow").decide("u", "c", None, "publish", topic) == \
        Decision(False, None, "invalid_topic")


def test_rule_sets_refuse_duplicate_ids_and_bad_defaults():
    with pytest.raises(InvalidInput):
        RuleSet([rule("x"), rule("x", topic="a")])
    with pytest.raises(InvalidInput):
        RuleSet([], default="maybe")


# -- the index against a naive scan -----------------------------------------------------------


def naive(rules, default, username, client_id, ip, action, topic, qos, retain) -> Decision:
    """The specification in module pki.dataplane.rules, read literally: every rule, in order."""
    if action == "subscribe" and isinstance(topic, str) and topic.startswith("$share/"):
        try:
            topic = split_shared(topic)[1]
        except InvalidInput:
            topic = None
    if action == "publish" and not is_valid_topic(topic) or action == "subscribe" and not is_valid_filter(topic):
        return Decision(False, None, "invalid_topic")
    address = parse_client_ip(ip)
    for r in sorted(rules, key=lambda r: (r.priority, r.id)):
        deny = r.effect == "deny"
        if r.who == "username" and r.who_value != username or r.who == "client_id" and r.who_value != client_id:
            continue
        if action == "connect":
            if not (r.action == "connect" or r.action == "all" and r.topic == "#"):
                continue
        else:
            if r.action not in (action, "all"):
                continue
            resolved = substitute(r.topic, client_id=client_id, username=username)
            if resolved is None or not (matches if action == "publish" else covers)(resolved, topic):
                continue
        if r.ip is not None and (not deny if address is None else address not in ipaddress.ip_network(r.ip)):
            continue
        if r.qos is not None and (not deny if qos is None else qos not in r.qos):
            continue
        if r.retain is not None and (not deny if retain is None else retain != r.retain):
            continue
        return Decision(not deny, r.id, "rule")
    return Decision(default == "allow", None, "default")


_names = st.sampled_from(["u1", "u2", "DeviceCredential|AK|default"])
_clients = st.sampled_from(["c1", "c2", "c/x", "c+", "$c"])
_levels = st.sampled_from(["a", "b", "+", "$s", "${clientid}", "${username}", "x${clientid}", "c1", "u1"])
_filters = st.builds(lambda levels, hashed: "/".join(levels + (["#"] if hashed else [])),
                     st.lists(_levels, min_size=0, max_size=3), st.booleans()).filter(bool)


@st.composite
def _rules(draw):
    count = draw(st.integers(0, 12))
    out = []
    for i in range(count):
        who = draw(st.sampled_from(["username", "client_id", "all"]))
        out.append(Rule(
            id=f"r{draw(st.integers(0, 99)):02d}-{i}", effect=draw(st.sampled_from(["allow", "deny"])),
            action=draw(st.sampled_from(["connect", "publish", "subscribe", "all"])),
            topic=draw(_filters), who=who,
            who_value=None if who == "all" else draw(_names if who == "username" else _clients),
            ip=draw(st.sampled_from([None, None, "10.0.0.0/8", "2001:db8::/32"])),
            qos=draw(st.sampled_from([None, None, frozenset({0}), frozenset({1, 2})])),
            retain=draw(st.sampled_from([None, None, True, False])),
            priority=draw(st.integers(-2, 2)),
        ))
    return out


_requests = st.tuples(
    st.one_of(st.none(), _names), st.one_of(st.none(), _clients),
    st.sampled_from([None, "10.1.2.3", "192.0.2.1", "2001:db8::5", "::ffff:10.0.0.9", "bad"]),
    st.sampled_from(["connect", "publish", "subscribe"]),
    st.one_of(_filters, st.sampled_from(["$share/g/a/#", "$share//a", "a", "c1/a", "$s/a"])),
    st.sampled_from([None, 0, 1, 2]), st.sampled_from([None, True, False]),
)


@settings(max_examples=600, deadline=None)
@given(_rules(), st.sampled_from(["allow", "deny"]), st.lists(_requests, min_size=1, max_size=8))
def test_indexed_evaluation_equals_a_naive_scan(rules, default, requests):
    ids = [r.id for r in rules]
    rules = [r for i, r in enumerate(rules) if r.id not in ids[:i]]
    rs = RuleSet(rules, default=default)
    for request in requests:
        assert rs.decide(*request) == naive(rules, default, *request), request
