"""`pki secret ...`: one device, one secret."""

from __future__ import annotations

import datetime as _dt
import os

import click

from ..ids import parse_duration
from ..services import secrets as service
from .common import State, json_option
from .render import emit, emit_page

__all__ = ["secret_group"]

SECRET_FIELDS = ("client_id", "access_key_id", "status", "username", "secondary_expires_at", "rotated_at",
                 "secret")
SECRET_COLUMNS = ("client_id", "access_key_id", "status", "secondary_expires_at")
GROUP_FIELDS = ("name", "access_key_id", "status", "username", "created_at")
GROUP_COLUMNS = ("name", "access_key_id", "status")
MEMBER_FIELDS = ("client_id", "group", "access_key_id", "username", "status", "group_status", "secret")


def _duration(text: str) -> _dt.timedelta:
    # "0" alone means none, as the issue writes it; anything else needs a unit.
    return _dt.timedelta(0) if text.strip() == "0" else parse_duration(text)


@click.group("secret")
def secret_group() -> None:
    """Per-device secrets for the broker's username/password check."""


@secret_group.command("register")
@click.argument("client_id")
@json_option
@click.pass_obj
def secret_register(state: State, client_id: str, as_json: bool) -> None:
    """Create the credential of CLIENT_ID; the secret is shown this once (or with show --reveal)."""
    emit(service.register_secret(state.context(), client_id=client_id), as_json=as_json, fields=SECRET_FIELDS)


@secret_group.command("show")
@click.argument("client_id")
@click.option("--reveal", is_flag=True, help="Include the current secret.")
@json_option
@click.pass_obj
def secret_show(state: State, client_id: str, reveal: bool, as_json: bool) -> None:
    """Show the credential of CLIENT_ID (the secret only with --reveal)."""
    emit(service.show_secret(state.context(), client_id=client_id, reveal=reveal), as_json=as_json,
         fields=SECRET_FIELDS)


@secret_group.command("refresh")
@click.argument("client_id")
@click.option("--grace", default="24h", show_default=True,
              help="How long the old secret still passes (30m, 24h, 7d; 0 for not at all).")
@json_option
@click.pass_obj
def secret_refresh(state: State, client_id: str, grace: str, as_json: bool) -> None:
    """Give CLIENT_ID a new secret; the old one stays valid for the grace period."""
    emit(service.refresh_secret(state.context(), client_id=client_id, grace=_duration(grace)), as_json=as_json,
         fields=SECRET_FIELDS)


@secret_group.command("unregister")
@click.argument("client_id")
@json_option
@click.pass_obj
def secret_unregister(state: State, client_id: str, as_json: bool) -> None:
    """Delete the credential of CLIENT_ID: its secrets stop passing at once."""
    emit(service.unregister_secret(state.context(), client_id=client_id), as_json=as_json)


def _status_command(name: str, doc: str, action):
    @secret_group.command(name, help=doc)
    @click.argument("client_id")
    @click.option("--group", metavar="NAME", help="Act on CLIENT_ID as a member of this enrollment group.")
    @json_option
    @click.pass_obj
    def command(state: State, client_id: str, group: str | None, as_json: bool) -> None:
        result = action(state.context(), client_id=client_id, group=group)
        emit(result, as_json=as_json, fields=MEMBER_FIELDS if group else SECRET_FIELDS)

    return command


_status_command("activate", "Let CLIENT_ID's credential (or group membership) pass again.", service.activate_secret)
_status_command("deactivate", "Refuse CLIENT_ID's credential (or, with --group, its membership) until activated.",
                service.deactivate_secret)


@secret_group.command("list")
@click.option("--status", type=click.Choice(["ACTIVE", "INACTIVE"], case_sensitive=False))
@click.option("--limit", type=int, help="Page size (1-1000, default 100).")
@click.option("--cursor", help="next_cursor of the previous page.")
@json_option
@click.pass_obj
def secret_list(state: State, status, limit, cursor, as_json: bool) -> None:
    """List the instance's credentials (never their secrets), a page at a time."""
    page = service.list_secrets(state.context(), status=status, limit=limit, cursor=cursor)
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
    result = service.authenticate(
        state.context(), client_id=client_id, username=username, password=password,
        clock_skew=_duration(clock_skew),
    )
    emit(result, as_json=as_json)


@secret_group.command("derive")
@click.option("--group", required=True, metavar="NAME", help="The enrollment group.")
@click.argument("client_id")
@json_option
@click.pass_obj
def secret_derive(state: State, group: str, client_id: str, as_json: bool) -> None:
    """The secret of CLIENT_ID as a member of an enrollment group, for the factory line."""
    emit(service.derive_member_secret(state.context(), group=group, client_id=client_id), as_json=as_json,
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
    emit(service.create_group(state.context(), name=name), as_json=as_json, fields=GROUP_FIELDS)


@group_group.command("show")
@click.argument("name")
@json_option
@click.pass_obj
def group_show(state: State, name: str, as_json: bool) -> None:
    """Show an enrollment group."""
    emit(service.show_group(state.context(), name=name), as_json=as_json, fields=GROUP_FIELDS)


@group_group.command("list")
@click.option("--status", type=click.Choice(["ACTIVE", "INACTIVE"], case_sensitive=False))
@click.option("--limit", type=int, help="Page size (1-1000, default 100).")
@click.option("--cursor", help="next_cursor of the previous page.")
@json_option
@click.pass_obj
def group_list(state: State, status, limit, cursor, as_json: bool) -> None:
    """List the instance's enrollment groups."""
    page = service.list_groups(state.context(), status=status, limit=limit, cursor=cursor)
    emit_page(page, as_json=as_json, columns=GROUP_COLUMNS)


@group_group.command("disable")
@click.argument("name")
@json_option
@click.pass_obj
def group_disable(state: State, name: str, as_json: bool) -> None:
    """Refuse every member of the group until it is enabled again."""
    emit(service.disable_group(state.context(), name=name), as_json=as_json, fields=GROUP_FIELDS)


@group_group.command("enable")
@click.argument("name")
@json_option
@click.pass_obj
def group_enable(state: State, name: str, as_json: bool) -> None:
    """Let the group's members pass again."""
    emit(service.enable_group(state.context(), name=name), as_json=as_json, fields=GROUP_FIELDS)
