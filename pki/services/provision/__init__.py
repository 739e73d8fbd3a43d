"""Factory provisioning: many devices from a manifest, keys generated here.

``provision`` streams a CSV manifest through worker processes that generate
keys and sign, while this process (the single writer) records the
certificates in batches and writes each device's files and one index.

Crash safety (kill -9 at any instant, then run the same command again).  The
store is the source of truth; the files follow it:

1. Before a batch is committed, each new device's key is written as
   ``<id>.key.pem.partial`` (or ``.p12.partial``) by a worker, and the
   batch's partials are flushed to disk.
2. The batch's certificates are inserted in one transaction.
3. Only then are the partials renamed into place and the certificate files
   written (by the workers, in parallel), and only after that, made durable,
   are the batch's lines appended to ``index.jsonl``.

So a final key file always has its certificate in the store, and so does a
certificate file.  On resume, the index's complete lines say which manifest
rows are done; a leftover partial is finalised if the store holds an ACTIVE
certificate for its public key, deleted otherwise; a row that already has an
ACTIVE certificate under the CA is adopted (its files and index line
rewritten from the store, a torn certificate file included), never issued
again.

Output layout (suffixes chosen so no client id's files can collide with
another's: ``a.key`` + ``.pem`` would be ``a`` + ``.key.pem``)::

    OUT/provision.json            which CA and format this directory belongs to
    OUT/index.jsonl               one line per manifest row, in manifest order
    OUT/devices/<id>.key.pem      private key, PKCS#8 PEM, mode 0600 (format pem)
    OUT/devices/<id>.p12          key + certificate + chain, mode 0600 (format p12)
    OUT/devices/<id>.crt.pem      certificate, then the CA chain

A row whose client id already had an ACTIVE certificate under the CA that was
not issued by a provisioning run into OUT (e.g. by ``pki device issue``) is not
issued again: its index line has ``"key_file": null`` and its certificate
file is written from the store.

The package splits along the two sides of the pipeline: :mod:`.manifest`
reads and checks the CSV, :mod:`.workers` signs, writes partials and,
after each commit, the final files; :mod:`.writer` commits and indexes; :func:`provision` wires them.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509

from ...errors import InvalidInput
from ...keys import KEY_TYPES, SignerSpec
from ...store import repos  # noqa: F401 (tests patch provision.repos)
from ... import x509 as px509
from ..cas import resolve_ca
from ..context import Context
from ..devices import device_profile
from ..managed import ca_key_handle, ca_signer
from .manifest import _check_manifest, _manifest_rows
from .workers import _chunks, _Done, _finalise_chunk, _forget_worker, _init_worker, _sign_chunk, _signed
from .writer import _KEY_SUFFIX, DEVICES_DIR, INDEX_NAME, _lock, _prepare_out, _Run

__all__ = ["ProvisionResult", "provision", "MAX_BATCH_SIZE", "INDEX_NAME", "DEVICES_DIR"]

log = logging.getLogger("pki.provision")

#: Rows per store transaction.  Capped so peak memory stays flat whatever is asked.
MAX_BATCH_SIZE = 10_000
#: Devices per task handed to a worker: large enough that pickling costs
#: little, small enough that every worker gets work inside one batch.
_CHUNK = 64


@dataclass(frozen=True)
class ProvisionResult:
    total: int  #: manifest rows
    issued: int  #: certificates issued by this run
    skipped_existing: int  #: rows already done (earlier run, or an ACTIVE certificate already in the store)
    out: Path
    index: Path
    #: Rows whose ACTIVE certificate already existed with its key outside OUT (index ``key_file`` null).
    without_key: tuple[str, ...] = ()


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, which a container or taskset narrows)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def provision(
    ctx: Context,
    *,
    ca: str,
    manifest: Path,
    out: Path,
    workers: int | None = None,
    fmt: Literal["pem", "p12"] = "pem",
    p12_password: bytes | None = None,
    key_type: str = "ec-p256",
    days: int | None = None,
    batch_size: int = 500,
    on_progress: Callable[[int, int], None] | None = None,
) -> ProvisionResult:
    """Issue a key and certificate for every manifest row; safe to rerun after any crash.

    ``workers`` defaults to the number of cores this process may run on; with 1, everything runs in
    this process.  ``on_progress(done, total)`` is called after each batch.
    """
    manifest, out = Path(manifest), Path(out)
    workers = available_cores() if workers is None else workers
    if not isinstance(workers, int) or workers < 1:
        raise InvalidInput("the number of workers must be at least 1", code="invalid_workers", field="workers")
    if not isinstance(batch_size, int) or not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise InvalidInput(f"the batch size must be between 1 and {MAX_BATCH_SIZE}", code="invalid_batch_size")
    if fmt not in _KEY_SUFFIX:
        raise InvalidInput(f"the format must be pem or p12, not {fmt!r}", code="invalid_format", field="fmt")
    if fmt == "p12" and not p12_password:
        raise InvalidInput("the p12 format needs a password for the PKCS#12 files", code="pkcs12_password_required",
                           field="p12_password")
    if key_type not in KEY_TYPES:
        raise InvalidInput(f"key type {key_type!r} is not one of {', '.join(KEY_TYPES)}", code="unsupported_key_type")

    total = _check_manifest(manifest)  # everything refused before anything is written

    now = ctx.clock.now()
    with ctx.store.transaction(readonly=True) as session:
        ca_row = resolve_ca(session, instance=ctx.instance, ref=ca)
        ca_signer(ctx, session, ca_row)  # refuses a registered CA; proves the custody opens it
        profile = device_profile(ctx, ca_row, days=days, now=now)
        signer_spec = SignerSpec(ca_key_handle(session, ca_row), master_key_files=ctx.master_key_files())
    chain_pem = b"".join(
        x509.load_der_x509_certificate(d).public_bytes(px509.PEM) for d in (profile.ca_cert_der, *profile.chain_der)
    )

    _prepare_out(out, ca_sn=profile.ca_sn, fmt=fmt)
    lock = _lock(out)
    try:
        run = _Run(ctx, ca_id=profile.ca_id, ca_sn=profile.ca_sn, out=out, fmt=fmt, p12_password=p12_password,
                   chain_pem=chain_pem, on_progress=on_progress, total=total)
        run.recover_partials()
        todo = run.skip_indexed(_manifest_rows(manifest))
        init_args = (signer_spec, profile, key_type, fmt, p12_password, ctx.instance, now, str(out / DEVICES_DIR),
                     run.final_keys_found)
        chunk = min(_CHUNK, batch_size)
        # Work queued ahead must cover the time the writer spends on a batch, or
        # the workers idle while it commits; about two batches does.  Memory is
        # then bounded by ~3 batches of results, and MAX_BATCH_SIZE bounds that.
        window = max(4 * workers, -(-2 * batch_size // chunk))
        if workers == 1:
            # Same work, same batching, no pool: a fair baseline for the speed-up.
            _init_worker(*init_args, None)
            run.finalise = lambda items: _Done(_finalise_chunk(items))
            _drive(run, _signed(_chunks(todo, chunk), lambda c: _Done(_sign_chunk(c)), 1), batch_size)
        else:
            method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
            with ProcessPoolExecutor(
                max_workers=workers, mp_context=multiprocessing.get_context(method),
                initializer=_init_worker, initargs=(*init_args, os.getpid()),
            ) as pool:
                run.finalise, run.finalise_tasks = (lambda items: pool.submit(_finalise_chunk, items)), workers
                try:
                    _drive(run, _signed(_chunks(todo, chunk), lambda c: pool.submit(_sign_chunk, c), window),
                           batch_size)
                except BaseException:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
    finally:
        _forget_worker()  # the in-process path held the CA key there
        lock.close()
    if run.without_key:
        shown = ", ".join(run.without_key[:5]) + (" ..." if len(run.without_key) > 5 else "")
        log.warning("%d rows already had an ACTIVE certificate under CA %s whose key is not in %s (key_file null "
                    "in %s): %s. Their keys are where they were first written (another output directory, or "
                    "the device); this run wrote only their certificates", len(run.without_key), run.ca_sn, out,
                    INDEX_NAME, shown)
    return ProvisionResult(total=total, issued=run.issued, skipped_existing=run.skipped, out=out,
                           index=out / INDEX_NAME, without_key=tuple(run.without_key))


def _drive(run: _Run, results: Iterator[tuple], batch_size: int) -> None:
    batch: list = []
    for item in results:
        batch.append(item)
        if len(batch) >= batch_size:
            run.write_batch(batch)
            batch = []
    if batch:
        run.write_batch(batch)
    run.settle()
