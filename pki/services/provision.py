"""Factory provisioning: many devices from a manifest, keys generated here.

``provision`` streams a CSV manifest through worker processes that generate
keys and sign, while this process (the single writer) records the
certificates in batches and writes each device's files and one index.

Crash safety (kill -9 at any instant, then run the same command again).  The
store is the source of truth; the files follow it:

1. Before a batch is committed, each new device's files are written as
   ``<id>.key.pem.partial`` (or ``.p12.partial``) and ``<id>.crt.pem.partial``
   (by the workers) and flushed to disk.
2. The batch's certificates are inserted in one transaction.
3. Only then are the partials renamed into place, and only after that are
   the batch's lines appended to ``index.jsonl``.

So a final key file always has its certificate in the store.  On resume,
the index's complete lines say which manifest rows are done; a leftover
partial is finalised if the store holds an ACTIVE certificate for its
public key, deleted otherwise; a row that already has an ACTIVE
certificate under the CA is adopted (its files and index line rewritten
from the store), never issued again.

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
"""

from __future__ import annotations

import csv
import ctypes
import datetime as _dt
import hashlib
import json
import multiprocessing
import os
import signal
import sys
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from ..errors import Conflict, InvalidInput, InvalidState, StoreError
from ..ids import validate_client_id
from ..keys import KEY_TYPES, SoftwareKeystore, generate_private_key, load_master_key
from ..store import repos
from .. import x509 as px509
from .cas import resolve_ca
from . import audit
from .context import Context
from .devices import DeviceProfile, device_profile, device_row_values, parse_sans, private_key_pem, sign_device
from .managed import _check_can_issue, ca_signer

try:  # POSIX only: one run per output directory
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["ProvisionResult", "provision", "MAX_BATCH_SIZE", "INDEX_NAME", "DEVICES_DIR"]

#: Rows per store transaction.  Capped so peak memory stays flat whatever is asked.
MAX_BATCH_SIZE = 10_000
INDEX_NAME = "index.jsonl"
DEVICES_DIR = "devices"
_META_NAME = "provision.json"
_LOCK_NAME = ".lock"
_PARTIAL = ".partial"
_CERT_SUFFIX = ".crt.pem"
_KEY_SUFFIX = {"pem": ".key.pem", "p12": ".p12"}
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


# -- the manifest ------------------------------------------------------------------------


