"""The access-policy engine: the matrix (principal x action x resource x condition),
conditions, wildcards, dependent actions, system policies, malformed documents."""

from __future__ import annotations

import datetime as _dt
import fnmatch
import json

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from pki.errors import InvalidInput, PermissionDenied
from pki.services import audit
from pki.services import authorize as authz
from pki.services import policies as policy_service
from pki.services import users as user_service
from pki.services import policy as p
from pki.services.policy import ACTIONS, SYSTEM_POLICIES, RequestContext, authorize, evaluate, parse_policy

PROD = "acs:mq:local:default:prod-eu"
STAGING = "acs:mq:local:default:staging"
T0 = _dt.datetime(2026, 3, 1, 12, 0, tzinfo=_dt.timezone.utc)


def doc(*statements) -> dict:
    return {"Version": "1", "Statement": list(statements)}


def allow(action, resource="*", condition=None) -> dict:
    s = {"Effect": "Allow", "Action": action, "Resource": resource}
    if condition:
        s["Condition"] = condition
    return s


def deny(action, resource="*", condition=None) -> dict:
    return {**allow(action, resource, condition), "Effect": "Deny"}


# The principals of the matrix and their policies.
OPS = parse_policy(doc(
    allow("mq:*", "acs:mq:*:*:prod-*", {"IpAddress": {"acs:SourceIp": ["10.0.0.0/8", "2001:db8::/32"]}}),
    allow(["mq:Get*", "mq:List*", "mq:MqttInstanceAccess"], "*"),
), name="Ops")
NO_DELETE = parse_policy(doc(deny("mq:Delete*")), name="NoDelete")
OFFICE_HOURS = parse_policy(doc(allow("mq:RevokeDeviceCertificate", "*", {
    "DateGreaterThan": {"acs:CurrentTime": "2026-03-01T08:00:00Z"},
    "DateLessThan": {"acs:CurrentTime": "2026-03-01T18:00:00+00:00"},
    "Bool": {"acs:SecureTransport": "true"},
})), name="OfficeHours")

PRINCIPALS = {
    "ops": [OPS, NO_DELETE],
    "reader": [SYSTEM_POLICIES["PkiReadOnlyAccess"]],
    "factory": [SYSTEM_POLICIES["PkiFactoryProvisioner"]],
    "revoker": [SYSTEM_POLICIES["PkiRevoker"]],
    "oncall": [OFFICE_HOURS, SYSTEM_POLICIES["PkiReadOnlyAccess"]],
    "full": [SYSTEM_POLICIES["PkiFullAccess"]],
    "admin": [SYSTEM_POLICIES["PkiAdministratorAccess"]],
    "nobody": [],
}

LAN = RequestContext(now=T0, source_ip="10.1.2.3", secure_transport=True)
LAN6 = RequestContext(now=T0, source_ip="2001:db8::5", secure_transport=True)
WAN = RequestContext(now=T0, source_ip="198.51.100.7", secure_transport=True)
NIGHT = RequestContext(now=T0.replace(hour=23), source_ip="10.1.2.3", secure_transport=True)
PLAIN = RequestContext(now=T0, source_ip="10.1.2.3", secure_transport=False)

ACCOUNT_RES = "acs:mq:local:default:*"

