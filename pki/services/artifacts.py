"""Broker artifacts: the trust bundle, hashed CA directory, CRLs, mosquitto's password and ACL files
(dataplane/files.py), manifest and listener snippet.

A publish reads the store in one transaction (re-signing managed CAs' CRLs
that need it), then writes a *generation* directory, fsyncs it, and switches
``DIR/current`` (a symlink) to it with one ``rename``: a broker reading
``current/...`` sees either the old generation or the new one, never half of
one, and a publish that fails midway leaves ``current`` where it was.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..clock import isoformat
from ..durable import fsync_dir, write_new
from ..errors import ConfigError, InvalidInput, InvalidState
from ..ids import format_crl_number
from ..store import Status, artifact_repos
from .. import x509 as px509
from . import audit
from .context import Context
from .crls import DEFAULT_CRL_LIFETIME, check_lifetime, ensure_managed_crl, uploaded_crl_problem
from .dataplane import files as broker_files

__all__ = ["publish", "PublishResult", "PublishWarning", "DEFAULT_KEEP", "MANIFEST_FORMAT", "trust_bundle_pem", "live_trust_bundle"]

DEFAULT_KEEP = 5
MANIFEST_FORMAT = "pki-artifacts/1"
_GENERATIONS = "generations"
_CURRENT = "current"
_SUBDIRS = ("capath", "crl", "mosquitto")


@dataclass(frozen=True)
class PublishWarning:
    code: str
    message: str
    ca_sn: str | None = None

    def as_json(self) -> dict:
        return {"code": self.code, "message": self.message, "ca_sn": self.ca_sn}


@dataclass
class PublishResult:
    generation: int
    directory: str
    current: str
    published_at: _dt.datetime
    cas: list[dict]
    files: dict[str, str]
    warnings: list[PublishWarning] = field(default_factory=list)
    crls_signed: list[str] = field(default_factory=list)
    reload_exit_code: int | None = None

    def as_json(self) -> dict:
        return {
            "generation": self.generation, "directory": self.directory, "current": self.current,
            "published_at": isoformat(self.published_at), "cas": self.cas, "files": self.files,
            "warnings": [w.as_json() for w in self.warnings], "crls_signed": self.crls_signed,
            "reload_exit_code": self.reload_exit_code,
        }


@dataclass(frozen=True)
class _CaArtifact:
    sn: str
    name: str
    source: str
    cert: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    crl_der: bytes | None
    crl_number: int | None
    crl_this_update: _dt.datetime | None
    crl_next_update: _dt.datetime | None


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _fingerprint(cert: x509.Certificate) -> str:
    return px509.fingerprint_sha256(cert)


# -- reading the store -------------------------------------------------------------------


def _collect(ctx: Context, *, now, lifetime) -> tuple[list[_CaArtifact], list[PublishWarning], list[str]]:
    warnings: list[PublishWarning] = []
    signed: list[str] = []
    out: list[_CaArtifact] = []
    with ctx.store.transaction() as session:
        cas = artifact_repos.cas_of_instance(session, instance=ctx.instance)
        inactive = {c.fingerprint_sha256: c for c in cas if c.status != Status.ACTIVE}
        for ca in cas:
            if ca.status != Status.ACTIVE or ca.bootstrap_only:
                # A bootstrap-only CA's certificates may enroll over EST and nothing else: never trusted here.
                continue
            cert = x509.load_der_x509_certificate(ca.cert_der)
            chain = tuple(px509.load_certificates(ca.chain_pem.encode(), what="stored chain")) if ca.chain_pem else ()
            blocked = [inactive[f] for f in map(_fingerprint, chain) if f in inactive]
            if blocked:
                # Trusting the chain would trust the INACTIVE issuer (and every device it issued).
                warnings.append(PublishWarning(
                    "ca_chain_inactive",
                    f"CA {ca.sn} ({ca.name}) is left out: its issuer CA {blocked[0].sn} is INACTIVE. "
                    f"Activate {blocked[0].sn} or deactivate {ca.sn}",
                    ca.sn,
                ))
                continue
            if ca.not_after <= now:
                warnings.append(PublishWarning("ca_expired", f"CA {ca.sn} ({ca.name}) expired on "
                                         f"{isoformat(ca.not_after)}; no device of it can connect", ca.sn))
            crl = None
            if ca.key_id is not None:
                state, fresh = ensure_managed_crl(ctx, session, ca, now=now, lifetime=lifetime)
                if fresh:
                    signed.append(ca.sn)
                crl = state
            else:
                state = artifact_repos.get_crl_state(session, ca_id=ca.id)
                problem = uploaded_crl_problem(session, ca, state, now=now)
                if problem is not None:
                    warnings.append(PublishWarning(problem[0], problem[1], ca.sn))
                if problem is None or problem[0] == "crl_outdated":
                    crl = state  # an outdated CRL still locks out what it lists
            out.append(_CaArtifact(
                sn=ca.sn, name=ca.name, source=ca.source, cert=cert, chain=chain,
                crl_der=bytes(crl.crl_der) if crl is not None else None,
                crl_number=int(crl.crl_number, 16) if crl is not None else None,
                crl_this_update=crl.this_update if crl is not None else None,
                crl_next_update=crl.next_update if crl is not None else None,
            ))
    if not out:
        warnings.append(PublishWarning("no_active_ca", "no ACTIVE CA: the trust bundle is empty and brokers refuse every "
                                 "device (mosquitto will not start with an empty cafile)"))
    return out, warnings, signed


def trust_bundle_pem(cas: list[_CaArtifact]) -> tuple[bytes, list[x509.Certificate]]:
    """Every CA then its chain, in CA id order, each certificate once."""
    seen: set[str] = set()
    certs: list[x509.Certificate] = []
    for ca in cas:
        for cert in (ca.cert, *ca.chain):
            fp = _fingerprint(cert)
            if fp not in seen:
                seen.add(fp)
                certs.append(cert)
    return b"".join(_pem(c) for c in certs), certs


def live_trust_bundle(ctx: Context) -> bytes:
    """The trust bundle as the store has it now (what `pki serve` hands out), one transaction."""
    with ctx.store.transaction(readonly=True) as session:
        cas = artifact_repos.cas_of_instance(session, instance=ctx.instance)
        inactive = {c.fingerprint_sha256 for c in cas if c.status != Status.ACTIVE}
        entries = []
        for ca in cas:
            if ca.status != Status.ACTIVE or ca.bootstrap_only:
                continue
            chain = tuple(px509.load_certificates(ca.chain_pem.encode(), what="stored chain")) if ca.chain_pem else ()
            if any(_fingerprint(c) in inactive for c in chain):
                continue
            entries.append(_CaArtifact(ca.sn, ca.name, ca.source, x509.load_der_x509_certificate(ca.cert_der), chain,
                                       None, None, None, None))
    return trust_bundle_pem(entries)[0]


# -- files ---------------------------------------------------------------------------------


def _write_file(path: Path, data: bytes) -> None:
    """Write and fsync one file (a test patches this to fail midway).

    The umask applies, as it does to the generation's directories.
    """
    write_new(path, data, 0o644, exact_mode=False, sync=True)


def _server_lines(server_cert: str | None, server_key: str | None) -> list[str]:
    if server_cert and server_key:
        return [f"certfile {server_cert}", f"keyfile {server_key}"]
    return [
        "# The broker's own certificate and key: set them (or publish with --server-cert/--server-key).",
        "#certfile /etc/mosquitto/certs/server.pem",
        "#keyfile /etc/mosquitto/certs/server.key",
    ]


def _mosquitto_conf(*, current: Path, generation: int, listener_port: int, listener_address: str | None,
                    server_cert: str | None, server_key: str | None, password_listener_port: int | None,
                    acl: bool) -> bytes:
    bind = f" {listener_address}" if listener_address else ""
    lines = [
        f"# Written by `pki artifacts publish` (generation {generation}). Include it from mosquitto.conf.",
        "# The paths go through the `current` symlink: after a publish, `kill -HUP` mosquitto to reread the",
        "# CRLs, passwords and ACL.",
        "# Identities and device secrets; every client's topics, certificate devices included (their username",
        "# is the certificate's CN). Both files are global (per_listener_settings false, mosquitto.conf(5)).",
        f"password_file {current / broker_files.PASSWORDS}",
        *([f"acl_file {current / broker_files.ACL}"] if acl else
          ["# No acl_file: the instance has no permission rule and no default yet, so no ACL is enforced."]),
        "allow_anonymous false",
        f"listener {listener_port}{bind}",
        *_server_lines(server_cert, server_key),
    ]
    lines += [
        f"cafile {current / 'ca-bundle.pem'}",
        f"crlfile {current / 'crl.pem'}",
        "require_certificate true",
        "use_identity_as_username true",
        "tls_version tlsv1.2",
    ]
    if password_listener_port is not None:
        lines += ["# Clients with a username and password (no client certificate): TLS, the password file decides.",
                  f"listener {password_listener_port}{bind}", *_server_lines(server_cert, server_key),
                  "tls_version tlsv1.2"]
    return "\n".join([*lines, ""]).encode()


def _generation_files(cas: list[_CaArtifact], *, current: Path, generation: int, conf_options: dict) -> dict[str, bytes]:
    bundle, certs = trust_bundle_pem(cas)
    files: dict[str, bytes] = {"ca-bundle.pem": bundle}
    counters: dict[str, int] = {}
    for cert in certs:
        h = px509.subject_hash(cert)
        n = counters.get(h, 0)
        counters[h] = n + 1
        files[f"capath/{h}.{n}"] = _pem(cert)
    crl_counters: dict[str, int] = {}
    crl_pems = []
    for ca in cas:
        if ca.crl_der is None:
            continue
        pem = x509.load_der_x509_crl(ca.crl_der).public_bytes(serialization.Encoding.PEM)
        crl_pems.append(pem)
        files[f"crl/{ca.sn}.pem"] = pem
        h = px509.subject_hash(ca.cert)
        n = crl_counters.get(h, 0)
        crl_counters[h] = n + 1
        files[f"capath/{h}.r{n}"] = pem
    files["crl.pem"] = b"".join(crl_pems)
    files["mosquitto.conf"] = _mosquitto_conf(current=current, generation=generation, **conf_options)
    return files


def _generation_numbers(gens: Path) -> list[int]:
    if not gens.is_dir():
        return []
    return sorted(int(p.name) for p in gens.iterdir() if p.name.isdigit() and p.is_dir())


def _switch_current(out: Path, generation: int) -> None:
    tmp = out / f".current-{secrets.token_hex(6)}"
    os.symlink(f"{_GENERATIONS}/{generation}", tmp)
    try:
        os.replace(tmp, out / _CURRENT)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(out)


def _prune(gens: Path, *, keep: int, current: int) -> None:
    numbers = [n for n in _generation_numbers(gens) if n != current]
    for n in numbers[: max(0, len(numbers) - (keep - 1))]:
        shutil.rmtree(gens / str(n), ignore_errors=True)
    for leftover in gens.glob(".tmp-*"):  # an earlier publish killed midway
        shutil.rmtree(leftover, ignore_errors=True)


#: How long a publish waits for another one into the same directory before it gives up.
PUBLISH_LOCK_WAIT = 60.0


@contextlib.contextmanager
def _locked(out: Path, *, wait: float | None = None):
    fd = os.open(out / ".publish.lock", os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + (PUBLISH_LOCK_WAIT if wait is None else wait)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise InvalidState(f"another publish into {out} has run for over {PUBLISH_LOCK_WAIT:.0f} s; "
                                       "try again when it is done", code="publish_in_progress") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)


def publish(
    ctx: Context,
    *,
    out_dir: str | os.PathLike,
    require_crls: bool = False,
    keep: int = DEFAULT_KEEP,
    crl_lifetime: _dt.timedelta = DEFAULT_CRL_LIFETIME,
    reload_cmd: str | None = None,
    listener_port: int = 8883,
    listener_address: str | None = None,
    server_cert: str | None = None,
    server_key: str | None = None,
    password_listener_port: int | None = None,
) -> PublishResult:
    """Write one generation of broker artifacts under ``out_dir`` and make it current."""
    if not 1 <= keep <= 1000:
        raise InvalidInput("the number of generations to keep must be between 1 and 1000", code="invalid_keep",
                           field="keep")
    for port in (listener_port, password_listener_port):
        if port is not None and not (isinstance(port, int) and 1 <= port <= 65535):
            raise InvalidInput("the listener port must be between 1 and 65535", code="invalid_port")
    if password_listener_port == listener_port:
        raise InvalidInput("the password listener needs a port of its own", code="invalid_port")
    if (server_cert is None) != (server_key is None):
        raise InvalidInput("give both the broker's certificate and its key, or neither", code="invalid_request",
                           field="server_cert" if server_cert is None else "server_key")
    check_lifetime(crl_lifetime)
    out = Path(out_dir).absolute()
    current_link = out / _CURRENT
    if current_link.exists() and not current_link.is_symlink():
        raise ConfigError(f"{current_link} exists and is not a symlink; give an output directory of its own",
                          code="artifacts_dir_invalid")
    out.mkdir(parents=True, exist_ok=True)
    gens = out / _GENERATIONS
    gens.mkdir(exist_ok=True)
    # The store is read under the output's lock: a publisher that read it earlier and then waited
    # could otherwise switch `current` back to CRLs older than the ones already published.
    with _locked(out):
        now = ctx.clock.now()
        cas, warnings, signed = _collect(ctx, now=now, lifetime=crl_lifetime)
        missing = [w for w in warnings if w.code in ("crl_missing", "crl_stale", "crl_outdated")]
        if require_crls and missing:
            raise InvalidState(
                f"{len(missing)} ACTIVE CA(s) have no valid CRL ({', '.join(w.ca_sn or '' for w in missing)}); "
                "nothing was published. " + missing[0].message,
                code="crl_missing",
                cas=[w.ca_sn for w in missing], ca_sn=missing[0].ca_sn,
            )
        conf_options = dict(listener_port=listener_port, listener_address=listener_address, server_cert=server_cert,
                            server_key=server_key, password_listener_port=password_listener_port)
        mosquitto_files, file_warnings = broker_files.broker_files(ctx, now=now)
        conf_options["acl"] = broker_files.ACL in mosquitto_files
        warnings += [PublishWarning(code, message) for code, message in file_warnings]
        numbers = _generation_numbers(gens)
        generation = (numbers[-1] if numbers else 0) + 1
        files = _generation_files(
            cas, current=current_link, generation=generation,
            conf_options=conf_options,
        )
        files.update(mosquitto_files)
        digests = {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())}
        ca_entries = [
            {"sn": ca.sn, "name": ca.name, "source": ca.source, "subject_hash": px509.subject_hash(ca.cert),
             "fingerprint_sha256": _fingerprint(ca.cert),
             "crl_number": format_crl_number(ca.crl_number) if ca.crl_number is not None else None,
             "crl_this_update": isoformat(ca.crl_this_update), "crl_next_update": isoformat(ca.crl_next_update)}
            for ca in cas
        ]
        manifest = {
            "format": MANIFEST_FORMAT, "generation": generation, "published_at": isoformat(now),
            "instance": ctx.instance, "cas": ca_entries, "files": digests,
            "warnings": [w.as_json() for w in warnings],
        }
        files["manifest.json"] = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
        tmp = gens / f".tmp-{generation}-{secrets.token_hex(6)}"
        try:
            tmp.mkdir()
            for sub in _SUBDIRS:
                (tmp / sub).mkdir()
            for name, data in files.items():
                _write_file(tmp / name, data)
            for sub in _SUBDIRS:
                fsync_dir(tmp / sub)
            fsync_dir(tmp)
            final = gens / str(generation)
            os.rename(tmp, final)
            fsync_dir(gens)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _switch_current(out, generation)
        _prune(gens, keep=keep, current=generation)
    with ctx.store.transaction() as session:
        audit.record_change(session, ctx, "artifacts.publish", subject=str(out), generation=generation,
                            cas=len(ca_entries), crls_signed=signed)
    result = PublishResult(
        generation=generation, directory=str(final), current=str(current_link), published_at=now, cas=ca_entries,
        files=digests, warnings=warnings, crls_signed=signed,
    )
    if reload_cmd:
        # The operator's own command line (e.g. `systemctl reload mosquitto`), run like a hook.
        proc = subprocess.run(reload_cmd, shell=True, check=False)  # noqa: S602
        result.reload_exit_code = proc.returncode
        if proc.returncode != 0:
            raise ConfigError(
                f"generation {generation} is published, but the reload command exited with {proc.returncode}; "
                "fix it and reload the broker by hand",
                code="reload_failed",
                generation=generation,
            )
    return result
