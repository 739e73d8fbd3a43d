"""`pki ca create --csr-only` and `pki ca install-signed`: a managed CA signed by an outside root."""

from __future__ import annotations

from pathlib import Path

import click

from ..x509 import MAX_BUNDLE_ITEMS, MAX_ITEM_BYTES
from . import backend
from .common import CA_FIELDS, State, file_arg, json_option, read_input
from .render import emit

__all__ = ["install_signed_command", "request_only"]


def request_only(state: State, *, name, subject, key_type, days, parent, path_length, out, as_json) -> None:
    """`ca create --csr-only`: the key and its CSR; the outside CA decides validity and path length."""
    given = [flag for flag, value in (("--days", days), ("--parent", parent), ("--path-length", path_length))
             if value is not None]
    if given:
        raise click.UsageError(f"{', '.join(given)}: not with --csr-only; the outside CA that signs the CSR "
                               "sets the validity and the path length")
    result = backend.call(state, "ca.request", name=name, subject=subject, key_type=key_type)
    if out is not None:
        Path(out).write_text(result["csr_pem"])
        click.echo(f"wrote {out}; have it signed, then `pki ca install-signed {result['ref']} --cert FILE`",
                   err=True)
    if as_json:
        emit(result, as_json=True)
    else:
        emit({k: v for k, v in result.items() if k != "csr_pem" or out is None}, as_json=False,
             fields=("ref", "name", "subject", "key_type", "status", "created_at", "csr_pem"))


@click.command("install-signed")
@click.argument("ref", metavar="REQUEST", required=False)
@click.option("--cert", "cert_path", required=True, type=file_arg(),
              help="The CA certificate the outside root signed from the CSR (PEM or DER).")
@click.option("--chain", type=file_arg(), help="Its issuers up to the root (PEM); not needed when the issuer is "
              "a CA here.")
@json_option
@click.pass_obj
def install_signed_command(state: State, ref, cert_path, chain, as_json) -> None:
    """Install the signed certificate of a `ca create --csr-only` request: the CA becomes ACTIVE.

    REQUEST is the ref `ca create --csr-only` printed; without it, the request holding the
    certificate's public key is used.
    """
    result = backend.call(state, "ca.install", ref=ref,
                          certificate=read_input(cert_path, limit=MAX_ITEM_BYTES),
                          chain=read_input(chain, limit=MAX_ITEM_BYTES * MAX_BUNDLE_ITEMS) if chain else None)
    emit(result, as_json=as_json, fields=CA_FIELDS)
