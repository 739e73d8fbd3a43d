"""The access-policy engine: RAM-style documents, the action catalogue, decisions.

Pure: no store, no clock of its own (the time comes in the request context).
:mod:`pki.services.policies` keeps policies in the store and
:mod:`pki.services.authorize` calls :func:`evaluate` and :func:`authorize` here.

A document, as Alibaba Cloud RAM writes it::

    {"Version": "1",
     "Statement": [{"Effect": "Allow" | "Deny",
                    "Action": "mq:RegisterCa" | ["mq:Get*", ...],
                    "Resource": "acs:mq:*:*:default" | [...],
                    "Condition": {"IpAddress": {"acs:SourceIp": ["10.0.0.0/8"]}}}]}

Matching rules (the choices, in one place):

- ``Action`` patterns match **case-insensitively** (as RAM does): ``mq:get*``
  matches ``mq:GetCaCertificate``.  An action without wildcards must be one of
  :data:`ACTION_NAMES`, and a pattern must match at least one of them: a typo
  in a policy is refused when it is created, not discovered at 3 a.m.
- ``Resource`` patterns match **case-sensitively** (instance names are
  case-sensitive everywhere else in the project).  ``*`` matches any run of
  characters, ``:`` included; ``?`` matches one character.
- Condition operators are case-sensitive (``IpAddress``), condition keys are
  not (``acs:sourceip`` is ``acs:SourceIp``), as in RAM.
- Inside one operator block, keys are ANDed; the values of one key are ORed;
  operator blocks are ANDed.  A negated operator (``NotIpAddress``,
  ``StringNotEquals``) is true when the value matches *none* of the listed
  values, and also when the request carries no such key (AWS/RAM semantics);
  a positive operator is false when the key is missing.
- An explicit ``Deny`` wins over any ``Allow``; without an ``Allow`` the
  answer is an implicit deny.
- Statements are numbered from 0, as in error messages (``Statement[1].Effect``).
"""

from __future__ import annotations

import datetime as _dt
import functools
import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..clock import ensure_utc
from ..errors import InvalidInput

__all__ = [
    "Operation",
    "ACTIONS",
    "ACTION_NAMES",
    "INSTANCE_ACCESS",
    "Condition",
    "Statement",
    "Policy",
    "Decision",
    "RequestContext",
    "SYSTEM_POLICIES",
    "MAX_DOCUMENT_CHARS",
    "MAX_PATTERN_CHARS",
    "MAX_WILDCARDS",
    "DEFAULT_REGION",
    "DEFAULT_ACCOUNT",
    "resource_name",
    "account_resource",
    "parse_policy",
    "evaluate",
    "authorize",
    "required_actions",
    "action_catalogue",
]

# == the action catalogue ===================================================================

#: The "instance access" action of Alibaba Cloud RAM's action table for ApsaraMQ for MQTT:
#: a dependent of most CA and device actions.
INSTANCE_ACCESS = "mq:MqttInstanceAccess"


@dataclass(frozen=True)
class Operation:
    """One CLI operation (``"ca.register"``) and the actions a principal needs for it.

    ``action`` is checked first, then each of ``dependents`` (the "Dependent
    action" column of Alibaba Cloud RAM's action table for ApsaraMQ for MQTT);
    all must be allowed.  ``scope`` says which
    resource to check: the instance (``acs:mq:{region}:{account}:{instance}``)
    or the account (``acs:mq:{region}:{account}:*``) for principals, policies
    and the audit log, which belong to no instance.  ``access`` is that table's
    access level (create, get, list, update, delete), plus ``secret`` for the
    operations that reveal a device secret (kept out of the read-only policy).
    """

    name: str
    action: str
    dependents: tuple[str, ...] = ()
    access: str = "update"
    scope: str = "instance"

    @property
    def actions(self) -> tuple[str, ...]:
        return (self.action, *self.dependents)


def _ops(*rows: tuple) -> dict[str, Operation]:
    table = {}
    for name, action, dependents, access, *rest in rows:
        table[name] = Operation(name, action, tuple(dependents), access, *(rest or ["instance"]))
    return table


_IA = (INSTANCE_ACCESS,)

