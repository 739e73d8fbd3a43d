"""Master-key rotation: re-seal every sealed blob in the store under a new master key.

Every blob names the master key that sealed it (pki/keys/software.py), so
the rotation needs no progress table: it walks each sealed column in primary
key order, in batches of one transaction each, and re-seals the rows that
are not yet under the new key.  Killed at any point, a rerun skips what has
moved and finishes the rest.  Each update is conditional on the blob it
read, so a secret rotated meanwhile is never overwritten with a stale one.

The ``master_key`` table (migration 0014) names the keys by id with the
file each lives in.  From the start of a rotation the new key is ``current``:
every process seals new blobs under it and opens moved rows with it, even
one still configured with the old file, so issuance works throughout.  When
no row is left under any other key, those become ``retired`` and the result
says their files can be destroyed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import column, func, select, table, update

from ..errors import Conflict, InvalidInput, PkiError
from ..keys import MasterKey, SoftwareKeystore, create_master_key_file, load_master_key
from ..store import Store
from ..store.key_models import MasterKeyRecord
from . import audit
from .context import Context

__all__ = ["SEALED_COLUMNS", "RotationResult", "SealedColumn", "keystore_for", "known_key_files",
           "new_master_key_file", "rotate_master"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SealedColumn:
    """One column of sealed blobs: its table, primary key, and the key id bound into each blob."""

    table: str
    pk: str
    column: str
    key_id_column: str
    kind: str  #: "private_key" or "secret": the keystore domain

    def sa_table(self):
        return table(self.table, column(self.pk), column(self.column), column(self.key_id_column))


#: Every column that holds blobs sealed under the master key.  A new table of sealed
#: material must be added here, or a rotation leaves it under the old key (and says so).
SEALED_COLUMNS: tuple[SealedColumn, ...] = (
    SealedColumn("custody_key", "key_id", "sealed", "key_id", "private_key"),
    SealedColumn("device_secret", "id", "sealed_primary", "access_key_id", "secret"),
    SealedColumn("device_secret", "id", "sealed_secondary", "access_key_id", "secret"),
    SealedColumn("secret_group", "id", "sealed_key", "access_key_id", "secret"),
    SealedColumn("access_key", "id", "sealed_secret", "access_key_id", "secret"),
)

_MAX_PASSES = 5


@dataclass(frozen=True)
class RotationResult:
    new_key_id: str
    old_key_ids: tuple[str, ...]
    moved: int  #: rows re-sealed by this run
    remaining: int  #: rows still under another key (0 when done)
    retired: bool  #: the old keys are no longer needed
    new_key_file: str

    def as_json(self) -> dict:
        return {"new_master_key_id": self.new_key_id, "old_master_key_ids": list(self.old_key_ids),
                "moved": self.moved, "remaining": self.remaining, "old_keys_retired": self.retired,
                "new_key_file": self.new_key_file,
                "message": (f"every sealed blob is under master key {self.new_key_id}; point PKI_MASTER_KEY_FILE "
                            f"at {self.new_key_file}, then the old key file(s) can be destroyed"
                            if self.retired else
                            f"{self.remaining} sealed blob(s) are still under an old master key; run the rotation "
                            "again, and keep the old key file until it reports them retired")}


def _records(store: Store) -> list[MasterKeyRecord]:
    try:
        with store.transaction(readonly=True) as session:
            return list(session.scalars(select(MasterKeyRecord)))
    except PkiError:
        return []  # a store without migration 0014 yet: no rotation has happened


def _loader(records: list[MasterKeyRecord]) -> Callable[[str], MasterKey | None]:
    paths = {r.key_id: r.path for r in records}

    def resolve(key_id: str) -> MasterKey | None:
        path = paths.get(key_id)
        if path is None:
            return None
        key = load_master_key(Path(path))
        return key if key.key_id == key_id else None

    return resolve


def keystore_for(store: Store, configured: MasterKey) -> SoftwareKeystore:
    """The keystore a process uses: seal under the store's current key if it differs from ours."""
    records = _records(store)
    resolve = _loader(records)
    current = next((r for r in records if r.state == "current"), None)
    if current is not None and current.key_id != configured.key_id:
        try:
            key = resolve(current.key_id)
        except PkiError as exc:
            log.warning("master key %s is current but its file cannot be read here (%s); sealing under %s",
                        current.key_id, exc.code, configured.key_id)
            key = None
        if key is not None:
            return SoftwareKeystore(key, others=[configured], resolve=resolve)
    return SoftwareKeystore(configured, resolve=resolve)


def known_key_files(store: Store, configured_path) -> tuple[str, ...]:
    """The files of the master keys rows may still be sealed under, other than ``configured_path``."""
    mine = str(Path(configured_path))
    return tuple(r.path for r in _records(store) if r.state != "retired" and r.path != mine)


def new_master_key_file(path: str | Path) -> dict:
    """A new random master key in ``path`` (0600, never overwriting), for a rotation."""
    create_master_key_file(path)
    return {"path": str(path), "master_key_id": load_master_key(Path(path)).key_id}


