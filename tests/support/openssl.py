"""Make test material with the openssl CLI, at test time.

For what cryptography 50 refuses to create (SHA-1 and MD5 signatures, serial
numbers that are zero, negative or over 20 octets) and for what a customer
really does with openssl (a verification certificate made by following the
README). Dates are relative to now, so nothing here goes stale the way a
committed fixture would.

Every function writes into the directory it is given, returns the paths it
wrote, and raises `OpensslError` (with the command and openssl's stderr) when
openssl fails. The binary is `openssl` on PATH, or `$OPENSSL` if set.

Measured with OpenSSL 3.0:
- `req -x509 -<digest>` really signs with SHA-1 or MD5 (RSA), and SHA-1
  (ECDSA); ECDSA with MD5 is refused. `make_ca` checks the signature algorithm
  it got, so a distribution policy that quietly changed it would fail loudly.
- `req -x509 -set_serial` takes 0, negative and 21-octet serials.
- `x509 -req` (as a customer runs it, without `-extfile`) makes a v1
  certificate: no extensions at all.
- `x509 -req` has no `-not_before`/`-not_after` (they came in 3.4), so a
  verification certificate with chosen dates goes through `openssl ca
  -startdate/-enddate` with a throwaway CA database.
- `verify` does not check a trust anchor's self-signature unless asked to
  (`check_ss_sig=True`).
"""

from __future__ import annotations

import datetime
import os
import re
import secrets
import subprocess
from pathlib import Path

from tests.support import skip_or_fail

__all__ = [
    "OpensslError",
    "openssl_available",
    "require_openssl",
    "make_ca",
    "make_verification_cert",
    "make_expired_verification_cert",
    "signature_algorithm",
    "subject_hash",
    "verify",
]

StrPath = str | os.PathLike[str]

# Generous: key generation is the slowest step and takes well under a second,
# but CI machines can be slow. The point is only never to hang a test run.
TIMEOUT_SECONDS = 60

ORGANIZATION = "Device PKI Test"

# A config of our own, so that what the distribution's openssl.cnf adds
# (default extensions, req_extensions, policies) cannot change the output.
_REQ_CONFIG = """\
[req]
distinguished_name = dn
x509_extensions = ca_ext
prompt = no
[dn]
[ca_ext]
subjectKeyIdentifier = hash
"""

# The least `openssl ca` needs: a database, a serial file and a policy that
# takes the CSR's subject as it is. No extension section, so that, like the
# `x509 -req` path, it makes a v1 certificate: the dates are the only
# difference between the two paths.
_CA_CONFIG = """\
[ca]
default_ca = ca_default
[ca_default]
dir = {dir}
database = $dir/index.txt
serial = $dir/serial
new_certs_dir = $dir
policy = policy_anything
unique_subject = no
email_in_dn = no
[policy_anything]
commonName = supplied
"""


class OpensslError(RuntimeError):
    """openssl could not be run, timed out, failed, or made the wrong thing."""

    def __init__(self, message: str, *, command: list[str] | None = None, stderr: str = "") -> None:
        detail = message
        if command is not None:
            detail += f"\n  command: {' '.join(command)}"
        if stderr.strip():
            detail += f"\n  stderr: {stderr.strip()}"
        super().__init__(detail)
        self.command = command
        self.stderr = stderr


def _binary() -> str:
    # Read at each call so a test can point $OPENSSL elsewhere.
    return os.environ.get("OPENSSL", "openssl")


def _run(*args: StrPath, check: bool = True) -> subprocess.CompletedProcess[str]:
    command = [_binary(), *map(str, args)]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=False
        )
    except FileNotFoundError as exc:
        raise OpensslError("the openssl CLI is not installed", command=command) from exc
    except subprocess.TimeoutExpired as exc:
        raise OpensslError(f"openssl timed out after {TIMEOUT_SECONDS}s", command=command) from exc
    if check and result.returncode != 0:
        raise OpensslError(
            f"openssl exited with status {result.returncode}", command=command, stderr=result.stderr
        )
    return result


def openssl_available() -> bool:
    """True if the openssl CLI runs."""
    try:
        _run("version")
    except OpensslError:
        return False
    return True


def require_openssl() -> None:
    """Skip the calling test when openssl is missing; fail instead under CI=true.

    On a developer machine a missing openssl is a setup gap; in CI it would
    silently drop the interoperability tests, so it must be an error there.
    """
    if not openssl_available():
        skip_or_fail(f"the openssl CLI ({_binary()!r}) is not available")


# --- keys and certificates ---------------------------------------------------