#: Every operation a front end performs on behalf of a principal -> what it needs.
#: The names and dependents of Alibaba Cloud RAM's action table for ApsaraMQ for MQTT for
#: the APIs it lists; ours, in the same style, for the rest.  Offline helpers (``ca verification-cert``,
#: ``crl sign``) and ``init`` touch no store a server shares and are not here.
ACTIONS: Mapping[str, Operation] = _ops(
    # register codes and CAs
    ("code.new", "mq:GetRegisterCode", _IA, "get"),
    ("ca.register", "mq:RegisterCa", _IA, "create"),
    ("ca.create", "mq:CreateCaCertificate", _IA, "create"),
    ("ca.list", "mq:ListCaCertificate", _IA, "list"),
    ("ca.show", "mq:GetCaCertificate", _IA, "get"),
    ("ca.activate", "mq:ActiveCaCertificate", _IA, "update"),
    ("ca.deactivate", "mq:UnregisterCaCertificate", _IA, "update"),  # that table: InactivateCaCertificate
    ("ca.delete", "mq:DeleteCaCertificate", _IA, "delete"),
    ("ca.update", "mq:UpdateCaCertificate", _IA, "update"),  # ours: EST label, default, bootstrap-only, windows
    # a managed CA signed by an outside root: its key and CSR, then its certificate (ours)
    ("ca.request", "mq:CreateCaCertificate", _IA, "create"),
    ("ca.install", "mq:CreateCaCertificate", _IA, "create"),
    # device certificates
    ("device.issue", "mq:IssueDeviceCertificate", _IA, "create"),
    ("device.register", "mq:RegisterDeviceCertificate", _IA, "create"),
    ("device.provision", "mq:ProvisionDevices", (INSTANCE_ACCESS, "mq:IssueDeviceCertificate"), "create"),
    ("device.list", "mq:ListDeviceCertificateByCaSn", _IA, "list"),
    ("device.find", "mq:ListDeviceCertificate", _IA, "list"),  # by fingerprint or client id
    ("device.show", "mq:GetDeviceCertificate", _IA, "get"),
    ("device.activate", "mq:ActiveDeviceCertificate", _IA, "update"),
    ("device.deactivate", "mq:UnregisterDeviceCertificate", _IA, "update"),  # that table: InactivateDeviceCertificate
    ("device.revoke", "mq:RevokeDeviceCertificate", _IA, "update"),
    ("device.delete", "mq:DeleteDeviceCertificate", _IA, "delete"),
    # renewal and enrollment (ours): a renewal issues, so the factory provisioner may not renew
    ("device.renew", "mq:RenewDeviceCertificate", _IA, "create"),
    ("claim.create", "mq:CreateEnrollmentClaim", _IA, "create"),
    # device secrets (that table lists no dependents for the credential APIs)
    ("secret.register", "mq:RegisterDeviceCredential", (), "create"),
    ("secret.show", "mq:GetDeviceCredential", (), "get"),
    ("secret.reveal", "mq:RevealDeviceCredential", ("mq:GetDeviceCredential",), "secret"),
    ("secret.refresh", "mq:RefreshDeviceCredential", (), "update"),
    # That table names mq:MqttInstanceAccess as the action of UnRegisterDeviceCredential and
    # of ListDeviceCredentialClientId.  Every principal that acts on an instance holds it as a
    # dependent (the read-only user, the factory provisioner), so alone it would let them
    # delete credentials or list every device's: each gets an action of its own, with
    # instance access as its dependent.
    ("secret.unregister", "mq:UnRegisterDeviceCredential", _IA, "delete"),
    ("secret.list", "mq:ListDeviceCredential", _IA, "list"),  # that table: ListDeviceCredentialClientId
    ("secret.activate", "mq:ActiveDeviceCredential", (), "update"),
    ("secret.deactivate", "mq:InactiveDeviceCredential", (), "update"),
    ("secret.verify", "mq:VerifyDeviceCredential", (), "secret"),  # a password oracle: not read-only
    ("secret.derive", "mq:RevealDeviceCredential", ("mq:GetDeviceCredential",), "secret"),
    ("secret.group.create", "mq:CreateDeviceCredentialGroup", (), "create"),
    ("secret.group.show", "mq:GetDeviceCredentialGroup", (), "get"),
    ("secret.group.list", "mq:ListDeviceCredentialGroup", (), "list"),
    ("secret.group.enable", "mq:ActiveDeviceCredentialGroup", (), "update"),
    ("secret.group.disable", "mq:InactiveDeviceCredentialGroup", (), "update"),
    # the broker data plane: identities, permission rules, the connect blocklist (that table lists no
    # dependents for the custom-auth APIs); the default decision is a permission setting, and checking a
    # rule reads permissions
    ("identity.add", "mq:AddCustomAuthIdentity", (), "create"),
    ("identity.update", "mq:UpdateCustomAuthIdentity", (), "update"),
    ("identity.show", "mq:QueryCustomAuthIdentity", (), "get"),
    ("identity.list", "mq:QueryCustomAuthIdentity", (), "list"),
    ("identity.delete", "mq:DeleteCustomAuthIdentity", (), "delete"),
    ("permission.add", "mq:AddCustomAuthPermission", (), "create"),
    ("permission.show", "mq:QueryCustomAuthPermission", (), "get"),
    ("permission.list", "mq:QueryCustomAuthPermission", (), "list"),
    ("permission.delete", "mq:DeleteCustomAuthPermission", (), "delete"),
    ("permission.default.set", "mq:UpdateCustomAuthPermission", (), "update"),
    ("permission.default.get", "mq:QueryCustomAuthPermission", (), "get"),
    ("permission.check", "mq:QueryCustomAuthPermission", (), "get"),
    ("blocklist.add", "mq:AddCustomAuthConnectBlack", (), "create"),
    ("blocklist.list", "mq:QueryCustomAuthConnectBlack", (), "list"),
    ("blocklist.delete", "mq:DeleteCustomAuthConnectBlack", (), "delete"),
    # Hook tokens (ours): the broker's credential for the hooks, which serve every instance: account-wide.
    ("hook.token.create", "mq:CreateBrokerHookToken", (), "create", "account"),
    ("hook.token.list", "mq:ListBrokerHookToken", (), "list", "account"),
    ("hook.token.delete", "mq:DeleteBrokerHookToken", (), "delete", "account"),
    # broker tokens: seed 003's ApplyToken / QueryToken / RevokeToken (instance scope, no dependents); the
    # signing key is ours: per instance (each broker deployment publishes its own key set), and listing the
    # keys reads only what the public JWKS shows
    ("token.apply", "mq:ApplyToken", (), "create"),
    ("token.show", "mq:QueryToken", (), "get"),
    ("token.list", "mq:QueryToken", (), "list"),
    ("token.revoke", "mq:RevokeToken", (), "delete"),
    ("token.key.rotate", "mq:RotateTokenSigningKey", (), "update"),
    ("token.key.list", "mq:QueryToken", (), "list"),
    # artifacts and CRLs
    ("artifacts.publish", "mq:PublishArtifacts", _IA, "create"),
    ("crl.request", "mq:GetCrlRequest", _IA, "get"),
    ("crl.upload", "mq:UploadCrl", _IA, "create"),
    # principals, policies, audit: account-wide
    ("user.create", "mq:ManageUsers", (), "create", "account"),
    ("user.list", "mq:ManageUsers", (), "list", "account"),
    ("user.show", "mq:ManageUsers", (), "get", "account"),
    ("user.enable", "mq:ManageUsers", (), "update", "account"),
    ("user.disable", "mq:ManageUsers", (), "update", "account"),
    ("user.delete", "mq:ManageUsers", (), "delete", "account"),
    ("user.key.create", "mq:ManageUsers", (), "create", "account"),
    ("user.key.enable", "mq:ManageUsers", (), "update", "account"),
    ("user.key.disable", "mq:ManageUsers", (), "update", "account"),
    ("user.key.delete", "mq:ManageUsers", (), "delete", "account"),
    ("policy.create", "mq:ManagePolicies", (), "create", "account"),
    ("policy.list", "mq:ManagePolicies", (), "list", "account"),
    ("policy.show", "mq:ManagePolicies", (), "get", "account"),
    ("policy.delete", "mq:ManagePolicies", (), "delete", "account"),
    ("policy.attach", "mq:ManagePolicies", (), "update", "account"),
    ("policy.detach", "mq:ManagePolicies", (), "update", "account"),
    ("policy.simulate", "mq:ManagePolicies", (), "get", "account"),
    ("audit.list", "mq:ReadAuditLog", (), "list", "account"),
    ("audit.verify", "mq:ReadAuditLog", (), "get", "account"),
    ("audit.batch", "mq:ReadAuditLog", (), "list", "account"),
    # key custody (pki/services/custody.py, master_keys.py): the store's keys, across instances
    ("keys.list", "mq:ListCustodyKeys", (), "list", "account"),
    ("keys.master.rotate", "mq:RotateMasterKey", (), "update", "account"),
    # fleet audit checks (ours): they read every CA and device of the instance and report, never change
    ("check.run", "mq:RunFleetChecks", _IA, "get"),
)

