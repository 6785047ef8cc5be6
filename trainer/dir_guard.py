"""Outputs never land inside a shards dir, nor inside a run dir of another command.

A shards dir is recognised by what only pipeline.shards writes (manifest.json, folds.csv), a run dir
by what only trainer.train writes (summary.json, best.keras, history.csv, backup/, checkpoints/,
run_identity.json). Every entry point checks its output paths before any work:

    dir_guard.refuse_inside("--output", output, is_dir=False)          # trainer.predict
    dir_guard.refuse_inside("--run_dir", run_dir, own=dir_guard.RUN)    # trainer.train: a run dir may be its own

The path's real location (symlinks resolved) and every directory above it are checked, up to the
file system's root or the bucket.
"""
from __future__ import annotations

import os

from pipeline import manifest as shards_layout
from pipeline.errors import UserError
from trainer import fs, run_guard
from trainer import run_layout as layout

SHARDS, RUN = "shards", "run"
_MARKERS = {
    SHARDS: (shards_layout.MANIFEST_FILE, shards_layout.FOLDS_CSV),
    RUN: (layout.SUMMARY, layout.BEST_MODEL, layout.HISTORY, layout.BACKUP, layout.CHECKPOINTS,
          run_guard.IDENTITY_FILE),
}
_WRITER = {SHARDS: "pipeline.shards", RUN: "trainer.train"}


def kind_of(directory: str) -> str | None:
    """SHARDS, RUN, or None for a dir neither command wrote."""
    for kind, names in _MARKERS.items():
        if any(fs.exists(fs.join(directory, n)) for n in names):
            return kind
    return None


def _self_and_parents(path: str) -> list[str]:
    if "://" in path:
        scheme, rest = path.split("://", 1)
        parts = [p for p in rest.split("/") if p]
        return [f"{scheme}://" + "/".join(parts[:i]) for i in range(len(parts), 0, -1)]
    found, path = [], os.path.realpath(path)
    while True:
        found.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            return found
        path = parent


def refuse_inside(flag: str, path: str, own: str | None = None, is_dir: bool = True) -> None:
    """UserError when `path` (a dir, or a file with is_dir=False) is in a shards or run dir.

    own=RUN: `path` itself may be a run dir (trainer.train's --run_dir), not one inside another.
    """
    path = str(path)
    start = path if is_dir else (fs.dirname(path) or ".")
    for i, directory in enumerate(_self_and_parents(start)):
        kind = kind_of(directory)
        if kind is None or (i == 0 and is_dir and kind == own):
            continue
        where = "is" if i == 0 and is_dir else "is inside"
        raise UserError(f"{flag} {path} {where} the {kind} dir {directory}, written by {_WRITER[kind]}; "
                        f"its files are not to be overwritten: choose a path outside it")
