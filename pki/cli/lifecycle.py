"""`pki ca show|update`, `pki device renew`, `pki claim create`: fetch, renew and rekey, enrollment settings."""

from __future__ import annotations

import click

from . import backend
from .choices import KEY_TYPES
from .device_ref import device_ref_options, resolve
from .common import CA_FIELDS, State, file_arg, json_option, read_input
from .render import emit

#: pki.x509.MAX_ITEM_BYTES, without importing cryptography at start-up (tests/test_cli_fleet.py checks it).
_MAX_ITEM_BYTES = 64 * 1024

__all__ = ["ca_show", "ca_update", "device_renew", "claim_group"]

_CA_DETAIL = CA_FIELDS + ("est_label", "est_default", "bootstrap_only", "renew_after_expiry_s", "supersede_after_s")
_RENEWED = ("sn", "ca_sn", "client_id", "status", "fingerprint_sha256", "not_before", "not_after", "replaces",
            "old_supersede_after")


@click.command("show")
@click.argument("ref", metavar="SN")
@click.option("--pem", "as_pem", is_flag=True, help="Print the CA certificate alone, as PEM.")
@json_option
@click.pass_obj
def ca_show(state: State, ref: str, as_pem: bool, as_json: bool) -> None:
    """Show a CA by serial number or SHA-256 fingerprint (--json includes certificate_pem and chain_pem)."""
    result = backend.call(state, "ca.show", ref=ref)
    if as_pem:
        click.echo(result["certificate_pem"], nl=False)
        return
    emit(result, as_json=as_json, fields=_CA_DETAIL)


@click.command("update")
@click.argument("ref", metavar="SN")
@click.option("--est-label", metavar="L", help="Serve this CA under /.well-known/est/L/.")
@click.option("--no-est-label", "clear_est_label", is_flag=True, help="Remove the EST label.")
@click.option("--est-default/--no-est-default", default=None,
              help="Serve this CA on the unlabelled /.well-known/est/ (one per instance).")
@click.option("--bootstrap-only/--no-bootstrap-only", default=None,
              help="Its certificates may enroll over EST and nothing else; never in the trust bundle.")
@click.option("--renew-after-expiry", metavar="DURATION",
              help="How long after expiry a certificate may still reenroll over EST (0: never, the default).")
@click.option("--supersede-after", metavar="DURATION",
              help="Default grace before a renewed certificate's predecessor is revoked (default 24h).")
@json_option
@click.pass_obj
def ca_update(state: State, ref, est_label, clear_est_label, est_default, bootstrap_only, renew_after_expiry,
              supersede_after, as_json) -> None:
    """Change a CA's enrollment and renewal settings; only the options given change."""
    if est_label and clear_est_label:
        raise click.UsageError("--est-label and --no-est-label exclude each other")
    result = backend.call(state, "ca.update", ref=ref, est_label=est_label, clear_est_label=clear_est_label,
                          est_default=est_default, bootstrap_only=bootstrap_only,
                          renew_after_expiry=renew_after_expiry, supersede_after=supersede_after)
    emit(result, as_json=as_json, fields=_CA_DETAIL)


@click.command("renew")
@device_ref_options
@click.option("--csr", type=file_arg(), help="Rekey to this PKCS#10 request's key (PEM or DER).")
@click.option("--generate", is_flag=True, help="Rekey to a key generated here.")
@click.option("--key-type", type=click.Choice(list(KEY_TYPES)), default="ec-p256", show_default=True,
              help="With --generate.")
@click.option("--days", type=int, help="Validity in days (default 365).")
@click.option("--supersede-after", metavar="DURATION",
              help="Grace before the old certificate is revoked as superseded; 0: at once "
              "(default: the CA's, else 24h).")
@click.option("--out", type=click.Path(file_okay=False), help="Write <client-id>.pem (+ a generated key) here.")
@json_option
@click.pass_obj
def device_renew(state: State, ref, csr, generate, key_type, days, supersede_after, out, as_json) -> None:
    """Renew (same key) or rekey (--csr, --generate) a device certificate, named by SN --ca CA, --client-id or
    --fingerprint; its CA signs the new one, which records what it replaces."""
    if csr and generate:
        raise click.UsageError("--csr and --generate exclude each other")
    result = backend.call(state, "device.renew", **resolve(state, ref),
                          csr=read_input(csr, limit=_MAX_ITEM_BYTES) if csr else None, generate=generate,
                          days=days, supersede_after=supersede_after, key_type=key_type)
    if out:
        from pathlib import Path

        from .device import _write_private

        directory = Path(out)
        directory.mkdir(parents=True, exist_ok=True)
        name = result["client_id"]
        cert_path = directory / f"{name}.pem"
        cert_path.write_text(result["certificate_pem"] + result["chain_pem"])
        files = [str(cert_path)]
        key_pem = result.pop("private_key_pem", None)
        if key_pem is not None:
            key_path = directory / f"{name}.key.pem"
            if key_path.exists():
                key_path.unlink()
            _write_private(key_path, key_pem.encode())
            files.append(str(key_path))
        result["files"] = files
        emit(result, as_json=as_json, fields=_RENEWED + ("files",))
        return
    emit(result, as_json=as_json, fields=_RENEWED + ("certificate_pem", "private_key_pem"))


@click.group("claim")
def claim_group() -> None:
    """Enrollment claims: one-time credentials for a device's first EST enrollment."""


@claim_group.command("create")
@click.option("--ca", "ca_sn", required=True, metavar="SN", help="The managed CA the devices enroll with.")
@click.option("--uses", type=int, default=1, show_default=True, help="How many client ids may enroll with it.")
@click.option("--ttl", default="24h", show_default=True, help="How long it stays valid.")
@click.option("--client-id-prefix", metavar="P", help="Only client ids starting with P may enroll.")
@json_option
@click.pass_obj
def claim_create(state: State, ca_sn, uses, ttl, client_id_prefix, as_json) -> None:
    """Make a claim: {"claim_id", "password"} for HTTP Basic on EST simpleenroll (the password shows once)."""
    emit(backend.call(state, "claim.create", ca=ca_sn, uses=uses, ttl=ttl, client_id_prefix=client_id_prefix),
         as_json=as_json)
