"""Enrollment groups: one key in custody, a derived secret per member, no row per device.

A member's secret is :func:`~.formulas.derive_secret` of the group key and
its client id; the group key itself is never shown.  A member has a row of
its own only once blocked on its own.
"""

from __future__ import annotations

import secrets as _secrets

from ...errors import Conflict, InvalidState, NotFound
from ...ids import validate_client_id, validate_name, validate_path_name
from ...store import secret_repos
from ...store import Status
from ...store.secret_models import SecretGroup
from .. import audit
from ..context import Context
from ..paging import list_page
from ..schemas import Page
from ..status_change import change_status
from .custody import audit_read, log, seal
from .formulas import _GROUP_PREFIX, SECRET_BYTES, _new_access_key_id, derive_key, secret_text, username_for
from .public import GroupPublic, MemberPublic
from .verify import _forget


def _group_name(name: str) -> str:
    return validate_path_name(validate_name(name, what="group name"), what="group name", code="invalid_name")


def _resolve_group(session, ctx: Context, name: str, *, lock: bool = False) -> SecretGroup:
    row = secret_repos.get_group(session, instance=ctx.instance, name=name, lock=lock)
    if row is None:
        raise NotFound(
            f"no enrollment group {name!r} in instance {ctx.instance!r}; list the groups to find it, or create it",
            code="group_not_found", group=name,
        )
    return row


def create_group(ctx: Context, *, name: str) -> GroupPublic:
    """A new group with a fresh key in custody; the key itself is never shown, only derived secrets."""
    _group_name(name)
    access_key_id = _new_access_key_id(_GROUP_PREFIX)
    sealed = seal(ctx, _secrets.token_bytes(SECRET_BYTES), access_key_id)
    now = ctx.clock.now()
    with ctx.store.transaction() as session:
        if secret_repos.get_group(session, instance=ctx.instance, name=name) is not None:
            raise Conflict(
                f"enrollment group {name!r} already exists; derive its members' secrets from it",
                code="group_exists", group=name,
            )
        row = secret_repos.insert_group(
            session,
            SecretGroup(
                instance=ctx.instance, name=name, access_key_id=access_key_id, status=Status.ACTIVE, sealed_key=sealed,
                version=1, created_at=now, updated_at=now, status_changed_at=now,
            ),
        )
        public = GroupPublic.of(row)
        audit.record_change(session, ctx, "secret.group.create", subject=name, access_key_id=access_key_id)
    log.info("enrollment group created: instance=%s group=%r access_key_id=%s", ctx.instance, name, access_key_id)
    return public


def show_group(ctx: Context, *, name: str) -> GroupPublic:
    _group_name(name)
    with ctx.store.transaction(readonly=True) as session:
        return GroupPublic.of(_resolve_group(session, ctx, name))


def list_groups(
    ctx: Context, *, status: str | None = None, limit: int | None = None, cursor: str | None = None
) -> Page:
    return list_page(ctx, secret_repos.list_groups, GroupPublic.of, status=status, statuses=Status, limit=limit,
                     cursor=cursor)


def _set_group_status(ctx: Context, name: str, status: Status) -> GroupPublic:
    _group_name(name)
    now = ctx.clock.now()
    with ctx.store.transaction() as session:
        row = _resolve_group(session, ctx, name, lock=True)
        if change_status(session, row, status, what=f"enrollment group {name!r}", status_changed_at=now,
                         **secret_repos.version_bump(SecretGroup, now=now)):
            operation = "secret.group.enable" if status == Status.ACTIVE else "secret.group.disable"
            audit.record_change(session, ctx, operation, subject=name)
        public = GroupPublic.of(row)
    _forget(ctx)
    return public


def enable_group(ctx: Context, *, name: str) -> GroupPublic:
    return _set_group_status(ctx, name, Status.ACTIVE)


def disable_group(ctx: Context, *, name: str) -> GroupPublic:
    """Every member's check fails until the group is enabled again."""
    return _set_group_status(ctx, name, Status.INACTIVE)


def _member(row: SecretGroup, client_id: str, *, blocked: bool, secret: str | None = None) -> MemberPublic:
    return MemberPublic(
        client_id=client_id, group=row.name, access_key_id=row.access_key_id,
        username=username_for(row.access_key_id, row.instance), status=Status.INACTIVE if blocked else Status.ACTIVE,
        group_status=row.status, secret=secret,
    )


def _set_member(ctx: Context, *, group: str, client_id: str, blocked: bool) -> MemberPublic:
    validate_client_id(client_id)
    _group_name(group)
    now = ctx.clock.now()
    with ctx.store.transaction() as session:
        row = _resolve_group(session, ctx, group, lock=True)
        if blocked:
            secret_repos.block_member(session, group_id=row.id, client_id=client_id, now=now)
        else:
            secret_repos.unblock_member(session, group_id=row.id, client_id=client_id)
        audit.record_change(session, ctx, "secret.deactivate" if blocked else "secret.activate",
                            subject=client_id, group=group)
        public = _member(row, client_id, blocked=blocked)
    _forget(ctx)
    log.info("group member %s: instance=%s group=%r client_id=%r", "blocked" if blocked else "unblocked",
             ctx.instance, group, client_id)
    return public


def derive_member_secret(ctx: Context, *, group: str, client_id: str) -> MemberPublic:
    """The secret of ``client_id`` as a member of ``group``, for the factory line."""
    validate_client_id(client_id)
    _group_name(group)
    with ctx.store.transaction(readonly=True) as session:
        row = _resolve_group(session, ctx, group)
        blocked = secret_repos.is_member_blocked(session, group_id=row.id, client_id=client_id)
    if row.status != Status.ACTIVE:
        raise InvalidState(
            f"enrollment group {group!r} is INACTIVE; enable it first", code="group_inactive", group=group
        )
    if blocked:
        raise InvalidState(
            f"client id {client_id!r} is disabled in group {group!r}; activate it in the group first",
            code="member_inactive", client_id=client_id, group=group,
        )
    group_key = ctx.keystore.open_secret(row.sealed_key, key_id=row.access_key_id)
    secret = secret_text(derive_key(group_key, client_id))
    audit_read(ctx, "secret.derive", client_id, group=group)
    log.info("member secret derived: instance=%s group=%r client_id=%r", ctx.instance, group, client_id)
    return _member(row, client_id, blocked=False, secret=secret)