#: Every action name a policy may grant (canonical spelling).
ACTION_NAMES: frozenset[str] = frozenset(a for op in ACTIONS.values() for a in op.actions)
_CANONICAL_ACTION = {a.lower(): a for a in ACTION_NAMES}
#: Granting these lets a principal grant itself anything: never in PkiFullAccess.
_ESCALATING = frozenset({"mq:ManageUsers", "mq:ManagePolicies"})


def required_actions(operation: str) -> tuple[str, ...]:
    """The action of ``operation`` and its dependents, in checking order."""
    try:
        return ACTIONS[operation].actions
    except KeyError:
        raise InvalidInput(
            f"{operation!r} is not an operation; known ones: {', '.join(sorted(ACTIONS))}",
            code="unknown_operation",
        ) from None


def action_catalogue() -> dict[str, Any]:
    """Every operation and the actions it needs, as one page (``pki policy actions``, GET /v1/policies/actions)."""
    return {"items": [{"operation": op.name, "action": op.action, "dependents": list(op.dependents),
                       "access": op.access, "scope": op.scope} for op in ACTIONS.values()], "next_cursor": None}


# == resources ================================================================================

DEFAULT_REGION = "local"
DEFAULT_ACCOUNT = "default"
_RESOURCE_PART = re.compile(r"^[A-Za-z0-9._-]{1,64}\Z")


