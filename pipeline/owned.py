"""Where pipeline.shards may write: over a previous shards job's output only, and never inside another's.

`--overwrite` deletes OUT whole, so OUT must be recognised as a shards dir before anything goes: its
config.json must be a ShardsConfig (data_dir, output_dir, ... keys: a trainer run's config.json has
none of them) or its manifest.json a shards manifest, and it must hold nothing another command
writes (a training run's best.keras, summary.json, history.csv, ...). The dataset may not live inside
OUT, also when --data_dir reaches it through a symlink (compared by real path). And OUT may not lie
inside a run dir or another shards dir.

    problem = owned.not_shards_output(out, names)   # "" when OUT may be replaced
    where = owned.inside_other_output(out)          # "" unless OUT lies in a shards or run dir
    if owned.data_inside(data_dir, out): ...
"""
from __future__ import annotations

import json
import os
from typing import Any, Sequence

from apache_beam.io.filesystems import FileSystems

from pipeline import checks, manifest as layout

# Keys every config.json written by pipeline.shards has (dataclasses.asdict(ShardsConfig)).
SHARDS_CONFIG_KEYS = frozenset({"data_dir", "output_dir", "num_folds", "slice_seconds"})
# Names trainer.train, trainer.cv and trainer.baseline write (trainer.run_layout, trainer.cv; the
# pipeline does not import the trainer): a dir holding one is another command's output.
OTHER_COMMANDS_NAMES = frozenset({"summary.json", "best.keras", "history.csv", "backup", "checkpoints",
                                  "val_predictions.csv", "serving.keras", "logs", "curves.png", "cv", "baseline"})


def _json(path: str) -> Any:
    """The JSON document at `path`, or None when it is absent or not JSON."""
    try:
        if not FileSystems.exists(path):
            return None
        with FileSystems.open(path) as f:
            return json.loads(f.read())
    except (OSError, ValueError):
        return None


def is_shards_config(data: Any) -> bool:
    return isinstance(data, dict) and SHARDS_CONFIG_KEYS <= set(data)


def is_shards_manifest(data: Any) -> bool:
    return isinstance(data, dict) and set(layout.REQUIRED_KEYS) <= set(data)


def not_shards_output(out: str, names: Sequence[str]) -> str:
    """Why OUT (holding entries `names`) is not a previous shards job's output; "" when it is one."""
    names = sorted({n.rstrip("/").rsplit("/", 1)[-1] for n in names})
    others = [n for n in names if n in OTHER_COMMANDS_NAMES]
    config = _json(FileSystems.join(out, layout.CONFIG_FILE))
    if config is not None and not is_shards_config(config):
        others.insert(0, f"{layout.CONFIG_FILE} (not a pipeline.shards config)")
    if others:
        return f"it holds {', '.join(others)}, which pipeline.shards does not write (another command's output)"
    if not is_shards_config(config) and not is_shards_manifest(_json(FileSystems.join(out, layout.MANIFEST_FILE))):
        shown = ", ".join(names[:8]) + (" ..." if len(names) > 8 else "")
        return (f"it holds no config.json or manifest.json of pipeline.shards (it holds: {shown}), so it was not "
                f"written by pipeline.shards")
    return ""


# A trainer run dir: its run_identity.json, or a config.json beside one of these (names so common
# alone, e.g. a backup/ dir in a home dir, that they mark nothing by themselves).
RUN_IDENTITY = "run_identity.json"
RUN_DIR_NAMES = ("summary.json", "best.keras", "history.csv", "backup")


def _parents(out: str) -> list[str]:
    """The dirs above OUT (real paths locally; up to the bucket for a URL), nearest first."""
    if checks.is_remote(out):
        scheme, rest = out.split("://", 1)
        parts = [p for p in rest.split("/") if p]
        return [f"{scheme}://" + "/".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)]
    found, path = [], os.path.realpath(out)
    while os.path.dirname(path) != path:
        path = os.path.dirname(path)
        found.append(path)
    return found


def _kind(directory: str) -> str:
    """"shards dir of pipeline.shards", "run dir of trainer.train", or "" for any other dir."""
    def exists(name: str) -> bool:
        return FileSystems.exists(FileSystems.join(directory, name))

    config = _json(FileSystems.join(directory, layout.CONFIG_FILE)) if exists(layout.CONFIG_FILE) else None
    if is_shards_config(config) or (exists(layout.MANIFEST_FILE)
                                    and is_shards_manifest(_json(FileSystems.join(directory, layout.MANIFEST_FILE)))):
        return "shards dir of pipeline.shards"
    if exists(RUN_IDENTITY) or (config is not None and any(exists(n) for n in RUN_DIR_NAMES)):
        return "run dir of trainer.train"
    return ""


def inside_other_output(out: str) -> str:
    """"the <kind> <dir>" when OUT would lie inside another job's output dir, else ""."""
    for parent in _parents(out):
        kind = _kind(parent)
        if kind:
            return f"the {kind} {parent}"
    return ""


def data_inside(data_dir: str, out: str) -> bool:
    """True when the dataset is OUT or inside it, symlinks resolved (local paths; URLs by prefix)."""
    if checks.is_remote(out) or checks.is_remote(data_dir):
        return str(data_dir).rstrip("/").startswith(str(out).rstrip("/") + "/")
    data, root = os.path.realpath(data_dir), os.path.realpath(out)
    return data == root or data.startswith(root.rstrip(os.sep) + os.sep)
