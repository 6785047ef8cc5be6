"""Outputs never land inside a shards dir, nor inside a run dir of another command.

A shards dir is recognised by what only pipeline.shards writes (a manifest.json with the shards
manifest's keys, or a config.json with a ShardsConfig's), a run dir by what only trainer.train
writes (run_identity.json, or a config.json beside summary.json, best.keras, history.csv or backup/:
alone, such names are too common to mark anything). Every entry point checks its output paths
before any work:

    dir_guard.refuse_inside("--output", output, is_dir=False)          # trainer.predict
    dir_guard.refuse_inside("--run_dir", run_dir, own=dir_guard.RUN)    # trainer.train: a run dir may be its own

The path's real location (symlinks resolved) and every directory above it are checked, up to the
file system's root or the bucket.
"""
from __future__ import annotations

import os
from typing import Any

import tensorflow as tf

from pipeline import manifest as shards_layout
from pipeline.errors import UserError
from trainer import fs, run_guard
from trainer import run_layout as layout

SHARDS, RUN = "shards", "run"
_WRITER = {SHARDS: "pipeline.shards", RUN: "trainer.train"}
# Keys every config.json of pipeline.shards has (pipeline.owned.SHARDS_CONFIG_KEYS; the trainer does
# not import the Beam side).
SHARDS_CONFIG_KEYS = frozenset({"data_dir", "output_dir", "num_folds", "slice_seconds"})
RUN_DIR_NAMES = (layout.SUMMARY, layout.BEST_MODEL, layout.HISTORY, layout.BACKUP)


def _json(path: str) -> Any:
    """The JSON document at `path`, or None when it is absent or unreadable."""
    try:
        return fs.read_json(path) if fs.exists(path) else None
    except (ValueError, UnicodeDecodeError, tf.errors.OpError):
        return None


def kind_of(directory: str) -> str | None:
    """SHARDS, RUN, or None for a dir neither command wrote."""
    config = _json(fs.join(directory, layout.CONFIG))
    manifest = _json(fs.join(directory, shards_layout.MANIFEST_FILE))
    if (isinstance(config, dict) and SHARDS_CONFIG_KEYS <= set(config)) or (
            isinstance(manifest, dict) and set(shards_layout.REQUIRED_KEYS) <= set(manifest)):
        return SHARDS
    if fs.exists(fs.join(directory, run_guard.IDENTITY_FILE)) or (
            config is not None and any(fs.exists(fs.join(directory, n)) for n in RUN_DIR_NAMES)):
        return RUN
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
