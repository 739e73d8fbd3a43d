"""`pki identity`, `pki permission`, `pki blocklist`, `pki hook-token`: the broker data plane's management."""

from __future__ import annotations

import os

import click

from ..services.paging import Status
from . import backend
from .common import State, json_option
from .output import output_option
from .render import EXIT_CODES, emit, emit_page

__all__ = ["identity_group", "permission_group", "blocklist_group", "hook_token_group"]

IDENTITY_FIELDS = ("username", "client_id", "superuser", "status", "version", "created_at", "updated_at")
IDENTITY_COLUMNS = ("username", "client_id", "superuser", "status")
PERMISSION_FIELDS = ("id", "priority", "effect", "action", "topic", "who", "username", "client_id", "ip", "qos",
                     "retain", "created_at")
PERMISSION_COLUMNS = ("id", "priority", "effect", "action", "topic", "who", "username", "client_id", "ip")
BLOCK_FIELDS = ("id", "kind", "value", "until", "created_at")
HOOK_TOKEN_FIELDS = ("name", "cidrs", "status", "created_at")

LIMIT = click.option("--limit", type=int, help="Page size (1-1000, default 100).")
CURSOR = click.option("--cursor", help="next_cursor of the previous page.")


def _password(var: str | None) -> str | None:
    """The password from the environment variable named VAR (a flag would show in ps)."""
    if var is None:
        return None
    if var not in os.environ:
        raise click.UsageError(f"environment variable {var} is not set")
    return os.environ[var]


# -- identities --------------------------------------------------------------------------------


@click.group("identity")
def identity_group() -> None:
    """Username/password accounts for applications and gateways (stored as PBKDF2-SHA512 hashes only)."""


@identity_group.command("add")
@click.argument("username")
@click.option("--password-env", metavar="VAR", required=True, help="Read the password from this environment variable.")
@click.option("--client-id", help="Accept the identity only with this MQTT client id.")
@click.option("--superuser", is_flag=True, help="Allowed everything by brokers that honour superusers.")
@json_option
@click.pass_obj
def identity_add(state: State, username, password_env, client_id, superuser, as_json: bool) -> None:
    """Create the identity USERNAME; its password is never shown or logged."""
    result = backend.call(state, "identity.add", username=username, password=_password(password_env),
                          client_id=client_id, superuser=superuser)
    emit(result, as_json=as_json, fields=IDENTITY_FIELDS)


@identity_group.command("update")
@click.argument("username")
@click.option("--password-env", metavar="VAR", help="Set a new password, read from this environment variable.")
@click.option("--client-id", help="Bind the identity to this MQTT client id.")
@click.option("--no-client-id", "clear_client_id", is_flag=True, help="Lift the client-id binding.")
@click.option("--superuser/--no-superuser", default=None, help="Make it a superuser, or not.")
@click.option("--status", type=click.Choice([s.value for s in Status], case_sensitive=False),
              help="INACTIVE refuses every connect until ACTIVE again.")
@json_option
@click.pass_obj
def identity_update(state: State, username, password_env, client_id, clear_client_id, superuser, status,
                    as_json: bool) -> None:
    """Change USERNAME's password, client-id binding, superuser flag or status; the rest stays."""
    result = backend.call(state, "identity.update", username=username, password=_password(password_env),
                          client_id=client_id, clear_client_id=clear_client_id or None, superuser=superuser,
                          status=status)
    emit(result, as_json=as_json, fields=IDENTITY_FIELDS)


@identity_group.command("show")
@click.argument("username")
@json_option
@click.pass_obj
def identity_show(state: State, username, as_json: bool) -> None:
    """Show the identity USERNAME (never its password)."""
    emit(backend.call(state, "identity.show", username=username), as_json=as_json, fields=IDENTITY_FIELDS)


@identity_group.command("list")
@click.option("--status", type=click.Choice([s.value for s in Status], case_sensitive=False))
@LIMIT
@CURSOR
@output_option
@click.pass_obj
def identity_list(state: State, status, limit, cursor, as_json: bool) -> None:
    """List the instance's identities, a page at a time."""
    page = backend.call(state, "identity.list", status=status, limit=limit, cursor=cursor)
    emit_page(page, as_json=as_json, columns=IDENTITY_COLUMNS)


