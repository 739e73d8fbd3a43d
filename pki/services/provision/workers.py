"""The workers of a provisioning run: generate keys, sign, write files.

Each worker process opens the CA key's signer once (:func:`_init_worker`), encodes
the CA's device template once (pki/x509/template.py) and then signs chunks of
manifest rows (:func:`_sign_chunk`), writing each key as a ``.partial``; the
writer consumes the results in manifest order through a bounded window of
futures (:func:`_signed`).  After the writer's commit, the workers also put
the files in place (:func:`_finalise_chunk`).  With one worker the same
functions run in the writer's own process.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections import deque
from collections.abc import Iterator

from cryptography import x509

from ...durable import umask_keeps, write_new
from ...process import die_with_parent
from ...keys import SignerSpec, generate_private_key
from ... import x509 as px509
from ..devices import DeviceProfile, device_row_values, device_template, parse_sans, private_key_pem, sign_device
from ...x509.template import der_to_pem
from .writer import _CERT_SUFFIX, _KEY_SUFFIX, _PARTIAL

# Per-process state set by _init_worker: the unsealed CA key lives only here.
_worker: dict | None = None


def _init_worker(
    signer_spec: SignerSpec, profile: DeviceProfile, key_type: str, fmt: str,
    p12_password: bytes | None, instance: str, now: _dt.datetime, devices: str, check_stray: bool,
    parent_pid: int | None,
) -> None:
    """Runs once per worker: open the CA key's signer, parse the CA once.

    The spec is a picklable description (pki/keys/custody.py), never a key: a software key is
    unsealed here from the master key file(s) it names, a PKCS#11 key gets this process's own
    session on the token.
    """
    global _worker
    if parent_pid is not None:
        die_with_parent(parent_pid)
    signer = signer_spec.open()
    ca_cert = x509.load_der_x509_certificate(profile.ca_cert_der)
    chain = [ca_cert, *(x509.load_der_x509_certificate(d) for d in profile.chain_der)]
    _worker = dict(
        signer=signer, ca_cert=ca_cert, chain=chain, chain_pem=b"".join(c.public_bytes(px509.PEM) for c in chain),
        profile=profile, key_type=key_type, fmt=fmt, password=p12_password, instance=instance, now=now,
        devices=devices, key_suffix=_KEY_SUFFIX[fmt], check_stray=check_stray,
        # One fchmod per file saved when the umask cannot take bits off the modes (it is
        # inherited by the workers and nothing here changes it).
        exact_key_mode=not umask_keeps(0o600), exact_cert_mode=not umask_keeps(0o644),
    )
    # The constant parts of every certificate of this run, encoded once (pki/x509/template.py).
    _worker["template"] = device_template(profile, ca_cert, signer)


def _forget_worker() -> None:
    """Drop this process's worker state (the in-process path held the unsealed CA key in it)."""
    global _worker
    _worker = None


def _sign_chunk(rows: list[tuple[str, tuple[str, ...]]]) -> list[tuple[str, dict, bool]]:
    """Per device: generate, sign, write the key's *partial* file; return
    (client id, store row values, whether a final key file is already there).

    Workers write the key files because creating a file costs more than
    signing: left to the single writer, it would cap the speed-up.  They only
    ever write ``.partial`` names before the commit; the certificate file is
    written after it (:func:`_finalise_chunk`), from the DER in the row.  The
    private key never travels back to the writer.
    """
    w = _worker
    out = []
    devices, key_suffix, exact, check_stray = w["devices"], w["key_suffix"], w["exact_key_mode"], w["check_stray"]
    for client_id, sans in rows:
        key = generate_private_key(w["key_type"])
        cert = sign_device(
            w["profile"], w["template"], w["signer"], public_key=key.public_key(), client_id=client_id,
            sans=parse_sans(sans) if sans else (),
        )
        if w["fmt"] == "p12":
            secret = px509.pkcs12_bundle(name=client_id, key=key, certificate=cert.certificate(), chain=w["chain"],
                                         password=w["password"])
        else:
            secret = private_key_pem(key)
        final = os.path.join(devices, client_id + key_suffix)
        write_new(final + _PARTIAL, secret, 0o600, exact_mode=exact)
        row = device_row_values(
            cert, instance=w["instance"], ca_id=w["profile"].ca_id, client_id=client_id,
            key_type=px509.public_key_type(key.public_key()), now=w["now"],
        )
        # The writer refuses a batch whose final key file exists without an ACTIVE certificate;
        # asked here, in parallel, rather than in the writer, and only if OUT held final key
        # files when the run started: a fresh directory's run skips a lookup per device.
        out.append((client_id, row, check_stray and os.path.lexists(final)))
    return out


def _finalise_chunk(items: list[tuple[str, bytes]]) -> int:
    """After the writer's commit: each key's partial to its final name, then its certificate file.

    The certificate is written straight under its final name: a kill halfway
    leaves a torn file whose row is not in the index yet, and the resumed run
    rewrites it from the store (writer.py, ``_adopt`` and ``recover_partials``).
    """
    w = _worker
    devices, key_suffix, chain_pem, exact = w["devices"], w["key_suffix"], w["chain_pem"], w["exact_cert_mode"]
    for client_id, cert_der in items:
        base = os.path.join(devices, client_id)
        os.replace(base + key_suffix + _PARTIAL, base + key_suffix)
        cert_path = base + _CERT_SUFFIX
        try:
            write_new(cert_path, der_to_pem(cert_der) + chain_pem, 0o644, exact_mode=exact)
        except FileExistsError:  # left by an earlier certificate of this client id (since revoked)
            os.unlink(cert_path)
            write_new(cert_path, der_to_pem(cert_der) + chain_pem, 0o644, exact_mode=exact)
    return len(items)


class _Done:
    """A finished result shaped like a Future, for the in-process (one worker) path."""

    __slots__ = ("_value",)

    def __init__(self, value) -> None:
        self._value = value

    def result(self):
        return self._value

    def done(self) -> bool:
        return True


def _signed(chunks: Iterator[list], submit, window: int) -> Iterator[tuple]:
    """Results in manifest order, with at most ``window`` chunks in flight (flat memory)."""
    pending: deque = deque()
    for chunk in chunks:
        pending.append(submit(chunk))
        if len(pending) >= window:
            yield from pending.popleft().result()
    while pending:
        yield from pending.popleft().result()


def _chunks(rows: Iterator[tuple[str, tuple[str, ...]]], size: int) -> Iterator[list]:
    chunk: list = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
