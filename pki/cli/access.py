"""`pki user ...`, `pki policy ...`, `pki audit ...`: principals, access policies, the audit log."""

from __future__ import annotations

import json

import click

from ..errors import PkiError
from ..ids import parse_time
from ..services.policy import MAX_DOCUMENT_CHARS
from . import backend
from .common import State, file_arg, json_option, read_input
from .output import output_option
from .render import emit, emit_page

__all__ = ["user_group", "policy_group", "audit_group"]

USER_FIELDS = ("name", "status", "policies", "access_keys", "created_at")
USER_COLUMNS = ("name", "status", "policies")
KEY_FIELDS = ("user", "access_key_id", "status", "access_key_secret")
POLICY_FIELDS = ("name", "type", "description", "attached_to", "document")
POLICY_COLUMNS = ("name", "type", "description")
DECISION_FIELDS = ("allowed", "decision", "decided_by", "reason", "action", "resource")
AUDIT_COLUMNS = ("seq", "time", "principal", "action", "result", "resource")
VERIFY_FIELDS = ("ok", "records_checked", "first_bad", "problem", "message", "head_seq", "head_hash")


def _page_for_text(page):
    """Lists in the text table: join list values so the columns stay readable."""
    data = page
    for item in data["items"]:
        for key, value in list(item.items()):
            if isinstance(value, list):
                item[key] = ",".join(v if isinstance(v, str) else v.get("access_key_id", "?") for v in value)
    return data


def _emit_user(result, as_json: bool) -> None:
    if as_json:
        emit(result, as_json=True)
        return
    data = dict(result)
    data["policies"] = ", ".join(data["policies"]) or "-"
    data["access_keys"] = ", ".join(f"{k['access_key_id']} ({k['status']})" for k in data["access_keys"]) or "-"
    emit(data, as_json=False, fields=USER_FIELDS)


# -- users ---------------------------------------------------------------------------------


@click.group("user")
def user_group() -> None:
    """Users under the account, and their access keys."""


@user_group.command("create")
@click.argument("name")
@json_option
@click.pass_obj
def user_create(state: State, name: str, as_json: bool) -> None:
    """Create user NAME with one access key; the secret is shown this once."""
    emit(backend.call(state, "user.create", name=name), as_json=as_json)


@user_group.command("list")
@click.option("--limit", type=int, default=None, help="Page size (1-1000, default 100).")
@click.option("--cursor", help="next_cursor of the previous page.")
@output_option
@click.pass_obj
def user_list(state: State, limit, cursor, as_json: bool) -> None:
    """List users with their policies and access keys."""
    page = backend.call(state, "user.list", limit=limit, cursor=cursor)
    emit_page(_page_for_text(page) if as_json == "table" else page, as_json=as_json, columns=USER_COLUMNS)


@user_group.command("show")
@click.argument("name")
@json_option
@click.pass_obj
def user_show(state: State, name: str, as_json: bool) -> None:
    """Show a user, its policies and its access keys (never their secrets)."""
    _emit_user(backend.call(state, "user.show", name=name), as_json)


def _user_command(name: str, doc: str):
    @user_group.command(name, help=doc)
    @click.argument("user")
    @json_option
    @click.pass_obj
    def command(state: State, user: str, as_json: bool) -> None:
        _emit_user(backend.call(state, f"user.{name}", name=user), as_json)

    return command


_user_command("disable", "Disable USER: all its access keys stop working at once.")
_user_command("enable", "Enable USER again.")


@user_group.command("delete")
@click.argument("user")
@json_option
@click.pass_obj
def user_delete(state: State, user: str, as_json: bool) -> None:
    """Delete USER with its access keys and policy attachments."""
    emit(backend.call(state, "user.delete", name=user), as_json=as_json)


@user_group.group("key")
def key_group() -> None:
    """A user's access keys (at most two, to rotate without a gap)."""


@key_group.command("create")
@click.argument("user")
@json_option
@click.pass_obj
def key_create(state: State, user: str, as_json: bool) -> None:
    """Create an access key for USER; the secret is shown this once."""
    emit(backend.call(state, "user.key.create", user=user), as_json=as_json, fields=KEY_FIELDS)