def _genpkey_options(key: str) -> list[str]:
    """`openssl genpkey` options for a key spec: "ec:<curve>", "rsa:<bits>", "ed25519", "ed448"."""
    kind, _, param = key.partition(":")
    kind = kind.lower()
    if kind == "ec" and param:
        return ["-algorithm", "EC", "-pkeyopt", f"ec_paramgen_curve:{param}"]
    if kind == "rsa" and param.isdigit():
        return ["-algorithm", "RSA", "-pkeyopt", f"rsa_keygen_bits:{param}"]
    if kind in ("ed25519", "ed448") and not param:
        return ["-algorithm", kind.upper()]
    raise ValueError(f"unsupported key spec {key!r}: use ec:<curve>, rsa:<bits>, ed25519 or ed448")


def _is_eddsa(key: str) -> bool:
    return key.lower() in ("ed25519", "ed448")


def _genpkey(key: str, out: Path) -> Path:
    _run("genpkey", *_genpkey_options(key), "-out", out)
    return out


def _subj_value(value: str) -> str:
    # `-subj` treats '/', '=' and '+' as separators; escaping keeps any value literal.
    return re.sub(r"([/=+\\])", r"\\\1", value)


def _write_req_config(directory: Path) -> Path:
    config = directory / "openssl-req.cnf"
    if not config.exists():
        config.write_text(_REQ_CONFIG)
    return config


def signature_algorithm(cert_path: StrPath) -> str:
    """The signature algorithm as `openssl x509 -text` names it, e.g. "ecdsa-with-SHA1"."""
    text = _run("x509", "-in", cert_path, "-noout", "-text").stdout
    match = re.search(r"^\s*Signature Algorithm:\s*(\S+)", text, re.MULTILINE)
    if not match:
        raise OpensslError(f"no signature algorithm in `openssl x509 -text` of {cert_path}")
    return match.group(1)


def _check_digest(cert_path: Path, digest: str) -> None:
    # "sha1" must show up in "sha1WithRSAEncryption" or "ecdsa-with-SHA1":
    # a crypto policy that silently substituted another digest would
    # otherwise make a "SHA-1 fixture" that tests nothing.
    algorithm = signature_algorithm(cert_path)
    if digest.replace("-", "").lower() not in algorithm.replace("-", "").lower():
        raise OpensslError(
            f"asked openssl for a {digest} signature, got {algorithm} in {cert_path}"
        )


def make_ca(
    dir: StrPath,
    name: str,
    *,
    key: str = "ec:prime256v1",
    digest: str | None = "sha256",
    days: int = 3650,
    serial: int | None = None,
    key_usage: str | None = "critical,keyCertSign,cRLSign",
    basic_constraints: str | None = "critical,CA:TRUE",
) -> tuple[Path, Path]:
    """A self-signed CA: writes `<name>.pem` and `<name>.key.pem`; returns (cert, key).

    `key` is "ec:<curve>" (openssl curve name, e.g. prime256v1), "rsa:<bits>",
    "ed25519" or "ed448". `digest` is any openssl digest name ("sha256",
    "sha1", "md5"); it is ignored for EdDSA keys, which have their hash built
    in. `serial` may be any int, including 0, negative, or over 20 octets;
    None lets openssl pick a random one. `key_usage` and `basic_constraints`
    are openssl extension values; None leaves the extension out.
    """
    directory = Path(dir)
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key.pem"
    _genpkey(key, key_path)
    args: list[StrPath] = [
        "req", "-x509", "-new",
        "-config", _write_req_config(directory),
        "-key", key_path,
        "-subj", f"/CN={_subj_value(name)}/O={ORGANIZATION}",
        "-days", str(days),
        "-out", cert_path,
    ]  # fmt: skip
    use_digest = digest is not None and not _is_eddsa(key)
    if use_digest:
        args.append(f"-{digest}")
    if serial is not None:
        args += ["-set_serial", str(serial)]
    if basic_constraints is not None:
        args += ["-addext", f"basicConstraints={basic_constraints}"]
    if key_usage is not None:
        args += ["-addext", f"keyUsage={key_usage}"]
    _run(*args)
    if use_digest:
        _check_digest(cert_path, digest)
    return cert_path, key_path


def _openssl_time(moment: datetime.datetime) -> str:
    # GeneralizedTime form, which `openssl ca -startdate/-enddate` accepts
    # for any year, unlike the two-digit-year form.
    return moment.astimezone(datetime.UTC).strftime("%Y%m%d%H%M%SZ")