def resource_name(region: str, account: str, instance: str) -> str:
    """``acs:mq:{region}:{account}:{instance}``: the resource an instance operation is checked on."""
    for what, value in (("region", region), ("account", account)):
        if not isinstance(value, str) or not _RESOURCE_PART.match(value):
            raise InvalidInput(
                f"{what} {value!r} cannot name a resource: use 1-64 of A-Z a-z 0-9 . _ -",
                code="invalid_resource",
            )
    if not isinstance(instance, str) or not instance:
        raise InvalidInput("instance must be a non-empty name", code="invalid_resource")
    return f"acs:mq:{region}:{account}:{instance}"


def account_resource(region: str, account: str) -> str:
    """What account-wide operations (users, policies, audit) are checked on."""
    resource_name(region, account, "*")  # validates region and account
    return f"acs:mq:{region}:{account}:*"


# == documents ================================================================================

#: RAM's limit on a custom policy document.
MAX_DOCUMENT_CHARS = 6144
MAX_STATEMENTS = 100
MAX_VALUES = 100
#: One Action, Resource or StringLike pattern: matching costs at most length x text length.
MAX_PATTERN_CHARS = 1024
MAX_WILDCARDS = 256

_POSITIVE = {"IpAddress", "DateLessThan", "DateGreaterThan", "StringEquals", "StringLike", "Bool"}
_NEGATED = {"NotIpAddress", "StringNotEquals"}
_OPERATORS = _POSITIVE | _NEGATED
_OPERATOR_BY_LOWER = {op.lower(): op for op in _OPERATORS}
#: Operators bound to one key; the String* operators take any key.
_OPERATOR_KEY = {
    "IpAddress": "acs:SourceIp",
    "NotIpAddress": "acs:SourceIp",
    "DateLessThan": "acs:CurrentTime",
    "DateGreaterThan": "acs:CurrentTime",
    "Bool": "acs:SecureTransport",
}
_CONDITION_KEY = re.compile(r"^[A-Za-z0-9_-]+:[A-Za-z0-9_./-]+\Z")
_ACTION_PATTERN = re.compile(r"^[A-Za-z*?]+:[A-Za-z0-9*?]+\Z")
_STATEMENT_KEYS = ("Effect", "Action", "Resource", "Condition")


def _refuse(field_path: str, problem: str) -> InvalidInput:
    return InvalidInput(f"policy document: {field_path} {problem}", code="invalid_policy", field=field_path)


@dataclass(frozen=True)
class Condition:
    operator: str
    key: str  # canonical spelling as written, matched case-insensitively
    values: tuple[Any, ...]  # parsed: networks, datetimes, bools or strings


@dataclass(frozen=True)
class Statement:
    effect: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    conditions: tuple[Condition, ...] = ()
    _action_res: tuple[_Glob, ...] = field(default=(), repr=False, compare=False)
    _resource_res: tuple[_Glob, ...] = field(default=(), repr=False, compare=False)

    def matches_action(self, action: str) -> bool:
        return any(r.match(action) for r in self._action_res)

    def matches_resource(self, resource: str) -> bool:
        return any(r.match(resource) for r in self._resource_res)


@dataclass(frozen=True)
class Policy:
    name: str
    statements: tuple[Statement, ...]
    document: dict = field(compare=False, repr=False, default_factory=dict)
    description: str = ""


def _fits(piece: str, text: str, at: int) -> bool:
    """``piece`` (``?`` = any one character, nothing else special) matches ``text`` at ``at``."""
    if "?" not in piece:
        return text.startswith(piece, at)
    if at + len(piece) > len(text):
        return False
    return all(p == "?" or p == t for p, t in zip(piece, text[at:at + len(piece)]))


def _find(piece: str, text: str, start: int, end: int) -> int:
    """The leftmost position in ``text[start:end]`` where ``piece`` fits whole, or -1."""
    if "?" not in piece:
        return text.find(piece, start, end)
    for at in range(start, end - len(piece) + 1):
        if _fits(piece, text, at):
            return at
    return -1