# (principal, operation, resource, context, allowed, decided_by or None)
MATRIX = [
    # an Allow with a CIDR condition on a wildcard resource
    ("ops", "ca.register", PROD, LAN, True, ("Ops", 0)),
    ("ops", "ca.register", PROD, LAN6, True, ("Ops", 0)),
    ("ops", "ca.register", PROD, WAN, False, None),  # condition fails: implicit deny
    ("ops", "ca.register", STAGING, LAN, False, None),  # resource does not match prod-*
    ("ops", "ca.register", "acs:mq:local:default:PROD-eu", LAN, False, None),  # resources are case-sensitive
    ("ops", "ca.show", STAGING, WAN, True, ("Ops", 1)),  # read from anywhere
    # explicit deny beats both allows
    ("ops", "ca.delete", PROD, LAN, False, ("NoDelete", 0)),
    ("ops", "device.delete", STAGING, WAN, False, ("NoDelete", 0)),
    # dependent actions: provision needs IssueDeviceCertificate and instance access too
    ("ops", "device.provision", PROD, LAN, True, ("Ops", 0)),
    ("factory", "device.issue", STAGING, WAN, True, ("PkiFactoryProvisioner", 0)),
    ("factory", "device.provision", PROD, WAN, True, ("PkiFactoryProvisioner", 0)),
    ("factory", "device.revoke", PROD, LAN, False, None),
    ("factory", "ca.register", PROD, LAN, False, None),
    ("factory", "secret.reveal", PROD, LAN, False, None),
    # the read-only system policy
    ("reader", "ca.show", PROD, WAN, True, ("PkiReadOnlyAccess", 0)),
    ("reader", "device.list", PROD, WAN, True, ("PkiReadOnlyAccess", 0)),
    ("reader", "secret.list", PROD, WAN, True, ("PkiReadOnlyAccess", 0)),
    ("reader", "secret.show", PROD, WAN, True, ("PkiReadOnlyAccess", 0)),
    ("reader", "secret.reveal", PROD, WAN, False, None),  # never a secret
    ("reader", "secret.unregister", PROD, WAN, False, None),  # mq:MqttInstanceAccess alone is not enough
    ("reader", "secret.verify", PROD, WAN, False, None),
    ("reader", "code.new", PROD, WAN, False, None),
    ("reader", "ca.deactivate", PROD, WAN, False, None),
    ("reader", "audit.list", ACCOUNT_RES, WAN, False, None),
    # the revoker
    ("revoker", "device.revoke", PROD, WAN, True, ("PkiRevoker", 0)),
    ("revoker", "device.deactivate", PROD, WAN, True, ("PkiRevoker", 0)),
    ("revoker", "secret.deactivate", PROD, WAN, True, ("PkiRevoker", 0)),
    ("revoker", "device.activate", PROD, WAN, False, None),
    ("revoker", "device.issue", PROD, WAN, False, None),
    # date and Bool conditions, ANDed across operators
    ("oncall", "device.revoke", PROD, LAN, True, ("OfficeHours", 0)),
    ("oncall", "device.revoke", PROD, NIGHT, False, None),
    ("oncall", "device.revoke", PROD, PLAIN, False, None),
    ("oncall", "device.revoke", PROD, RequestContext(now=T0), False, None),  # no SecureTransport: Bool false
    # full access is everything but granting rights
    ("full", "ca.delete", PROD, WAN, True, ("PkiFullAccess", 0)),
    ("full", "secret.reveal", PROD, WAN, True, ("PkiFullAccess", 0)),
    ("full", "audit.verify", ACCOUNT_RES, WAN, True, ("PkiFullAccess", 0)),
    ("full", "user.create", ACCOUNT_RES, WAN, False, None),
    ("full", "policy.attach", ACCOUNT_RES, WAN, False, None),
    ("admin", "policy.attach", ACCOUNT_RES, WAN, True, ("PkiAdministratorAccess", 0)),
    # default deny
    ("nobody", "ca.show", PROD, LAN, False, None),
    ("nobody", "secret.list", PROD, LAN, False, None),
]


@pytest.mark.parametrize("principal,operation,resource,context,allowed,decided_by", MATRIX)
def test_policy_matrix(principal, operation, resource, context, allowed, decided_by):
    decision = authorize(PRINCIPALS[principal], operation=operation, resource=resource, context=context)
    assert decision.allowed is allowed, decision.reason
    assert decision.decided_by == decided_by
    assert decision.reason


def test_every_operation_is_decided_for_every_principal():
    """No operation errors or is allowed by nothing; the admin may do all, nobody nothing."""
    for operation, op in ACTIONS.items():
        res = ACCOUNT_RES if op.scope == "account" else PROD
        assert authorize(PRINCIPALS["admin"], operation=operation, resource=res, context=LAN).allowed
        assert not authorize(PRINCIPALS["nobody"], operation=operation, resource=res, context=LAN).allowed


# -- dependent actions ------------------------------------------------------------------------

SEED_DEPENDS_ON_INSTANCE_ACCESS = [
    "mq:RegisterCa", "mq:UnregisterDeviceCertificate", "mq:ActiveCaCertificate", "mq:UnregisterCaCertificate",
    "mq:DeleteDeviceCertificate", "mq:ListCaCertificate", "mq:ListDeviceCertificateByCaSn",
    "mq:ActiveDeviceCertificate", "mq:DeleteCaCertificate", "mq:GetRegisterCode", "mq:GetCaCertificate",
    "mq:GetDeviceCertificate", "mq:ListDeviceCertificate",
]
SEED_NO_DEPENDENTS = ["mq:GetDeviceCredential", "mq:RegisterDeviceCredential", "mq:RefreshDeviceCredential"]