def _key_command(name: str, doc: str):
    @key_group.command(name, help=doc)
    @click.argument("access_key_id")
    @json_option
    @click.pass_obj
    def command(state: State, access_key_id: str, as_json: bool) -> None:
        emit(backend.call(state, f"user.key.{name}", access_key_id=access_key_id), as_json=as_json,
             fields=KEY_FIELDS)

    return command


_key_command("disable", "Disable an access key (requests signed with it are refused).")
_key_command("enable", "Enable a disabled access key again.")
_key_command("delete", "Delete an access key for good.")


# -- policies ------------------------------------------------------------------------------


@click.group("policy")
def policy_group() -> None:
    """Access policies (RAM-style documents) and their attachment to users."""


@policy_group.command("create")
@click.argument("name")
@click.option("--document", "document_path", required=True, type=file_arg(),
              help="The policy document (JSON: Version, Statement).")
@click.option("--description", default="", help="What the policy is for.")
@json_option
@click.pass_obj
def policy_create(state: State, name: str, document_path: str, description: str, as_json: bool) -> None:
    """Create custom policy NAME from a JSON document; a malformed one is refused naming the field."""
    raw = read_input(document_path, limit=MAX_DOCUMENT_CHARS * 4)
    emit(backend.call(state, "policy.create", name=name, document=raw, description=description), as_json=as_json,
         fields=POLICY_FIELDS)


@policy_group.command("list")
@click.option("--limit", type=int, default=None, help="Page size of custom policies (1-1000, default 100).")
@click.option("--cursor", help="next_cursor of the previous page.")
@output_option
@click.pass_obj
def policy_list(state: State, limit, cursor, as_json: bool) -> None:
    """List system and custom policies."""
    emit_page(backend.call(state, "policy.list", limit=limit, cursor=cursor), as_json=as_json,
              columns=POLICY_COLUMNS)


@policy_group.command("show")
@click.argument("name")
@json_option
@click.pass_obj
def policy_show(state: State, name: str, as_json: bool) -> None:
    """Show a policy's document and the users it is attached to."""
    result = backend.call(state, "policy.show", name=name)
    if as_json:
        emit(result, as_json=True)
    else:
        data = dict(result)
        data["document"] = json.dumps(data["document"], indent=2)
        data["attached_to"] = ", ".join(data["attached_to"] or []) or "-"
        emit(data, as_json=False, fields=POLICY_FIELDS)


@policy_group.command("delete")
@click.argument("name")
@json_option
@click.pass_obj
def policy_delete(state: State, name: str, as_json: bool) -> None:
    """Delete a custom policy (refused while it is attached)."""
    emit(backend.call(state, "policy.delete", name=name), as_json=as_json)


@policy_group.command("attach")
@click.argument("name")
@click.option("--user", required=True, help="The user to grant the policy to.")
@json_option
@click.pass_obj
def policy_attach(state: State, name: str, user: str, as_json: bool) -> None:
    """Attach policy NAME (system or custom) to a user."""
    emit(backend.call(state, "policy.attach", name=name, user=user), as_json=as_json)


@policy_group.command("detach")
@click.argument("name")
@click.option("--user", required=True, help="The user to take the policy from.")
@json_option
@click.pass_obj
def policy_detach(state: State, name: str, user: str, as_json: bool) -> None:
    """Detach policy NAME from a user."""
    emit(backend.call(state, "policy.detach", name=name, user=user), as_json=as_json)


