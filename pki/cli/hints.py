"""What the CLI adds to an error: the flag at fault and the `pki ...` command that helps.

Services speak to every front end, so their messages name no command or flag; their errors carry
data instead (``field``: the request value at fault, under its service parameter name, which is also
the /v1 JSON field; ids such as ``ca_sn``, ``client_id``, ``group``, ``user``).  This module turns the
code and that data into CLI advice.  It works the same on a local error and on a server's problem
document (:class:`pki.client.ApiError` keeps the problem's members as its data).
"""

from __future__ import annotations

import re
import string
from typing import Any, Mapping

from ..errors import PkiError
from .render import error_line

__all__ = ["HINTS", "FLAGS", "flag_of", "hint_of", "render"]

#: code -> the command that helps, formatted with the error's data; skipped when a key is missing.
HINTS: dict[str, str] = {
    # the store and its keys
    "store_not_initialized": "`pki init` creates it",
    "store_outdated": "`pki init` upgrades it",
    "master_key_missing": "`pki init` creates one",
    "master_key_rotation_running": "`pki keys rotate-master --new-key-file` with that key's file finishes it",
    "pkcs11_pin_missing": "set PKI_PKCS11_PIN, or create the CA with --pin-env VAR or --pin-file F",
    "pkcs11_key_missing": "`pki keys list` shows which CAs use it",
    # CAs and register codes
    "ca_not_found": "`pki ca list` shows them",
    "ca_request_not_found": "`pki ca create --csr-only` makes a request; install the certificate signed from its CSR",
    "ca_already_registered": "`pki ca show {sn}` shows it",
    "ca_inactive": "`pki ca activate {ca_sn}` activates it",
    "ca_not_managed": "`pki ca create` makes a managed CA",
    "verification_code_mismatch": "`pki code new` hands out a register code",
    "register_code_used": "`pki code new` hands out a new one",
    "register_code_expired": "`pki code new` hands out a new one",
    "invalid_register_code": "`pki code new` prints one",
    # devices
    "device_not_found": "`pki device list --ca {ca_sn}` shows them",
    "ambiguous_client_id": "`pki device show SN --ca CA` or `--fingerprint F` names one, `--ca CA` narrows the client id",
    "provision_stray_key_file": "or run again with a fresh --out",
    "device_already_renewed": "`pki device show` of it lists replaced_by: renew that one",
    "device_inactive": "`pki device activate` it first",
    "ca_bootstrap_only": "`pki ca update {ca_sn} --no-bootstrap-only` if it should issue",
    # CRLs
    "crl_not_available": "`pki crl request --ca {ca_sn}`, `pki crl sign` where the key lives, then `pki crl upload`",
    "crl_missing": "`pki crl request --ca {ca_sn}`, `pki crl sign` where the key lives, then `pki crl upload`",
    "ca_managed_crl": "`pki artifacts publish` signs it",
    "invalid_crl_request": "`pki crl request` exports one",
    "crl_number_not_increasing": "`pki crl request` exports a fresh request",
    "crl_missing_entries": "`pki crl request` exports a fresh request",
    "crl_stale": "`pki crl request` exports a fresh request",
    # secrets
    "secret_not_found": "`pki secret register {client_id}` creates one, `pki secret list` shows the existing ones",
    "secret_exists": "`pki secret refresh {client_id}` replaces it",
    "group_not_found": "`pki secret group list` shows them, `pki secret group create {group}` makes it",
    "group_exists": "`pki secret derive --group {group} CLIENT_ID` gives its members' secrets",
    "group_inactive": "`pki secret group enable {group}` enables it",
    "member_inactive": "`pki secret activate {client_id} --group {group}` activates it",
    # users, access keys, policies
    "user_not_found": "`pki user list` shows them",
    "user_exists": "`pki user key create {user}` adds a key",
    "access_key_not_found": "`pki user show USER` lists a user's keys",
    "access_key_limit": "`pki user show {user}` lists them, `pki user key delete ACCESS_KEY_ID` deletes one",
    "invalid_access_key": "check PKI_ACCESS_KEY_ID and PKI_ACCESS_KEY_SECRET (or the profile); "
                          "`pki user key create USER` makes a new key",
    "policy_not_found": "`pki policy list` shows them",
    "policy_exists": "`pki policy show {policy}` shows it",
    "policy_in_use": "`pki policy detach {policy} --user USER` detaches it",
    "policy_not_attached": "`pki user show {user}` lists its policies",
    "unknown_action": "`pki policy actions` lists them",
    "access_denied": "`pki policy attach POLICY --user {user}` grants, `pki policy detach POLICY --user {user}` "
                     "lifts a deny",
    # the broker data plane
    "identity_not_found": "`pki identity list` shows them",
    "identity_exists": "`pki identity update {username}` changes it",
    "permission_not_found": "`pki permission list` shows them",
    "block_not_found": "`pki blocklist list` shows them",
    "block_exists": "`pki blocklist delete {id}` lifts it",
    "hook_token_not_found": "`pki hook-token list` shows them",
    "hook_token_exists": "`pki hook-token delete {name}` deletes it",
    "token_not_found": "`pki token list` shows them",
    "token_not_active": "`pki token show {token_id}` shows it",
    # the audit log
    "audit_chain_broken": "`pki audit verify` checks the whole chain, not only its head ({problem})",
}

#: field -> CLI flag, where the flag is not simply ``--`` + the field with ``_`` as ``-``.
FLAGS: dict[str, str] = {
    "fmt": "--format",
    "p12_password": "--p12-password-env",
    "out_dir": "--out",
    "all_clients": "--all",
    "password": "--password-env",
    "cidrs": "--cidr",
}

#: A service parameter name (a policy document's paths, also sent as ``field``, are not flags).
_PARAMETER = re.compile(r"[a-z][a-z0-9_]*\Z")


def flag_of(field: Any) -> str | None:
    """The CLI flag of a service parameter, or None for what is not one."""
    if not isinstance(field, str) or not _PARAMETER.match(field):
        return None
    return FLAGS.get(field) or "--" + field.replace("_", "-")


def hint_of(code: str, data: Mapping[str, Any]) -> str | None:
    """The hint of ``code`` formatted with ``data``, or None (no hint, or a key it needs is missing)."""
    template = HINTS.get(code)
    if template is None:
        return None
    keys = {name for _, name, _, _ in string.Formatter().parse(template) if name}
    if any(data.get(key) in (None, "") for key in keys):
        return None
    return template.format_map({key: data[key] for key in keys})


def render(exc: PkiError) -> str:
    """``error[code]: --flag: message``, then a ``hint:`` line when the CLI knows a command that helps."""
    data = exc.data if isinstance(exc.data, Mapping) else {}
    flag = flag_of(data.get("field"))
    line = error_line(exc.code, f"{flag}: {exc.message}" if flag else exc.message)
    hint = hint_of(exc.code, data)
    return f"{line}\nhint: {hint}" if hint else line
