"""`pki est cacerts|enroll|reenroll`: the device side of EST (RFC 7030), for Linux gateways and tests.

Needs no store: it talks to an EST server (``pki serve --tls-*`` or any
other) and writes files (:mod:`pki.est_client`).
"""

from __future__ import annotations

import os
from pathlib import Path

import click
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .. import est_client
from ..keys import KEY_TYPES, generate_private_key
from .render import emit
from .common import json_option

__all__ = ["est_group"]

_url = click.option("--url", required=True, help="https://HOST:PORT[/label] of the EST server.")
_bundle = click.option("--ca-bundle", envvar="PKI_CA_BUNDLE", type=click.Path(exists=True, dir_okay=False),
                       help="PEM the server's TLS certificate must chain to [PKI_CA_BUNDLE; default: the system's].")
_out = click.option("--out", required=True, type=click.Path(file_okay=False), help="Directory of the device's files.")


@click.group("est")
def est_group() -> None:
    """EST client (RFC 7030): fetch the CA, enroll, renew; files swapped in only once they verify."""


@est_group.command("cacerts")
@_url
@_bundle
@_out
@json_option
def est_cacerts(url, ca_bundle, out, as_json) -> None:
    """Fetch the EST CA certificates into DIR/ca.pem."""
    client = est_client.EstClient(url, ca_bundle=ca_bundle)
    try:
        cas = client.cacerts()
    finally:
        client.close()
    path = est_client.write_cas(Path(out), cas)
    emit({"ca_file": str(path), "certificates": len(cas)}, as_json=as_json)


def _secret(var: str | None) -> str:
    if var is None or var not in os.environ:
        raise click.UsageError(f"--password-env names an unset variable ({var})")
    return os.environ[var]


@est_group.command("enroll")
@_url
@_bundle
@_out
@click.option("--client-id", required=True, help="The device's client id: the CSR's CN.")
@click.option("--name", help="File name stem (default: the client id).")
@click.option("--claim-id", help="Enroll with this claim (HTTP Basic).")
@click.option("--password-env", metavar="VAR", help="Environment variable holding the claim's password.")
@click.option("--cert", type=click.Path(exists=True, dir_okay=False), help="Bootstrap certificate (TLS client).")
@click.option("--key", type=click.Path(exists=True, dir_okay=False), help="Bootstrap certificate's key.")
@click.option("--key-type", type=click.Choice(list(KEY_TYPES)), default="ec-p256", show_default=True)
@json_option
def est_enroll(url, ca_bundle, out, client_id, name, claim_id, password_env, cert, key, key_type, as_json) -> None:
    """First enrollment: a new key here, its CSR enrolled with a claim or a bootstrap certificate."""
    if bool(claim_id) == bool(cert):
        raise click.UsageError("give --claim-id (with --password-env) or --cert/--key (a bootstrap certificate)")
    claim = (claim_id, _secret(password_env)) if claim_id else None
    pair = est_client.Pair(Path(out), name or client_id)
    new_key = generate_private_key(key_type)
    csr = est_client.make_csr(new_key, subject=est_client.cn_name(client_id))
    client = est_client.EstClient(url, ca_bundle=ca_bundle, cert=cert, key=key)
    try:
        cas = client.cacerts()
        issued = client.simpleenroll(csr, claim=claim)
    finally:
        client.close()
    est_client.write_cas(pair.directory, cas)
    emit(est_client.install(pair, issued, new_key=new_key, cas=cas), as_json=as_json)


@est_group.command("reenroll")
@_url
@_bundle
@_out
@click.option("--name", help="File name stem (default: the current certificate's CN).")
@click.option("--cert", type=click.Path(dir_okay=False), help="Current certificate (default DIR/<name>.crt.pem).")
@click.option("--key", type=click.Path(dir_okay=False), help="Current key (default DIR/<name>.key.pem).")
@click.option("--rekey", is_flag=True, help="A new key (default: renew the same key).")
@click.option("--key-type", type=click.Choice(list(KEY_TYPES)), default="ec-p256", show_default=True,
              help="With --rekey.")
@json_option
def est_reenroll(url, ca_bundle, out, name, cert, key, rekey, key_type, as_json) -> None:
    """Renew (or --rekey) with the current certificate as the TLS client certificate; swap in once it verifies."""
    directory = Path(out)
    if name is None and cert is None:
        raise click.UsageError("give --name or --cert")
    pair = est_client.Pair(directory, name or "")
    cert_path = Path(cert) if cert else pair.cert
    current = x509.load_pem_x509_certificate(cert_path.read_bytes())
    if name is None:
        cns = current.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
        pair = est_client.Pair(directory, str(cns[0].value) if cns else cert_path.stem)
    key_path = Path(key) if key else pair.key
    est_client.recover(pair)
    current_key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    new_key = generate_private_key(key_type) if rekey else None
    try:
        sans = list(current.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        sans = []
    csr = est_client.make_csr(new_key or current_key, subject=current.subject, sans=sans)
    client = est_client.EstClient(url, ca_bundle=ca_bundle, cert=str(cert_path), key=str(key_path))
    try:
        cas = client.cacerts()
        issued = client.simplereenroll(csr)
    finally:
        client.close()
    if new_key is None and (cert_path != pair.cert or key_path != pair.key):
        # Renewing a pair kept elsewhere: the key goes along into DIR.
        new_key = current_key
    est_client.write_cas(pair.directory, cas)
    emit(est_client.install(pair, issued, new_key=new_key, cas=cas), as_json=as_json)