class _Glob:
    """A ``*`` / ``?`` pattern (nothing else is special: fnmatch would also read [ranges]).

    Matched without backtracking: the text must start with the part before
    the first ``*`` and end with the part after the last, and each part in
    between is placed at its leftmost fit after the one before (a later fit
    never helps the parts that follow).  That is at most
    len(pattern) x len(text) character comparisons, however many stars; a
    regex of ``.*`` runs backtracks exponentially on a miss.
    """

    __slots__ = ("fold", "parts")

    def __init__(self, pattern: str, *, ignore_case: bool) -> None:
        self.fold = ignore_case
        parts = (pattern.lower() if ignore_case else pattern).split("*")
        # Runs of stars leave empty parts in the middle; they constrain nothing.
        self.parts = (parts[0], *[q for q in parts[1:-1] if q], parts[-1]) if len(parts) > 1 else (parts[0],)

    def match(self, text: str) -> bool:
        if self.fold:
            text = text.lower()
        parts = self.parts
        if len(parts) == 1:
            return len(text) == len(parts[0]) and _fits(parts[0], text, 0)
        first, last = parts[0], parts[-1]
        end = len(text) - len(last)
        if end < len(first) or not _fits(first, text, 0) or not _fits(last, text, end):
            return False
        at = len(first)
        for piece in parts[1:-1]:
            at = _find(piece, text, at, end)
            if at < 0:
                return False
            at += len(piece)
        return True


@functools.lru_cache(maxsize=4096)
def _wildcard(pattern: str, *, ignore_case: bool) -> _Glob:
    return _Glob(pattern, ignore_case=ignore_case)


def _check_pattern(text: str, path: str) -> None:
    """Bound what one pattern may cost, before it is stored or matched."""
    wildcards = text.count("*") + text.count("?")
    if len(text) > MAX_PATTERN_CHARS or wildcards > MAX_WILDCARDS:
        raise InvalidInput(
            f"policy document: {path} is a pattern of {len(text)} characters with {wildcards} wildcards; "
            f"a pattern has at most {MAX_PATTERN_CHARS} characters and {MAX_WILDCARDS} wildcards (* and ?)",
            code="policy_pattern_too_long", field=path,
        )


def _string_list(value: Any, path: str) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise _refuse(path, "must be a string or a non-empty list of strings")
    if len(items) > MAX_VALUES:
        raise _refuse(path, f"has {len(items)} entries; at most {MAX_VALUES} are allowed")
    for i, item in enumerate(items):
        if not isinstance(item, str) or not item:
            where = path if isinstance(value, str) else f"{path}[{i}]"
            raise _refuse(where, "must be a non-empty string")
    return items


def _parse_action(text: str, path: str) -> str:
    if text == "*":
        return text
    _check_pattern(text, path)
    if not _ACTION_PATTERN.match(text):
        raise _refuse(path, f"{text!r} is not an action: write mq:Name, e.g. mq:RegisterCa or mq:Get*")
    if "*" in text or "?" in text:
        regex = _wildcard(text, ignore_case=True)
        if not any(regex.match(a) for a in ACTION_NAMES):
            raise _refuse(path, f"{text!r} matches no action; the list of actions shows them")
        return text
    canonical = _CANONICAL_ACTION.get(text.lower())
    if canonical is None:
        raise _refuse(path, f"{text!r} is not an action of this service; known actions: "
                            f"{', '.join(sorted(ACTION_NAMES))}")
    return canonical


def _parse_resource(text: str, path: str) -> str:
    if text == "*":
        return text
    _check_pattern(text, path)
    parts = text.split(":", 4)
    # Fewer than five parts is fine when a * in the last one spans the rest (acs:mq:*).
    complete = len(parts) == 5 or (len(parts) >= 2 and "*" in parts[-1])
    if not complete or parts[0] != "acs" or not all(parts):
        raise _refuse(path, f"{text!r} is not a resource: write acs:mq:{{region}}:{{account}}:{{instance}} "
                            "(wildcards * and ? allowed), or *")
    if not _wildcard(parts[1], ignore_case=False).match("mq"):
        raise _refuse(path, f"{text!r} names service {parts[1]!r}; this service is mq")
    return text


def _parse_time(text: Any, path: str) -> _dt.datetime:
    if not isinstance(text, str):
        raise _refuse(path, "must be an ISO-8601 time string, e.g. 2026-01-31T18:00:00Z")
    try:
        value = _dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise _refuse(path, f"{text!r} is not an ISO-8601 time; write e.g. 2026-01-31T18:00:00Z") from None
    if value.tzinfo is None:
        raise _refuse(path, f"{text!r} has no time zone; add Z or an offset such as +08:00")
    utc = _utc_or_none(value)
    if utc is None:
        raise _refuse(path, f"{text!r} is out of range: in UTC it falls before 0001-01-01 or after 9999-12-31")
    return utc


def _utc_or_none(value: _dt.datetime) -> _dt.datetime | None:
    """``value`` in UTC; None if it has no zone, or if UTC has no such time (the year would be 0 or 10000)."""
    if value.tzinfo is None:
        return None
    try:
        return ensure_utc(value)
    except OverflowError:
        return None


def _parse_network(text: Any, path: str):
    if not isinstance(text, str):
        raise _refuse(path, "must be an IP address or CIDR string, e.g. 203.0.113.0/24")
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise _refuse(path, f"{text!r} is not an IP address or CIDR block (IPv4 or IPv6)") from None


