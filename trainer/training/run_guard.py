"""What keeps one run dir to one training run: its identity (fold, shards), its lock, a usable backup.

Identity: a run trains one fold of one set of shards. run_dir/run_identity.json records the fold and
the shards (their dir and `shards_id`, a digest of their manifest.json, which the job writes last and
whole), written before the first epoch; summary.json repeats them. A resume (trainer.training.train) or a
skip of a complete fold (trainer.training.cv) with another fold or other shards is a UserError, never a run
that mixes both.

Lock: RUN_DIR/.train.lock (core.outlock, the shards job's own mechanism) keeps a second
trainer.training.train out of a run dir while one trains in it; the lock of a killed run is replaced.

Backup: BackupAndRestore keeps the previous epoch's state (double_checkpoint); a run killed while
it wrote the latest one resumes from the previous one (`restore_previous_backup`).

    identity = run_guard.identity(shards_dir, fold)
    run_guard.check_resume(run_dir, identity)     # before resuming an interrupted run
    run_guard.write_identity(run_dir, identity)
    with run_guard.locked(run_dir, shards_dir, fold) as identity: ...
"""
from __future__ import annotations

import contextlib
import logging
from typing import Any, Iterator, Mapping

from core import fs, outlock, outputs
from core.errors import UserError
from core.manifest import MANIFEST_FILE
from trainer.training import run_layout as layout

IDENTITY_FILE = outputs.RUN_IDENTITY
LOCK_NAME = ".train.lock"
# BackupAndRestore's files in run_dir/backup (Keras names them; `.bkp`: the previous epoch's copy).
BACKUP_WEIGHTS, BACKUP_METADATA, PREVIOUS = "latest.weights.h5", "training_metadata.json", ".bkp"

log = logging.getLogger(__name__)


def shards_id(shards_dir: str) -> str:
    """A digest of the shards' manifest.json: equal manifests, equal shards (wherever they lie)."""
    return layout.file_id(fs.join(shards_dir, MANIFEST_FILE))


def identity(shards_dir: str, fold: int) -> dict[str, Any]:
    return {"fold": int(fold), "shards_dir": str(shards_dir), "shards_id": shards_id(shards_dir)}


def write_identity(run_dir: str, ident: Mapping[str, Any]) -> None:
    fs.write_json(layout.path(run_dir, IDENTITY_FILE), dict(ident))


def _differences(saved: Mapping[str, Any], ident: Mapping[str, Any]) -> list[str]:
    out = []
    if "fold" in saved and int(saved["fold"]) != int(ident["fold"]):
        out.append(f"fold {saved['fold']}, not {ident['fold']}")
    if saved.get("shards_id"):
        if saved["shards_id"] != ident["shards_id"]:
            out.append(f"shards {saved.get('shards_dir')} (id {saved['shards_id']}), not {ident['shards_dir']} "
                       f"(id {ident['shards_id']})")
    elif saved.get("shards_dir") and str(saved["shards_dir"]).rstrip("/") != str(ident["shards_dir"]).rstrip("/"):
        out.append(f"shards {saved['shards_dir']}, not {ident['shards_dir']}")
    return out


def check_resume(run_dir: str, ident: Mapping[str, Any]) -> None:
    """An interrupted run resumes only with its own fold and shards."""
    path = layout.path(run_dir, IDENTITY_FILE)
    if not fs.exists(path):
        log.warning("%s has no %s (a run of an older version): cannot check its fold and shards", run_dir,
                    IDENTITY_FILE)
        return
    differences = _differences(fs.read_json(path), ident)
    if differences:
        raise UserError(f"{run_dir} holds an interrupted run of {'; '.join(differences)}; repeat its command to "
                        f"resume it, use another --run_dir, or pass --overwrite to start over")


def check_complete(run_dir: str, ident: Mapping[str, Any]) -> None:
    """A complete run (summary.json) belongs to a cross-validation only with the same fold and shards."""
    differences = _differences(fs.read_json(layout.path(run_dir, layout.SUMMARY)), ident)
    if differences:
        raise UserError(f"fold {ident['fold']} in {run_dir} is complete but was trained on "
                        f"{'; '.join(differences)}; use another --runs_root or delete {run_dir}")


def shards_of(run_dirs: Mapping[int, str]) -> dict[str, Any]:
    """{"shards_dir", "shards_id"} the fold runs were trained on (from their summaries); UserError if they differ."""
    seen: dict[Any, list[str]] = {}
    for run_dir in run_dirs.values():
        path = layout.path(str(run_dir), layout.SUMMARY)
        summary = fs.read_json(path) if fs.isfile(path) else {}
        seen.setdefault((summary.get("shards_dir"), summary.get("shards_id")), []).append(str(run_dir))
    if len(seen) > 1:
        detail = "; ".join(f"{d} (id {i}): {', '.join(dirs)}" for (d, i), dirs in seen.items())
        raise UserError(f"the folds were trained on different shards ({detail}); one report describes one set")
    shards_dir, sid = next(iter(seen)) if seen else (None, None)
    return {"shards_dir": shards_dir, "shards_id": sid}


@contextlib.contextmanager
def locked(run_dir: str, shards_dir: str, fold: int) -> Iterator[dict[str, Any]]:
    """The run dir's lock for the block, which gets the run's identity; UserError naming the holder when
    another run holds it."""

    ident = identity(shards_dir, fold)
    # overwrite=True replaces only the lock of a run that is gone (killed on this host): resuming a
    # killed run is the run dir's normal use, and needs no flag. A live holder is never displaced.
    with outlock.held(run_dir, overwrite=True, name=LOCK_NAME, job="trainer.training.train", flag="--run_dir"):
        yield ident


def _readable(weights: str, metadata: str) -> bool:
    import h5py

    if not (fs.exists(weights) and fs.exists(metadata)):
        return False
    try:
        int(fs.read_json(metadata)["epoch"])
        with fs.open_file(weights, "rb") as f, h5py.File(f, "r") as h5:
            h5.visit(lambda name: None)  # reads every object header: a cut file fails here
        return True
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        return False


def restore_previous_backup(run_dir: str) -> None:
    """When the latest backup is unreadable (killed while written), puts the previous epoch's back."""
    backup = layout.path(run_dir, layout.BACKUP)
    weights, metadata = fs.join(backup, BACKUP_WEIGHTS), fs.join(backup, BACKUP_METADATA)
    if not fs.exists(metadata) or _readable(weights, metadata):
        return
    if not _readable(weights + PREVIOUS, metadata + PREVIOUS):
        return  # nothing better to go back to: the caller's checks name the damage
    log.warning("the latest backup in %s is unreadable (a run killed while writing it); resuming from the "
                "previous epoch's", backup)
    fs.copy(weights + PREVIOUS, weights)
    fs.copy(metadata + PREVIOUS, metadata)