@policy_group.command("simulate")
@click.option("--user", required=True, help="The user (or 'account').")
@click.option("--action", required=True, help="An action (mq:RegisterCa) or an operation (ca.register).")
@click.option("--resource", help="acs:mq:{region}:{account}:{instance} (default: this instance).")
@click.option("--source-ip", help="acs:SourceIp of the simulated request.")
@click.option("--insecure-transport", is_flag=True, help="Simulate a request without TLS (acs:SecureTransport false).")
@click.option("--at", "at", help="acs:CurrentTime of the simulated request (ISO-8601; default now).")
@click.option("--context", "extra", multiple=True, metavar="KEY=VALUE", help="Another condition key; repeatable.")
@json_option
@click.pass_obj
def policy_simulate(state: State, user, action, resource, source_ip, insecure_transport, at, extra, as_json) -> None:
    """Would USER be allowed ACTION on RESOURCE? Says which statement decides."""
    pairs = {}
    for item in extra:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.UsageError(f"--context {item!r}: write KEY=VALUE")
        pairs[key] = value
    when = parse_time(at, what="--at") if at is not None else None
    data = backend.call(
        state, "policy.simulate", user=user, action=action, resource=resource, source_ip=source_ip,
        secure_transport=not insecure_transport, at=when.isoformat() if when else None, context=pairs,
    )
    if not as_json and data["decided_by"]:
        data["decided_by"] = f"{data['decided_by']['policy']} statement {data['decided_by']['statement']}"
    emit(data, as_json=as_json, fields=DECISION_FIELDS)


@policy_group.command("actions")
@json_option
@click.pass_obj
def policy_actions(state: State, as_json: bool) -> None:
    """The action catalogue: each operation, its action and dependent actions."""
    page = backend.call(state, "policy.actions")
    if as_json:
        emit(page, as_json=True)
        return
    for item in page["items"]:
        deps = f"  (+ {', '.join(item['dependents'])})" if item["dependents"] else ""
        click.echo(f"{item['operation']:<22} {item['action']}{deps}")


# -- audit ---------------------------------------------------------------------------------


@click.group("audit")
def audit_group() -> None:
    """The hash-chained audit log of every change and every refusal."""


@audit_group.command("list")
@click.option("--limit", type=int, default=None, help="Page size (1-1000, default 100).")
@click.option("--cursor", help="next_cursor of the previous page.")
@click.option("--principal", help="Only records of this principal.")
@click.option("--action", help="Only records of this action (e.g. mq:IssueDeviceCertificate).")
@click.option("--result", type=click.Choice(["success", "denied", "failed"]), help="Only records with this result.")
@click.option("--newest-first", is_flag=True, help="Newest records first.")
@output_option
@click.pass_obj
def audit_list(state: State, limit, cursor, principal, action, result, newest_first, as_json) -> None:
    """List audit records, oldest first (or --newest-first)."""
    page = backend.call(state, "audit.list", limit=limit, cursor=cursor, principal=principal,
                                      action=action, result=result, newest_first=newest_first)
    emit_page(page, as_json=as_json, columns=AUDIT_COLUMNS)


@audit_group.command("batch")
@click.argument("batch")
@click.option("--limit", type=int, default=None, help="Page size (1-1000, default 100).")
@click.option("--cursor", help="next_cursor of the previous page.")
@output_option
@click.pass_obj
def audit_batch(state: State, batch: str, limit, cursor, as_json) -> None:
    """The devices of one provisioning batch, in order: BATCH is the batch id its audit record names."""
    page = backend.call(state, "audit.batch", batch=batch, limit=limit, cursor=cursor)
    emit_page(page, as_json=as_json, columns=("position", "client_id", "sn"))


@audit_group.command("verify")
@click.option("--expect-head", metavar="HASH",
              help="A head_hash saved from an earlier verify, kept outside the database: fails if no record has "
                   "it (the log lost its tail, or was rewritten).")
@json_option
@click.pass_obj
def audit_verify(state: State, expect_head: str | None, as_json: bool) -> None:
    """Check the whole chain; exits non-zero (audit_chain_broken) naming the first bad record."""
    try:
        result = backend.call(state, "audit.verify", expect_head=expect_head)
    except PkiError as exc:
        # The refusal carries the whole verify result: show it as a passing run would, then fail.
        if exc.code == "audit_chain_broken" and isinstance(exc.data.get("result"), dict):
            emit(exc.data["result"], as_json=as_json, fields=VERIFY_FIELDS)
        raise
    emit(result, as_json=as_json, fields=VERIFY_FIELDS)
