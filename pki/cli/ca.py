"""`pki init`, `pki code ...` and `pki ca ...`: the store, register codes and CA certificates."""

from __future__ import annotations

import os
from pathlib import Path

import click

from ..services import offline
from ..services.managed import DEFAULT_CA_DAYS
from ..services.paging import Status
from ..services.setup import initialise
from ..x509 import MAX_BUNDLE_ITEMS, MAX_ITEM_BYTES
from . import backend
from .choices import KEY_TYPES
from .common import CA_FIELDS, State as _State, file_arg as _file, json_option, read_input as _read
from .output import output_option
from .render import emit, emit_page

__all__ = ["init_cmd", "code_group", "ca_group"]

CA_COLUMNS = ("sn", "name", "status", "source", "key_type", "not_after")


@click.command("init")
@json_option
@click.pass_obj
def init_cmd(state: _State, as_json: bool) -> None:
    """Create (or upgrade) the data directory, the schema and the master key (local only)."""
    backend.require_local(state, "init", "it prepares a store on this machine; a server's store is prepared "
                          "where `pki serve` runs")
    emit(initialise(state.settings), as_json=as_json)


# -- register codes -------------------------------------------------------------------


@click.group("code")
def code_group() -> None:
    """Register codes: single-use challenges for proving possession of a CA key."""


@code_group.command("new")
@click.option("--ttl", default="1h", show_default=True, help="How long the code stays valid (30m, 1h, 2d).")
@json_option
@click.pass_obj
def code_new(state: _State, ttl: str, as_json: bool) -> None:
    """Hand out a register code for the instance.

    Put it as the CN of a verification certificate signed by the CA's key, then
    run `pki ca register`.
    """
    emit(backend.call(state, "code.new", ttl=ttl), as_json=as_json)


# -- CAs --------------------------------------------------------------------------------


@click.group("ca")
def ca_group() -> None:
    """Register, create and manage CA certificates."""


@ca_group.command("verification-cert")
@click.option("--ca-cert", required=True, type=_file(), help="The CA certificate (PEM or DER).")
@click.option("--ca-key", required=True, type=_file(), help="The CA private key (PEM or DER).")
@click.option("--code", required=True, help="The register code from `pki code new`.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, writable=True),
              help="Where to write the verification certificate (PEM).")
@click.option("--key-password-env", metavar="VAR",
              help="Name of an environment variable holding the CA key's password, if it is encrypted.")
def ca_verification_cert(ca_cert, ca_key, code, out, key_password_env) -> None:
    """Offline: make the verification certificate where the CA key lives.

    Needs no store; the CA key never leaves this machine.
    """
    password = None
    if key_password_env:
        if key_password_env not in os.environ:
            raise click.UsageError(f"environment variable {key_password_env} is not set")
        password = os.environ[key_password_env].encode()
    pem = offline.make_verification_certificate(
        ca_certificate=_read(ca_cert, limit=MAX_ITEM_BYTES),
        ca_private_key=_read(ca_key, limit=MAX_ITEM_BYTES),
        code=code,
        key_password=password,
    )
    Path(out).write_bytes(pem)
    click.echo(f"wrote {out}", err=True)


@ca_group.command("register")
@click.option("--cert", "cert_path", required=True, type=_file(), help="The CA certificate (PEM or DER).")
@click.option("--verification", required=True, type=_file(),
              help="Verification certificate: CN = register code, signed by the CA.")
@click.option("--name", help="Display name (default: the CA's CN).")
@click.option("--inactive", is_flag=True, help="Register as INACTIVE (not trusted until activated).")
@click.option("--chain", type=_file(), help="For an intermediate CA: its issuers up to the root (PEM).")
@json_option
@click.pass_obj
def ca_register(state: _State, cert_path, verification, name, inactive, chain, as_json) -> None:
    """Register a CA you own, proving you hold its private key."""
    result = backend.call(
        state, "ca.register",
        certificate=_read(cert_path, limit=MAX_ITEM_BYTES),
        verification=_read(verification, limit=MAX_ITEM_BYTES),
        name=name,
        inactive=inactive,
        chain=_read(chain, limit=MAX_ITEM_BYTES * MAX_BUNDLE_ITEMS) if chain else None,
    )
    emit(result, as_json=as_json, fields=CA_FIELDS)


@ca_group.command("list")
@click.option("--status", type=click.Choice([s.value for s in Status], case_sensitive=False))
@click.option("--limit", type=int, default=None, help="Page size (1-1000, default 100).")
@click.option("--cursor", help="next_cursor of the previous page.")
@output_option
@click.pass_obj
def ca_list(state: _State, status, limit, cursor, as_json) -> None:
    """List CAs of the instance, a page at a time."""
    page = backend.call(state, "ca.list", status=status, limit=limit, cursor=cursor)
    emit_page(page, as_json=as_json, columns=CA_COLUMNS)