@identity_group.command("delete")
@click.argument("username")
@json_option
@click.pass_obj
def identity_delete(state: State, username, as_json: bool) -> None:
    """Delete the identity USERNAME: its password stops passing at the next check."""
    emit(backend.call(state, "identity.delete", username=username), as_json=as_json)


# -- permissions -------------------------------------------------------------------------------


@click.group("permission")
def permission_group() -> None:
    """Authorization rules: tried by priority (lowest first), the first match decides, else the default."""


@permission_group.command("add")
@click.option("--effect", required=True, type=click.Choice(["allow", "deny"]), help="What the rule decides.")
@click.option("--action", required=True, type=click.Choice(["connect", "publish", "subscribe", "all"]),
              help="What the rule is about.")
@click.option("--topic", required=True, metavar="FILTER",
              help="An MQTT topic filter (+, #), with ${clientid} and ${username} placeholders.")
@click.option("--username", help="The rule concerns this username.")
@click.option("--client-id", help="The rule concerns this client id.")
@click.option("--all", "all_clients", is_flag=True, help="The rule concerns every client.")
@click.option("--ip", metavar="CIDR", help="Only for clients from this address block.")
@click.option("--qos", metavar="LEVELS", help="Only at these QoS levels, e.g. 0,1.")
@click.option("--retain/--no-retain", default=None, help="Only for messages with (or without) the retain flag.")
@click.option("--priority", default="0", show_default=True, metavar="N", help="Lower numbers are tried first.")
@json_option
@click.pass_obj
def permission_add(state: State, effect, action, topic, username, client_id, all_clients, ip, qos, retain, priority,
                   as_json: bool) -> None:
    """Add a rule for exactly one of --username, --client-id or --all."""
    result = backend.call(state, "permission.add", effect=effect, action=action, topic=topic, username=username,
                          client_id=client_id, all_clients=all_clients or None, ip=ip, qos=qos, retain=retain,
                          priority=priority)
    emit(result, as_json=as_json, fields=PERMISSION_FIELDS)


@permission_group.command("list")
@LIMIT
@CURSOR
@output_option
@click.pass_obj
def permission_list(state: State, limit, cursor, as_json: bool) -> None:
    """List the instance's rules in the order they were added, a page at a time."""
    page = backend.call(state, "permission.list", limit=limit, cursor=cursor)
    emit_page(page, as_json=as_json, columns=PERMISSION_COLUMNS)


@permission_group.command("show")
@click.argument("id")
@json_option
@click.pass_obj
def permission_show(state: State, id, as_json: bool) -> None:  # noqa: A002 - the rule's id
    """Show the rule ID."""
    emit(backend.call(state, "permission.show", id=id), as_json=as_json, fields=PERMISSION_FIELDS)


@permission_group.command("delete")
@click.argument("id")
@json_option
@click.pass_obj
def permission_delete(state: State, id, as_json: bool) -> None:  # noqa: A002
    """Delete the rule ID: it stops deciding at the next check."""
    emit(backend.call(state, "permission.delete", id=id), as_json=as_json)


@permission_group.command("default")
@click.argument("effect", required=False, type=click.Choice(["allow", "deny"]))
@json_option
@click.pass_obj
def permission_default(state: State, effect, as_json: bool) -> None:
    """Set what decides when no rule matches (deny until set); without EFFECT, show it."""
    if effect is None:
        result = backend.call(state, "permission.default.get")
    else:
        result = backend.call(state, "permission.default.set", effect=effect)
    emit(result, as_json=as_json)