def test_catalogue_uses_the_seed_names_and_dependents():
    by_action = {}
    for op in ACTIONS.values():
        by_action.setdefault(op.action, op)
    for action in SEED_DEPENDS_ON_INSTANCE_ACCESS:
        assert action in by_action, action
        assert p.INSTANCE_ACCESS in by_action[action].dependents, action
    for action in SEED_NO_DEPENDENTS:
        assert by_action[action].dependents == ()
    # That table names ListDeviceCredentialClientId's action mq:MqttInstanceAccess; it is a
    # dependent here, under an action of its own (tests/test_policy_secret_list.py).
    assert ACTIONS["secret.list"].action == "mq:ListDeviceCredential"
    assert ACTIONS["secret.list"].dependents == (p.INSTANCE_ACCESS,)
    assert p.INSTANCE_ACCESS in ACTIONS["secret.unregister"].actions
    assert ACTIONS["ca.deactivate"].action == "mq:UnregisterCaCertificate"
    assert ACTIONS["device.deactivate"].action == "mq:UnregisterDeviceCertificate"


def test_register_ca_needs_instance_access_too():
    only_register = [parse_policy(doc(allow("mq:RegisterCa")), name="OnlyRegister")]
    decision = authorize(only_register, operation="ca.register", resource=PROD)
    assert not decision.allowed and decision.action == p.INSTANCE_ACCESS
    assert "mq:MqttInstanceAccess" in decision.reason and "ca.register" in decision.reason
    # evaluate() alone looks at one action: RegisterCa itself is allowed
    assert evaluate(only_register, action="mq:RegisterCa", resource=PROD).allowed
    both = [parse_policy(doc(allow(["mq:RegisterCa", "mq:MqttInstanceAccess"])), name="Both")]
    assert authorize(both, operation="ca.register", resource=PROD).allowed
    # a Deny on the dependent refuses the operation, naming the statement
    denied = both + [parse_policy(doc(deny("mq:MqttInstanceAccess", PROD)), name="NoInstance")]
    decision = authorize(denied, operation="ca.register", resource=PROD)
    assert not decision.allowed and decision.decided_by == ("NoInstance", 0)


# -- wildcards -----------------------------------------------------------------------------------


def test_actions_match_case_insensitively_resources_do_not():
    pol = [parse_policy(doc(allow("MQ:getca*", "acs:mq:*:*:Prod")), name="X")]
    assert evaluate(pol, action="mq:GetCaCertificate", resource="acs:mq:r:a:Prod").allowed
    assert not evaluate(pol, action="mq:GetCaCertificate", resource="acs:mq:r:a:prod").allowed


def test_question_mark_matches_one_character():
    pol = [parse_policy(doc(allow("mq:GetCaCertificate", "acs:mq:*:*:line-?")), name="X")]
    assert evaluate(pol, action="mq:GetCaCertificate", resource="acs:mq:r:a:line-1").allowed
    assert not evaluate(pol, action="mq:GetCaCertificate", resource="acs:mq:r:a:line-12").allowed
    assert not evaluate(pol, action="mq:GetCaCertificate", resource="acs:mq:r:a:line-").allowed


def test_star_spans_colons_and_regex_characters_are_literal():
    pol = [parse_policy(doc(allow("mq:GetCaCertificate", "acs:mq:*")), name="X")]
    assert evaluate(pol, action="mq:GetCaCertificate", resource="acs:mq:r:a:i").allowed
    dotted = [parse_policy(doc(allow("mq:GetCaCertificate", "acs:mq:r:a:a.b")), name="Y")]
    assert not evaluate(dotted, action="mq:GetCaCertificate", resource="acs:mq:r:a:aXb").allowed


# -- conditions ----------------------------------------------------------------------------------


def _one(condition, **ctx):
    pol = [parse_policy(doc(allow("mq:GetCaCertificate", "*", condition)), name="C")]
    return evaluate(pol, action="mq:GetCaCertificate", resource=PROD, context=ctx).allowed


