"""The broker hooks' decisions: who may connect (:func:`authenticate`), what a client may do
(:func:`authorize`), whether a client is admitted at all (:func:`admit`) and whether a username is a
superuser (:func:`is_superuser`).  pki/http/broker.py speaks each broker's contract over these.

None of them raises for what a client sent: a malformed value is a refusal.  The reason of a refusal is
for the operator only: it goes to the ``pki.hooks`` logger and to the audit log, aggregated (see
:class:`_Refusals`), never into an answer; a password goes nowhere.

Who is recognised, in order: the connect blocklist (deny), broker identities, a broker token (a
password in a JWT's shape, :mod:`pki.services.tokens.verify`: allowed or denied, never ignored),
per-device secrets (username ``DeviceCredential|<access key id>|<instance>``, both password formats),
and a device certificate when the broker forwards its common name (the client id must have an ACTIVE,
unexpired certificate).  Anyone else is ``ignore``: EMQX then asks its next authenticator.

A client id holding a valid token is authorized by its tokens' ``acl`` (after the blocklist and the
superuser identities), not by the permission rules.
"""

from __future__ import annotations

import logging
import threading
from typing import NamedTuple

from ...errors import PkiError
from ...store import DeviceStatus, Status
from ...store import dataplane_repos as repos
from ...store import repos as device_repos
from .. import audit
from .. import secrets as secret_service
from ..tokens import verify as token_checks
from ..context import Context
from . import blocklist, identities, permissions
from .common import cached, memoised

__all__ = ["Answer", "authenticate", "authorize", "admit", "is_superuser", "ACTIONS", "AUDIT_ACTION_CONNECT",
           "AUDIT_ACTION_AUTHORIZE"]

log = logging.getLogger("pki.hooks")

ACTIONS = ("publish", "subscribe")
#: The audit log's action of a refused connect, and of a refused publish or subscribe.
AUDIT_ACTION_CONNECT = "mq:BrokerConnect"
AUDIT_ACTION_AUTHORIZE = "mq:BrokerAuthorize"
_MAX_TEXT = 1024
_MEMO_LOCK = threading.Lock()  # Context.memo is not atomic: one refusal counter per Context


class Answer(NamedTuple):
    """``result``: allow, deny or ignore (authenticate only).  ``reason``: for the log, never the client.
    ``acl`` and ``expire_at``: a token's rules and expiry (Unix seconds), for a broker that takes them in
    the authentication answer (EMQX 5.8 and later)."""

    result: str
    superuser: bool
    reason: str
    acl: list | None = None
    expire_at: int | None = None


class _Refusals:
    """The audit side of refusals: at most one record per (principal, reason, minute), in process memory.

    The first refusal of a principal for a reason in a minute writes its record at once (so the log shows
    it without waiting for a flush); later ones in that minute are only counted, and the counts go to the
    ``pki.hooks`` log when the minute is over.  A flood of bad passwords thus costs one audit record per
    principal and reason per minute and process.  Past :data:`MAX_PRINCIPALS` principals in one minute
    the rest are counted under ``*``, so that a flood of made-up usernames cannot flood the chain either.
    """

    MAX_PRINCIPALS = 1000

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.minute: str | None = None
        self.counts: dict[tuple[str, str], int] = {}

    def _roll(self, minute: str) -> None:
        if self.minute != minute:
            for (principal, reason), count in self.counts.items():
                if count > 1:
                    log.info("refusals in minute %s: principal=%r reason=%s count=%d", self.minute, principal,
                             reason, count)
            self.minute, self.counts = minute, {}

    def note(self, principal: str, reason: str, minute: str) -> bool:
        """Count one refusal; True when it is the first of its (principal, reason) in ``minute``."""
        with self.lock:
            self._roll(minute)
            if (principal, reason) not in self.counts and len(self.counts) >= self.MAX_PRINCIPALS:
                principal = "*"
            key = (principal, reason)
            self.counts[key] = self.counts.get(key, 0) + 1
            return self.counts[key] == 1