def _ca_ref_command(name: str, doc: str):
    @ca_group.command(name, help=doc)
    @click.argument("ref", metavar="SN")
    @json_option
    @click.pass_obj
    def command(state: _State, ref: str, as_json: bool) -> None:
        emit(backend.call(state, f"ca.{name}", ref=ref), as_json=as_json, fields=CA_FIELDS)

    return command


_ca_ref_command("activate", "Trust a CA again (it returns to the trust bundle).")
_ca_ref_command("deactivate", "Stop trusting a CA: every device under it is locked out.")


@ca_group.command("delete")
@click.argument("ref", metavar="SN")
@click.option("--cascade", is_flag=True, help="Also delete its device certificates, in the same transaction.")
@json_option
@click.pass_obj
def ca_delete(state: _State, ref: str, cascade: bool, as_json: bool) -> None:
    """Delete a CA (refused while it has device certificates, unless --cascade)."""
    emit(backend.call(state, "ca.delete", ref=ref, cascade=cascade), as_json=as_json)


@ca_group.command("create")
@click.option("--name", help="The CA's display name and, without --subject, its CN (default: the subject's CN).")
@click.option("--subject", metavar="DN",
              help='The full subject as openssl writes it, most significant first: "C=DE,O=Acme,CN=Line 3".')
@click.option("--key-type", type=click.Choice(list(KEY_TYPES)), default="ec-p256", show_default=True)
@click.option("--days", type=int, help=f"Validity in days (default {DEFAULT_CA_DAYS}; for an intermediate, "
              "never past its parent's end).")
@click.option("--parent", metavar="SN", help="Create an intermediate under this managed CA.")
@click.option("--path-length", type=int, help="basicConstraints pathLen (default: none for a root, 0 below one).")
@click.option("--custody", type=click.Choice(["software", "pkcs11"]), default="software", show_default=True,
              help="Where the key lives: sealed under the master key, or made on a PKCS#11 token (HSM).")
@click.option("--pkcs11-module", metavar="PATH", help="pkcs11: the module, e.g. /usr/lib/softhsm/libsofthsm2.so.")
@click.option("--token-label", metavar="L", help="pkcs11: the token's label.")
@click.option("--pin-env", metavar="VAR", help="pkcs11: read the PIN from this variable [default PKI_PKCS11_PIN].")
@click.option("--pin-file", metavar="FILE",
              help="pkcs11: read the PIN from this file (mode 0600); the PIN itself is never a flag.")
@click.option("--csr-only", is_flag=True, help="Make the key and a CSR for an outside root to sign; the CA is "
              "PENDING until `pki ca install-signed`.")
@click.option("--out", type=click.Path(dir_okay=False, writable=True), help="With --csr-only: write the CSR here.")
@json_option
@click.pass_obj
def ca_create(state: _State, name, subject, key_type, days, parent, path_length, custody, pkcs11_module, token_label,
              pin_env, pin_file, csr_only, out, as_json) -> None:
    """Create a managed CA; its private key stays in this PKI's key custody."""
    if name is None and subject is None:
        raise click.UsageError("give --name or --subject")
    extra = {}
    if custody != "software" or pkcs11_module or token_label or pin_env or pin_file:
        if csr_only:
            raise click.UsageError("--csr-only keeps the key in software custody; leave out --custody pkcs11")
        backend.require_local(state, "ca create --custody pkcs11", "the token and its PIN are on this machine")
        extra = dict(custody=custody, pkcs11_module=pkcs11_module, token_label=token_label, pin_env=pin_env,
                     pin_file=pin_file)
    if csr_only:
        from .ca_requests import request_only

        request_only(state, name=name, subject=subject, key_type=key_type, days=days, parent=parent,
                     path_length=path_length, out=out, as_json=as_json)
        return
    if out is not None:
        raise click.UsageError("--out goes with --csr-only")
    result = backend.call(
        state, "ca.create", name=name, key_type=key_type, days=days, parent=parent, path_length=path_length,
        subject=subject, **extra,
    )
    emit(result, as_json=as_json, fields=CA_FIELDS)


# Issue 15's `ca show` (with --pem) and `ca update`, and the outside root's `ca install-signed`.
from .ca_requests import install_signed_command  # noqa: E402
from .lifecycle import ca_show, ca_update  # noqa: E402

ca_group.add_command(ca_show)
ca_group.add_command(ca_update)
ca_group.add_command(install_signed_command)