def _begin(ctx: Context, *, old: MasterKey, new: MasterKey, old_path: str, new_path: str) -> bool:
    """Record the new key as current and the old one as previous; True when resuming."""
    now = ctx.clock.now()
    with ctx.store.transaction() as session:
        rows = {r.key_id: r for r in session.scalars(select(MasterKeyRecord).with_for_update())}
        current = next((r for r in rows.values() if r.state == "current"), None)
        if current is not None and current.key_id not in (new.key_id, old.key_id):
            raise Conflict(f"a rotation to master key {current.key_id} is under way; finish it with that key's file "
                           "first", code="master_key_rotation_running", master_key_id=current.key_id)
        resumed = current is not None and current.key_id == new.key_id
        for key_id, path, state in ((old.key_id, old_path, "previous"), (new.key_id, new_path, "current")):
            row = rows.get(key_id)
            if row is None:
                session.add(MasterKeyRecord(key_id=key_id, path=path, state=state, created_at=now))
            else:
                row.path, row.state, row.retired_at = path, state, None
        session.flush()
        audit.record_change(session, ctx, "keys.master.rotate", subject=new.key_id, phase="start",
                            old_master_key_id=old.key_id, resumed=resumed)
    return resumed


def _move_column(ctx: Context, keystore: SoftwareKeystore, spec: SealedColumn, *, batch_size: int,
                 on_batch: Callable[[int], None] | None) -> int:
    t = spec.sa_table()
    pk, col, kid = t.c[spec.pk], t.c[spec.column], t.c[spec.key_id_column]
    reseal = keystore.reseal_private_key if spec.kind == "private_key" else keystore.reseal_secret
    target = keystore.master_key_id
    moved, last = 0, None
    while True:
        with ctx.store.transaction() as session:
            query = select(pk, col, kid).where(col.is_not(None)).order_by(pk).limit(batch_size)
            if last is not None:
                query = query.where(pk > last)
            rows = session.execute(query).all()
            if not rows:
                return moved
            for key, blob, key_id in rows:
                blob = bytes(blob)
                if not blob or SoftwareKeystore.sealed_by(blob) == target:
                    continue  # a pkcs11 handle (no blob), or moved by an earlier run
                done = session.execute(update(t).where(pk == key, col == blob).values({spec.column: reseal(
                    blob, key_id=key_id)}))
                moved += done.rowcount
            last = rows[-1][0]
        if on_batch is not None:
            on_batch(len(rows))


def _remaining(ctx: Context, target: str) -> int:
    """Rows not under ``target``: a count over every sealed column (what a rerun would move)."""
    left = 0
    with ctx.store.transaction(readonly=True) as session:
        for spec in SEALED_COLUMNS:
            t = spec.sa_table()
            col = t.c[spec.column]
            for (blob,) in session.execute(select(col).where(col.is_not(None), func.length(col) > 0)):
                if SoftwareKeystore.sealed_by(bytes(blob)) != target:
                    left += 1
    return left


def rotate_master(ctx: Context, *, new_key_file: str | Path, batch_size: int = 500,
                  on_batch: Callable[[int], None] | None = None) -> RotationResult:
    """Re-seal every blob under the key in ``new_key_file``; rerun after any interruption."""
    if not isinstance(batch_size, int) or not 1 <= batch_size <= 10_000:
        raise InvalidInput("the batch size must be between 1 and 10000", code="invalid_batch_size")
    old_path = str(Path(ctx.settings.master_key_file).resolve())
    new_path = str(Path(new_key_file).resolve())
    if not Path(new_path).is_file():
        # The caller named a file that is not there: their input, not this installation's configuration.
        raise InvalidInput(f"the new master key file {new_path} does not exist or is not a file",
                           code="master_key_file_not_found", field="new_key_file", path=new_path)
    old = load_master_key(Path(old_path))
    new = load_master_key(Path(new_path))
    if old.key_id == new.key_id:
        raise InvalidInput(f"{new_path} holds the master key already in use ({old.key_id}); make a new key file "
                           "first", code="master_key_unchanged", master_key_id=old.key_id)
    _begin(ctx, old=old, new=new, old_path=old_path, new_path=new_path)
    keystore = SoftwareKeystore(new, others=[old], resolve=_loader(_records(ctx.store)))
    moved, remaining = 0, 0
    for _ in range(_MAX_PASSES):
        for spec in SEALED_COLUMNS:
            moved += _move_column(ctx, keystore, spec, batch_size=batch_size, on_batch=on_batch)
        # Blobs written meanwhile by processes that started before the rotation may still use the old key.
        remaining = _remaining(ctx, new.key_id)
        if remaining == 0:
            break
    now = ctx.clock.now()
    with ctx.store.transaction() as session:
        retired = []
        if remaining == 0:
            for row in session.scalars(select(MasterKeyRecord).with_for_update()):
                if row.key_id != new.key_id and row.state != "retired":
                    row.state, row.retired_at = "retired", now
                    retired.append(row.key_id)
            session.flush()
        audit.record_change(session, ctx, "keys.master.rotate", subject=new.key_id, phase="end", moved=moved,
                            remaining=remaining, retired=retired)
    return RotationResult(new_key_id=new.key_id, old_key_ids=(old.key_id,), moved=moved, remaining=remaining,
                          retired=remaining == 0, new_key_file=new_path)