def _text(value) -> str | None:
    return value if isinstance(value, str) and len(value) <= _MAX_TEXT else None


def _refused(ctx: Context, action: str, reason: str, *, username, client_id, peer_ip, **details) -> None:
    principal = (_text(username) or _text(client_id) or "-")[:128]
    log.info("broker %s refused: instance=%s principal=%r client_id=%r peer_ip=%r reason=%s %s",
             "connect" if action == AUDIT_ACTION_CONNECT else "request", ctx.instance, principal,
             (_text(client_id) or "")[:80], _text(peer_ip), reason, details or "")
    now = ctx.clock.now()
    minute = now.strftime("%Y-%m-%dT%H:%MZ")
    with _MEMO_LOCK:
        refusals: _Refusals = ctx.memo(("dataplane", "hook_refusals"), _Refusals)
    if not refusals.note(principal, reason, minute):
        return
    try:
        audit.record(ctx, action=action, result="denied", error_code="access_denied", principal=principal,
                     source_ip=_text(peer_ip), now=now,
                     details={"reason": reason, "minute": minute, "client_id": (_text(client_id) or "")[:128] or None,
                              "instance": ctx.instance, **details})
    except PkiError as exc:  # the answer stands; only its record is lost, and said so
        log.warning("could not audit a broker refusal (%s): %s", exc.code, exc)


def _device_certificate(ctx: Context, client_id: str | None, cert_cn: str) -> tuple[str, str]:
    """(allow|deny, reason) for a client presenting a certificate whose common name is ``cert_cn``."""
    if client_id and client_id != cert_cn:
        return "deny", "certificate_cn_not_client_id"
    now = ctx.clock.now()
    with ctx.store.transaction(readonly=True) as session:
        rows = device_repos.devices_of_client(session, instance=ctx.instance, client_id=cert_cn, limit=1000)
        usable = [r for r in rows if r.status == DeviceStatus.ACTIVE and r.not_before <= now < r.not_after]
        # A deactivated (or deleted) issuing CA takes its devices out of the trust bundle: the broker's TLS
        # refuses them at the next handshake, and so does this check, at once.
        issuers = {ca_id: device_repos.get_ca_by_id(session, ca_id=ca_id) for ca_id in {r.ca_id for r in usable}}
        trusted = [r for r in usable if issuers[r.ca_id] is not None and issuers[r.ca_id].status == Status.ACTIVE]
    if trusted:
        return "allow", "device_certificate"
    if usable:
        return "deny", "issuer_inactive"
    return "deny", "certificate_inactive" if rows else "certificate_unknown"


def authenticate(ctx: Context, username, password, client_id, peer_ip, cert_cn=None) -> Answer:
    """May this client connect?  ``ignore`` for a username none of ours knows (the broker asks elsewhere)."""
    username, client_id, peer_ip, cert_cn = _text(username), _text(client_id), _text(peer_ip), _text(cert_cn)
    password = password if isinstance(password, str) else None
    answer = _authenticate(ctx, username, password, client_id, peer_ip, cert_cn)
    if answer.result != "allow":
        if answer.result == "deny":
            _refused(ctx, AUDIT_ACTION_CONNECT, answer.reason, username=username, client_id=client_id,
                     peer_ip=peer_ip)
        else:
            log.debug("broker connect ignored: instance=%s reason=%s", ctx.instance, answer.reason)
    return answer


