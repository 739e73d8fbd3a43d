"""`pki keys`: the custody keys, and master-key rotation (local only)."""

from __future__ import annotations

import click

from . import backend
from .common import State, json_option
from .render import emit, emit_page

__all__ = ["keys_group"]

KEY_COLUMNS = ("key_id", "custody", "key_type", "created_at", "cas")


@click.group("keys")
def keys_group() -> None:
    """CA keys in custody (software or PKCS#11) and the master key."""


@keys_group.command("list")
@json_option
@click.pass_obj
def keys_list(state: State, as_json: bool) -> None:
    """Every custody key: kind, type, the CAs using it, when made; never key material."""
    page = backend.call(state, "keys.list")
    if not as_json:
        for item in page["items"]:
            item["cas"] = ",".join(f"{u['ca_sn']}({u['use']})" for u in item["used_by"]) or "-"
    emit_page(page, as_json=as_json, columns=KEY_COLUMNS)


@keys_group.command("rotate-master")
@click.option("--new-key-file", required=True, type=click.Path(dir_okay=False, exists=True),
              help="The new master key (make one with `pki keys new-master --out F`), mode 0600.")
@click.option("--batch-size", type=int, default=500, show_default=True, help="Rows re-sealed per transaction.")
@json_option
@click.pass_obj
def keys_rotate_master(state: State, new_key_file: str, batch_size: int, as_json: bool) -> None:
    """Re-seal every sealed key and secret under a new master key; rerun it after any interruption."""
    backend.require_local(state, "keys rotate-master", "it needs the master key files on this machine")
    result = backend.call(state, "keys.master.rotate", new_key_file=new_key_file, batch_size=batch_size)
    emit(result, as_json=as_json)


@keys_group.command("new-master")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Where to write it (must not exist).")
@json_option
def keys_new_master(out: str, as_json: bool) -> None:
    """Write a new random master key file (mode 0600) for a rotation; never overwrites."""
    from ..services.master_keys import new_master_key_file

    emit(new_master_key_file(out), as_json=as_json)
