"""mosquitto's own files for a broker without a plugin: ``mosquitto/passwords`` and ``mosquitto/acl``.

:func:`broker_files` reads the store and renders both for a publish (pki/services/artifacts.py), which
writes them into its generation; a change here reaches mosquitto at the next publish and SIGHUP.

- The password file (:func:`pki.dataplane.mosquitto.password_entry`) has one line per ACTIVE identity
  and per ACTIVE device secret, and none for a username or client id the connect blocklist refuses now.
  No line is hashed here: an identity's ``password_hash`` is stored in the ``$7$`` form, and a device
  secret's is written with its primary (``device_secret.mosquitto_hash``,
  :func:`pki.services.secrets.credentials.mosquitto_hash`); only rows older than that column are
  hashed once, at their first publish, and the hash stored.
- During a refresh's grace period the file holds the new primary only: mosquitto keeps one line per
  username, and the new secret is the one the device is moving to.
- The ACL file is :func:`pki.dataplane.mosquitto.acl_file` of the instance's rules and default.

What the files cannot carry (IP blocks, an identity's client id or superuser flag, rules acl_file
cannot say) comes back as warnings, never silently.
"""

from __future__ import annotations

import datetime as _dt

from ...dataplane import mosquitto
from ...store import Status, secret_repos
from ...store import dataplane_repos as repos
from ..context import Context
from ..secrets.credentials import mosquitto_hash
from ..secrets.formulas import username_for
from . import blocklist, permissions

__all__ = ["PASSWORDS", "ACL", "broker_files"]

PASSWORDS = "mosquitto/passwords"
ACL = "mosquitto/acl"
_PAGE = 1000


def _secret_rows(session, instance: str) -> list:
    rows, after = [], None
    while True:
        page = secret_repos.list_secrets(session, instance=instance, status=Status.ACTIVE, after_id=after,
                                         limit=_PAGE)
        rows += page
        if len(page) < _PAGE:
            return rows
        after = page[-1].id


def _backfill(ctx: Context, missing: list[tuple[str, int, bytes, str]]) -> dict[str, str]:
    """Hash the secrets stored before ``mosquitto_hash`` existed, once: store each at its row version."""
    if not missing:
        return {}
    hashes = {client_id: mosquitto_hash(ctx.keystore.open_secret(sealed, key_id=access_key_id), client_id)
              for client_id, _version, sealed, access_key_id in missing}
    with ctx.store.transaction() as session:
        for client_id, version, _sealed, _akid in missing:
            row = secret_repos.get_secret(session, instance=ctx.instance, client_id=client_id, lock=True)
            if row is not None and row.version == version and row.mosquitto_hash is None:
                row.mosquitto_hash = hashes[client_id]  # same secret, same version: not a change of the row
                session.add(row)
    return hashes


def _password_lines(ctx: Context, now: _dt.datetime) -> tuple[str, list[tuple[str, str]]]:
    warnings: list[tuple[str, str]] = []
    with ctx.store.transaction(readonly=True) as session:
        identities = [(r.username, r.password_hash, r.client_id, r.superuser)
                      for r in repos.all_identities(session, instance=ctx.instance) if r.status == Status.ACTIVE]
        secrets = [(r.client_id, r.access_key_id, r.mosquitto_hash, r.version, bytes(r.sealed_primary))
                   for r in _secret_rows(session, ctx.instance)]
        ip_blocks = [b for b in repos.all_blocks(session, instance=ctx.instance)
                     if b.kind == "ip" and (b.until is None or b.until > now)]
    hashes = _backfill(ctx, [(c, v, s, a) for c, a, h, v, s in secrets if h is None])

    entries: dict[str, str] = {}
    for username, encoded, client_id, superuser in identities:
        if blocklist.is_blocked(ctx, username=username, client_id=client_id, ip=None) is not None:
            continue
        if client_id is not None:
            warnings.append(("identity_client_id_ignored", f"identity {username!r} may connect only as client id "
                             f"{client_id!r}, which mosquitto's password file cannot enforce"))
        if superuser:
            warnings.append(("identity_superuser_ignored", f"identity {username!r} is a superuser, which "
                             "mosquitto's acl_file cannot say: it gets the rules' topics only"))
        entries[username] = encoded
    for client_id, access_key_id, encoded, _version, _sealed in secrets:
        username = username_for(access_key_id, ctx.instance)
        if blocklist.is_blocked(ctx, username=username, client_id=client_id, ip=None) is not None:
            continue
        if username in entries:
            warnings.append(("password_username_taken", f"the device secret of {client_id!r} is left out: an "
                             f"identity has its username {username!r}"))
            continue
        entries[username] = encoded or hashes[client_id]
    if ip_blocks:
        warnings.append(("blocklist_ip_ignored", f"mosquitto's files cannot refuse a client by IP: {len(ip_blocks)} "
                         "blocklist IP entr" + ("y does" if len(ip_blocks) == 1 else "ies do")
                         + " not apply to a broker that reads them"))
    lines = [mosquitto.password_entry(username, entries[username]) for username in sorted(entries)]
    return "".join(line + "\n" for line in lines), warnings


def _acl(ctx: Context) -> tuple[str | None, list[tuple[str, str]]]:
    """The ACL file, or None while the instance has neither a rule nor a default set.

    Without one, mosquitto enforces no ACL: a broker whose certificate devices publish and subscribe
    freely today keeps doing so after an upgrade, until the operator writes a rule or sets the default
    (the data plane's own default, deny, would otherwise cut them all off at the next publish).
    """
    compiled = permissions.rule_set(ctx)
    if not compiled.by_id and permissions.default_is_unset(ctx):
        return None, []
    ruleset = compiled.rules
    acl = mosquitto.acl_file(ruleset.rules, default=ruleset.default)
    warnings = [("acl_rule_inexpressible",
                 (f"permission rule {int(w.rule_id)}: " if w.rule_id is not None else "") + w.message)
                for w in acl.warnings]
    return acl.text, warnings


def broker_files(ctx: Context, *, now: _dt.datetime) -> tuple[dict[str, bytes], list[tuple[str, str]]]:
    """``{PASSWORDS: ..., ACL: ...}`` for the instance now (no ACL while no rule or default is set), and
    the (code, message) of each warning."""
    passwords, warnings = _password_lines(ctx, now)
    acl, acl_warnings = _acl(ctx)
    files = {PASSWORDS: passwords.encode()}
    if acl is not None:
        files[ACL] = acl.encode()
    return files, warnings + acl_warnings
