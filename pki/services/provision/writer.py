"""The writer of a provisioning run: the only place that changes the store, and the one that
says when files may take their final names.

It owns the output layout (see the package docstring) and the crash-safety
order for each batch: the workers' ``.partial`` key files are flushed to disk,
the batch is committed in one transaction, then the workers rename the
partials into place and write the certificate files, then (once that is done
and durable, while the next batch is being signed) the index lines are
appended.  On resume it finishes or discards
leftover partials and skips the rows the index already lists.
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Iterator
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from ...durable import flush_to_disk, fsync_dir, replace_file
from ...errors import Conflict, InvalidInput, InvalidState, StoreError
from ...store import DeviceStatus, provision_repos, repos
from ... import x509 as px509
from .. import audit
from ..cas import resolve_ca
from ..context import Context
from ..managed import _check_can_issue

try:  # POSIX only: one run per output directory
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

INDEX_NAME = "index.jsonl"
DEVICES_DIR = "devices"
_META_NAME = "provision.json"
_LOCK_NAME = ".lock"
_PARTIAL = ".partial"
_CERT_SUFFIX = ".crt.pem"
_KEY_SUFFIX = {"pem": ".key.pem", "p12": ".p12"}
#: Committed batches whose index lines may wait for their files (see :meth:`_Run.write_batch`).
_MAX_PENDING = 3


def _public_key_der(key) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


# -- the run ----------------------------------------------------------------------------


class _Run:
    """One provisioning run: the writer side.  Every store and file change happens here."""

    def __init__(self, ctx: Context, *, ca_id: int, ca_sn: str, out: Path, fmt: str, p12_password: bytes | None,
                 chain_pem: bytes, on_progress, total: int, finalise=None, finalise_tasks: int = 1) -> None:
        self.ctx = ctx
        #: ``finalise(items)`` -> a future of workers._finalise_chunk(items); ``finalise_tasks`` per batch.
        self.finalise = finalise
        self.finalise_tasks = finalise_tasks
        #: Committed batches whose files are being put in place: (futures, index lines), oldest first.
        self._pending: deque[tuple[list, list[bytes]]] = deque()
        #: Whether OUT held a final key file when the run started (:meth:`recover_partials`).  If not,
        #: none can be a stray (the lock keeps other runs out), and the workers need not look.
        self.final_keys_found = False
        self.ca_id = ca_id
        self.ca_sn = ca_sn
        self.out = out
        self.devices = out / DEVICES_DIR
        self.index_path = out / INDEX_NAME
        self.fmt = fmt
        self.password = p12_password
        self.chain_pem = chain_pem
        self.on_progress = on_progress
        self.total = total
        self.done = 0
        self.issued = 0
        self.skipped = 0
        #: Client ids adopted with their ACTIVE certificate but no key file in OUT (index key_file null).
        self.without_key: list[str] = []

    # Paths are plain strings: pathlib costs more than the file operations
    # themselves at this volume, and the writer is the pipeline's bottleneck.
    def key_path(self, client_id: str) -> str:
        return os.path.join(self.devices, client_id + _KEY_SUFFIX[self.fmt])

    def cert_path(self, client_id: str) -> str:
        return os.path.join(self.devices, client_id + _CERT_SUFFIX)

    def _key_file_public_key(self, path: str, *, partial: bool = False) -> bytes | None:
        """The SPKI of the key in a key file we wrote (never the private bytes).

        ``None`` for a partial cut short by a kill: a worker was still writing
        it, so its result never reached the writer and it was never committed.
        """
        with open(path, "rb") as handle:
            data = handle.read()
        if partial and not _complete(data, self.fmt):
            return None
        try:
            if self.fmt == "p12":
                key, _cert, _cas = pkcs12.load_key_and_certificates(data, self.password)
            else:
                key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise InvalidInput(
                f"{path} cannot be opened" + (" with this p12 password; give the one the earlier run used"
                                              if self.fmt == "p12" else "; move it away and run again"),
                code="provision_key_file_unreadable", path=str(path),
            ) from None
        return _public_key_der(key.public_key())

    def report(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.done, self.total)

    # -- resume ------------------------------------------------------------------

    def recover_partials(self) -> None:
        """Finish or discard what a killed run left between its commit and its renames."""
        partial_keys, stray = [], []
        with os.scandir(self.devices) as entries:
            for entry in entries:
                name = entry.name
                if name.endswith(_KEY_SUFFIX[self.fmt] + _PARTIAL):
                    partial_keys.append(name[: -len(_KEY_SUFFIX[self.fmt] + _PARTIAL)])
                elif name.endswith(_KEY_SUFFIX[self.fmt]):
                    self.final_keys_found = True
                elif name.endswith(_PARTIAL) or name.endswith(".tmp"):
                    stray.append(name)  # certificates (rebuilt from the store below), temporaries
        for name in stray:
            (self.devices / name).unlink(missing_ok=True)
        if not partial_keys:
            return
        with self.ctx.store.transaction(readonly=True) as session:
            for client_id in partial_keys:
                final = self.key_path(client_id)
                partial = final + _PARTIAL
                match = None
                if not os.path.exists(final):
                    spki = self._key_file_public_key(partial, partial=True)
                    for row in () if spki is None else repos.devices_of_client(
                        session, instance=self.ctx.instance, client_id=client_id, limit=1000
                    ):
                        if row.ca_id == self.ca_id and row.status == DeviceStatus.ACTIVE and _public_key_der(
                            x509.load_der_x509_certificate(row.cert_der).public_key()
                        ) == spki:
                            match = row
                            break
                if match is None:
                    # Never committed (or superseded): no certificate carries this key.
                    os.unlink(partial)
                    continue
                self._write_cert(client_id, match.cert_der)
                os.replace(partial, final)
        fsync_dir(self.devices)

    def skip_indexed(self, rows: Iterator[tuple[int, str, tuple[str, ...]]]) -> Iterator[tuple[str, tuple[str, ...]]]:
        """Drop a torn last index line, skip the rows the index already lists, yield the rest."""
        _truncate_torn_tail(self.index_path)
        if self.index_path.exists():
            with open(self.index_path, "rb") as index:
                for number, raw in enumerate(index, start=1):
                    try:
                        listed = json.loads(raw)["client_id"]
                    except (ValueError, KeyError, TypeError):
                        listed = None
                    row = next(rows, None)
                    if row is None or listed != row[1]:
                        raise InvalidInput(
                            f"{self.index_path} line {number} does not match the manifest "
                            f"({listed!r} vs {row[1] if row else 'end of manifest'!r}): this directory was "
                            "provisioned from another manifest; give a fresh output directory",
                            code="provision_out_mismatch", field="out",
                        )
                    self.done += 1
                    self.skipped += 1
        self.report()
        for _line, client_id, sans in rows:
            yield client_id, sans

    # -- one batch -------------------------------------------------------------------

    def write_batch(self, batch: list[tuple[str, dict, bool]]) -> None:
        """Commit one batch of (client id, row values, final key file already there) and start
        putting its files in place; its index lines are written when that is done (:meth:`settle`)."""
        if not batch:
            return
        # (1) The workers wrote the key partials; make them durable before the commit.
        # One fsync per key file costs ~1.5 ms on an SSD, ten times the signing
        # itself; one flush of the output's filesystem per batch covers them all.
        # (Against kill -9 alone the page cache would do; this is for power loss.)
        try:
            flush_to_disk(self.devices)
        except OSError as exc:
            raise StoreError(
                f"the key files of this batch did not reach the disk ({exc.strerror or exc}); the batch "
                "was not recorded: fix the disk and run again to resume", code="provision_flush_failed",
            ) from None

        # (2) One transaction: under the CA's lock, which clients are already issued, then the rest.
        client_ids = [item[0] for item in batch]
        with self.ctx.store.transaction() as session:
            ca_row = resolve_ca(session, instance=self.ctx.instance, ref=self.ca_sn, lock=True)
            active = provision_repos.active_client_ids(session, instance=self.ctx.instance, ca_id=self.ca_id,
                                                       client_ids=client_ids)
            for client_id, _row, stray in batch:
                if stray and client_id not in active:
                    raise InvalidState(
                        f"{self.key_path(client_id)} exists but CA {self.ca_sn} has no ACTIVE certificate for "
                        f"{client_id!r}; move the file away (or give a fresh output directory) and run again",
                        code="provision_stray_key_file", client_id=client_id,
                    )
            inserted = [row for client_id, row, _stray in batch if client_id not in active]
            if inserted:
                session.refresh(ca_row)
                _check_can_issue(ca_row, now=self.ctx.clock.now())
                provision_repos.insert_devices(session, inserted)
                # One record per batch, its devices in the companion table: each issuance appears exactly once.
                audit.record_batch(session, self.ctx, ca_sn=self.ca_sn,
                                   devices=[(row["client_id"], row["sn"]) for row in inserted])
            existing = repos.devices_of_clients(session, ca_id=self.ca_id, client_ids=sorted(active),
                                                status=DeviceStatus.ACTIVE) if active else {}

        # (3) Committed: the files may now appear under their final names (the workers rename
        # the keys and write the certificates); the index lines wait until that is done.
        lines, finals = [], []
        for client_id, row, _stray in batch:
            if client_id in existing:
                # Already issued (earlier run, or someone else): this signing is discarded.
                os.unlink(self.key_path(client_id) + _PARTIAL)
                lines.append(self._adopt(client_id, existing[client_id]))
                self.skipped += 1
            else:
                finals.append((client_id, row["cert_der"]))
                lines.append(self._line(client_id, row["sn"], row["fingerprint_sha256"], key=True))
                self.issued += 1
        chunk = max(1, -(-len(finals) // self.finalise_tasks))
        self._pending.append(([self.finalise(finals[k:k + chunk]) for k in range(0, len(finals), chunk)], lines))
        # Index the batches whose files are in place, oldest first.  Waiting for the one just
        # committed would stall the pipeline: its finalising tasks queue behind the signing
        # already submitted for the next batches, so it is waited for only when _MAX_PENDING
        # batches are unindexed (a kill then leaves at most that many committed rows to adopt).
        self.settle(keep=_MAX_PENDING)

    def settle(self, keep: int = 0) -> None:
        """Index committed batches whose files are in place, oldest first; wait for the oldest ones
        while more than ``keep`` are pending (``keep=0``: all, at the end of the run)."""
        ready: list[bytes] = []
        while self._pending and (len(self._pending) > keep or all(f.done() for f in self._pending[0][0])):
            futures, lines = self._pending.popleft()
            for future in futures:
                future.result()  # a worker's error (a full disk, say) stops the run here
            ready += lines
        if ready:
            self._index(ready)

    def _index(self, lines: list[bytes]) -> None:
        fsync_dir(self.devices)  # the renames durable before the index says "done"

        # (4) The index, last.
        with open(self.index_path, "ab") as index:
            index.write(b"".join(lines))
            index.flush()
            os.fsync(index.fileno())
        self.done += len(lines)
        self.report()

    def _adopt(self, client_id: str, device) -> bytes:
        """A row whose ACTIVE certificate is already in the store: files from the store, no issue."""
        key_path = self.key_path(client_id)
        has_key = os.path.exists(key_path)
        if has_key:
            cert = x509.load_der_x509_certificate(device.cert_der)
            if self._key_file_public_key(key_path) != _public_key_der(cert.public_key()):
                raise InvalidState(
                    f"{key_path} does not hold the key of {client_id!r}'s ACTIVE certificate {device.sn} under "
                    f"CA {self.ca_sn}; move the file away and run again",
                    code="provision_key_mismatch", client_id=client_id,
                )
        self._write_cert(client_id, device.cert_der)
        if not has_key:
            self.without_key.append(client_id)
        return self._line(client_id, device.sn, device.fingerprint_sha256, key=has_key)

    def _write_cert(self, client_id: str, cert_der: bytes) -> None:
        pem = x509.load_der_x509_certificate(cert_der).public_bytes(px509.PEM)
        replace_file(self.cert_path(client_id), pem + self.chain_pem, 0o644)

    def _line(self, client_id: str, sn: str, fingerprint: str, *, key: bool) -> bytes:
        entry = {
            "client_id": client_id, "sn": sn, "ca_sn": self.ca_sn, "fingerprint_sha256": fingerprint,
            "key_file": f"{DEVICES_DIR}/{client_id}{_KEY_SUFFIX[self.fmt]}" if key else None,
            "cert_file": f"{DEVICES_DIR}/{client_id}{_CERT_SUFFIX}",
        }
        return json.dumps(entry, separators=(",", ":")).encode() + b"\n"


def _complete(data: bytes, fmt: str) -> bool:
    """Whether a key file was written to its end (torn ones are told apart from a wrong password)."""
    if fmt == "pem":
        return data.endswith(b"-----END PRIVATE KEY-----\n")
    # PKCS#12 is one DER SEQUENCE: complete when its length header matches the size.
    if len(data) < 2 or data[0] != 0x30:
        return False
    if data[1] < 0x80:
        return len(data) == 2 + data[1]
    n = data[1] & 0x7F
    return 0 < n <= 4 and len(data) >= 2 + n and len(data) == 2 + n + int.from_bytes(data[2 : 2 + n], "big")


def _truncate_torn_tail(path: Path) -> None:
    """A kill during an append can leave half a line: drop it (its rows are redone from the store)."""
    if not path.exists():
        return
    with open(path, "r+b") as handle:
        size = handle.seek(0, os.SEEK_END)
        end = size
        while end > 0:
            start = max(0, end - 4096)
            handle.seek(start)
            block = handle.read(end - start)
            cut = block.rfind(b"\n")
            if cut != -1:
                end = start + cut + 1
                break
            end = start
        if end != size:
            handle.truncate(end)
            os.fsync(handle.fileno())


def _prepare_out(out: Path, *, ca_sn: str, fmt: str) -> None:
    """Create OUT, or check that an existing OUT belongs to this CA and format."""
    out.mkdir(parents=True, exist_ok=True)
    (out / DEVICES_DIR).mkdir(mode=0o700, exist_ok=True)  # holds private keys
    meta_path = out / _META_NAME
    meta = {"version": 1, "ca_sn": ca_sn, "format": fmt}
    if meta_path.exists():
        try:
            found = json.loads(meta_path.read_bytes())
        except ValueError:
            found = None
        if found != meta:
            raise InvalidInput(
                f"{out} holds an earlier provisioning run with different settings ({found}); resume it with the "
                "same CA and format, or give a fresh output directory",
                code="provision_out_mismatch", field="out",
            )
    else:
        replace_file(meta_path, json.dumps(meta).encode() + b"\n", 0o644)
        fsync_dir(out)


def _lock(out: Path):
    """One run per output directory: two writers would interleave the index."""
    handle = open(out / _LOCK_NAME, "a+b")
    if fcntl is not None:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise Conflict(
                f"another provisioning run is writing to {out}; wait for it to finish", code="provision_running"
            ) from None
    return handle
