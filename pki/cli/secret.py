"""`pki secret ...`: one device, one secret."""

from __future__ import annotations

import os

import click

from ..services.paging import Status
from . import backend
from .common import State, json_option
from .output import output_option
from .render import emit, emit_page

__all__ = ["secret_group"]

SECRET_FIELDS = ("client_id", "access_key_id", "status", "username", "secondary_expires_at", "rotated_at",
                 "secret")
SECRET_COLUMNS = ("client_id", "access_key_id", "status", "secondary_expires_at")
GROUP_FIELDS = ("name", "access_key_id", "status", "username", "created_at")
GROUP_COLUMNS = ("name", "access_key_id", "status")
MEMBER_FIELDS = ("client_id", "group", "access_key_id", "username", "status", "group_status", "secret")


@click.group("secret")
def secret_group() -> None:
    """Per-device secrets for the broker's username/password check."""


@secret_group.command("register")
@click.argument("client_id")
@json_option
@click.pass_obj
def secret_register(state: State, client_id: str, as_json: bool) -> None:
    """Create the credential of CLIENT_ID; the secret is shown this once (or with show --reveal)."""
    emit(backend.call(state, "secret.register", client_id=client_id), as_json=as_json, fields=SECRET_FIELDS)


@secret_group.command("show")
@click.argument("client_id")
@click.option("--reveal", is_flag=True, help="Include the current secret.")
@json_option
@click.pass_obj
def secret_show(state: State, client_id: str, reveal: bool, as_json: bool) -> None:
    """Show the credential of CLIENT_ID (the secret only with --reveal)."""
    emit(backend.call(state, "secret.show", client_id=client_id, reveal=reveal), as_json=as_json,
         fields=SECRET_FIELDS)


@secret_group.command("refresh")
@click.argument("client_id")
@click.option("--grace", default="24h", show_default=True,
              help="How long the old secret still passes (30m, 24h, 7d; 0 for not at all).")
@json_option
@click.pass_obj
def secret_refresh(state: State, client_id: str, grace: str, as_json: bool) -> None:
    """Give CLIENT_ID a new secret; the old one stays valid for the grace period."""
    emit(backend.call(state, "secret.refresh", client_id=client_id, grace=grace), as_json=as_json,
         fields=SECRET_FIELDS)


@secret_group.command("unregister")
@click.argument("client_id")
@json_option
@click.pass_obj
def secret_unregister(state: State, client_id: str, as_json: bool) -> None:
    """Delete the credential of CLIENT_ID: its secrets stop passing at once."""
    emit(backend.call(state, "secret.unregister", client_id=client_id), as_json=as_json)


def _status_command(name: str, doc: str):
    @secret_group.command(name, help=doc)
    @click.argument("client_id")
    @click.option("--group", metavar="NAME", help="Act on CLIENT_ID as a member of this enrollment group.")
    @json_option
    @click.pass_obj
    def command(state: State, client_id: str, group: str | None, as_json: bool) -> None:
        result = backend.call(state, f"secret.{name}", client_id=client_id, group=group)
        emit(result, as_json=as_json, fields=MEMBER_FIELDS if group else SECRET_FIELDS)

    return command


_status_command("activate", "Let CLIENT_ID's credential (or group membership) pass again.")
_status_command("deactivate", "Refuse CLIENT_ID's credential (or, with --group, its membership) until activated.")


@secret_group.command("list")
@click.option("--status", type=click.Choice([s.value for s in Status], case_sensitive=False))
@click.option("--limit", type=int, help="Page size (1-1000, default 100).")
@click.option("--cursor", help="next_cursor of the previous page.")
@output_option
@click.pass_obj
def secret_list(state: State, status, limit, cursor, as_json: bool) -> None:
    """List the instance's credentials (never their secrets), a page at a time."""
    page = backend.call(state, "secret.list", status=status, limit=limit, cursor=cursor)
    emit_page(page, as_json=as_json, columns=SECRET_COLUMNS)


@secret_group.command("verify")
@click.option("--client-id", required=True, help="The MQTT client id the device connects with.")
@click.option("--username", required=True, help="DeviceCredential|<access key id>|<instance>.")
@click.option("--password", help="The password or SharedAccessSignature token (visible to ps; see --password-env).")
@click.option("--password-env", metavar="VAR", help="Read the password from this environment variable instead.")
@click.option("--clock-skew", default="60s", show_default=True, help="Allowance for token expiry (0-10m).")
@json_option
@click.pass_obj
def secret_verify(state: State, client_id, username, password, password_env, clock_skew, as_json: bool) -> None:
    """Check a username and password as the broker would: exit 0 if it passes.

    A refusal says only that: the reason is logged (logger pki.secrets).
    """
    if (password is None) == (password_env is None):
        raise click.UsageError("give --password or --password-env, one of them")
    if password_env is not None:
        if password_env not in os.environ:
            raise click.UsageError(f"environment variable {password_env} is not set")
        password = os.environ[password_env]
    result = backend.call(state, "secret.verify", client_id=client_id, username=username, password=password,
                          clock_skew=clock_skew)
    emit(result, as_json=as_json)


@secret_group.command("derive")
@click.option("--group", required=True, metavar="NAME", help="The enrollment group.")
@click.argument("client_id")
@json_option
@click.pass_obj
def secret_derive(state: State, group: str, client_id: str, as_json: bool) -> None:
    """The secret of CLIENT_ID as a member of an enrollment group, for the factory line."""
    emit(backend.call(state, "secret.derive", group=group, client_id=client_id), as_json=as_json,
         fields=MEMBER_FIELDS)


# -- enrollment groups -----------------------------------------------------------------------


@secret_group.group("group")
def group_group() -> None:
    """Enrollment groups: members' secrets derived from one key in custody, no row per device."""


@group_group.command("create")
@click.argument("name")
@json_option
@click.pass_obj
def group_create(state: State, name: str, as_json: bool) -> None:
    """Create an enrollment group with a fresh key (never shown; `secret derive` gives members' secrets)."""
    emit(backend.call(state, "secret.group.create", name=name), as_json=as_json, fields=GROUP_FIELDS)


@group_group.command("show")
@click.argument("name")
@json_option
@click.pass_obj
def group_show(state: State, name: str, as_json: bool) -> None:
    """Show an enrollment group."""
    emit(backend.call(state, "secret.group.show", name=name), as_json=as_json, fields=GROUP_FIELDS)


@group_group.command("list")
@click.option("--status", type=click.Choice([s.value for s in Status], case_sensitive=False))
@click.option("--limit", type=int, help="Page size (1-1000, default 100).")
@click.option("--cursor", help="next_cursor of the previous page.")
@output_option
@click.pass_obj
def group_list(state: State, status, limit, cursor, as_json: bool) -> None:
    """List the instance's enrollment groups."""
    page = backend.call(state, "secret.group.list", status=status, limit=limit, cursor=cursor)
    emit_page(page, as_json=as_json, columns=GROUP_COLUMNS)


@group_group.command("disable")
@click.argument("name")
@json_option
@click.pass_obj
def group_disable(state: State, name: str, as_json: bool) -> None:
    """Refuse every member of the group until it is enabled again."""
    emit(backend.call(state, "secret.group.disable", name=name), as_json=as_json, fields=GROUP_FIELDS)


@group_group.command("enable")
@click.argument("name")
@json_option
@click.pass_obj
def group_enable(state: State, name: str, as_json: bool) -> None:
    """Let the group's members pass again."""
    emit(backend.call(state, "secret.group.enable", name=name), as_json=as_json, fields=GROUP_FIELDS)