@pytest.mark.parametrize("ip,expected", [
    ("192.0.2.10", True), ("192.0.2.255", True), ("192.0.3.1", False), ("203.0.113.9", True),
    ("2001:db8:1::1", True), ("2001:db9::1", False), ("::ffff:192.0.2.10", True), ("not-an-ip", False),
])
def test_ip_address(ip, expected):
    cond = {"IpAddress": {"acs:SourceIp": ["192.0.2.0/24", "203.0.113.9", "2001:db8::/32"]}}
    assert _one(cond, **{"acs:SourceIp": ip}) is expected


def test_not_ip_address_and_missing_key():
    cond = {"NotIpAddress": {"acs:SourceIp": ["10.0.0.0/8", "fd00::/8"]}}
    assert _one(cond, **{"acs:SourceIp": "192.0.2.1"})
    assert not _one(cond, **{"acs:SourceIp": "10.9.9.9"})
    assert not _one(cond, **{"acs:SourceIp": "fd12::1"})
    assert _one(cond)  # negated operator, key absent: true (RAM/AWS semantics)
    assert not _one({"IpAddress": {"acs:SourceIp": "10.0.0.0/8"}})  # positive operator, key absent: false


def test_dates():
    before = {"DateLessThan": {"acs:CurrentTime": "2026-03-01T12:00:00Z"}}
    after = {"DateGreaterThan": {"acs:CurrentTime": "2026-03-01T20:00:00+08:00"}}  # = 12:00Z
    assert _one(before, **{"acs:CurrentTime": T0 - _dt.timedelta(seconds=1)})
    assert not _one(before, **{"acs:CurrentTime": T0})
    assert _one(after, **{"acs:CurrentTime": T0 + _dt.timedelta(seconds=1)})
    assert not _one(after, **{"acs:CurrentTime": T0})
    assert _one(after, **{"acs:CurrentTime": "2026-03-01T12:00:01Z"})


def test_string_operators():
    eq = {"StringEquals": {"pki:Team": ["ops", "sec"]}}
    assert _one(eq, **{"pki:Team": "sec"}) and not _one(eq, **{"pki:Team": "Ops"}) and not _one(eq)
    ne = {"StringNotEquals": {"pki:Team": ["ops", "sec"]}}
    assert _one(ne, **{"pki:Team": "dev"}) and not _one(ne, **{"pki:Team": "ops"}) and _one(ne)
    like = {"StringLike": {"pki:Line": ["line-?", "eu-*"]}}
    assert _one(like, **{"pki:Line": "line-7"}) and _one(like, **{"pki:Line": "eu-west-1"})
    assert not _one(like, **{"pki:Line": "line-77"}) and not _one(like, **{"pki:Line": "us-eu-1"})


def test_bool_secure_transport():
    cond = {"Bool": {"acs:SecureTransport": "true"}}
    assert _one(cond, **{"acs:SecureTransport": True})
    assert not _one(cond, **{"acs:SecureTransport": False})
    assert _one({"Bool": {"acs:SecureTransport": False}}, **{"acs:SecureTransport": "false"})


def test_and_across_keys_or_across_values_and_key_case():
    cond = {"StringEquals": {"pki:Team": ["ops", "sec"], "pki:Site": "fab1"},
            "IpAddress": {"acs:sourceip": "10.0.0.0/8"}}
    ok = {"pki:team": "ops", "PKI:Site": "fab1", "acs:SourceIp": "10.0.0.1"}
    assert _one(cond, **ok)
    assert not _one(cond, **{**ok, "PKI:Site": "fab2"})
    assert not _one(cond, **{**ok, "acs:SourceIp": "11.0.0.1"})


def test_deny_with_not_ip_address_fences_everything_outside_the_office():
    pols = [SYSTEM_POLICIES["PkiFullAccess"],
            parse_policy(doc(deny("*", "*", {"NotIpAddress": {"acs:SourceIp": "10.0.0.0/8"}})), name="Fence")]
    assert authorize(pols, operation="device.issue", resource=PROD, context=LAN).allowed
    outside = authorize(pols, operation="device.issue", resource=PROD, context=WAN)
    assert not outside.allowed and outside.decided_by == ("Fence", 0)


# -- property: explicit deny always wins; allow iff an allow matches -----------------------------

_ACTION_PATTERNS = st.sampled_from(["*", "mq:*", "mq:Get*", "mq:List*", "mq:*Device*", "mq:RegisterCa",
                                    "mq:?etCaCertificate", "mq:revoke*", "mq:MqttInstanceAccess"])
