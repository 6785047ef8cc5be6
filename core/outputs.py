"""Where a command may write: never over, nor inside, what another command wrote.

A shards dir is recognised by what only pipeline.shards writes (a config.json with a ShardsConfig's
keys, or a manifest.json with the shards manifest's), a run dir by what only trainer.training.train
writes (run_identity.json, or a config.json beside summary.json, best.keras, history.csv or backup/:
alone, such names are too common to mark anything). The names live here, in the contract both sides
import, so the Beam job (which never imports the trainer) and the trainer agree on them;
trainer.training.run_layout takes its names from here.

    outputs.refuse_inside("--output", path, is_dir=False)       # trainer.inference.predict
    outputs.refuse_inside("--run_dir", run_dir, own=outputs.RUN) # a run dir may be its own, not inside one
    problem = outputs.not_shards_output(out, names)             # "" when --overwrite may replace OUT
    where = outputs.inside_other_output(out)                    # "" unless OUT lies in a shards or run dir
    if outputs.data_inside(data_dir, out): ...                  # real paths: symlinks resolved

A path's real location (symlinks resolved) and every directory above it are checked, up to the file
system's root or the bucket.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

from core import fs
from core import manifest as shards_layout
from core.errors import UserError

SHARDS, RUN = "shards", "run"
_WRITER = {SHARDS: "pipeline.shards", RUN: "trainer.training.train"}

# Keys every config.json of pipeline.shards has (dataclasses.asdict(pipeline.config.ShardsConfig)).
SHARDS_CONFIG_KEYS = frozenset({"data_dir", "output_dir", "num_folds", "slice_seconds"})
# What trainer.training.train writes into a run dir (trainer.training.run_layout uses these names).
RUN_IDENTITY = "run_identity.json"
SUMMARY, BEST_MODEL, HISTORY, BACKUP = "summary.json", "best.keras", "history.csv", "backup"
RUN_DIR_NAMES = (SUMMARY, BEST_MODEL, HISTORY, BACKUP)
# Any name the trainer's commands write into a run dir or a runs root: a dir holding one is not a
# shards job's output, whatever else it holds.
OTHER_COMMANDS_NAMES = frozenset({*RUN_DIR_NAMES, "checkpoints", "val_predictions.csv", "serving.keras", "logs",
                                  "curves.png", "cv", "baseline", "pretrain.json", "encoder.keras",
                                  "pretrain_summary.json"})


def _json(path: str) -> Any:
    """The JSON document at `path`, or None when it is absent, unreadable or not JSON."""
    try:
        return fs.read_json(path) if fs.exists(path) else None
    except (OSError, ValueError):
        return None


def is_shards_config(data: Any) -> bool:
    return isinstance(data, dict) and SHARDS_CONFIG_KEYS <= set(data)


def is_shards_manifest(data: Any) -> bool:
    return isinstance(data, dict) and set(shards_layout.REQUIRED_KEYS) <= set(data)


def kind_of(directory: str) -> str | None:
    """SHARDS, RUN, or None for a dir neither command wrote."""
    config = _json(fs.join(directory, shards_layout.CONFIG_FILE))
    if is_shards_config(config) or is_shards_manifest(_json(fs.join(directory, shards_layout.MANIFEST_FILE))):
        return SHARDS
    if fs.exists(fs.join(directory, RUN_IDENTITY)) or (
            config is not None and any(fs.exists(fs.join(directory, n)) for n in RUN_DIR_NAMES)):
        return RUN
    return None


def _self_and_parents(path: str) -> list[str]:
    """`path` and the dirs above it (real paths locally; up to the bucket for a URL), nearest first."""
    if fs.is_remote(path):
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

    own=RUN: `path` itself may be a run dir (trainer.training.train's --run_dir), not one inside another.
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


def inside_other_output(out: str) -> str:
    """"the <kind> dir <dir>" when OUT would lie inside another job's output dir, else ""."""
    for parent in _self_and_parents(out)[1:]:
        kind = kind_of(parent)
        if kind:
            return f"the {kind} dir {parent} of {_WRITER[kind]}"
    return ""


def not_shards_output(out: str, names: Sequence[str]) -> str:
    """Why OUT (holding entries `names`) is not a previous shards job's output; "" when it is one."""
    names = sorted({fs.basename(n) for n in names})
    others = [n for n in names if n in OTHER_COMMANDS_NAMES]
    config = _json(fs.join(out, shards_layout.CONFIG_FILE))
    if config is not None and not is_shards_config(config):
        others.insert(0, f"{shards_layout.CONFIG_FILE} (not a pipeline.shards config)")
    if others:
        return f"it holds {', '.join(others)}, which pipeline.shards does not write (another command's output)"
    if not is_shards_config(config) and not is_shards_manifest(_json(fs.join(out, shards_layout.MANIFEST_FILE))):
        shown = ", ".join(names[:8]) + (" ..." if len(names) > 8 else "")
        return (f"it holds no config.json or manifest.json of pipeline.shards (it holds: {shown}), so it was not "
                f"written by pipeline.shards")
    return ""


def data_inside(data_dir: str, out: str) -> bool:
    """True when the dataset is OUT or inside it, symlinks resolved (local paths; URLs by prefix)."""
    data, root = fs.real(data_dir), fs.real(out)
    return data == root or data.startswith(root.rstrip("/") + "/")

