"""`pki token`: broker tokens (short-lived JWTs a broker verifies) and `pki token key`: their signing keys."""

from __future__ import annotations

import click

from . import backend
from .common import State, json_option
from .render import emit, emit_page

__all__ = ["token_group"]

TOKEN_FIELDS = ("token_id", "client_id", "username", "superuser", "status", "kid", "acl", "issued_at", "expires_at",
                "revoked_at")
TOKEN_COLUMNS = ("token_id", "client_id", "username", "status", "expires_at")
KEY_FIELDS = ("kid", "alg", "status", "created_at", "superseded_at", "verify_until")


@click.group("token")
def token_group() -> None:
    """Short-lived JWTs for one client id and its topics: brokers verify them (HTTP hooks or JWKS)."""


@token_group.command("apply")
@click.option("--client-id", required=True, help="The MQTT client id the token is for.")
@click.option("--username", help="Also bind the token to this MQTT username.")
@click.option("--topic", "topics", multiple=True, metavar="FILTER",
              help="A topic filter the token allows (repeatable; ${clientid} and ${username} are substituted).")
@click.option("--action", type=click.Choice(["publish", "subscribe", "all"]), default="all", show_default=True,
              help="What the token allows on its topics.")
@click.option("--ttl", default="1h", show_default=True, help="Lifetime, e.g. 15m or 1h (at most PKI_TOKEN_MAX_TTL).")
@click.option("--superuser", is_flag=True, help="Allow everything (brokers that honour superusers).")
@click.pass_obj
def token_apply(state: State, client_id, username, topics, action, ttl, superuser) -> None:
    """Apply for a token; prints {"token", "token_id", "expires_at"}: the token is shown this once."""
    result = backend.call(state, "token.apply", client_id=client_id, username=username, topics=list(topics),
                          action=action, ttl=ttl, superuser=superuser)
    emit(result, as_json=True)


@token_group.command("show")
@click.argument("token_id")
@json_option
@click.pass_obj
def token_show(state: State, token_id, as_json: bool) -> None:
    """Show the token TOKEN_ID: its claims and status (never the token)."""
    emit(backend.call(state, "token.show", token_id=token_id), as_json=as_json, fields=TOKEN_FIELDS)


@token_group.command("list")
@click.option("--client-id", help="Only the tokens of this client id.")
@click.option("--status", type=click.Choice(["ACTIVE", "REVOKED", "EXPIRED"]), help="Only tokens in this status.")
@click.option("--limit", type=int, help="Page size (1-1000, default 100).")
@click.option("--cursor", help="next_cursor of the previous page.")
@json_option
@click.pass_obj
def token_list(state: State, client_id, status, limit, cursor, as_json: bool) -> None:
    """List tokens, a page at a time."""
    emit_page(backend.call(state, "token.list", client_id=client_id, status=status, limit=limit, cursor=cursor),
              as_json=as_json, columns=TOKEN_COLUMNS)


@token_group.command("revoke")
@click.argument("token_id")
@json_option
@click.pass_obj
def token_revoke(state: State, token_id, as_json: bool) -> None:
    """Revoke TOKEN_ID: the HTTP hooks refuse it at once (a broker verifying JWTs itself, at its expiry)."""
    emit(backend.call(state, "token.revoke", token_id=token_id), as_json=as_json, fields=TOKEN_FIELDS)


@token_group.group("key")
def token_key_group() -> None:
    """The keys that sign tokens (published at /.well-known/jwks.json)."""


@token_key_group.command("rotate")
@click.option("--alg", type=click.Choice(["ES256", "EdDSA", "RS256"]), default="ES256", show_default=True,
              help="The new key's JWS algorithm.")
@json_option
@click.pass_obj
def token_key_rotate(state: State, alg, as_json: bool) -> None:
    """Make a new current key; the old one verifies the tokens it signed until they expire, then retires."""
    emit(backend.call(state, "token.key.rotate", alg=alg), as_json=as_json, fields=KEY_FIELDS)


@token_key_group.command("list")
@json_option
@click.pass_obj
def token_key_list(state: State, as_json: bool) -> None:
    """List the signing keys: CURRENT, PREVIOUS (verifying until its last token expires), RETIRED."""
    emit_page(backend.call(state, "token.key.list"), as_json=as_json, columns=KEY_FIELDS)