_RESOURCE_PATTERNS = st.sampled_from(["*", "acs:mq:*:*:prod-*", "acs:mq:*:*:staging", "acs:mq:local:*:*",
                                      "acs:mq:other:*:*", "acs:mq:*:*:prod-e?"])
_STATEMENTS = st.builds(
    lambda effect, actions, resources: {"Effect": effect, "Action": actions, "Resource": resources},
    st.sampled_from(["Allow", "Deny"]),
    st.lists(_ACTION_PATTERNS, min_size=1, max_size=3),
    st.lists(_RESOURCE_PATTERNS, min_size=1, max_size=2),
)


@hsettings(max_examples=300, deadline=None)
@given(
    policies=st.lists(st.lists(_STATEMENTS, min_size=1, max_size=4), max_size=3),
    action=st.sampled_from(sorted(p.ACTION_NAMES)),
    resource=st.sampled_from([PROD, STAGING, "acs:mq:other:default:prod-eu", "acs:mq:local:default:prod-e1"]),
)
def test_deny_wins_allow_needs_a_match(policies, action, resource):
    compiled = [parse_policy(doc(*stmts), name=f"P{i}") for i, stmts in enumerate(policies)]

    def hits(s):
        return (any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in s["Action"])
                and any(fnmatch.fnmatchcase(resource, r) for r in s["Resource"]))

    all_statements = [s for stmts in policies for s in stmts]
    denied = any(hits(s) for s in all_statements if s["Effect"] == "Deny")
    allowed = any(hits(s) for s in all_statements if s["Effect"] == "Allow")
    decision = evaluate(compiled, action=action, resource=resource)
    assert decision.allowed is (allowed and not denied)
    if decision.decided_by is not None:
        name, index = decision.decided_by
        chosen = policies[int(name[1:])][index]
        assert hits(chosen) and chosen["Effect"] == ("Allow" if decision.allowed else "Deny")
    else:
        assert not allowed and not denied


@hsettings(max_examples=300, deadline=None)
@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(
        st.sampled_from(["Version", "Statement", "Effect", "Action", "Resource", "Condition", "IpAddress",
                         "acs:SourceIp", "x"]), children, max_size=4),
    max_leaves=12,
))
def test_parse_refuses_garbage_only_with_invalid_policy(document):
    try:
        parse_policy(document)
    except InvalidInput as exc:
        assert exc.code == "invalid_policy" and exc.data["field"] in exc.message


# -- malformed documents -----------------------------------------------------------------------------