def _manifest_rows(path: Path) -> Iterator[tuple[int, str, tuple[str, ...]]]:
    """(line number, client id, SAN strings) per data row, each validated."""
    try:
        handle = open(path, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise InvalidInput(
            f"cannot read the manifest {path}: {exc.strerror}", code="manifest_unreadable"
        ) from None
    with handle:
        reader = csv.reader(handle)
        first = True
        try:
            for row in reader:
                cells = [c.strip() for c in row]
                if not cells or not any(cells) or cells[0].startswith("#"):
                    continue
                if first and cells[0].lower() == "client_id":
                    first = False
                    continue
                first = False
                line = reader.line_num
                sans = tuple(c for c in cells[1:] if c)
                try:
                    validate_client_id(cells[0])
                    parse_sans(sans)
                except InvalidInput as exc:
                    raise InvalidInput(
                        f"manifest line {line}: {exc.message}; fix the row and run again",
                        code="manifest_invalid_row", line=line, reason=exc.code,
                    ) from None
                yield line, cells[0], sans
        except csv.Error as exc:
            raise InvalidInput(
                f"manifest line {reader.line_num}: not valid CSV ({exc})", code="manifest_invalid_row",
                line=reader.line_num, reason="invalid_csv",
            ) from None
        except UnicodeDecodeError:
            raise InvalidInput(
                f"manifest line {reader.line_num + 1}: not UTF-8 text", code="manifest_invalid_row",
                line=reader.line_num + 1, reason="invalid_encoding",
            ) from None


def _check_manifest(path: Path) -> int:
    """First pass: every row valid, no client id twice.  Returns the row count.

    Duplicates are found with 8-byte digests, not the ids themselves: a set
    of a million of them is tens of MB, and a false duplicate needs a 64-bit
    collision.
    """
    seen: set[bytes] = set()
    total = 0
    for line, client_id, _sans in _manifest_rows(path):
        digest = hashlib.blake2b(client_id.encode(), digest_size=8).digest()
        if digest in seen:
            raise InvalidInput(
                f"manifest line {line}: client id {client_id!r} appears more than once; each device "
                "must be listed once",
                code="manifest_duplicate_client_id", line=line, client_id=client_id,
            )
        seen.add(digest)
        total += 1
    if total == 0:
        raise InvalidInput(f"the manifest {path} lists no devices", code="manifest_empty")
    return total


# -- workers -------------------------------------------------------------------------------

# Per-process state set by _init_worker: the unsealed CA key lives only here.
_worker: dict | None = None


def _init_worker(
    master_key_file: str, key_id: str, sealed: bytes, profile: DeviceProfile, key_type: str, fmt: str,
    p12_password: bytes | None, instance: str, now: _dt.datetime, devices: str, parent_pid: int | None,
) -> None:
    """Runs once per worker: load the master key, unseal the CA key, parse the CA once."""
    global _worker
    if parent_pid is not None:
        _die_with_parent(parent_pid)
    # A MasterKey cannot be pickled (on purpose), so each worker reads the file itself.
    signer = SoftwareKeystore(load_master_key(Path(master_key_file))).signer(sealed, key_id=key_id)
    ca_cert = x509.load_der_x509_certificate(profile.ca_cert_der)
    chain = [ca_cert, *(x509.load_der_x509_certificate(d) for d in profile.chain_der)]
    _worker = dict(
        signer=signer, ca_cert=ca_cert, chain=chain, chain_pem=b"".join(c.public_bytes(px509.PEM) for c in chain),
        profile=profile, key_type=key_type, fmt=fmt, password=p12_password, instance=instance, now=now,
        devices=devices,
    )


def _die_with_parent(parent_pid: int) -> None:
    """Linux: if the writer is killed (-9), its workers go too instead of idling forever."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort; a worker without it is only idle
        return
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


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
            w["profile"], w["ca_cert"], w["signer"], public_key=key.public_key(), client_id=client_id,
            sans=parse_sans(sans),
        )
        if w["fmt"] == "p12":
            secret = pkcs12.serialize_key_and_certificates(
                name=client_id.encode(), key=key, cert=cert, cas=w["chain"],
                encryption_algorithm=serialization.BestAvailableEncryption(w["password"]),
            )
        else:
            secret = private_key_pem(key)
        base = os.path.join(w["devices"], client_id)
        _write_new(base + _KEY_SUFFIX[w["fmt"]] + _PARTIAL, secret, 0o600)
        _write_new(base + _CERT_SUFFIX + _PARTIAL, cert.public_bytes(px509.PEM) + w["chain_pem"], 0o644)
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


# -- files ----------------------------------------------------------------------------------


def _write_new(path, data: bytes, mode: int) -> None:
    """Create ``path`` (refusing to follow or reuse an existing file) with exactly ``mode``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
    try:
        os.fchmod(fd, mode)  # the umask may have taken bits off; set exactly what we mean
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _replace_file(path, data: bytes, mode: int) -> None:
    """Write via a temporary name and rename, so a reader never sees half a file."""
    tmp = f"{path}.tmp"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    _write_new(tmp, data, mode)
    os.replace(tmp, path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _load_syncfs():
    try:
        fn = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):  # not Linux (or no glibc syncfs): sync() instead
        return None
    fn.argtypes = [ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


_SYNCFS = _load_syncfs()


def _sync_filesystem(path: Path) -> None:
    """Flush every file written on the filesystem that holds ``path``.

    syncfs(2) where there is one: sync() would flush every filesystem of the
    machine, other programs' writes included, and take as long as they do.
    """
    if _SYNCFS is None:
        os.sync()
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        if _SYNCFS(fd) != 0:
            # Linux 5.8+ reports write-back errors here; sync() would not, and the batch
            # would be committed over key files that never reached the disk.
            errno = ctypes.get_errno()
            raise OSError(errno, f"syncfs({path}): {os.strerror(errno)}")
    finally:
        os.close(fd)


def _flush_to_disk(devices: Path) -> None:
    """A durability barrier: everything written so far reaches the disk.

    One fsync per key file costs ~1.5 ms on an SSD, ten times the signing
    itself, and would make the single writer the bottleneck; one flush of
    the output's filesystem per batch covers them all for a fraction of that.
    (Against kill -9 alone the page cache would do; this is for power loss.)
    """
    _sync_filesystem(devices)
    _fsync_dir(devices)


def _public_key_der(key) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


# -- the run ----------------------------------------------------------------------------


class _Run:
    """One provisioning run: the writer side.  Every store and file change happens here."""

    def __init__(self, ctx: Context, *, ca_id: int, ca_sn: str, out: Path, fmt: str, p12_password: bytes | None,
                 chain_pem: bytes, on_progress, total: int) -> None:
        self.ctx = ctx
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
                        if row.ca_id == self.ca_id and row.status == "ACTIVE" and _public_key_der(
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
        _fsync_dir(self.devices)

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
                            "provisioned from another manifest; give a fresh --out",
                            code="provision_out_mismatch",
                        )
                    self.done += 1
                    self.skipped += 1
        self.report()
        for _line, client_id, sans in rows:
            yield client_id, sans

    # -- one batch -------------------------------------------------------------------

    def write_batch(self, batch: list[tuple[str, dict]]) -> None:
        client_ids = [item[0] for item in batch]
        with self.ctx.store.transaction(readonly=True) as session:
            existing = repos.active_devices_of_clients(session, ca_id=self.ca_id, client_ids=client_ids)
        new = [item for item in batch if item[0] not in existing]

        # (1) The workers wrote the partials; make them durable before the commit.
        for client_id, _row in new:
            final = self.key_path(client_id)
            if os.path.exists(final):
                raise InvalidState(
                    f"{final} exists but CA {self.ca_sn} has no ACTIVE certificate for {client_id!r}; "
                    "move the file away (or give a fresh --out) and run again",
                    code="provision_stray_key_file", client_id=client_id,
                )
        if new:
            try:
                _flush_to_disk(self.devices)
            except OSError as exc:
                raise StoreError(
                    f"the key files of this batch did not reach the disk ({exc.strerror or exc}); the batch "
                    "was not recorded: fix the disk and run again to resume", code="provision_flush_failed",
                ) from None

        # (2) One transaction; re-check the CA and the clients under the CA's lock.
        raced: dict = {}
        if new:
            with self.ctx.store.transaction() as session:
                ca_row = resolve_ca(session, instance=self.ctx.instance, ref=self.ca_sn, lock=True)
                session.refresh(ca_row)
                _check_can_issue(ca_row, now=self.ctx.clock.now())
                raced = repos.active_devices_of_clients(
                    session, ca_id=self.ca_id, client_ids=[item[0] for item in new]
                )
                inserted = [row for client_id, row in new if client_id not in raced]
                repos.insert_devices(session, inserted)
                # One record per batch, naming every device it issued: each issuance appears exactly once.
                audit.record_change(session, self.ctx, "device.provision", subject=self.ca_sn,
                                    devices=[[row["client_id"], row["sn"]] for row in inserted])
            existing.update(raced)

        # (3) Committed: the files may now appear under their final names.
        lines = []
        for client_id, row in batch:
            key_path, cert_path = self.key_path(client_id), self.cert_path(client_id)
            if client_id in existing:
                # Already issued (earlier run, or someone else): this signing is discarded.
                os.unlink(key_path + _PARTIAL)
                os.unlink(cert_path + _PARTIAL)
                lines.append(self._adopt(client_id, existing[client_id]))
                self.skipped += 1
            else:
                os.replace(key_path + _PARTIAL, key_path)
                os.replace(cert_path + _PARTIAL, cert_path)
                lines.append(self._line(client_id, row["sn"], row["fingerprint_sha256"], key=True))
                self.issued += 1
        _fsync_dir(self.devices)  # the renames durable before the index says "done"

        # (4) The index, last.
        with open(self.index_path, "ab") as index:
            index.write(b"".join(lines))
            index.flush()
            os.fsync(index.fileno())
        self.done += len(batch)
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
        return self._line(client_id, device.sn, device.fingerprint_sha256, key=has_key)

    def _write_cert(self, client_id: str, cert_der: bytes) -> None:
        pem = x509.load_der_x509_certificate(cert_der).public_bytes(px509.PEM)
        _replace_file(self.cert_path(client_id), pem + self.chain_pem, 0o644)

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
                "same --ca and --format, or give a fresh --out",
                code="provision_out_mismatch",
            )
    else:
        _replace_file(meta_path, json.dumps(meta).encode() + b"\n", 0o644)
        _fsync_dir(out)


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

    ``workers`` defaults to the number of CPUs; with 1, everything runs in
    this process.  ``on_progress(done, total)`` is called after each batch.
    """
    manifest, out = Path(manifest), Path(out)
    workers = (os.cpu_count() or 1) if workers is None else workers
    if not isinstance(workers, int) or workers < 1:
        raise InvalidInput("--workers must be at least 1", code="invalid_workers")
    if not isinstance(batch_size, int) or not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise InvalidInput(f"the batch size must be between 1 and {MAX_BATCH_SIZE}", code="invalid_batch_size")
    if fmt not in _KEY_SUFFIX:
        raise InvalidInput(f"--format must be pem or p12, not {fmt!r}", code="invalid_format")
    if fmt == "p12" and not p12_password:
        raise InvalidInput("--format p12 needs a password for the PKCS#12 files", code="pkcs12_password_required")
    if key_type not in KEY_TYPES:
        raise InvalidInput(f"key type {key_type!r} is not one of {', '.join(KEY_TYPES)}", code="unsupported_key_type")

    total = _check_manifest(manifest)  # everything refused before anything is written

    now = ctx.clock.now()
    with ctx.store.transaction(readonly=True) as session:
        ca_row = resolve_ca(session, instance=ctx.instance, ref=ca)
        ca_signer(ctx, session, ca_row)  # refuses a registered CA; proves the master key opens it
        profile = device_profile(ctx, ca_row, days=days, now=now)
        custody = repos.get_custody_key(session, key_id=ca_row.key_id)
        key_id, sealed = custody.key_id, bytes(custody.sealed)
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
        init_args = (str(ctx.settings.master_key_file), key_id, sealed, profile, key_type, fmt, p12_password,
                     ctx.instance, now, str(out / DEVICES_DIR))
        chunk = min(_CHUNK, batch_size)
        # Work queued ahead must cover the time the writer spends on a batch, or
        # the workers idle while it commits; about two batches does.  Memory is
        # then bounded by ~3 batches of results, and MAX_BATCH_SIZE bounds that.
        window = max(4 * workers, -(-2 * batch_size // chunk))
        if workers == 1:
            # Same work, same batching, no pool: a fair baseline for the speed-up.
            _init_worker(*init_args, None)
            _drive(run, _signed(_chunks(todo, chunk), lambda c: _Done(_sign_chunk(c)), 1), batch_size)
        else:
            method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
            with ProcessPoolExecutor(
                max_workers=workers, mp_context=multiprocessing.get_context(method),
                initializer=_init_worker, initargs=(*init_args, os.getpid()),
            ) as pool:
                try:
                    _drive(run, _signed(_chunks(todo, chunk), lambda c: pool.submit(_sign_chunk, c), window),
                           batch_size)
                except BaseException:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
    finally:
        global _worker
        _worker = None  # the in-process path held the CA key here
        lock.close()
    return ProvisionResult(total=total, issued=run.issued, skipped_existing=run.skipped, out=out,
                           index=out / INDEX_NAME)


def _drive(run: _Run, results: Iterator[tuple], batch_size: int) -> None:
    batch: list = []
    for item in results:
        batch.append(item)
        if len(batch) >= batch_size:
            run.write_batch(batch)
            batch = []
    if batch:
        run.write_batch(batch)
