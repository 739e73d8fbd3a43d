"""`pki artifacts ...`, `pki crl ...` and `pki serve`: what a broker's TLS handshake reads."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from ..services import crls
from ..services.artifacts import DEFAULT_KEEP
from ..x509 import MAX_ITEM_BYTES
from ..x509.crl import MAX_CRL_BYTES
from . import backend
from .common import State, file_arg, json_option, read_input
from .render import emit

__all__ = ["artifacts_group", "crl_group", "serve_command"]


def _warn(code: str, message: str) -> None:
    click.echo(f"warning[{code}]: {message}", err=True)


@click.group("artifacts")
def artifacts_group() -> None:
    """Publish the files a broker's TLS handshake reads."""


@artifacts_group.command("publish")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Output directory; brokers read DIR/current/... (required locally; against a server it "
              "publishes into its own `pki serve --artifacts-dir`).")
@click.option("--reload-cmd", help="Shell command to run after a successful publish, e.g. 'systemctl reload mosquitto'.")
@click.option("--require-crls", is_flag=True, help="Fail (and publish nothing) if an ACTIVE CA has no valid CRL.")
@click.option("--keep", type=int, default=DEFAULT_KEEP, show_default=True, help="Generations to keep.")
@click.option("--crl-lifetime", default="7d", show_default=True, help="Lifetime of CRLs signed here (1h..366d).")
@click.option("--listener-port", type=int, default=8883, show_default=True, help="Port in mosquitto.conf.")
@click.option("--listener-address", help="Bind address in mosquitto.conf (default: all).")
@click.option("--password-listener-port", type=int,
              help="A second TLS listener in mosquitto.conf, for clients with a password and no certificate.")
@click.option("--server-cert", type=click.Path(dir_okay=False), help="The broker's certificate, for mosquitto.conf.")
@click.option("--server-key", type=click.Path(dir_okay=False), help="The broker's private key, for mosquitto.conf.")
@json_option
@click.pass_obj
def artifacts_publish(state: State, out_dir, reload_cmd, require_crls, keep, crl_lifetime, listener_port,
                      listener_address, password_listener_port, server_cert, server_key, as_json) -> None:
    """Write a new generation of trust bundle, CRLs, capath, mosquitto's password and ACL files, manifest and
    mosquitto.conf; switch current."""
    result = backend.call(
        state, "artifacts.publish", out_dir=out_dir, require_crls=require_crls, keep=keep,
        crl_lifetime=crl_lifetime, reload_cmd=reload_cmd, listener_port=listener_port,
        listener_address=listener_address, password_listener_port=password_listener_port,
        server_cert=str(Path(server_cert).absolute()) if server_cert else None,
        server_key=str(Path(server_key).absolute()) if server_key else None,
    )
    for warning in result.get("warnings", ()):
        _warn(warning["code"], warning["message"])
    if as_json:
        emit(result, as_json=True)
    else:
        click.echo(f"generation {result['generation']} published: {result['current']} -> {result['directory']}")
        for ca in result.get("cas", ()):
            click.echo(f"  CA {ca['sn']}  crl_number={ca['crl_number'] or '-'}  next_update={ca['crl_next_update'] or '-'}")


@click.group("crl")
def crl_group() -> None:
    """CRLs of registered CAs, signed offline where their keys live."""


@crl_group.command("request")
@click.option("--ca", "ca_sn", required=True, metavar="SN", help="The registered CA.")
@click.option("--lifetime", default="7d", show_default=True, help="Lifetime the signed CRL will have.")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the request here (default: stdout).")
@click.pass_obj
def crl_request(state: State, ca_sn, lifetime, out) -> None:
    """Export what the CA's next CRL must list, for `pki crl sign` where its key lives."""
    request = backend.call(state, "crl.request", ca=ca_sn, lifetime=lifetime)
    text = json.dumps(request, indent=2, sort_keys=True) + "\n"
    if out:
        Path(out).write_text(text)
        click.echo(f"wrote {out} ({len(request['entries'])} entries, CRL number {request['crl_number']})", err=True)
    else:
        click.echo(text, nl=False)


@crl_group.command("sign")
@click.option("--ca-cert", required=True, type=file_arg(), help="The CA certificate (PEM or DER).")
@click.option("--ca-key", required=True, type=file_arg(), help="The CA private key (PEM or DER).")
@click.option("--request", "request_path", required=True, type=file_arg(), help="From `pki crl request`.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Where to write the CRL (PEM).")
@click.option("--key-password-env", metavar="VAR", help="Environment variable holding the CA key's password.")
def crl_sign(ca_cert, ca_key, request_path, out, key_password_env) -> None:
    """Offline: sign the CRL a request asks for.  Needs no store; the key never leaves this machine."""
    password = None
    if key_password_env:
        if key_password_env not in os.environ:
            raise click.UsageError(f"environment variable {key_password_env} is not set")
        password = os.environ[key_password_env].encode()
    pem = crls.sign_crl_request(
        ca_certificate=read_input(ca_cert, limit=MAX_ITEM_BYTES),
        ca_private_key=read_input(ca_key, limit=MAX_ITEM_BYTES),
        request=read_input(request_path, limit=crls.MAX_REQUEST_BYTES),
        key_password=password,
    )
    Path(out).write_bytes(pem)
    click.echo(f"wrote {out}", err=True)