GOOD = allow("mq:GetCaCertificate")
MALFORMED = [
    ("not json", "(document)"),
    ([GOOD], "(document)"),
    ({"Statement": [GOOD]}, "Version"),
    ({"Version": 1, "Statement": [GOOD]}, "Version"),
    ({"Version": "2", "Statement": [GOOD]}, "Version"),
    ({"Version": "1"}, "Statement"),
    ({"Version": "1", "Statement": []}, "Statement"),
    ({"Version": "1", "Statement": [GOOD], "Id": "x"}, "Id"),
    (doc(GOOD, {**GOOD, "Effect": "allow"}), "Statement[1].Effect"),
    (doc({"Action": "mq:GetCaCertificate", "Resource": "*"}), "Statement[0].Effect"),
    (doc({"Effect": "Allow", "Resource": "*"}), "Statement[0].Action"),
    (doc({"Effect": "Allow", "Action": "mq:GetCaCertificate"}), "Statement[0].Resource"),
    (doc({**GOOD, "NotAction": "mq:x"}), "Statement[0].NotAction"),
    (doc("Allow everything"), "Statement[0]"),
    (doc({**GOOD, "Action": []}), "Statement[0].Action"),
    (doc({**GOOD, "Action": ["mq:GetCaCertificate", 7]}), "Statement[0].Action[1]"),
    (doc({**GOOD, "Action": "mq:GetCaCertificat"}), "Statement[0].Action"),
    (doc({**GOOD, "Action": ["mq:Get*", "mq:Frobnicate*"]}), "Statement[0].Action[1]"),
    (doc({**GOOD, "Action": "GetCaCertificate"}), "Statement[0].Action"),
    (doc({**GOOD, "Resource": "acs:mq:default"}), "Statement[0].Resource"),
    (doc({**GOOD, "Resource": ["*", "acs:ecs:*:*:*"]}), "Statement[0].Resource[1]"),
    (doc({**GOOD, "Condition": []}), "Statement[0].Condition"),
    (doc({**GOOD, "Condition": {"IpAdress": {"acs:SourceIp": "10.0.0.0/8"}}}), "Statement[0].Condition.IpAdress"),
    (doc({**GOOD, "Condition": {"ipaddress": {"acs:SourceIp": "10.0.0.0/8"}}}), "Statement[0].Condition.ipaddress"),
    (doc({**GOOD, "Condition": {"IpAddress": {"acs:SourceIp": "10.0.0.0/33"}}}),
     "Statement[0].Condition.IpAddress.acs:SourceIp"),
    (doc({**GOOD, "Condition": {"IpAddress": {"acs:SourceIp": ["10.0.0.0/8", "x"]}}}),
     "Statement[0].Condition.IpAddress.acs:SourceIp[1]"),
    (doc({**GOOD, "Condition": {"IpAddress": {"acs:CurrentTime": "10.0.0.0/8"}}}),
     "Statement[0].Condition.IpAddress.acs:CurrentTime"),
    (doc({**GOOD, "Condition": {"DateLessThan": {"acs:CurrentTime": "tomorrow"}}}),
     "Statement[0].Condition.DateLessThan.acs:CurrentTime"),
    (doc({**GOOD, "Condition": {"DateLessThan": {"acs:CurrentTime": "2026-01-01T00:00:00"}}}),
     "Statement[0].Condition.DateLessThan.acs:CurrentTime"),
    (doc({**GOOD, "Condition": {"Bool": {"acs:SecureTransport": "yes"}}}),
     "Statement[0].Condition.Bool.acs:SecureTransport"),
    (doc({**GOOD, "Condition": {"StringEquals": {"team": "ops"}}}), "Statement[0].Condition.StringEquals.team"),
    (doc({**GOOD, "Condition": {"StringLike": {"pki:Team": []}}}), "Statement[0].Condition.StringLike.pki:Team"),
    (doc({**GOOD, "Condition": {"StringLike": {"pki:Team": 3}}}), "Statement[0].Condition.StringLike.pki:Team"),
    (json.dumps(doc(*[GOOD] * 200)), "(document)"),
]


@pytest.mark.parametrize("document,field", MALFORMED)
def test_malformed_documents_name_the_field(document, field):
    with pytest.raises(InvalidInput) as info:
        parse_policy(document)
    assert info.value.code == "invalid_policy"
    assert info.value.data["field"] == field
    assert field in info.value.message


def test_lone_statement_object_and_canonical_action_spelling():
    pol = parse_policy({"Version": "1", "Statement": {"Effect": "Allow", "Action": "mq:registerca", "Resource": "*"}})
    assert pol.statements[0].actions == ("mq:RegisterCa",)


def test_resource_name():
    assert p.resource_name("cn-hangzhou", "123456", "default") == "acs:mq:cn-hangzhou:123456:default"
    assert p.account_resource("local", "default") == ACCOUNT_RES
    with pytest.raises(InvalidInput):
        p.resource_name("a:b", "1", "i")


def test_system_policies_are_valid_documents():
    for name, pol in SYSTEM_POLICIES.items():
        assert parse_policy(pol.document, name=name).statements == pol.statements
        assert pol.description


# -- the store: principals with attached policies; refusals on the audit log -----------------------


def test_matrix_through_the_store_and_refusals_audited(ctx, tmp_path):
    policy_service.create_policy(ctx, "Ops", OPS.document)
    policy_service.create_policy(ctx, "NoDelete", NO_DELETE.document)
    users = {}
    for name, pols in (("ops", ["Ops", "NoDelete"]), ("reader", ["PkiReadOnlyAccess"]), ("nobody", [])):
        user_service.create_user(ctx, name)
        for pol in pols:
            policy_service.attach_policy(ctx, pol, user=name)
        users[name] = authz.Principal(kind="user", name=name)
    before = audit.verify(ctx).head_seq
    denied = 0
    for principal, operation, resource, context, allowed, decided_by in MATRIX:
        if principal not in users:
            continue
        if allowed:
            decision = authz.authorize(ctx, users[principal], operation, resource, context)
            assert decision.decided_by == decided_by
        else:
            with pytest.raises(PermissionDenied) as info:
                authz.authorize(ctx, users[principal], operation, resource, context)
            denied += 1
            assert info.value.code == "access_denied"
            assert ACTIONS[operation].action in info.value.message or info.value.data["action"] in info.value.message
            assert info.value.data["user"] == users[principal].name and "policy" in info.value.message
    # the account needs no policy
    assert authz.authorize(ctx, authz.ACCOUNT, "ca.delete", PROD).allowed
    records = audit.list_records(ctx, result="denied", limit=1000).items
    assert len(records) == denied and audit.verify(ctx).head_seq == before + denied
    first = records[0]
    assert first.principal == "ops" and first.source_ip == "198.51.100.7" and first.error_code == "access_denied"
    assert first.details["operation"] == "ca.register"