@permission_group.command("check")
@click.option("--username", help="The client's username.")
@click.option("--client-id", help="The client's MQTT client id.")
@click.option("--ip", metavar="ADDRESS", help="The client's address.")
@click.option("--action", required=True, type=click.Choice(["connect", "publish", "subscribe"]))
@click.option("--topic", help="The topic published to, or the filter subscribed to.")
@click.option("--qos", type=click.IntRange(0, 2), help="The message's or subscription's QoS.")
@click.option("--retain/--no-retain", default=None, help="Whether the message is retained.")
@json_option
@click.pass_obj
def permission_check(state: State, username, client_id, ip, action, topic, qos, retain, as_json: bool) -> None:
    """Decide as the broker hooks would, and name the rule that decided: exit 0 allow, 7 deny."""
    result = backend.call(state, "permission.check", username=username, client_id=client_id, ip=ip, action=action,
                          topic=topic, qos=qos, retain=retain)
    if as_json:
        emit(result, as_json=True)
    else:
        rule = result.get("rule")
        block = result.get("blocked_by")
        why = (f"rule {rule['id']} ({rule['effect']} {rule['action']} {rule['topic']}, priority {rule['priority']})"
               if rule else f"blocklist entry {block['id']} ({block['kind']} {block['value']})" if block
               else result["reason"])
        emit({"decision": result["decision"], "by": why}, as_json=False)
    if not result["allowed"]:
        raise click.exceptions.Exit(EXIT_CODES["permission_denied"])


# -- the connect blocklist ----------------------------------------------------------------------


@click.group("blocklist")
def blocklist_group() -> None:
    """Clients every broker hook refuses: by client id, username or IP network."""


@blocklist_group.command("add")
@click.option("--client-id", help="Refuse this client id.")
@click.option("--username", help="Refuse this username.")
@click.option("--ip", metavar="CIDR", help="Refuse clients from this address block.")
@click.option("--until", metavar="TIME", help="Until this ISO-8601 time (e.g. 2027-01-31T18:00:00Z); for good if absent.")
@json_option
@click.pass_obj
def blocklist_add(state: State, client_id, username, ip, until, as_json: bool) -> None:
    """Block exactly one of --client-id, --username or --ip."""
    result = backend.call(state, "blocklist.add", client_id=client_id, username=username, ip=ip, until=until)
    emit(result, as_json=as_json, fields=BLOCK_FIELDS)


@blocklist_group.command("list")
@LIMIT
@CURSOR
@output_option
@click.pass_obj
def blocklist_list(state: State, limit, cursor, as_json: bool) -> None:
    """List the blocklist entries, a page at a time."""
    emit_page(backend.call(state, "blocklist.list", limit=limit, cursor=cursor), as_json=as_json,
              columns=BLOCK_FIELDS)


@blocklist_group.command("delete")
@click.argument("id")
@json_option
@click.pass_obj
def blocklist_delete(state: State, id, as_json: bool) -> None:  # noqa: A002
    """Delete the blocklist entry ID (as `pki blocklist list` numbers it)."""
    emit(backend.call(state, "blocklist.delete", id=id), as_json=as_json)


# -- hook tokens -------------------------------------------------------------------------------


@click.group("hook-token")
def hook_token_group() -> None:
    """Bearer tokens for the broker hooks (they call the hooks and nothing else)."""


@hook_token_group.command("create")
@click.argument("name")
@click.option("--cidr", "cidrs", multiple=True, metavar="CIDR",
              help="Accept the token only from this address block (repeatable; anywhere if absent).")
@json_option
@click.pass_obj
def hook_token_create(state: State, name, cidrs, as_json: bool) -> None:
    """Create the token NAME; the token is shown this once (only its hash is stored)."""
    emit(backend.call(state, "hook.token.create", name=name, cidrs=list(cidrs)), as_json=as_json)


@hook_token_group.command("list")
@LIMIT
@CURSOR
@output_option
@click.pass_obj
def hook_token_list(state: State, limit, cursor, as_json: bool) -> None:
    """List the hook tokens (never the tokens themselves)."""
    emit_page(backend.call(state, "hook.token.list", limit=limit, cursor=cursor), as_json=as_json,
              columns=HOOK_TOKEN_FIELDS)


@hook_token_group.command("delete")
@click.argument("name")
@json_option
@click.pass_obj
def hook_token_delete(state: State, name, as_json: bool) -> None:
    """Delete the token NAME: the hooks refuse it at the next call."""
    emit(backend.call(state, "hook.token.delete", name=name), as_json=as_json)
