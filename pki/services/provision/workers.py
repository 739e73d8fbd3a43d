"""The workers of a provisioning run: generate keys, sign, write ``.partial`` files.

Each worker process opens the CA key's signer once (:func:`_init_worker`), encodes
the CA's device template once (pki/x509/template.py) and then signs chunks of
manifest rows (:func:`_sign_chunk`); the writer consumes the
results in manifest order through a bounded window of futures
(:func:`_signed`).  With one worker the same functions run in the writer's
own process.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections import deque
from collections.abc import Iterator

from cryptography import x509

from ...durable import write_new
from ...process import die_with_parent
from ...keys import SignerSpec, generate_private_key
from ... import x509 as px509
from ..devices import DeviceProfile, device_row_values, device_template, parse_sans, private_key_pem, sign_device
from .writer import _CERT_SUFFIX, _KEY_SUFFIX, _PARTIAL

# Per-process state set by _init_worker: the unsealed CA key lives only here.
_worker: dict | None = None


def _init_worker(
    signer_spec: SignerSpec, profile: DeviceProfile, key_type: str, fmt: str,
    p12_password: bytes | None, instance: str, now: _dt.datetime, devices: str, parent_pid: int | None,
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
        devices=devices,
    )
    # The constant parts of every certificate of this run, encoded once (pki/x509/template.py).
    _worker["template"] = device_template(profile, ca_cert, signer)


def _forget_worker() -> None:
    """Drop this process's worker state (the in-process path held the unsealed CA key in it)."""
    global _worker
    _worker = None


def _sign_chunk(rows: list[tuple[str, tuple[str, ...]]]) -> list[tuple[str, dict]]:
    """Per device: generate, sign, write the *partial* files; return (client id, store row values).

    Workers write the files because creating a file costs about as much as
    signing: left to the single writer, it would cap the speed-up.  They only
    ever write ``.partial`` names; the writer renames them after its commit,
    so the crash-safety protocol does not depend on who wrote them.  The
    private key never travels back to the writer.
    """
    w = _worker
    out = []
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
        base = os.path.join(w["devices"], client_id)
        write_new(base + _KEY_SUFFIX[w["fmt"]] + _PARTIAL, secret, 0o600)
        write_new(base + _CERT_SUFFIX + _PARTIAL, cert.pem + w["chain_pem"], 0o644)
        row = device_row_values(
            cert, instance=w["instance"], ca_id=w["profile"].ca_id, client_id=client_id,
            key_type=px509.public_key_type(key.public_key()), now=w["now"],
        )
        out.append((client_id, row))
    return out


class _Done:
    """A finished result shaped like a Future, for the in-process (one worker) path."""

    __slots__ = ("_value",)

    def __init__(self, value) -> None:
        self._value = value

    def result(self):
        return self._value


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