def test_simulate_names_the_statement(ctx):
    user_service.create_user(ctx, "carol")
    policy_service.create_policy(ctx, "NoDelete", NO_DELETE.document)
    policy_service.attach_policy(ctx, "PkiFullAccess", user="carol")
    policy_service.attach_policy(ctx, "NoDelete", user="carol")
    d = authz.simulate(ctx, "carol", "mq:DeleteCaCertificate", PROD)
    assert not d.allowed and d.decided_by == ("NoDelete", 0)
    d = authz.simulate(ctx, "carol", "ca.register")
    assert d.allowed and d.decided_by == ("PkiFullAccess", 0) and d.resource == "acs:mq:local:default:default"
    with pytest.raises(InvalidInput):
        authz.simulate(ctx, "carol", "mq:Nope")
    user_service.disable_user(ctx, "carol")
    assert not authz.simulate(ctx, "carol", "ca.register").allowed
    assert authz.simulate(ctx, "account", "policy.attach").allowed


# -- wildcards cost linear time; patterns are bounded ---------------------------------------------


def _starry(n_stars: int = 200, length: int = 1000) -> str:
    """A resource pattern of ``length`` characters with ``n_stars`` stars, each before 'xxx'."""
    body = "acs:mq:" + "*xxx" * n_stars
    return body + "z" * (length - len(body))


def test_a_run_of_stars_in_an_action_is_parsed_at_once(ctx):
    with pytest.raises(InvalidInput) as err:
        parse_policy(doc(allow("mq:************Q")), name="X")
    assert err.value.code == "invalid_policy" and "matches no action" in err.value.message
    with pytest.raises(InvalidInput):
        policy_service.create_policy(ctx, "Stars", json.dumps(doc(allow("mq:************Q"))))
    pol = [parse_policy(doc(allow("mq:************Certificate")), name="Y")]
    assert evaluate(pol, action="mq:GetCaCertificate", resource=PROD).allowed
    assert not evaluate(pol, action="mq:MqttInstanceAccess", resource=PROD).allowed


def test_a_pattern_of_200_stars_evaluates(ctx):
    pattern = _starry()
    assert len(pattern) == 1000 and pattern.count("*") == 200
    user_service.create_user(ctx, "dana")
    policy_service.create_policy(ctx, "Starry", json.dumps(doc(
        allow("mq:GetCaCertificate", pattern, {"StringLike": {"pki:Line": pattern}}))))
    policy_service.attach_policy(ctx, "Starry", user="dana")
    miss = "acs:mq:" + "x" * 3000  # no z at the end: every placement of the stars is a miss
    hit = miss + "z" * (len(pattern) - pattern.rindex("x") - 1)
    assert not authz.simulate(ctx, "dana", "mq:GetCaCertificate", miss, extra={"pki:Line": miss}).allowed
    assert not authz.simulate(ctx, "dana", "mq:GetCaCertificate", hit, extra={"pki:Line": miss}).allowed
    assert authz.simulate(ctx, "dana", "mq:GetCaCertificate", hit, extra={"pki:Line": hit}).allowed