def _authenticate(ctx, username, password, client_id, peer_ip, cert_cn) -> Answer:
    if blocklist.is_blocked(ctx, username=username, client_id=client_id, ip=peer_ip) is not None:
        return Answer("deny", False, "blocked")
    if username:
        if password is not None:
            verdict = identities.authenticate(ctx, username=username, password=password, client_id=client_id)
            if verdict.result != "unknown":
                return Answer(verdict.result, verdict.superuser, verdict.reason)
    if token_checks.looks_like_jwt(password):
        return Answer(*token_checks.authenticate(ctx, token=password, client_id=client_id, username=username))
    if username:
        if username.startswith(secret_service.USERNAME_PREFIX + "|"):
            if password is None or client_id is None:
                return Answer("deny", False, "device_secret_incomplete")
            ok = secret_service.verify(ctx, client_id=client_id, username=username, password=password)
            # The secret check logs its own reason (logger pki.secrets).
            return Answer("allow", False, "device_secret") if ok else Answer("deny", False, "device_secret_refused")
    if cert_cn:
        result, reason = _device_certificate(ctx, client_id, cert_cn)
        return Answer(result, False, reason)
    return Answer("ignore", False, "unknown_username" if username else "no_credentials")


def _superuser_state(ctx: Context, username: str) -> bool:
    with ctx.store.transaction(readonly=True) as session:
        row = repos.get_identity(session, instance=ctx.instance, username=username)
        return row is not None and row.superuser and row.status == Status.ACTIVE


def is_superuser(ctx: Context, username) -> bool:
    """Whether ``username`` is an ACTIVE superuser identity (cached per data-plane revision)."""
    username = _text(username)
    if not username:
        return False
    return memoised(cached(ctx, "hook_superusers"), username, lambda: _superuser_state(ctx, username))


def admit(ctx: Context, username, client_id, peer_ip) -> Answer:
    """Whether a connected client may go on at all: the blocklist alone (a broker's per-connection check
    that carries no password, e.g. RabbitMQ's vhost and resource checks)."""
    username, client_id, peer_ip = _text(username), _text(client_id), _text(peer_ip)
    if blocklist.is_blocked(ctx, username=username, client_id=client_id, ip=peer_ip) is not None:
        _refused(ctx, AUDIT_ACTION_CONNECT, "blocked", username=username, client_id=client_id, peer_ip=peer_ip)
        return Answer("deny", False, "blocked")
    return Answer("allow", False, "not_blocked")


def authorize(ctx: Context, username, client_id, peer_ip, action, topic, qos=None, retain=None) -> Answer:
    """May this client publish to, or subscribe to, ``topic``?  The blocklist, then superusers, then the
    permission rules (:func:`pki.services.dataplane.permissions.decide`)."""
    username, client_id, peer_ip, topic = _text(username), _text(client_id), _text(peer_ip), _text(topic)
    if action not in ACTIONS:
        answer = Answer("deny", False, "invalid_action")
    elif qos is not None and qos not in (0, 1, 2):
        answer = Answer("deny", False, "invalid_qos")
    elif topic is None:
        answer = Answer("deny", False, "invalid_topic")
    else:
        retain = retain if isinstance(retain, bool) else None
        if is_superuser(ctx, username) and blocklist.is_blocked(ctx, username=username, client_id=client_id,
                                                                 ip=peer_ip) is None:
            return Answer("allow", True, "superuser")
        by_token = token_checks.authorize(ctx, username=username, client_id=client_id, action=action, topic=topic)
        if by_token is not None:
            if by_token[0]:
                return Answer("allow", by_token[1] == "token_superuser", by_token[1])
            answer = Answer("deny", False, by_token[1])
            _refused(ctx, AUDIT_ACTION_AUTHORIZE, answer.reason, username=username, client_id=client_id,
                     peer_ip=peer_ip, mqtt_action=action)
            return answer
        outcome = permissions.decide(ctx, username=username, client_id=client_id, ip=peer_ip, action=action,
                                     topic=topic, qos=qos, retain=retain)
        if outcome.allowed:
            return Answer("allow", False, outcome.reason)
        answer = Answer("deny", False, outcome.reason)
    _refused(ctx, AUDIT_ACTION_AUTHORIZE, answer.reason, username=username, client_id=client_id, peer_ip=peer_ip,
             mqtt_action=action if action in ACTIONS else None)
    return answer
