"""Check what the project issues with tools that are not the project.

Two independent judges, so that a test does not only check our certificates
against our own idea of a certificate:

- pkilint's RFC 5280 lint, run in-process with exactly the validators that its
  CLIs `lint_pkix_cert lint` and `lint_crl lint -t CRL -p PKIX` build (see
  pkilint/bin/lint_pkix_cert.py and pkilint/bin/lint_crl.py, pkilint 0.13).
- `openssl verify`, which builds and checks a chain the way a broker or a
  device's TLS stack will.

    from tests.support.lint import assert_lint_clean, assert_crl_lint_clean, assert_openssl_verifies

    assert_lint_clean(cert.public_bytes(Encoding.DER))
    assert_crl_lint_clean(crl.public_bytes(Encoding.DER))
    assert_openssl_verifies(leaf_pem, [root_pem], tmp_dir=tmp_path)

"Clean" means no finding at WARNING or worse (FATAL, ERROR, WARNING): WARNING
is pkilint's "violates a SHOULD", which we hold ourselves to; NOTICE and INFO
are remarks, not defects. Findings come back as strings like

    pkix.authority_key_identifier_extension_absent (ERROR) at certificate.tbsCertificate.extensions [AuthorityKeyIdentifierPresenceValidator]

so that an assertion message says what, how bad, and where.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding
from pkilint import loader, pkix
from pkilint.document import Document
from pkilint.pkix import certificate, crl, extension, name
from pkilint.validation import ValidationFindingSeverity, ValidationResult

from tests.support import openssl

__all__ = [
    "FAIL_AT",
    "lint_certificate",
    "lint_crl",
    "assert_lint_clean",
    "assert_crl_lint_clean",
    "openssl_verify_chain",
    "assert_openssl_verifies",
]

#: Findings at this severity or worse count (lower enum value = worse).
FAIL_AT = ValidationFindingSeverity.WARNING

# Generous, only so that a wedged openssl cannot hang the test run.
_OPENSSL_TIMEOUT_SECONDS = 60


# --- pkilint --------------------------------------------------------------------
#
# One validator tree of each kind per test process, built on first use. The
# trees hold no per-document state (pkilint's own REST server builds them once
# and reuses them for every request), so sharing is safe. Measured with pkilint
# 0.13: importing pkilint costs ~0.4 s once per process, building a tree under
# 1 ms and linting one certificate ~4 ms; caching keeps a suite that lints
# every certificate it issues from rebuilding ~60 validator objects each time.

_certificate_validator = None
_crl_validator = None


def _get_certificate_validator():
    """The validator tree of `lint_pkix_cert lint`, argument for argument."""
    global _certificate_validator
    if _certificate_validator is None:
        _certificate_validator = certificate.create_pkix_certificate_validator_container(
            # Decode what the base schema leaves opaque (name attribute values,
            # extension values, signature and key algorithm parameters, policy
            # qualifiers, otherNames, SCT lists), so that the validators below
            # see inside them and a value that does not decode is a finding.
            certificate.create_decoding_validators(
                name.ATTRIBUTE_TYPE_MAPPINGS, extension.EXTENSION_MAPPINGS
            ),
            [
                certificate.create_issuer_validator_container([]),
                certificate.create_validity_validator_container(),
                certificate.create_subject_validator_container([]),
                certificate.create_extensions_validator_container([]),
                certificate.create_spki_validator_container([]),
            ],
        )
    return _certificate_validator


def _get_crl_validator():
    """The validator tree of `lint_crl lint -p PKIX`.

    The CLI's mandatory `-t CRL|ARL` only matters for `-p BR` (the CA/B Forum
    reason-code allowlist and validity-period rules take the type); under the
    PKIX profile the tree is the same for both, so there is no type to pass.
    Our CRLs are plain CRLs (a CA's list of revoked end-entity certificates):
    the BR profile's Web PKI rules are not ours to follow.
    """
    global _crl_validator
    if _crl_validator is None:
        _crl_validator = crl.create_pkix_crl_validator_container(
            [
                pkix.create_attribute_decoder(name.ATTRIBUTE_TYPE_MAPPINGS),
                pkix.create_extension_decoder(extension.EXTENSION_MAPPINGS),
            ],
            [
                crl.create_issuer_validator_container([]),
                crl.create_validity_validator_container([]),
                crl.create_extensions_validator_container([]),
            ],
        )
    return _crl_validator


def _format(result: ValidationResult, description) -> str:
    finding = description.finding
    text = f"{finding.code} ({finding.severity.name}) at {result.node.path} [{result.validator}]"
    if description.message:
        text += f": {description.message}"
    return text


def _lint(doc_loader, validator, data: bytes, what: str, fail_at, ignore) -> list[str]:
    if isinstance(data, str):
        data = data.encode("ascii")
    # pkilint's PEM pattern is greedy: given a bundle it base64-decodes
    # everything between the first BEGIN and the last END, armour lines
    # included, and fails with "Incorrect padding". A bundle is the caller's
    # mistake, not a defect of the certificate: say so plainly.
    if data.count(b"-----BEGIN ") > 1:
        raise ValueError(f"more than one PEM block given; lint one {what} at a time")
    try:
        if data.startswith(b"\x30"):
            # DER. pkilint's auto-detecting `load_document` would, on a DER
            # decoding failure, retry the bytes as base64 text and report the
            # resulting "'ascii' codec can't decode" instead of the real cause.
            doc: Document = doc_loader.load_der_document(data, what)
        else:
            doc = doc_loader.load_document(data, what)  # PEM (or bare base64)
    except ValueError as exc:
        # Not decodable as the DER structure at all: trailing bytes, non-minimal
        # lengths and other non-DER encodings land here, as does a CRL given as
        # a certificate. That is the worst finding there is, not a reason to
        # crash the caller's assertion.
        return [f"pkilint.document_decoding_failed (FATAL) at {what}: {exc}"]
    ignored = set(ignore)
    findings = []
    for result in validator.validate(doc.root):
        for description in result.finding_descriptions:
            finding = description.finding
            if finding.severity <= fail_at and finding.code not in ignored:
                findings.append(_format(result, description))
    return findings


def lint_certificate(
    der_or_pem: bytes,
    *,
    fail_at: ValidationFindingSeverity = FAIL_AT,
    ignore: Iterable[str] = (),
) -> list[str]:
    """pkilint's RFC 5280 findings for one certificate (DER or PEM) at `fail_at` or worse.

    `ignore` takes finding codes to leave out; use it only for a deliberate,
    commented profile decision. `fail_at=ValidationFindingSeverity.INFO` shows
    everything pkilint says, which is useful when writing a profile.
    """
    return _lint(
        loader.RFC5280CertificateDocumentLoader(),
        _get_certificate_validator(),
        der_or_pem,
        "certificate",
        fail_at,
        ignore,
    )


def lint_crl(
    der_or_pem: bytes,
    *,
    fail_at: ValidationFindingSeverity = FAIL_AT,
    ignore: Iterable[str] = (),
) -> list[str]:
    """pkilint's RFC 5280 findings for one CRL (DER or PEM "X509 CRL"); see `lint_certificate`."""
    return _lint(
        loader.RFC5280CertificateListDocumentLoader(),
        _get_crl_validator(),
        der_or_pem,
        "crl",
        fail_at,
        ignore,
    )


def _assert_clean(findings: list[str], what: str) -> None:
    if findings:
        listing = "\n  ".join(findings)
        raise AssertionError(f"pkilint reports {len(findings)} finding(s) for the {what}:\n  {listing}")


def assert_lint_clean(der_or_pem: bytes, *, ignore: Iterable[str] = ()) -> None:
    """Fail, listing every finding, unless pkilint finds nothing at WARNING or worse."""
    _assert_clean(lint_certificate(der_or_pem, ignore=ignore), "certificate")


def assert_crl_lint_clean(der_or_pem: bytes, *, ignore: Iterable[str] = ()) -> None:
    """Fail, listing every finding, unless pkilint finds nothing at WARNING or worse."""
    _assert_clean(lint_crl(der_or_pem, ignore=ignore), "CRL")


# --- openssl verify ---------------------------------------------------------------


def _certificates(data: bytes) -> list[x509.Certificate]:
    """Every certificate in `data`: one DER certificate, or one or more PEM blocks."""
    if data.lstrip().startswith(b"-----"):
        return x509.load_pem_x509_certificates(data)
    return [x509.load_der_x509_certificate(data)]


def _is_self_signed(cert: x509.Certificate) -> bool:
    if cert.subject != cert.issuer:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
        return False
    return True


def _pem(certs: Iterable[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(Encoding.PEM) for c in certs)


def _crl_pem(data: bytes) -> bytes:
    if data.lstrip().startswith(b"-----"):
        return data if data.endswith(b"\n") else data + b"\n"
    return x509.load_der_x509_crl(data).public_bytes(Encoding.PEM)


def openssl_verify_chain(
    leaf_pem: bytes,
    chain_pems: list[bytes],
    *,
    purpose: str | None = "sslclient",
    crl_pems: list[bytes] | None = None,
    strict: bool = False,
    tmp_dir: str | os.PathLike[str],
) -> tuple[bool, str]:
    """Run `openssl verify` on the leaf; return (verified, openssl's stdout + stderr).

    `chain_pems` holds the CA certificates (PEM or DER; an item may hold several
    PEM blocks). The self-signed ones become the trust anchors (`-CAfile`), the
    rest untrusted intermediates (`-untrusted`) that openssl may use to build the
    path, as a broker given a device's chain would. `purpose` is openssl's
    `-purpose` (sslclient: the leaf must allow TLS client auth, and the CAs must
    be fit to issue for it); None leaves it out. With `crl_pems`, `-crl_check`
    requires a valid CRL from the leaf's issuer and fails a revoked leaf (only
    the leaf is checked, not the intermediates). `strict` adds `-x509_strict`,
    OpenSSL's own extra RFC 5280 checks (AKI present, CA basicConstraints
    critical, and so on).

    Skips the test when the openssl CLI is missing, or fails it under CI=true
    (see `tests.support.openssl.require_openssl`). A failed verification is a result,
    not an exception.
    """
    # The caller's mistakes first, so they show with or without openssl.
    certs = [c for item in chain_pems for c in _certificates(item)]
    roots = [c for c in certs if _is_self_signed(c)]
    intermediates = [c for c in certs if not _is_self_signed(c)]
    if not roots:
        raise ValueError("chain_pems holds no self-signed certificate to trust")
    openssl.require_openssl()

    # A fresh directory per call: several verifications in one test must not
    # overwrite each other's files.
    work = Path(tempfile.mkdtemp(prefix="openssl-verify-", dir=tmp_dir))
    cafile = work / "roots.pem"
    cafile.write_bytes(_pem(roots))
    leaf = work / "leaf.pem"
    leaf.write_bytes(_pem(_certificates(leaf_pem)[:1]))

    args: list[str] = ["verify", "-CAfile", str(cafile)]
    if intermediates:
        untrusted = work / "untrusted.pem"
        untrusted.write_bytes(_pem(intermediates))
        args += ["-untrusted", str(untrusted)]
    if purpose is not None:
        args += ["-purpose", purpose]
    if crl_pems:
        crlfile = work / "crls.pem"
        crlfile.write_bytes(b"".join(_crl_pem(c) for c in crl_pems))
        args += ["-crl_check", "-CRLfile", str(crlfile)]
    if strict:
        args.append("-x509_strict")
    args.append(str(leaf))

    # Same binary as tests.support.openssl: `openssl` on PATH, or $OPENSSL.
    command = [os.environ.get("OPENSSL", "openssl"), *args]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=_OPENSSL_TIMEOUT_SECONDS, check=False
    )
    output = f"$ {' '.join(command)}\n{result.stdout}{result.stderr}"
    return result.returncode == 0, output


def assert_openssl_verifies(leaf_pem: bytes, chain_pems: list[bytes], **options) -> None:
    """Fail with openssl's output unless `openssl_verify_chain` (same arguments) verifies."""
    ok, output = openssl_verify_chain(leaf_pem, chain_pems, **options)
    if not ok:
        raise AssertionError(f"openssl verify failed:\n{output}")