@pytest.mark.parametrize("where", ["Action", "Resource", "StringLike"])
@pytest.mark.parametrize("pattern", [
    "mq:" + "a" * p.MAX_PATTERN_CHARS,
    "mq:" + "*a" * (p.MAX_WILDCARDS // 2) + "?a" * (p.MAX_WILDCARDS // 2) + "*",
], ids=["too-long", "too-many-wildcards"])
def test_patterns_are_bounded(where, pattern):
    resource = "acs:" + pattern  # acs:mq:...
    statement = {"Action": allow(pattern), "Resource": allow("mq:GetCaCertificate", resource),
                 "StringLike": allow("mq:GetCaCertificate", "*", {"StringLike": {"pki:Line": pattern}})}[where]
    with pytest.raises(InvalidInput) as err:
        parse_policy(doc(statement), name="X")
    assert err.value.code == "policy_pattern_too_long"
    assert str(p.MAX_PATTERN_CHARS) in err.value.message and str(p.MAX_WILDCARDS) in err.value.message
    assert err.value.data["field"].startswith("Statement[0].")


@given(st.text("ab?*", min_size=1, max_size=10), st.text("ab?*", max_size=12))
@hsettings(max_examples=500, deadline=None)
def test_wildcards_match_like_fnmatch(pattern, text):
    assert p._wildcard(pattern, ignore_case=False).match(text) == fnmatch.fnmatchcase(text, pattern)


# -- times UTC cannot hold: refused as input, never an OverflowError ------------------------------

OUT_OF_RANGE = ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"]


@pytest.mark.parametrize("text", OUT_OF_RANGE)
def test_out_of_range_times_are_invalid_input(ctx, text):
    from pki.ids import parse_time

    for naive_is_utc in (False, True):
        with pytest.raises(InvalidInput) as err:
            parse_time(text, what="--at", naive_is_utc=naive_is_utc)
        assert err.value.code == "invalid_time" and "out of range" in err.value.message
    assert parse_time(text.replace("+01:00", "Z").replace("-01:00", "Z")).tzinfo is not None  # the edges hold
    with pytest.raises(InvalidInput) as err:
        parse_policy(doc(allow("mq:GetCaCertificate", "*", {"DateLessThan": {"acs:CurrentTime": text}})), name="D")
    assert err.value.code == "invalid_policy" and "out of range" in err.value.message
    assert err.value.data["field"] == "Statement[0].Condition.DateLessThan.acs:CurrentTime"
    # A request time UTC cannot hold satisfies no Date condition (as one that is no time at all).
    before = {"DateLessThan": {"acs:CurrentTime": "2026-03-01T12:00:00Z"}}
    assert not _one(before, **{"acs:CurrentTime": text})
    assert not _one(before, **{"acs:CurrentTime": _dt.datetime.fromisoformat(text)})


@pytest.mark.parametrize("text", OUT_OF_RANGE)
def test_out_of_range_times_exit_3_from_the_cli(settings, ctx, capsys, text):
    from pki.cli.main import main
    from pki.cli.render import EXIT_CODES

    def run(*args: str) -> tuple[int, str, str]:
        code = main(["--home", str(settings.home), "--database-url", settings.database_url, *args])
        return code, *capsys.readouterr()

    rc, out, _ = run("ca", "create", "--name", "Root", "--json")
    assert rc == 0
    for args in (("device", "list", "--ca", json.loads(out)["sn"], "--expiring-before", text),
                 ("policy", "simulate", "--user", "account", "--action", "ca.create", "--at", text)):
        rc, _, err = run(*args)
        assert rc == EXIT_CODES["invalid_input"] == 3 and err.startswith("error[invalid_time]:"), err
    document = settings.home / "dated.json"
    document.write_text(json.dumps(doc(allow("mq:*", "*", {"DateLessThan": {"acs:CurrentTime": text}}))))
    rc, _, err = run("policy", "create", "Dated", "--document", str(document))
    assert rc == 3 and err.startswith("error[invalid_policy]:") and "out of range" in err


@pytest.mark.parametrize("text", OUT_OF_RANGE)
def test_out_of_range_times_are_400_over_http(ctx, text):
    from tests.support.http_app import app_for, make_user, signed_client
    from pki.client import ApiError

    api = signed_client(app_for(ctx), make_user(ctx, "admin", "PkiAdministratorAccess"))
    ca = api.call("POST", "/v1/cas", json={"name": "Root"})
    for method, path, kw in (
        ("GET", f"/v1/cas/{ca['sn']}/devices", {"params": {"expiring_before": text}}),
        ("POST", "/v1/policies/simulate", {"json": {"user": "admin", "action": "ca.create", "at": text}}),
        ("POST", "/v1/policies", {"json": {"name": "Dated", "document": doc(
            allow("mq:*", "*", {"DateLessThan": {"acs:CurrentTime": text}}))}}),
    ):
        with pytest.raises(ApiError) as err:
            api.call(method, path, **kw)
        assert err.value.status == 400 and err.value.family == "invalid_input", (path, err.value.message)
        assert "out of range" in err.value.message