def _sign_with_openssl_ca(
    directory: Path,
    *,
    name: str,
    csr: Path,
    ca_cert: StrPath,
    ca_key: StrPath,
    digest: str,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
    out: Path,
) -> None:
    """Sign `csr` with chosen dates, via `openssl ca` and a throwaway database."""
    database = directory / f"{name}.ca-db"
    database.mkdir(exist_ok=True)
    (database / "index.txt").write_text("")
    (database / "serial").write_text(f"{secrets.randbits(63) | 1:016x}\n")
    config = database / "ca.cnf"
    config.write_text(_CA_CONFIG.format(dir=database))
    _run(
        "ca", "-batch", "-notext",
        "-config", config,
        "-cert", ca_cert,
        "-keyfile", ca_key,
        "-md", digest,
        "-startdate", _openssl_time(not_before),
        "-enddate", _openssl_time(not_after),
        "-in", csr,
        "-out", out,
    )  # fmt: skip


def make_verification_cert(
    dir: StrPath,
    *,
    ca_cert: StrPath,
    ca_key: StrPath,
    code: str,
    digest: str = "sha256",
    days: int = 1,
    not_before_offset: datetime.timedelta | None = None,
    name: str = "verification",
) -> Path:
    """A verification certificate, CN=`code`, signed by the CA; returns its path.

    Made the way a customer following the README does: a fresh P-256 key, a
    CSR with `-subj "/CN=<code>"`, then `openssl x509 -req -CA ... -days`.
    With `not_before_offset` (relative to now; negative for the past) the
    dates are chosen instead, which OpenSSL 3.0 can only do with `openssl
    ca`; the certificate is then valid for `days` days from that start.
    Writes `<name>.key.pem`, `<name>.csr.pem` and `<name>.pem` (and for
    `x509 -req` the serial file `<name>.srl`, kept here rather than next to
    the CA certificate, which may be a committed fixture).
    """
    directory = Path(dir)
    key_path = _genpkey("ec:prime256v1", directory / f"{name}.key.pem")
    csr_path = directory / f"{name}.csr.pem"
    cert_path = directory / f"{name}.pem"
    _run(
        "req", "-new",
        "-config", _write_req_config(directory),
        "-key", key_path,
        "-subj", f"/CN={_subj_value(code)}",
        "-out", csr_path,
    )  # fmt: skip
    if not_before_offset is None:
        _run(
            "x509", "-req",
            "-in", csr_path,
            "-CA", ca_cert,
            "-CAkey", ca_key,
            "-CAserial", directory / f"{name}.srl",
            "-CAcreateserial",
            "-days", str(days),
            f"-{digest}",
            "-out", cert_path,
        )  # fmt: skip
    else:
        not_before = datetime.datetime.now(datetime.UTC) + not_before_offset
        _sign_with_openssl_ca(
            directory,
            name=name,
            csr=csr_path,
            ca_cert=ca_cert,
            ca_key=ca_key,
            digest=digest,
            not_before=not_before,
            not_after=not_before + datetime.timedelta(days=days),
            out=cert_path,
        )
    _check_digest(cert_path, digest)
    return cert_path


def make_expired_verification_cert(
    dir: StrPath,
    *,
    ca_cert: StrPath,
    ca_key: StrPath,
    code: str,
    digest: str = "sha256",
    name: str = "verification_expired",
) -> Path:
    """A verification certificate that was valid two days ago to one day ago."""
    return make_verification_cert(
        dir,
        ca_cert=ca_cert,
        ca_key=ca_key,
        code=code,
        digest=digest,
        days=1,
        not_before_offset=datetime.timedelta(days=-2),
        name=name,
    )


# --- inspection ---------------------------------------------------------------


def subject_hash(cert_path: StrPath) -> str:
    """OpenSSL's subject hash (8 hex digits), the name stem in a hashed CA directory."""
    return _run("x509", "-in", cert_path, "-noout", "-subject_hash").stdout.strip()


def verify(
    cafile: StrPath,
    cert: StrPath,
    *,
    crlfile: StrPath | None = None,
    purpose: str | None = None,
    untrusted: StrPath | None = None,
    check_ss_sig: bool = False,
) -> tuple[bool, str]:
    """Run `openssl verify`; return (verified, stdout + stderr).

    A failed verification is a result, not an error: only failing to run
    openssl raises. `crlfile` turns on CRL checking for the leaf
    (`-crl_check`), so the leaf's issuer must then have a CRL in it.
    `check_ss_sig` also checks the trust anchor's own self-signature, which
    openssl skips by default.
    """
    args: list[StrPath] = ["verify", "-CAfile", cafile]
    if crlfile is not None:
        args += ["-crl_check", "-CRLfile", crlfile]
    if purpose is not None:
        args += ["-purpose", purpose]
    if untrusted is not None:
        args += ["-untrusted", untrusted]
    if check_ss_sig:
        args.append("-check_ss_sig")
    result = _run(*args, cert, check=False)
    return result.returncode == 0, result.stdout + result.stderr
