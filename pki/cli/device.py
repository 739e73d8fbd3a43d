"""`pki device ...`: issue, register, find and change device certificates."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click

from ..ids import parse_time
from . import backend
from .choices import DEVICE_STATUSES, KEY_TYPES, REVOCATION_REASONS
from .common import State, file_arg, json_option, read_input
from .device_ref import device_ref_options, resolve
from .output import emit_csv_rows, emit_items, output_option
from .render import emit, emit_page

__all__ = ["device_group"]

DEVICE_FIELDS = ("sn", "ca_sn", "client_id", "status", "source", "fingerprint_sha256", "key_type",
                 "not_before", "not_after", "revocation_reason", "revoked_at")
DEVICE_COLUMNS = ("sn", "client_id", "status", "not_after")
#: The CSV export's header: every field of a device's JSON shape (pki.store.device_repos.PUBLIC_COLUMNS).
EXPORT_FIELDS = ("sn", "ca_sn", "client_id", "status", "source", "fingerprint_sha256", "key_type", "not_before",
                 "not_after", "revocation_reason", "revoked_at", "created_at", "updated_at", "status_changed_at")
#: Largest input read with a device certificate or CSR (pki.x509.MAX_ITEM_BYTES, without importing it).
MAX_ITEM_BYTES = 64 * 1024


#: `device revoke --from` when some lines failed: the conflict family's code (pki/cli/render.py EXIT_CODES).
EXIT_PARTIAL = 5


def _password(var: str | None) -> bytes | None:
    """Passwords come from the environment, never the command line (ps would show them)."""
    if var is None:
        return None
    if var not in os.environ:
        raise click.UsageError(f"environment variable {var} is not set")
    return os.environ[var].encode()


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


@click.group("device")
def device_group() -> None:
    """Device certificates: issue, register, find, change status."""


@device_group.command("issue")
@click.option("--ca", "ca_sn", required=True, metavar="SN", help="The managed CA that issues.")
@click.option("--csr", type=file_arg(), help="A PKCS#10 request (PEM or DER); only its key (and CN) are used.")
@click.option("--generate", is_flag=True, help="Generate the device key here.")
@click.option("--client-id", help="MQTT client id, the certificate CN (default: the CSR's CN).")
@click.option("--days", type=int, help="Validity in days (default 365, capped by PKI_MAX_DEVICE_DAYS).")
@click.option("--san", "sans", multiple=True, help="Subject alternative name: dns:NAME, ip:ADDR or uri:URI.")
@click.option("--key-type", type=click.Choice(list(KEY_TYPES)), default="ec-p256", show_default=True,
              help="With --generate.")
@click.option("--out", type=click.Path(file_okay=False), help="Write <client-id>.pem (+ key) into this directory.")
@click.option("--format", "fmt", type=click.Choice(["pem", "p12"]), default="pem", show_default=True,
              help="With --generate and --out: PEM files or one PKCS#12.")
@click.option("--p12-password-env", metavar="VAR", help="Environment variable holding the PKCS#12 password.")
@json_option
@click.pass_obj
def device_issue(state: State, ca_sn, csr, generate, client_id, days, sans, key_type, out, fmt,
                 p12_password_env, as_json) -> None:
    """Issue a device certificate from a CSR or with a key generated here."""
    if fmt == "p12" and not (generate and out):
        raise click.UsageError("--format p12 needs --generate and --out")
    password = _password(p12_password_env)
    if fmt == "p12" and not password:
        raise click.UsageError("--format p12 needs --p12-password-env")
    result = backend.call(
        state, "device.issue", ca=ca_sn, csr=read_input(csr, limit=MAX_ITEM_BYTES) if csr else None,
        generate=generate, client_id=client_id, days=days, sans=sans, key_type=key_type,
    )
    if out:
        from ..services import devices

        # The key (generated here or on the server) goes to a 0600 file, never to stdout.
        key_pem = result.pop("private_key_pem", None)
        directory = Path(out)
        directory.mkdir(parents=True, exist_ok=True)
        name = result["client_id"]
        (directory / f"{name}.pem").write_text(result["certificate_pem"] + result["chain_pem"])
        files = [str(directory / f"{name}.pem")]
        if key_pem is not None:
            # The answer is JSON whether local or remote: back to objects for the one serializer.
            issued = devices.Issued.from_json({**result, "private_key_pem": key_pem})
            if fmt == "p12":
                _write_private(directory / f"{name}.p12", devices.pkcs12_bytes(issued, password=password))
                files.append(str(directory / f"{name}.p12"))
            else:
                _write_private(directory / f"{name}.key.pem", devices.private_key_pem(issued.private_key))
                files.append(str(directory / f"{name}.key.pem"))
        result["files"] = files
    fields = DEVICE_FIELDS + ("files",) if out else DEVICE_FIELDS + ("certificate_pem", "private_key_pem")
    emit(result, as_json=as_json, fields=fields)


@device_group.command("register")
@click.option("--cert", "cert_path", required=True, type=file_arg(), help="Device certificate (PEM or DER).")
@json_option
@click.pass_obj
def device_register(state: State, cert_path, as_json) -> None:
    """Record a device certificate issued elsewhere by an ACTIVE CA of this instance."""
    result = backend.call(state, "device.register", certificate=read_input(cert_path, limit=MAX_ITEM_BYTES))
    emit(result, as_json=as_json, fields=DEVICE_FIELDS)


@device_group.command("list")
@click.option("--ca", "ca_sn", metavar="SN", help="Only this CA's certificates (default: the whole instance).")
@click.option("--status", type=click.Choice(DEVICE_STATUSES, case_sensitive=False))
@click.option("--expiring-before", help="Only certificates whose notAfter is before this ISO-8601 date.")
@click.option("--limit", type=int, help="Page size (1-1000, default 100).")
@click.option("--cursor", help="next_cursor of the previous page.")
@click.option("--all", "every", is_flag=True, help="Every page, streamed (no --limit or --cursor).")
@output_option
@click.pass_obj
def device_list(state: State, ca_sn, status, expiring_before, limit, cursor, every, as_json) -> None:
    """List device certificates of the instance (or of one CA), a page at a time or --all."""
    before = (parse_time(expiring_before, what="--expiring-before", naive_is_utc=True).isoformat()
              if expiring_before is not None else None)
    if every:
        if limit is not None or cursor is not None:
            raise click.UsageError("--all streams every page: it takes no --limit or --cursor")
        if as_json == "csv":
            pages = backend.iter_device_rows(state, ca=ca_sn, status=status, expiring_before=before,
                                             columns=EXPORT_FIELDS)
            emit_csv_rows(EXPORT_FIELDS, pages)
            return
        items = backend.iter_devices(state, ca=ca_sn, status=status, expiring_before=before)
        emit_items(items, as_json, columns=("ca_sn",) + DEVICE_COLUMNS, fields=EXPORT_FIELDS)
        return
    if ca_sn is None:  # the whole instance
        page = backend.call(state, "device.find", status=status, expiring_before=before, limit=limit, cursor=cursor)
    else:
        page = backend.call(state, "device.list", ca=ca_sn, status=status, expiring_before=before, limit=limit,
                            cursor=cursor)
    emit_page(page, as_json=as_json, columns=("ca_sn",) + DEVICE_COLUMNS, fields=EXPORT_FIELDS)


@device_group.command("show")
@device_ref_options
@click.option("--pem", "as_pem", is_flag=True, help="Print the certificate alone, as PEM.")
@json_option
@click.pass_obj
def device_show(state: State, ref, as_pem, as_json) -> None:
    """Show a device certificate by SN --ca CA, by --client-id or by --fingerprint."""
    result = backend.call(state, "device.show", **resolve(state, ref))
    if as_pem:
        click.echo(result["certificate_pem"], nl=False)
        return
    emit(result, as_json=as_json, fields=DEVICE_FIELDS + ("replaces", "replaced_by", "supersede_after"))


def _lifecycle(name: str, doc: str):
    @device_group.command(name, help=doc)
    @device_ref_options
    @json_option
    @click.pass_obj
    def command(state: State, ref, as_json) -> None:
        emit(backend.call(state, f"device.{name}", **resolve(state, ref)), as_json=as_json, fields=DEVICE_FIELDS)

    return command


_lifecycle("activate", "Let an INACTIVE device certificate in again.")
_lifecycle("deactivate", "Hold a device certificate (INACTIVE; on the CRL as certificateHold).")
_lifecycle("delete", "Delete an expired device certificate (revoke a valid one instead).")


@device_group.command("revoke")
@device_ref_options(required=False)
@click.option("--from", "from_file", type=click.File("r", encoding="utf-8"), metavar="FILE|-",
              help="Revoke every certificate listed, one a line: CA_SN/SN, a fingerprint or a client id "
              "(with --ca, a bare serial). Blank lines and # comments are skipped.")
@click.option("--reason", type=click.Choice(REVOCATION_REASONS), default="unspecified",
              show_default=True, help="RFC 5280 reason.")
@click.option("--batch-size", type=click.IntRange(1, 10_000), default=1000, show_default=True,
              help="With --from: certificates per store transaction.")
@json_option
@click.pass_obj
def device_revoke(state: State, ref, from_file, reason, batch_size, as_json) -> None:
    """Revoke a device certificate: final, published on the CRL with its reason.

    With --from, revoke a list in batches (one transaction each) and re-sign each CA's CRL once at the
    end; the report names each line that failed and why, and the exit code is 5 if any did.
    """
    if from_file is None:
        if ref is None or not (ref["sn"] or ref["client_id"] or ref["fingerprint"]):
            raise click.UsageError("name the device (SN --ca CA, --client-id ID, --fingerprint F) or give --from")
        emit(backend.call(state, "device.revoke", reason=reason, **resolve(state, ref)), as_json=as_json,
             fields=DEVICE_FIELDS)
        return
    if ref is not None and (ref["sn"] or ref["client_id"] or ref["fingerprint"]):
        raise click.UsageError("--from takes the devices from the file: give no SN, --client-id or --fingerprint")
    ca = ref["ca"] if ref else None
    report = backend.revoke_lines(state, from_file, reason=reason, ca=ca, batch_size=batch_size)
    if as_json:
        emit(report, as_json=True)
    else:
        click.echo(f"revoked {report['revoked']}, already revoked {report['already_revoked']}, "
                   f"failed {len(report['failed'])} of {report['lines']} lines")
        if report["crls_signed"]:
            click.echo(f"CRL re-signed for CA {', '.join(report['crls_signed'])}")
        for failure in report["failed"]:
            click.echo(f"line {failure['line']}: error[{failure['code']}]: {failure['message']}", err=True)
    if report["failed"]:
        raise click.exceptions.Exit(EXIT_PARTIAL)


class _Progress:
    """Progress on stderr: a redrawn bar on a terminal, else a log line every few seconds (a CI job, a pipe)."""

    #: Seconds between log lines when stderr is not a terminal.
    LINE_EVERY = 5.0

    def __init__(self, mode: str | None) -> None:
        self.mode = mode  # "bar", "lines" or None
        self.start = time.monotonic()
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        if self.mode is None:
            return
        now = time.monotonic()
        every = 0.25 if self.mode == "bar" else self.LINE_EVERY
        if now - self.last < every and done < total:
            return
        self.last = now
        elapsed = max(now - self.start, 1e-6)
        rate = done / elapsed
        eta = (total - done) / rate if rate > 0 else 0
        if self.mode == "lines":
            percent = 100 * done // total if total else 100
            click.echo(f"provision: {done}/{total} rows ({percent}%), {rate:,.0f}/s, ETA {eta:,.0f}s", err=True)
            return
        width = 30
        filled = int(width * done / total) if total else width
        click.echo(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}  {rate:,.0f}/s  ETA {eta:,.0f}s ",
            nl=done >= total, err=True,
        )


@device_group.command("provision")
@click.option("--ca", "ca_sn", required=True, metavar="SN", help="The managed CA that issues.")
@click.option("--manifest", required=True, type=file_arg(),
              help="CSV: one client id per row, optional SANs in further columns; header 'client_id' optional.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output directory (resumable).")
@click.option("--format", "fmt", type=click.Choice(["pem", "p12"]), default="pem", show_default=True)
@click.option("--p12-password-env", metavar="VAR", help="Environment variable holding the PKCS#12 password.")
@click.option("--workers", type=click.IntRange(1, 256), help="Signing processes (default: all cores).")
@click.option("--key-type", type=click.Choice(list(KEY_TYPES)), default="ec-p256", show_default=True)
@click.option("--days", type=int, help="Validity in days (default 365).")
@click.option("--batch-size", type=click.IntRange(1, 10_000), default=500, show_default=True,
              help="Devices per store transaction.")
@click.option("--progress/--no-progress", default=None,
              help="Progress on stderr [default: on; a bar on a terminal, else a line every few seconds].")
@json_option
@click.pass_obj
def device_provision(state: State, ca_sn, manifest, out, fmt, p12_password_env, workers, key_type, days,
                     batch_size, progress, as_json) -> None:
    """Factory batch: generate keys, issue, record and write files for every manifest row.

    Safe to rerun after a crash or kill: it finishes the batch without issuing
    a device twice. Key files are written mode 0600; out/index.jsonl lists
    every device (client_id, sn, fingerprint) in manifest order.  Local only.
    """
    backend.require_local(state, "device provision", "it signs with worker processes on this machine's store; "
                          "against a server issue one device per request with `pki device issue --generate "
                          "--out DIR`, or run provision where `pki serve` runs")
    password = _password(p12_password_env)
    from ..services.provision import provision

    mode = None if progress is False else "bar" if sys.stderr.isatty() else "lines"
    try:
        result = provision(
            state.context(), ca=ca_sn, manifest=Path(manifest), out=Path(out), workers=workers, fmt=fmt,
            p12_password=password, key_type=key_type, days=days, batch_size=batch_size, on_progress=_Progress(mode),
        )
    except KeyboardInterrupt:
        click.echo(f"\ninterrupted: what is in {out}/index.jsonl is done. Run the same command again to finish; "
                   "it issues no device twice", err=True)
        raise click.exceptions.Exit(130) from None
    emit(
        {"total": result.total, "issued": result.issued, "skipped_existing": result.skipped_existing,
         "out": str(result.out), "index": str(result.index), "without_key": list(result.without_key)},
        as_json=as_json,
    )


# Issue 15's renew and rekey, with the same ways of naming a device as show and revoke.
from .lifecycle import device_renew  # noqa: E402

device_group.add_command(device_renew)