@crl_group.command("upload")
@click.option("--ca", "ca_sn", required=True, metavar="SN", help="The registered CA.")
@click.argument("crl_file", type=file_arg())
@json_option
@click.pass_obj
def crl_upload(state: State, ca_sn, crl_file, as_json) -> None:
    """Store a registered CA's CRL after checking issuer, signature, freshness and coverage."""
    info = backend.call(state, "crl.upload", ca=ca_sn, crl=read_input(crl_file, limit=MAX_CRL_BYTES))
    emit(info, as_json=as_json)


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8080, show_default=True)
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Worker processes (each its own connection pool; all share the database).")
@click.option("--rate-limit", metavar="N/s", help="Per access key: token bucket refill, e.g. 50/s or 600/m "
              "[PKI_HTTP_RATE_LIMIT; default none]. Buckets live in the database: shared by every process.")
@click.option("--burst", type=float, help="Token bucket size (default: one second's worth) [PKI_HTTP_RATE_BURST].")
@click.option("--max-body", type=click.IntRange(1024, 64 * 1024 * 1024), help="Largest request body in bytes "
              "(default 1 MiB).")
@click.option("--trusted-proxy", "trusted_proxies", multiple=True, metavar="CIDR",
              help="Believe X-Forwarded-For from these peers; repeatable (default: none).")
@click.option("--artifacts-dir", type=click.Path(file_okay=False),
              help="Where POST /v1/artifacts/publish writes (default: publishing over HTTP is refused).")
@click.option("--access-log/--no-access-log", default=True, show_default=True,
              help="One JSON line per request on stderr (logger pki.http.access).")
@click.option("--tls-cert", type=file_arg(), help="Serve https with this certificate (PEM, chain after it).")
@click.option("--tls-key", type=file_arg(), help="The private key of --tls-cert (PEM).")
@click.option("--tls-client-ca", type=file_arg(),
              help="Ask TLS clients for a certificate chaining to these CAs (PEM): EST reenrollment and bootstrap.")
@click.option("--metrics-token", envvar="PKI_METRICS_TOKEN", metavar="TOKEN",
              help="Make /metrics require `Authorization: Bearer TOKEN` [PKI_METRICS_TOKEN, preferred: a flag "
                   "shows in ps]. Default: /metrics is open, as most exporters are.")
@click.pass_obj
def serve_command(state: State, host, port, workers, rate_limit, burst, max_body, trusted_proxies, artifacts_dir,
                  access_log, tls_cert, tls_key, tls_client_ca, metrics_token) -> None:
    """Serve the /v1 API (signed requests) and the trust bundle, CRLs and OCSP (no authentication).

    Always on this machine's store: PKI_SERVER and a profile, the client side's settings, are ignored.
    """
    import uvicorn

    from ..services.authn import RateLimit

    settings = state.settings
    state.context()  # fail here, with the CLI's error line, if the store is not usable
    if rate_limit:
        try:
            RateLimit.parse(rate_limit, burst)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--rate-limit") from None
    env = {
        "PKI_HOME": str(settings.home), "PKI_DATABASE_URL": settings.database_url,
        "PKI_MASTER_KEY_FILE": str(settings.master_key_file), "PKI_INSTANCE": settings.instance,
        "PKI_HTTP_ACCESS_LOG": "1" if access_log else "0", "PKI_HTTP_SUPERVISOR_PID": str(os.getpid()),
    }
    if rate_limit:
        env["PKI_HTTP_RATE_LIMIT"] = rate_limit
    if burst:
        env["PKI_HTTP_RATE_BURST"] = str(burst)
    if max_body:
        env["PKI_HTTP_MAX_BODY"] = str(max_body)
    if trusted_proxies:
        env["PKI_HTTP_TRUSTED_PROXIES"] = ",".join(trusted_proxies)
    if artifacts_dir:
        env["PKI_HTTP_ARTIFACTS_DIR"] = str(Path(artifacts_dir).absolute())
    if metrics_token:
        env["PKI_HTTP_METRICS_TOKEN"] = metrics_token
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # prometheus_client's multiprocess mode: each worker writes its counters there, /metrics adds them up.
        import tempfile

        env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="pki-metrics-")
    os.environ.update(env)  # the worker processes build their app from these
    # proxy_headers=False: uvicorn would otherwise take X-Forwarded-For from any
    # loopback peer as the client address; --trusted-proxy is the one place that decides.
    if (tls_cert is None) != (tls_key is None) or (tls_client_ca and not tls_cert):
        raise click.UsageError("--tls-cert and --tls-key go together; --tls-client-ca needs them")
    tls = {}
    if tls_cert:
        from ..http import tls as http_tls

        # The protocol subclass puts the client certificate in scope["extensions"]["tls"] (pki/http/tls.py).
        tls = dict(ssl_certfile=tls_cert, ssl_keyfile=tls_key, ssl_ca_certs=tls_client_ca,
                   http=http_tls.protocol_class(), ssl_context_factory=http_tls.ssl_context_factory)
    uvicorn.run("pki.http.asgi:app_from_env", factory=True, host=host, port=port, workers=workers,
                log_level="info", access_log=False, proxy_headers=False, **tls)