def _parse_bool(value: Any, path: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise _refuse(path, "must be true or false")


def _parse_conditions(block: Any, path: str) -> tuple[Condition, ...]:
    if not isinstance(block, dict) or not block:
        raise _refuse(path, "must be an object of operators, e.g. {\"IpAddress\": {\"acs:SourceIp\": [...]}}")
    out = []
    for operator, keys in block.items():
        op_path = f"{path}.{operator}"
        if operator not in _OPERATORS:
            hint = _OPERATOR_BY_LOWER.get(str(operator).lower())
            raise _refuse(op_path, "is not a supported condition operator; "
                          + (f"did you mean {hint}?" if hint else f"use one of {', '.join(sorted(_OPERATORS))}"))
        if not isinstance(keys, dict) or not keys:
            raise _refuse(op_path, "must be an object of condition keys to values")
        for key, raw in keys.items():
            key_path = f"{op_path}.{key}"
            if not isinstance(key, str) or not _CONDITION_KEY.match(key):
                raise _refuse(key_path, "is not a condition key; write prefix:Name, e.g. acs:SourceIp")
            bound = _OPERATOR_KEY.get(operator)
            if bound is not None and key.lower() != bound.lower():
                raise _refuse(key_path, f"cannot be used with {operator}; it takes {bound}")
            values = raw if isinstance(raw, list) else [raw]
            if not values or len(values) > MAX_VALUES:
                raise _refuse(key_path, f"must have 1 to {MAX_VALUES} values")
            parsed = []
            for i, v in enumerate(values):
                vp = f"{key_path}[{i}]" if isinstance(raw, list) else key_path
                if operator in ("IpAddress", "NotIpAddress"):
                    parsed.append(_parse_network(v, vp))
                elif operator.startswith("Date"):
                    parsed.append(_parse_time(v, vp))
                elif operator == "Bool":
                    parsed.append(_parse_bool(v, vp))
                else:
                    if not isinstance(v, str):
                        raise _refuse(vp, "must be a string")
                    if operator == "StringLike":
                        _check_pattern(v, vp)
                    parsed.append(v)
            out.append(Condition(operator, bound or key, tuple(parsed)))
    return tuple(out)


def _parse_statement(raw: Any, path: str) -> Statement:
    if not isinstance(raw, dict):
        raise _refuse(path, "must be an object with Effect, Action, Resource and optionally Condition")
    for key in raw:
        if key not in _STATEMENT_KEYS:
            raise _refuse(f"{path}.{key}", f"is not supported; a statement has only {', '.join(_STATEMENT_KEYS)}")
    for key in ("Effect", "Action", "Resource"):
        if key not in raw:
            raise _refuse(f"{path}.{key}", "is missing")
    effect = raw["Effect"]
    if effect not in ("Allow", "Deny"):
        raise _refuse(f"{path}.Effect", f"is {effect!r}; it must be \"Allow\" or \"Deny\"")
    actions = tuple(
        _parse_action(a, f"{path}.Action" if isinstance(raw["Action"], str) else f"{path}.Action[{i}]")
        for i, a in enumerate(_string_list(raw["Action"], f"{path}.Action"))
    )
    resources = tuple(
        _parse_resource(r, f"{path}.Resource" if isinstance(raw["Resource"], str) else f"{path}.Resource[{i}]")
        for i, r in enumerate(_string_list(raw["Resource"], f"{path}.Resource"))
    )
    conditions = _parse_conditions(raw["Condition"], f"{path}.Condition") if "Condition" in raw else ()
    return Statement(
        effect=effect,
        actions=actions,
        resources=resources,
        conditions=conditions,
        _action_res=tuple(_wildcard(a, ignore_case=True) for a in actions),
        _resource_res=tuple(_wildcard(r, ignore_case=False) for r in resources),
    )


def parse_policy(document: str | bytes | Mapping, *, name: str = "") -> Policy:
    """Validate a document (JSON text or the decoded object) and compile it.

    Refuses anything malformed with :class:`InvalidInput` ``invalid_policy``,
    naming the field (``Statement[1].Effect``) in the message and in
    ``error.data["field"]``.
    """
    if isinstance(document, (bytes, bytearray)):
        try:
            document = bytes(document).decode("utf-8")
        except UnicodeDecodeError:
            raise _refuse("(document)", "is not UTF-8 text") from None
    if isinstance(document, str):
        if len(document) > MAX_DOCUMENT_CHARS:
            raise _refuse("(document)", f"is {len(document)} characters long; at most {MAX_DOCUMENT_CHARS} "
                          "are allowed: split it into several policies")
        try:
            document = json.loads(document)
        except ValueError as exc:
            raise _refuse("(document)", f"is not JSON: {exc}") from None
    if not isinstance(document, Mapping):
        raise _refuse("(document)", "must be a JSON object with Version and Statement")
    document = dict(document)
    if len(json.dumps(document, separators=(",", ":"))) > MAX_DOCUMENT_CHARS:
        raise _refuse("(document)", f"is longer than {MAX_DOCUMENT_CHARS} characters: split it into several policies")
    for key in document:
        if key not in ("Version", "Statement"):
            raise _refuse(str(key), "is not supported; a policy document has only Version and Statement")
    if "Version" not in document:
        raise _refuse("Version", "is missing; write \"Version\": \"1\"")
    if document["Version"] != "1":
        raise _refuse("Version", f"is {document['Version']!r}; it must be the string \"1\"")
    statements = document.get("Statement")
    if statements is None:
        raise _refuse("Statement", "is missing")
    if isinstance(statements, dict):  # RAM accepts a lone statement object, and so do we
        statements = [statements]
    if not isinstance(statements, list) or not statements:
        raise _refuse("Statement", "must be a non-empty list of statements")
    if len(statements) > MAX_STATEMENTS:
        raise _refuse("Statement", f"has {len(statements)} statements; at most {MAX_STATEMENTS} are allowed")
    return Policy(
        name=name,
        statements=tuple(_parse_statement(s, f"Statement[{i}]") for i, s in enumerate(statements)),
        document=document,
    )


# == evaluation ===============================================================================


@dataclass(frozen=True)
class RequestContext:
    """What conditions are evaluated against, besides action and resource.

    ``now`` is ``acs:CurrentTime``; ``source_ip`` is ``acs:SourceIp``;
    ``secure_transport`` is ``acs:SecureTransport``; ``extra`` holds any other
    key for the String* operators.  ``request_id`` goes to the audit log only.
    """

    now: _dt.datetime | None = None
    source_ip: str | None = None
    secure_transport: bool | None = None
    request_id: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)

    def condition_values(self) -> dict[str, Any]:
        values: dict[str, Any] = {k.lower(): v for k, v in self.extra.items()}
        if self.now is not None:
            values["acs:currenttime"] = self.now
        if self.source_ip is not None:
            values["acs:sourceip"] = self.source_ip
        if self.secure_transport is not None:
            values["acs:securetransport"] = self.secure_transport
        return values


@dataclass(frozen=True)
class Decision:
    """The answer: allowed or not, which statement decided (policy name, index), why."""

    allowed: bool
    decided_by: tuple[str, int] | None
    reason: str
    action: str = ""
    resource: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "allowed": self.allowed,
            "decision": "allow" if self.allowed else ("explicit_deny" if self.decided_by else "implicit_deny"),
            "decided_by": None if self.decided_by is None
            else {"policy": self.decided_by[0], "statement": self.decided_by[1]},
            "reason": self.reason,
            "action": self.action,
            "resource": self.resource,
        }


def _context_values(context: RequestContext | Mapping[str, Any] | None) -> dict[str, Any]:
    if context is None:
        return {}
    if isinstance(context, RequestContext):
        return context.condition_values()
    return {str(k).lower(): v for k, v in context.items()}


def _as_ip(value: Any):
    try:
        ip = ipaddress.ip_address(str(value).strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1 to a CIDR rule
    return ip


def _as_time(value: Any) -> _dt.datetime | None:
    # A request value that is no time (out of range included) satisfies no Date condition.
    if isinstance(value, _dt.datetime):
        return _utc_or_none(value)
    if isinstance(value, str):
        try:
            parsed = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return _utc_or_none(parsed)
    return None


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def _as_strings(value: Any) -> list[str]:
    if isinstance(value, (list, tuple, set, frozenset)):
        return [str(v) for v in value]
    return [str(value)]


def _condition_holds(cond: Condition, values: Mapping[str, Any]) -> bool:
    key = cond.key.lower()
    negated = cond.operator in _NEGATED
    if key not in values or values[key] is None:
        return negated
    raw = values[key]
    op = cond.operator
    if op in ("IpAddress", "NotIpAddress"):
        ip = _as_ip(raw)
        hit = ip is not None and any(ip.version == net.version and ip in net for net in cond.values)
    elif op == "DateLessThan":
        now = _as_time(raw)
        hit = now is not None and any(now < limit for limit in cond.values)
    elif op == "DateGreaterThan":
        now = _as_time(raw)
        hit = now is not None and any(now > limit for limit in cond.values)
    elif op == "Bool":
        flag = _as_bool(raw)
        hit = flag is not None and any(flag == v for v in cond.values)
    elif op in ("StringEquals", "StringNotEquals"):
        hit = any(s == v for s in _as_strings(raw) for v in cond.values)
    else:  # StringLike
        hit = any(_wildcard(v, ignore_case=False).match(s) for s in _as_strings(raw) for v in cond.values)
    return not hit if negated else hit


def _statement_applies(st: Statement, action: str, resource: str, values: Mapping[str, Any]) -> bool:
    return (
        st.matches_action(action)
        and st.matches_resource(resource)
        and all(_condition_holds(c, values) for c in st.conditions)
    )


def evaluate(
    policies: Iterable[Policy],
    *,
    action: str,
    resource: str,
    context: RequestContext | Mapping[str, Any] | None = None,
) -> Decision:
    """One action on one resource: explicit Deny, else Allow, else implicit deny."""
    values = _context_values(context)
    allow: tuple[str, int] | None = None
    for policy in policies:
        for index, st in enumerate(policy.statements):
            if not _statement_applies(st, action, resource, values):
                continue
            if st.effect == "Deny":
                return Decision(
                    False, (policy.name, index),
                    f"{action} on {resource} is explicitly denied by statement {index} of policy {policy.name}",
                    action, resource,
                )
            if allow is None:
                allow = (policy.name, index)
    if allow is not None:
        return Decision(True, allow, f"{action} on {resource} is allowed by statement {allow[1]} of policy "
                        f"{allow[0]}", action, resource)
    return Decision(False, None, f"no statement of the attached policies allows {action} on {resource} "
                    "(implicit deny)", action, resource)


def authorize(
    policies: Iterable[Policy],
    *,
    operation: str,
    resource: str,
    context: RequestContext | Mapping[str, Any] | None = None,
) -> Decision:
    """An operation: its action and every dependent action must be allowed.

    Returns the first refusing decision (naming the missing action), or the
    decision of the operation's own action when all are allowed.
    """
    policies = list(policies)
    actions = required_actions(operation)
    first = None
    for i, action in enumerate(actions):
        decision = evaluate(policies, action=action, resource=resource, context=context)
        if not decision.allowed:
            if i > 0:
                decision = Decision(
                    False, decision.decided_by,
                    f"{operation} needs {action} as well as {actions[0]}: {decision.reason}",
                    action, resource,
                )
            return decision
        if first is None:
            first = decision
    return first  # type: ignore[return-value]


# == system policies ==========================================================================


def _system(name: str, description: str, actions: Iterable[str]) -> Policy:
    document = {"Version": "1", "Statement": [
        {"Effect": "Allow", "Action": sorted(set(actions)) if not isinstance(actions, str) else actions,
         "Resource": "*"}]}
    policy = parse_policy(document, name=name)
    return Policy(name=name, statements=policy.statements, document=document, description=description)


_READ = sorted(
    a for op in ACTIONS.values() if op.access in ("get", "list") and op.scope == "instance"
    for a in op.actions if a != "mq:GetRegisterCode"
)

#: Shipped with the code, present without creation, never changed by users
#: (Alibaba Cloud's system policies AliyunMQFullAccess / AliyunMQReadOnlyAccess, adapted).
SYSTEM_POLICIES: Mapping[str, Policy] = {
    p.name: p
    for p in (
        _system("PkiAdministratorAccess",
                "Everything, user and policy management included: as the account itself.", "*"),
        _system("PkiFullAccess",
                "Every CA, device, secret, broker data-plane, artifact and audit operation; not user or policy management "
                "(which would let a holder grant itself more).",
                ACTION_NAMES - _ESCALATING),
        _system("PkiReadOnlyAccess",
                "Read CAs, device certificates, secrets' metadata (never a secret), CRL requests, and the broker "
                "identities (never a password), permission rules and blocklist.",
                _READ),
        _system("PkiFactoryProvisioner",
                "A factory line: issue and provision device certificates, and list and read the CAs to find "
                "the one it provisions under; nothing else.",
                ("mq:IssueDeviceCertificate", "mq:ProvisionDevices", "mq:ListCaCertificate", "mq:GetCaCertificate",
                 INSTANCE_ACCESS)),
        _system("PkiRevoker",
                "Revoke or deactivate device certificates, deactivate device secrets, revoke broker tokens, "
                "and read what is needed to find them.",
                ("mq:RevokeDeviceCertificate", "mq:UnregisterDeviceCertificate", "mq:InactiveDeviceCredential",
                 "mq:GetDeviceCertificate", "mq:ListDeviceCertificate", "mq:ListDeviceCertificateByCaSn",
                 "mq:GetCaCertificate", "mq:ListCaCertificate", "mq:GetDeviceCredential", "mq:ListDeviceCredential",
                 "mq:RevokeToken", "mq:QueryToken", INSTANCE_ACCESS)),
        _system("PkiDeviceRenewer",
                "Renew or rekey device certificates and hand out enrollment claims, and read what is needed to "
                "find them.",
                ("mq:RenewDeviceCertificate", "mq:CreateEnrollmentClaim", "mq:GetDeviceCertificate",
                 "mq:ListDeviceCertificate", "mq:ListDeviceCertificateByCaSn", "mq:GetCaCertificate",
                 "mq:ListCaCertificate", INSTANCE_ACCESS)),
    )
}
